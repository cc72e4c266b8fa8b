// SPDX-License-Identifier: Apache-2.0
#include "fedavg.hpp"

#include <exception>

#include <nlohmann/json.hpp>

#include "weighted_mean.hpp"

namespace synergos::plugins::fedavg {

FedAvg::FedAvg(sdk::HostContext& host, const sdk::Options& /*options*/) : host_(host) {}

sdk::Status FedAvg::validate(std::string_view run_json) noexcept {
    try {
        const auto run = nlohmann::json::parse(run_json);
        if (!run.is_object()) {
            return {sdk::ErrorCode::InvalidArgument, "fedavg: the run must be a JSON object"};
        }
        return sdk::Status::ok();
    } catch (const nlohmann::json::exception& e) {
        return {sdk::ErrorCode::InvalidArgument,
                std::string("fedavg: the run is not valid JSON: ") + e.what()};
    } catch (const std::exception& e) {
        return {sdk::ErrorCode::Internal, std::string("fedavg: validate failed: ") + e.what()};
    }
}

sdk::Result<std::unique_ptr<sdk::AggregationSession>> FedAvg::open(
    std::string_view run_json) noexcept {
    if (auto status = validate(run_json); !status) {
        return status;
    }
    try {
        host_.logger().debug("fedavg: session opened");
        return std::unique_ptr<sdk::AggregationSession>(new WeightedMeanSession("fedavg"));
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          std::string("fedavg: open failed: ") + e.what()};
    }
}

std::string FedAvg::worker_arguments(std::string_view /*run_json*/) noexcept {
    return R"({"mu":0.0})";
}

}  // namespace synergos::plugins::fedavg
