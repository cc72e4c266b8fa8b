// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file network.hpp
/// The libtorch network built from an architecture list. Included only by the plugin's two
/// torch translation units (network.cpp, torch_model.cpp): each costs ~20 s to compile.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/types.h>

#include "architecture.hpp"

namespace synergos::plugins::torch {

/// Layers in order, each followed by its activation (no branches, as in the original).
/// Initial weights come from a generator seeded with the run's seed, dropout masks from a
/// generator the trainer reseeds every epoch, so nothing touches libtorch's global generator.
/// Threading: one thread at a time.
class Network {
public:
    /// Without `initialise` the weights keep libtorch's own init (enough for a shape check).
    Network(Architecture layers, std::uint64_t seed, bool initialise = true);

    /// What squashes the output: the last layer's activation, or a Sigmoid, Softmax or
    /// LogSoftmax layer (over dim 1), or either of them followed only by Dropout and Identity
    /// layers without an activation (a softmax output auto_fix gave a Dropout after). `kind` is
    /// Identity when nothing does.
    struct OutputOp {
        std::size_t index = 0;  ///< the layer
        bool is_layer = false;  ///< the layer itself (Softmax...), not its activation
        Activation kind = Activation::Identity;
    };
    const OutputOp& output_op() const noexcept { return output_op_; }

    /// Runs the layers; with `skip_output_op` the output op is left out (the trainer then
    /// applies log_softmax itself for NLLLoss after softmax).
    ::torch::Tensor forward(const ::torch::Tensor& x, bool skip_output_op = false);
    /// Applies layer `index`'s activation to `x`.
    ::torch::Tensor activate(const ::torch::Tensor& x, std::size_t index) const;

    /// Pushes a zero batch of `sample_shape` through every layer in eval mode without
    /// gradients and returns the output shape (batch first). Throws SpecError naming the first
    /// layer whose input does not fit. Leaves the training mode as it was.
    std::vector<std::int64_t> dry_run(const std::vector<std::int64_t>& sample_shape);

    /// Every state entry (`nnl_<i>_<type>.<param>`) in PyTorch's state_dict order: per layer,
    /// parameters then buffers.
    std::vector<std::pair<std::string, ::torch::Tensor>> state_entries() const;
    /// Trainable parameters with their state names, in state order.
    std::vector<std::pair<std::string, ::torch::Tensor>> named_parameters() const;
    std::int64_t parameter_count() const;

    void set_training(bool on);
    void seed_dropout(std::uint64_t seed);

    const Architecture& layers() const noexcept { return layers_; }
    bool has_batch_norm() const noexcept;
    /// A BatchNorm layer with track_running_stats false (batch statistics also in eval mode).
    bool has_untracked_batch_norm() const noexcept;

private:
    Architecture layers_;
    std::shared_ptr<::torch::nn::Module> root_;  ///< owns the layer modules (registered by name)
    std::vector<::torch::nn::AnyModule> modules_;
    OutputOp output_op_;
    std::shared_ptr<at::Generator> dropout_generator_;
};

/// A well-mixed 64-bit seed derived from (seed, a, b) (splitmix64 steps).
std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t a, std::uint64_t b) noexcept;

/// "[N, 4, 28, 28]" for a batch-first shape.
std::string batch_shape_text(at::IntArrayRef shape);
/// "[16, 4, 3, 3]".
std::string shape_text(at::IntArrayRef shape);
/// Throws SpecError unless a dry run's output (for its batch of 2) is rows x columns with one
/// row per sample.
void require_rows_by_columns(const std::vector<std::int64_t>& out);

}  // namespace synergos::plugins::torch
