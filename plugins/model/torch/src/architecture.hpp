// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file architecture.hpp
/// The Synergos architecture list (`l_type`, `structure`, `activation`, `is_input`) parsed and
/// checked without libtorch, so the director can refuse a bad model cheaply and the torch
/// translation units only see well-formed layers.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace synergos::plugins::torch {

/// Supported `l_type` values (torch.nn class names).
enum class LayerType {
    Linear,
    Conv1d,
    Conv2d,
    MaxPool1d,
    MaxPool2d,
    AvgPool1d,
    AvgPool2d,
    Flatten,
    Dropout,
    BatchNorm1d,
    BatchNorm2d,
    ReLU,
    LeakyReLU,
    ELU,
    GELU,
    Sigmoid,
    Tanh,
    Softmax,
    LogSoftmax,
    Identity,
};

/// Supported `activation` values (torch.nn.functional names); Identity is "" or null.
enum class Activation {
    Identity,
    Relu,
    Sigmoid,
    Tanh,
    Softmax,
    LogSoftmax,
    LeakyRelu,
    Elu,
    Gelu,
    Selu,
    Silu,
    Softplus
};

/// One parsed layer. Fields not used by the layer's type keep their defaults.
struct LayerSpec {
    int index = 0;
    LayerType type = LayerType::Identity;
    std::string l_type;  ///< as written in the architecture
    std::string name;    ///< `nnl_<index>_<l_type lower>`, the state-dict prefix
    Activation activation = Activation::Identity;
    std::string activation_name;  ///< as written ("" for identity)

    // Linear (in_features, out_features), Conv (in_channels, out_channels), BatchNorm (in).
    std::int64_t in = 0;
    std::int64_t out = 0;
    bool bias = true;
    // Conv and pooling, one entry per spatial dimension.
    std::vector<std::int64_t> kernel_size;
    std::vector<std::int64_t> stride;
    std::vector<std::int64_t> padding;
    std::vector<std::int64_t> dilation;
    std::string padding_text;            ///< conv "same"/"valid"; empty when numeric
    std::string padding_mode = "zeros";  ///< conv
    std::int64_t groups = 1;
    bool ceil_mode = false;
    bool count_include_pad = true;
    std::optional<std::int64_t> divisor_override;
    // Flatten
    std::int64_t start_dim = 1;
    std::int64_t end_dim = -1;
    // Dropout
    double p = 0.5;
    // BatchNorm
    double eps = 1e-5;
    std::optional<double> momentum = 0.1;  ///< null: cumulative moving average
    bool affine = true;
    bool track_running_stats = true;
    // Softmax / LogSoftmax layers
    std::int64_t dim = 1;
    // LeakyReLU / ELU / GELU layers
    double negative_slope = 0.01;
    double alpha = 1.0;
    std::string approximate = "none";

    /// Spatial dimensions of a conv/pool layer (1 or 2), 0 otherwise.
    int spatial_dims() const noexcept;
    bool has_parameters() const noexcept;
};

using Architecture = std::vector<LayerSpec>;

/// Parses an architecture list. Throws SpecError naming the layer index, `l_type` and field.
Architecture parse_architecture(std::string_view architecture_json);

/// Values a layer allocates: weights, biases and BatchNorm running statistics (saturating at
/// INT64_MAX). Computed from the spec alone, so a huge layer is refused before allocation.
std::int64_t layer_values(const LayerSpec& layer);

/// One sample's output shape after each layer for an input of `sample_shape` (no batch
/// dimension), as far as it can be computed; shorter than `layers` from the first layer whose
/// input does not fit (the dry run then names that layer).
std::vector<std::vector<std::int64_t>> sample_shapes(const Architecture& layers,
                                                     const std::vector<std::int64_t>& sample_shape);

/// Throws SpecError naming the layer when the network's values (layer_values summed) exceed
/// `max_values`, or, with `sample_shape`, when one sample's output of a layer would.
void check_size(const Architecture& layers, std::int64_t max_values,
                const std::vector<std::int64_t>* sample_shape = nullptr);

/// The most values one sample holds at once: its input or the largest layer output (at least 1).
/// A batch holds that many times its rows in one tensor.
std::int64_t peak_values_per_sample(const Architecture& layers, const std::vector<std::int64_t>& sample_shape);

/// "layer <i> (<l_type>)" for messages.
std::string layer_label(const LayerSpec& layer);

/// The supported l_type names, comma-separated (for messages and the README).
std::string supported_layer_types();
/// The supported activation names, comma-separated.
std::string supported_activations();

}  // namespace synergos::plugins::torch
