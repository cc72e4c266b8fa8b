// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file fedprox.hpp
/// The `fedprox` aggregator: the server step of FedAvg (n-weighted mean), while every worker
/// adds the proximal term mu/2 * sum ||w - w_global||^2 to its local loss.

#include <memory>
#include <string>
#include <string_view>

#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::plugins::fedprox {

/// The original's default proximal coefficient (Arguments.mu).
inline constexpr double kDefaultMu = 0.1;

inline constexpr sdk::PluginDescriptor kFedProxDescriptor{
    sizeof(sdk::PluginDescriptor),
    "fedprox",
    sdk::PluginKind::Aggregator,
    "0.1.0",
    "FedProx: n-weighted mean of client weights, workers add a proximal term (run field mu)",
    "Synergos",
    sdk::PluginStatus::Stable,
    nullptr,
    0};

/// The run's mu: the `mu` field, or kDefaultMu when absent or null. InvalidArgument names the
/// field when it is not a finite, non-negative number or the run is not a JSON object.
sdk::Result<double> run_mu(std::string_view run_json) noexcept;

/// FedProx. Threading: every method may be called from any thread; sessions are independent.
class FedProx final : public sdk::Aggregator {
public:
    FedProx(sdk::HostContext& host, const sdk::Options& options);

    sdk::Status validate(std::string_view run_json) noexcept override;
    sdk::Result<std::unique_ptr<sdk::AggregationSession>> open(
        std::string_view run_json) noexcept override;
    /// {"mu": <run mu, default 0.1>}.
    std::string worker_arguments(std::string_view run_json) noexcept override;

private:
    sdk::HostContext& host_;
};

}  // namespace synergos::plugins::fedprox
