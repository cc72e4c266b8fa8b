// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "scaffold.hpp"

SYNERGOS_DECLARE_AGGREGATOR_PLUGIN(synergos::plugins::scaffold::Scaffold,
                                   synergos::plugins::scaffold::kScaffoldDescriptor)
