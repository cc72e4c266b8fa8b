// SPDX-License-Identifier: Apache-2.0
#include "fedprox.hpp"

#include <cmath>
#include <exception>

#include <nlohmann/json.hpp>

#include "weighted_mean.hpp"

namespace synergos::plugins::fedprox {

sdk::Result<double> run_mu(std::string_view run_json) noexcept {
    try {
        const auto run = nlohmann::json::parse(run_json);
        if (!run.is_object()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              "fedprox: the run must be a JSON object"};
        }
        const auto it = run.find("mu");
        if (it == run.end() || it->is_null()) {
            return kDefaultMu;
        }
        if (!it->is_number()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              "fedprox: field 'mu' must be a number (got " + it->dump() + ")"};
        }
        const double mu = it->get<double>();
        if (!std::isfinite(mu) || mu < 0.0) {
            return sdk::Error{
                sdk::ErrorCode::InvalidArgument,
                "fedprox: field 'mu' must be a finite number >= 0 (got " + it->dump() + ")"};
        }
        return mu;
    } catch (const nlohmann::json::exception& e) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          std::string("fedprox: the run is not valid JSON: ") + e.what()};
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          std::string("fedprox: reading mu failed: ") + e.what()};
    }
}

FedProx::FedProx(sdk::HostContext& host, const sdk::Options& /*options*/) : host_(host) {}

sdk::Status FedProx::validate(std::string_view run_json) noexcept {
    return run_mu(run_json).status();
}

sdk::Result<std::unique_ptr<sdk::AggregationSession>> FedProx::open(
    std::string_view run_json) noexcept {
    if (auto status = validate(run_json); !status) {
        return status;
    }
    try {
        return std::unique_ptr<sdk::AggregationSession>(new fedavg::WeightedMeanSession("fedprox"));
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          std::string("fedprox: open failed: ") + e.what()};
    }
}

std::string FedProx::worker_arguments(std::string_view run_json) noexcept {
    try {
        auto mu = run_mu(run_json);
        if (!mu) {
            // validate() refuses such a run first; if it still gets here, train with the default.
            host_.logger().warn("fedprox: " + mu.error().message + "; workers use the default mu");
            return nlohmann::json{{"mu", kDefaultMu}}.dump();
        }
        return nlohmann::json{{"mu", *mu}}.dump();
    } catch (...) {
        return R"({"mu":0.1})";
    }
}

}  // namespace synergos::plugins::fedprox
