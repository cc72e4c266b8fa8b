// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "fedadagrad.hpp"

SYNERGOS_DECLARE_AGGREGATOR_PLUGIN(synergos::plugins::fedadagrad::FedAdagrad,
                                   synergos::plugins::fedadagrad::kFedAdagradDescriptor)
