// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file scaffold.hpp
/// The `scaffold` aggregator: SCAFFOLD (Karimireddy et al. 2020) with control variates kept on
/// the TTP (ScaffoldSession, saved with every round checkpoint) and on each worker (the client
/// side in scaffold_client.hpp). Run field: server_lr (eta_g, default 1.0).

#include <memory>
#include <string>
#include <string_view>

#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/status.hpp>

#include "scaffold_session.hpp"

namespace synergos::plugins::scaffold {

// Alpha until the torch model plugin runs the client side (scaffold_client.hpp).
inline constexpr sdk::PluginDescriptor kScaffoldDescriptor{
    sizeof(sdk::PluginDescriptor),
    "scaffold",
    sdk::PluginKind::Aggregator,
    "0.1.0",
    "SCAFFOLD: drift correction with server and client control variates (Karimireddy et al. 2020)",
    "Synergos",
    sdk::PluginStatus::Alpha,
    nullptr,
    0};

/// The run's settings; InvalidArgument names the field when one is out of range.
sdk::Result<ScaffoldConfig> run_config(std::string_view run_json) noexcept;

/// SCAFFOLD. Threading: every method may be called from any thread; sessions are independent.
class Scaffold final : public sdk::Aggregator {
public:
    Scaffold(sdk::HostContext& host, const sdk::Options& options);

    sdk::Status validate(std::string_view run_json) noexcept override;
    sdk::Result<std::unique_ptr<sdk::AggregationSession>> open(
        std::string_view run_json) noexcept override;
    /// {"mu": 0, "scaffold": true}: workers apply the control-variate correction (option II).
    std::string worker_arguments(std::string_view run_json) noexcept override;

private:
    sdk::HostContext& host_;
};

}  // namespace synergos::plugins::scaffold
