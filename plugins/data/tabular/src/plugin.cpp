// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "tabular_pipeline.hpp"

SYNERGOS_DECLARE_DATA_PLUGIN(synergos::plugins::tabular::TabularPipeline,
                             synergos::plugins::tabular::kTabularDescriptor)
