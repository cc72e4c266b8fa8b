// SPDX-License-Identifier: Apache-2.0
#include "torch_backend.hpp"

#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "architecture.hpp"
#include "spec_error.hpp"
#include "torch_model.hpp"
#include "train_args.hpp"

namespace synergos::plugins::torch {

TorchBackend::TorchBackend(sdk::HostContext& host, const sdk::Options& options) : host_(host) {
    const std::int64_t threads = options.get_int("threads", 0);
    if (threads < 0 || threads > 4096) {
        throw std::invalid_argument("option threads must be between 0 and 4096 (got " +
                                    std::to_string(threads) + ")");
    }
    max_parameters_ = options.get_int("max_parameters", kDefaultMaxParameters);
    if (max_parameters_ < 1 || max_parameters_ > kLargestMaxParameters) {
        throw std::invalid_argument("option max_parameters must be between 1 and " +
                                    std::to_string(kLargestMaxParameters) + " (got " +
                                    std::to_string(max_parameters_) + ")");
    }
    set_intra_op_threads(static_cast<int>(threads));
    // With `threads: 0` libtorch sizes its pool from OMP_NUM_THREADS (the host sets it from
    // --cpus) or from the machine: say which it took.
    const char* omp = std::getenv("OMP_NUM_THREADS");
    host_.logger().info("torch: intra-op threads",
                        nlohmann::json{{"intra_op_threads", intra_op_threads()},
                                       {"threads_option", threads},
                                       {"OMP_NUM_THREADS", omp == nullptr ? "" : omp}}
                            .dump());
}

sdk::Status TorchBackend::validate(std::string_view architecture_json, std::string_view args_json,
                                   const std::vector<std::int64_t>& input_shape) noexcept {
    try {
        const Architecture layers = parse_architecture(architecture_json);
        const TrainArgs args = parse_train_args(args_json);
        require_training_fields(args);
        if (auto status = check_shapes(layers, input_shape, max_parameters_); !status) {
            return {status.code(), "torch: " + status.message()};
        }
        return sdk::Status::ok();
    } catch (const SpecError& e) {
        return {sdk::ErrorCode::InvalidArgument, std::string("torch: ") + e.what()};
    } catch (const std::exception& e) {
        return {sdk::ErrorCode::Internal, std::string("torch: validate failed: ") + e.what()};
    }
}

sdk::Result<std::unique_ptr<sdk::Model>> TorchBackend::build(std::string_view architecture_json,
                                                             std::string_view args_json) noexcept {
    try {
        Architecture layers = parse_architecture(architecture_json);
        const TrainArgs args = parse_train_args(args_json);
        return build_model(host_.logger(), std::move(layers), args.seed, max_parameters_);
    } catch (const SpecError& e) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, std::string("torch: ") + e.what()};
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          std::string("torch: build failed: ") + e.what()};
    }
}

}  // namespace synergos::plugins::torch
