// SPDX-License-Identifier: Apache-2.0
#include "fedtrimmedavg.hpp"

#include <nlohmann/json.hpp>

#include "aggregator_common/run_fields.hpp"

namespace synergos::plugins::fedtrimmedavg {

namespace {
constexpr const char* kName = "fedtrimmedavg";
}  // namespace

sdk::Result<aggregator_common::RobustConfig> run_config(std::string_view run_json) noexcept {
    return aggregator_common::guarded(kName, "reading the run", [&] {
        return aggregator_common::read_robust_config(run_json, kName, kDefaults);
    });
}

FedTrimmedAvg::FedTrimmedAvg(sdk::HostContext& host, const sdk::Options& /*options*/)
    : host_(host) {}

sdk::Status FedTrimmedAvg::validate(std::string_view run_json) noexcept {
    return run_config(run_json).status();
}

sdk::Result<std::unique_ptr<sdk::AggregationSession>> FedTrimmedAvg::open(
    std::string_view run_json) noexcept {
    auto config = run_config(run_json);
    if (!config) {
        return config.error();
    }
    return aggregator_common::guarded(
        kName, "open", [&]() -> sdk::Result<std::unique_ptr<sdk::AggregationSession>> {
            host_.logger().debug("fedtrimmedavg: session opened",
                                 nlohmann::json{{"trim_fraction", config->trim_fraction}}.dump());
            return std::unique_ptr<sdk::AggregationSession>(
                new aggregator_common::RobustSession(kName, *config, &host_.logger()));
        });
}

std::string FedTrimmedAvg::worker_arguments(std::string_view /*run_json*/) noexcept {
    return R"({"mu":0.0})";
}

}  // namespace synergos::plugins::fedtrimmedavg
