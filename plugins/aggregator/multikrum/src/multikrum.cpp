// SPDX-License-Identifier: Apache-2.0
#include "multikrum.hpp"

#include <nlohmann/json.hpp>

#include "aggregator_common/run_fields.hpp"

namespace synergos::plugins::multikrum {

namespace {
constexpr const char* kName = "multikrum";
}  // namespace

sdk::Result<aggregator_common::RobustConfig> run_config(std::string_view run_json) noexcept {
    return aggregator_common::guarded(kName, "reading the run", [&] {
        return aggregator_common::read_robust_config(run_json, kName, kDefaults);
    });
}

MultiKrum::MultiKrum(sdk::HostContext& host, const sdk::Options& /*options*/) : host_(host) {}

sdk::Status MultiKrum::validate(std::string_view run_json) noexcept {
    return run_config(run_json).status();
}

sdk::Result<std::unique_ptr<sdk::AggregationSession>> MultiKrum::open(
    std::string_view run_json) noexcept {
    auto config = run_config(run_json);
    if (!config) {
        return config.error();
    }
    return aggregator_common::guarded(
        kName, "open", [&]() -> sdk::Result<std::unique_ptr<sdk::AggregationSession>> {
            host_.logger().debug("multikrum: session opened",
                                 nlohmann::json{{"krum_f", config->krum_f},
                                                {"multikrum_m", config->multikrum_m.value_or(0)}}
                                     .dump());
            return std::unique_ptr<sdk::AggregationSession>(
                new aggregator_common::RobustSession(kName, *config, &host_.logger()));
        });
}

std::string MultiKrum::worker_arguments(std::string_view /*run_json*/) noexcept {
    return R"({"mu":0.0})";
}

}  // namespace synergos::plugins::multikrum
