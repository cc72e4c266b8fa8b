// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "krum.hpp"

SYNERGOS_DECLARE_AGGREGATOR_PLUGIN(synergos::plugins::krum::Krum,
                                   synergos::plugins::krum::kKrumDescriptor)
