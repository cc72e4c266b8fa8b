// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file fedadam.hpp
/// The `fedadam` aggregator: Adam on the server (Reddi et al. 2021, Algorithm 2).
/// Run fields: server_lr (default 1e-2), beta_1 (0.9), beta_2 (0.99), tau (1e-3).
/// The server step is aggregator_common::ServerOptimizerSession; docs/strategies.md has the
/// formulas.

#include <memory>
#include <string>
#include <string_view>

#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/status.hpp>

#include "aggregator_common/server_optimizer_aggregator.hpp"

namespace synergos::plugins::fedadam {

inline constexpr sdk::PluginDescriptor kFedAdamDescriptor{
    sizeof(sdk::PluginDescriptor),
    "fedadam",
    sdk::PluginKind::Aggregator,
    "0.1.0",
    "FedAdam: Adam on the server over the round pseudo-gradient (Reddi et al. 2021)",
    "Synergos",
    sdk::PluginStatus::Stable,
    nullptr,
    0};

/// The defaults of the run fields.
inline constexpr aggregator_common::ServerOptimizerConfig kDefaults{
    .rule = aggregator_common::ServerRule::Adam,
    .server_lr = 1e-2,
    .server_momentum = 0.0,
    .beta_1 = 0.9,
    .beta_2 = 0.99,
    .tau = 1e-3,
};

/// FedAdam: aggregator_common::ServerOptimizerAggregator with this strategy's name and defaults.
class FedAdam final : public aggregator_common::ServerOptimizerAggregator {
public:
    FedAdam(sdk::HostContext& host, const sdk::Options& /*options*/)
        : ServerOptimizerAggregator(host, "fedadam", kDefaults) {}
};

}  // namespace synergos::plugins::fedadam
