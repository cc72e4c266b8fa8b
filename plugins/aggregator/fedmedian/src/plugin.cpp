// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "fedmedian.hpp"

SYNERGOS_DECLARE_AGGREGATOR_PLUGIN(synergos::plugins::fedmedian::FedMedian,
                                   synergos::plugins::fedmedian::kFedMedianDescriptor)
