// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "fedavgm.hpp"

SYNERGOS_DECLARE_AGGREGATOR_PLUGIN(synergos::plugins::fedavgm::FedAvgM,
                                   synergos::plugins::fedavgm::kFedAvgMDescriptor)
