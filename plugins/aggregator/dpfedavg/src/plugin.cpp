// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "dpfedavg.hpp"

SYNERGOS_DECLARE_AGGREGATOR_PLUGIN(synergos::plugins::dpfedavg::DpFedAvg,
                                   synergos::plugins::dpfedavg::kDpFedAvgDescriptor)
