// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "fedtrimmedavg.hpp"

SYNERGOS_DECLARE_AGGREGATOR_PLUGIN(synergos::plugins::fedtrimmedavg::FedTrimmedAvg,
                                   synergos::plugins::fedtrimmedavg::kFedTrimmedAvgDescriptor)
