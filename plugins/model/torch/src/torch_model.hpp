// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file torch_model.hpp
/// The `sdk::Model` over a libtorch network. This header does not include libtorch, so the
/// backend and the plugin entry compile quickly; the network stays behind a pointer.

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include <synergos/sdk/log.hpp>
#include <synergos/sdk/model.hpp>
#include <synergos/sdk/status.hpp>

#include "architecture.hpp"

namespace synergos::plugins::torch {

class Network;

/// One network instance: local training (one call = one round's local epochs) and inference.
/// Threading: one thread at a time (sdk::Model contract).
class TorchModel final : public sdk::Model {
public:
    /// `max_values`: bound on one sample's values at any layer output (the dry runs).
    TorchModel(sdk::Logger& logger, std::unique_ptr<Network> network, std::int64_t max_values);
    ~TorchModel() override;
    TorchModel(const TorchModel&) = delete;
    TorchModel& operator=(const TorchModel&) = delete;

    sdk::Result<sdk::TensorMap> state() noexcept override;
    sdk::Status load_state(const sdk::TensorMap& state) noexcept override;
    sdk::Result<sdk::TrainReport> train(const sdk::Dataset& data, std::string_view args_json,
                                        const sdk::TensorMap* reference) noexcept override;
    sdk::Result<sdk::Inference> infer(const sdk::Dataset& data,
                                      std::string_view args_json) noexcept override;
    std::int64_t parameter_count() const noexcept override;

private:
    sdk::Logger& logger_;
    std::unique_ptr<Network> network_;
    std::int64_t max_values_;
};

/// Builds the network of `layers` with initial weights drawn from `seed`. InvalidArgument,
/// before anything is allocated, when the layers hold more than `max_values` values.
sdk::Result<std::unique_ptr<sdk::Model>> build_model(sdk::Logger& logger, Architecture layers,
                                                     std::uint64_t seed,
                                                     std::int64_t max_values) noexcept;

/// Dry-runs `layers` on a zero batch of `input_shape` (one sample's shape); InvalidArgument
/// names the first layer that does not fit, or says the output is not rows x columns, or
/// (before anything is allocated) names the layer whose parameters or output for one sample
/// exceed `max_values`. An empty `input_shape` is unknown (an image project, whose alignment
/// names no features, or one sent without auto_align): the layers are built and their
/// parameters bounded, and the shapes are left to the worker, which knows its data.
sdk::Status check_shapes(const Architecture& layers, const std::vector<std::int64_t>& input_shape,
                         std::int64_t max_values) noexcept;

/// Sets libtorch's intra-op thread count (process-wide); 0 keeps libtorch's default.
void set_intra_op_threads(int threads) noexcept;
/// libtorch's intra-op thread count (0 if it cannot say).
int intra_op_threads() noexcept;

}  // namespace synergos::plugins::torch
