// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file server_optimizer_aggregator.hpp
/// The aggregator of a server-optimizer strategy (fedavgm, fedadam, fedadagrad, fedyogi): the
/// strategies differ only in their name and the defaults of their run fields, so each plugin
/// is this class with those two filled in.

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>
#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/host.hpp>
#include <synergos/sdk/status.hpp>

#include "aggregator_common/run_fields.hpp"
#include "aggregator_common/server_optimizer.hpp"

namespace synergos::plugins::aggregator_common {

/// Threading: every method may be called from any thread; sessions are independent.
class ServerOptimizerAggregator : public sdk::Aggregator {
public:
    ServerOptimizerAggregator(sdk::HostContext& host, std::string name,
                              const ServerOptimizerConfig& defaults)
        : host_(host), name_(std::move(name)), defaults_(defaults) {}

    /// The run's settings; InvalidArgument names the field when one is out of range.
    sdk::Result<ServerOptimizerConfig> run_config(std::string_view run_json) const noexcept {
        return guarded(name_, "reading the run", [&] {
            return read_server_optimizer_config(run_json, name_, defaults_);
        });
    }

    sdk::Status validate(std::string_view run_json) noexcept override {
        return run_config(run_json).status();
    }

    sdk::Result<std::unique_ptr<sdk::AggregationSession>> open(
        std::string_view run_json) noexcept override {
        auto config = run_config(run_json);
        if (!config) {
            return config.error();
        }
        return guarded(name_, "open", [&]() -> sdk::Result<std::unique_ptr<sdk::AggregationSession>> {
            host_.logger().debug(name_ + ": session opened",
                                 nlohmann::json{{"server_lr", config->server_lr},
                                                {"server_momentum", config->server_momentum},
                                                {"beta_1", config->beta_1},
                                                {"beta_2", config->beta_2},
                                                {"tau", config->tau}}
                                     .dump());
            return std::unique_ptr<sdk::AggregationSession>(
                new ServerOptimizerSession(name_, *config));
        });
    }

    /// {"mu": 0}: workers train plainly; the strategy acts on the server only.
    std::string worker_arguments(std::string_view /*run_json*/) noexcept override {
        return R"({"mu":0.0})";
    }

private:
    sdk::HostContext& host_;
    std::string name_;
    ServerOptimizerConfig defaults_;
};

}  // namespace synergos::plugins::aggregator_common
