// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file dpfedavg.hpp
/// The `dpfedavg` aggregator: federated averaging with user-level differential privacy, by
/// clipping every client's update on the server and adding Gaussian noise (DpFedAvgSession),
/// with the privacy spent reported per round from a Renyi-DP accountant.
/// Run fields: dp_clip_norm and dp_noise_multiplier (required), dp_delta (default 1e-5),
/// dp_seed (optional: makes the noise reproducible, and therefore removable by whoever knows
/// it; leave it out in production).

#include <memory>
#include <string>
#include <string_view>

#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/status.hpp>

#include "dp_session.hpp"

namespace synergos::plugins::dpfedavg {

inline constexpr sdk::PluginDescriptor kDpFedAvgDescriptor{
    sizeof(sdk::PluginDescriptor),
    "dpfedavg",
    sdk::PluginKind::Aggregator,
    "0.1.0",
    "DP-FedAvg: server-side clipping and Gaussian noise, epsilon per round from an RDP accountant",
    "Synergos",
    sdk::PluginStatus::Stable,
    nullptr,
    0};

/// The run's settings; InvalidArgument names the field when one is missing or out of range.
sdk::Result<DpConfig> run_config(std::string_view run_json) noexcept;

/// DP-FedAvg. Threading: every method may be called from any thread; sessions are independent.
class DpFedAvg final : public sdk::Aggregator {
public:
    DpFedAvg(sdk::HostContext& host, const sdk::Options& options);

    sdk::Status validate(std::string_view run_json) noexcept override;
    sdk::Result<std::unique_ptr<sdk::AggregationSession>> open(
        std::string_view run_json) noexcept override;
    /// {"mu": 0}: clipping and noise happen on the server.
    std::string worker_arguments(std::string_view run_json) noexcept override;

private:
    sdk::HostContext& host_;
};

}  // namespace synergos::plugins::dpfedavg
