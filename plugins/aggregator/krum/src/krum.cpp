// SPDX-License-Identifier: Apache-2.0
#include "krum.hpp"

#include <nlohmann/json.hpp>

#include "aggregator_common/run_fields.hpp"

namespace synergos::plugins::krum {

namespace {
constexpr const char* kName = "krum";
}  // namespace

sdk::Result<aggregator_common::RobustConfig> run_config(std::string_view run_json) noexcept {
    return aggregator_common::guarded(kName, "reading the run", [&] {
        return aggregator_common::read_robust_config(run_json, kName, kDefaults);
    });
}

Krum::Krum(sdk::HostContext& host, const sdk::Options& /*options*/) : host_(host) {}

sdk::Status Krum::validate(std::string_view run_json) noexcept {
    return run_config(run_json).status();
}

sdk::Result<std::unique_ptr<sdk::AggregationSession>> Krum::open(
    std::string_view run_json) noexcept {
    auto config = run_config(run_json);
    if (!config) {
        return config.error();
    }
    return aggregator_common::guarded(
        kName, "open", [&]() -> sdk::Result<std::unique_ptr<sdk::AggregationSession>> {
            host_.logger().debug("krum: session opened",
                                 nlohmann::json{{"krum_f", config->krum_f}}.dump());
            return std::unique_ptr<sdk::AggregationSession>(
                new aggregator_common::RobustSession(kName, *config, &host_.logger()));
        });
}

std::string Krum::worker_arguments(std::string_view /*run_json*/) noexcept {
    return R"({"mu":0.0})";
}

}  // namespace synergos::plugins::krum
