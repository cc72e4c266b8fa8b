// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file fedavgm.hpp
/// The `fedavgm` aggregator: server momentum (Hsu et al. 2019) over the n-weighted mean.
/// Run fields: server_lr (default 1.0) and server_momentum (default 0.9).
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

namespace synergos::plugins::fedavgm {

inline constexpr sdk::PluginDescriptor kFedAvgMDescriptor{
    sizeof(sdk::PluginDescriptor),
    "fedavgm",
    sdk::PluginKind::Aggregator,
    "0.1.0",
    "FedAvgM: server momentum over the n-weighted mean of client weights (Hsu et al. 2019)",
    "Synergos",
    sdk::PluginStatus::Stable,
    nullptr,
    0};

/// The defaults of the run fields.
inline constexpr aggregator_common::ServerOptimizerConfig kDefaults{
    .rule = aggregator_common::ServerRule::Momentum,
    .server_lr = 1.0,
    .server_momentum = 0.9,
    .beta_1 = 0.9,
    .beta_2 = 0.99,
    .tau = 1e-3,
};

/// FedAvgM: aggregator_common::ServerOptimizerAggregator with this strategy's name and defaults.
class FedAvgM final : public aggregator_common::ServerOptimizerAggregator {
public:
    FedAvgM(sdk::HostContext& host, const sdk::Options& /*options*/)
        : ServerOptimizerAggregator(host, "fedavgm", kDefaults) {}
};

}  // namespace synergos::plugins::fedavgm
