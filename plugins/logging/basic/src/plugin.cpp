// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "basic_sink.hpp"

SYNERGOS_DECLARE_LOG_SINK_PLUGIN(synergos::plugins::basic::BasicSink,
                                 synergos::plugins::basic::kBasicDescriptor)
