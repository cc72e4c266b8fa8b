// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "fedavg.hpp"

SYNERGOS_DECLARE_AGGREGATOR_PLUGIN(synergos::plugins::fedavg::FedAvg,
                                   synergos::plugins::fedavg::kFedAvgDescriptor)
