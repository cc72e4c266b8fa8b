// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "fedadam.hpp"

SYNERGOS_DECLARE_AGGREGATOR_PLUGIN(synergos::plugins::fedadam::FedAdam,
                                   synergos::plugins::fedadam::kFedAdamDescriptor)
