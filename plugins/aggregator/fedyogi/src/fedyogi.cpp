// SPDX-License-Identifier: Apache-2.0
#include "fedyogi.hpp"

#include <nlohmann/json.hpp>

#include "aggregator_common/run_fields.hpp"

namespace synergos::plugins::fedyogi {

namespace {
constexpr const char* kName = "fedyogi";
}  // namespace

sdk::Result<aggregator_common::ServerOptimizerConfig> run_config(
    std::string_view run_json) noexcept {
    return aggregator_common::guarded(kName, "reading the run", [&] {
        return aggregator_common::read_server_optimizer_config(run_json, kName, kDefaults);
    });
}

FedYogi::FedYogi(sdk::HostContext& host, const sdk::Options& /*options*/) : host_(host) {}

sdk::Status FedYogi::validate(std::string_view run_json) noexcept {
    return run_config(run_json).status();
}

sdk::Result<std::unique_ptr<sdk::AggregationSession>> FedYogi::open(
    std::string_view run_json) noexcept {
    auto config = run_config(run_json);
    if (!config) {
        return config.error();
    }
    return aggregator_common::guarded(
        kName, "open", [&]() -> sdk::Result<std::unique_ptr<sdk::AggregationSession>> {
            host_.logger().debug("fedyogi: session opened",
                                 nlohmann::json{{"server_lr", config->server_lr},
                                                {"server_momentum", config->server_momentum},
                                                {"beta_1", config->beta_1},
                                                {"beta_2", config->beta_2},
                                                {"tau", config->tau}}
                                     .dump());
            return std::unique_ptr<sdk::AggregationSession>(
                new aggregator_common::ServerOptimizerSession(kName, *config));
        });
}

std::string FedYogi::worker_arguments(std::string_view /*run_json*/) noexcept {
    return R"({"mu":0.0})";
}

}  // namespace synergos::plugins::fedyogi
