// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "fedyogi.hpp"

SYNERGOS_DECLARE_AGGREGATOR_PLUGIN(synergos::plugins::fedyogi::FedYogi,
                                   synergos::plugins::fedyogi::kFedYogiDescriptor)
