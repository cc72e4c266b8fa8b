// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "multikrum.hpp"

SYNERGOS_DECLARE_AGGREGATOR_PLUGIN(synergos::plugins::multikrum::MultiKrum,
                                   synergos::plugins::multikrum::kMultiKrumDescriptor)
