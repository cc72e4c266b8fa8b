// SPDX-License-Identifier: Apache-2.0
#include "dpfedavg.hpp"

#include <cstdint>
#include <limits>

#include <nlohmann/json.hpp>

#include "aggregator_common/run_fields.hpp"

namespace synergos::plugins::dpfedavg {

namespace {
constexpr const char* kName = "dpfedavg";
}  // namespace

sdk::Result<DpConfig> run_config(std::string_view run_json) noexcept {
    using aggregator_common::Range;
    return aggregator_common::guarded(kName, "reading the run", [&]() -> sdk::Result<DpConfig> {
        auto run = aggregator_common::RunFields::parse(run_json, kName);
        if (!run) {
            return run.error();
        }
        DpConfig config;
        auto clip = run->required_number("dp_clip_norm", Range::positive());
        if (!clip) {
            return clip.error();
        }
        auto noise = run->required_number("dp_noise_multiplier", Range::positive());
        if (!noise) {
            return noise.error();
        }
        auto delta = run->number("dp_delta", config.delta, Range{0.0, true, 1.0, true});
        if (!delta) {
            return delta.error();
        }
        auto seed = run->optional_integer("dp_seed", 0, std::numeric_limits<std::int64_t>::max());
        if (!seed) {
            return seed.error();
        }
        config.clip_norm = *clip;
        config.noise_multiplier = *noise;
        config.delta = *delta;
        if (*seed) {
            config.seed = static_cast<std::uint64_t>(**seed);
        }
        return config;
    });
}

DpFedAvg::DpFedAvg(sdk::HostContext& host, const sdk::Options& /*options*/) : host_(host) {}

sdk::Status DpFedAvg::validate(std::string_view run_json) noexcept {
    return run_config(run_json).status();
}

sdk::Result<std::unique_ptr<sdk::AggregationSession>> DpFedAvg::open(
    std::string_view run_json) noexcept {
    auto config = run_config(run_json);
    if (!config) {
        return config.error();
    }
    return aggregator_common::guarded(
        kName, "open", [&]() -> sdk::Result<std::unique_ptr<sdk::AggregationSession>> {
            if (config->seed) {
                host_.logger().warn(
                    "dpfedavg: dp_seed is set, so the noise can be recomputed and removed by "
                    "anyone who knows the run; use it for tests only");
            }
            host_.logger().debug("dpfedavg: session opened",
                                 nlohmann::json{{"dp_clip_norm", config->clip_norm},
                                                {"dp_noise_multiplier", config->noise_multiplier},
                                                {"dp_delta", config->delta},
                                                {"seeded", config->seed.has_value()}}
                                     .dump());
            return std::unique_ptr<sdk::AggregationSession>(
                new DpFedAvgSession(*config, &host_.logger()));
        });
}

std::string DpFedAvg::worker_arguments(std::string_view /*run_json*/) noexcept {
    return R"({"mu":0.0})";
}

}  // namespace synergos::plugins::dpfedavg
