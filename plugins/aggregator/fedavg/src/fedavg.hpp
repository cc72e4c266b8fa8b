// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file fedavg.hpp
/// The `fedavg` aggregator: the next global model is the mean of the clients' locally trained
/// weights, weighted by their training rows. Workers train without a proximal term (mu 0).

#include <memory>
#include <string>
#include <string_view>

#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>

namespace synergos::plugins::fedavg {

inline constexpr sdk::PluginDescriptor kFedAvgDescriptor{
    sizeof(sdk::PluginDescriptor),
    "fedavg",
    sdk::PluginKind::Aggregator,
    "0.1.0",
    "federated averaging: n-weighted mean of client weights, workers train with mu 0",
    "Synergos",
    sdk::PluginStatus::Stable,
    nullptr,
    0};

/// FedAvg. Threading: every method may be called from any thread; sessions are independent.
class FedAvg final : public sdk::Aggregator {
public:
    FedAvg(sdk::HostContext& host, const sdk::Options& options);

    sdk::Status validate(std::string_view run_json) noexcept override;
    sdk::Result<std::unique_ptr<sdk::AggregationSession>> open(
        std::string_view run_json) noexcept override;
    /// Always {"mu": 0}: FedAvg ignores the run's mu (the original asserted mu == 0 instead).
    std::string worker_arguments(std::string_view run_json) noexcept override;

private:
    sdk::HostContext& host_;
};

}  // namespace synergos::plugins::fedavg
