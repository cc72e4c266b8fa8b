// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "fedprox.hpp"

SYNERGOS_DECLARE_AGGREGATOR_PLUGIN(synergos::plugins::fedprox::FedProx,
                                   synergos::plugins::fedprox::kFedProxDescriptor)
