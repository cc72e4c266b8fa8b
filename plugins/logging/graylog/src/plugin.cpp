// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "graylog_sink.hpp"

SYNERGOS_DECLARE_LOG_SINK_PLUGIN(synergos::plugins::graylog::GraylogSink,
                                 synergos::plugins::graylog::kGraylogDescriptor)
