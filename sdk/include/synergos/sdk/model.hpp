// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file model.hpp
/// Plugin kind `model`: builds a network from a Synergos architecture list (`l_type`,
/// `structure`, `activation`), trains it locally and infers. Runs on workers (training, inference)
/// and on the director (validation of architectures at run creation).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <synergos/sdk/data_pipeline.hpp>
#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/status.hpp>
#include <synergos/sdk/tensor.hpp>

namespace synergos::sdk {

/// What local training reports back (only this and the weights leave a worker).
struct TrainReport {
    TensorMap weights;                ///< the locally trained state
    std::int64_t samples = 0;         ///< training rows used (FedAvg weight)
    std::vector<double> epoch_losses; ///< mean loss per local epoch run
    int epochs_run = 0;               ///< < epochs when local early stopping fired
};

/// Model outputs for a split, in row order.
struct Inference {
    std::int64_t rows = 0;
    std::int64_t width = 0;       ///< output columns (1 for binary/regression)
    std::vector<float> scores;    ///< rows x width raw outputs (probabilities after softmax/sigmoid)
    double loss = 0.0;            ///< mean loss against the split's labels
};

/// One network instance.
/// Threading: one thread at a time. Ownership: owned by the caller of `ModelBackend::build`.
class BOOST_SYMBOL_VISIBLE Model : public PluginObject {
public:
    /// The current weights and buffers, named `nnl_<i>_<l_type lower>.<param>`.
    virtual Result<TensorMap> state() noexcept = 0;
    /// Loads weights; names, dtypes and shapes must match exactly.
    virtual Status load_state(const TensorMap& state) noexcept = 0;
    /// Trains locally from the current state on `data` with the run's arguments (`args_json`:
    /// run fields plus strategy fields such as `mu`). `reference` is the round's global state for
    /// proximal terms (may be nullptr).
    virtual Result<TrainReport> train(const Dataset& data, std::string_view args_json,
                                      const TensorMap* reference) noexcept = 0;
    /// Runs the model over `data` without gradients.
    virtual Result<Inference> infer(const Dataset& data, std::string_view args_json) noexcept = 0;
    /// Number of trainable parameters.
    virtual std::int64_t parameter_count() const noexcept = 0;
};

/// The model backend.
class BOOST_SYMBOL_VISIBLE ModelBackend : public PluginObject {
public:
    /// Checks an architecture and run arguments without training; InvalidArgument names the item
    /// (unknown layer, activation, optimizer, loss, or a shape mismatch given `input_shape`).
    virtual Status validate(std::string_view architecture_json, std::string_view args_json,
                            const std::vector<std::int64_t>& input_shape) noexcept = 0;
    /// Builds a model; initial weights are drawn from the run's `seed`.
    virtual Result<std::unique_ptr<Model>> build(std::string_view architecture_json,
                                                 std::string_view args_json) noexcept = 0;
};

}  // namespace synergos::sdk
