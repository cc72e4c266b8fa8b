// SPDX-License-Identifier: Apache-2.0
#include "scaffold.hpp"

#include <nlohmann/json.hpp>

#include "aggregator_common/run_fields.hpp"

namespace synergos::plugins::scaffold {

namespace {
constexpr const char* kName = "scaffold";
}  // namespace

sdk::Result<ScaffoldConfig> run_config(std::string_view run_json) noexcept {
    return aggregator_common::guarded(
        kName, "reading the run", [&]() -> sdk::Result<ScaffoldConfig> {
            auto run = aggregator_common::RunFields::parse(run_json, kName);
            if (!run) {
                return run.error();
            }
            ScaffoldConfig config;
            auto lr =
                run->number("server_lr", config.server_lr, aggregator_common::Range::positive());
            if (!lr) {
                return lr.error();
            }
            config.server_lr = *lr;
            return config;
        });
}

Scaffold::Scaffold(sdk::HostContext& host, const sdk::Options& /*options*/) : host_(host) {}

sdk::Status Scaffold::validate(std::string_view run_json) noexcept {
    return run_config(run_json).status();
}

sdk::Result<std::unique_ptr<sdk::AggregationSession>> Scaffold::open(
    std::string_view run_json) noexcept {
    auto config = run_config(run_json);
    if (!config) {
        return config.error();
    }
    return aggregator_common::guarded(
        kName, "open", [&]() -> sdk::Result<std::unique_ptr<sdk::AggregationSession>> {
            host_.logger().debug("scaffold: session opened",
                                 nlohmann::json{{"server_lr", config->server_lr}}.dump());
            return std::unique_ptr<sdk::AggregationSession>(new ScaffoldSession(*config));
        });
}

std::string Scaffold::worker_arguments(std::string_view /*run_json*/) noexcept {
    return R"({"mu":0.0,"scaffold":true})";
}

}  // namespace synergos::plugins::scaffold
