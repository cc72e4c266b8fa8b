// SPDX-License-Identifier: Apache-2.0
#include "network.hpp"

#include <cmath>
#include <exception>
#include <new>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/utils.h>

#include "spec_error.hpp"
#include "torch_model.hpp"

namespace synergos::plugins::torch {

namespace {

namespace tnn = ::torch::nn;

/// Dropout drawing its masks from the network's own generator (reseeded every epoch), so
/// training is reproducible and independent of libtorch's process-wide generator.
class SeededDropout final : public tnn::Module {
public:
    SeededDropout(double p, std::shared_ptr<at::Generator> generator)
        : p_(p), generator_(std::move(generator)) {}

    ::torch::Tensor forward(const ::torch::Tensor& x) {
        if (!is_training() || p_ == 0.0) {
            return x;
        }
        if (p_ == 1.0) {
            return ::torch::zeros_like(x);
        }
        auto mask = ::torch::empty_like(x).bernoulli_(1.0 - p_, *generator_);
        return x * mask / (1.0 - p_);
    }

private:
    double p_;
    std::shared_ptr<at::Generator> generator_;
};

template <std::size_t D>
tnn::detail::conv_padding_t<D> conv_padding(const LayerSpec& l) {
    if (l.padding_text == "same") {
        return ::torch::kSame;
    }
    if (l.padding_text == "valid") {
        return ::torch::kValid;
    }
    return ::torch::ExpandingArray<D>(l.padding);
}

tnn::detail::conv_padding_mode_t padding_mode(const LayerSpec& l) {
    if (l.padding_mode == "reflect") {
        return ::torch::kReflect;
    }
    if (l.padding_mode == "replicate") {
        return ::torch::kReplicate;
    }
    if (l.padding_mode == "circular") {
        return ::torch::kCircular;
    }
    return ::torch::kZeros;
}

template <std::size_t D, typename Options>
Options conv_options(const LayerSpec& l) {
    return Options(l.in, l.out, ::torch::ExpandingArray<D>(l.kernel_size))
        .stride(::torch::ExpandingArray<D>(l.stride))
        .padding(conv_padding<D>(l))
        .dilation(::torch::ExpandingArray<D>(l.dilation))
        .groups(l.groups)
        .bias(l.bias)
        .padding_mode(padding_mode(l));
}

c10::optional<double> bn_momentum(const LayerSpec& l) {
    return l.momentum ? c10::optional<double>(*l.momentum) : c10::nullopt;
}

tnn::AnyModule make_module(const LayerSpec& l, const std::shared_ptr<at::Generator>& dropout) {
    switch (l.type) {
        case LayerType::Linear:
            return tnn::AnyModule(tnn::Linear(tnn::LinearOptions(l.in, l.out).bias(l.bias)));
        case LayerType::Conv1d:
            return tnn::AnyModule(tnn::Conv1d(conv_options<1, tnn::Conv1dOptions>(l)));
        case LayerType::Conv2d:
            return tnn::AnyModule(tnn::Conv2d(conv_options<2, tnn::Conv2dOptions>(l)));
        case LayerType::MaxPool1d:
            return tnn::AnyModule(tnn::MaxPool1d(tnn::MaxPool1dOptions(l.kernel_size)
                                                     .stride(l.stride)
                                                     .padding(l.padding)
                                                     .dilation(l.dilation)
                                                     .ceil_mode(l.ceil_mode)));
        case LayerType::MaxPool2d:
            return tnn::AnyModule(tnn::MaxPool2d(tnn::MaxPool2dOptions(l.kernel_size)
                                                     .stride(l.stride)
                                                     .padding(l.padding)
                                                     .dilation(l.dilation)
                                                     .ceil_mode(l.ceil_mode)));
        case LayerType::AvgPool1d:
            return tnn::AnyModule(tnn::AvgPool1d(tnn::AvgPool1dOptions(l.kernel_size)
                                                     .stride(l.stride)
                                                     .padding(l.padding)
                                                     .ceil_mode(l.ceil_mode)
                                                     .count_include_pad(l.count_include_pad)));
        case LayerType::AvgPool2d: {
            auto options = tnn::AvgPool2dOptions(l.kernel_size)
                               .stride(l.stride)
                               .padding(l.padding)
                               .ceil_mode(l.ceil_mode)
                               .count_include_pad(l.count_include_pad);
            if (l.divisor_override) {
                options.divisor_override(*l.divisor_override);
            }
            return tnn::AnyModule(tnn::AvgPool2d(options));
        }
        case LayerType::Flatten:
            return tnn::AnyModule(
                tnn::Flatten(tnn::FlattenOptions().start_dim(l.start_dim).end_dim(l.end_dim)));
        case LayerType::Dropout:
            return tnn::AnyModule(std::make_shared<SeededDropout>(l.p, dropout));
        case LayerType::BatchNorm1d:
            return tnn::AnyModule(
                tnn::BatchNorm1d(tnn::BatchNorm1dOptions(l.in)
                                     .eps(l.eps)
                                     .momentum(bn_momentum(l))
                                     .affine(l.affine)
                                     .track_running_stats(l.track_running_stats)));
        case LayerType::BatchNorm2d:
            return tnn::AnyModule(
                tnn::BatchNorm2d(tnn::BatchNorm2dOptions(l.in)
                                     .eps(l.eps)
                                     .momentum(bn_momentum(l))
                                     .affine(l.affine)
                                     .track_running_stats(l.track_running_stats)));
        case LayerType::ReLU:
            return tnn::AnyModule(tnn::ReLU());
        case LayerType::LeakyReLU:
            return tnn::AnyModule(
                tnn::LeakyReLU(tnn::LeakyReLUOptions().negative_slope(l.negative_slope)));
        case LayerType::ELU:
            return tnn::AnyModule(tnn::ELU(tnn::ELUOptions().alpha(l.alpha)));
        case LayerType::GELU:
            return tnn::AnyModule(tnn::GELU(tnn::GELUOptions().approximate(l.approximate)));
        case LayerType::Sigmoid:
            return tnn::AnyModule(tnn::Sigmoid());
        case LayerType::Tanh:
            return tnn::AnyModule(tnn::Tanh());
        case LayerType::Softmax:
            return tnn::AnyModule(tnn::Softmax(l.dim));
        case LayerType::LogSoftmax:
            return tnn::AnyModule(tnn::LogSoftmax(l.dim));
        case LayerType::Identity:
            return tnn::AnyModule(tnn::Identity());
    }
    throw SpecError(layer_label(l) + ": unsupported layer type");
}

/// PyTorch's default init (kaiming_uniform(a=sqrt(5)) for weights, U(+-1/sqrt(fan_in)) for
/// biases: both are U(-1/sqrt(fan_in), 1/sqrt(fan_in))), drawn from `generator`.
void init_parameters(const LayerSpec& l, tnn::Module& module, at::Generator& generator) {
    if (l.type != LayerType::Linear && l.type != LayerType::Conv1d && l.type != LayerType::Conv2d) {
        return;  // BatchNorm starts at weight 1, bias 0: deterministic already
    }
    std::int64_t fan_in = l.in;
    if (l.type != LayerType::Linear) {
        fan_in = l.in / l.groups;
        for (std::int64_t k : l.kernel_size) {
            fan_in *= k;
        }
    }
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    ::torch::NoGradGuard no_grad;
    for (auto& p : module.named_parameters(/*recurse=*/false)) {
        p.value().uniform_(-bound, bound, generator);
    }
}

/// Refuses inputs a layer cannot take, with a message naming the layer and both shapes.
void check_input(const LayerSpec& l, const ::torch::Tensor& x) {
    const auto fail = [&](const std::string& expected) {
        throw SpecError(layer_label(l) + ": expects " + expected + ", got input of shape " +
                        batch_shape_text(x.sizes()));
    };
    const auto dims = x.dim();
    switch (l.type) {
        case LayerType::Linear:
            if (dims < 2 || x.size(-1) != l.in) {
                fail("in_features=" + std::to_string(l.in) + " in the last dimension");
            }
            break;
        case LayerType::Conv1d:
            if (dims != 3 || x.size(1) != l.in) {
                fail("input [N, " + std::to_string(l.in) + " (in_channels), length]");
            }
            break;
        case LayerType::Conv2d:
            if (dims != 4 || x.size(1) != l.in) {
                fail("input [N, " + std::to_string(l.in) + " (in_channels), height, width]");
            }
            break;
        case LayerType::BatchNorm1d:
            if ((dims != 2 && dims != 3) || x.size(1) != l.in) {
                fail("input [N, " + std::to_string(l.in) + " (num_features)] or [N, " +
                     std::to_string(l.in) + ", length]");
            }
            break;
        case LayerType::BatchNorm2d:
            if (dims != 4 || x.size(1) != l.in) {
                fail("input [N, " + std::to_string(l.in) + " (num_features), height, width]");
            }
            break;
        case LayerType::MaxPool1d:
        case LayerType::AvgPool1d:
            if (dims != 3) {
                fail("input [N, channels, length]");
            }
            break;
        case LayerType::MaxPool2d:
        case LayerType::AvgPool2d:
            if (dims != 4) {
                fail("input [N, channels, height, width]");
            }
            break;
        default:
            break;
    }
}

/// Restores a network's training mode when a dry run ends, also on a throw.
class ModeGuard {
public:
    explicit ModeGuard(tnn::Module& module) : module_(module), was_training_(module.is_training()) {
        module_.eval();
    }
    ~ModeGuard() { module_.train(was_training_); }
    ModeGuard(const ModeGuard&) = delete;
    ModeGuard& operator=(const ModeGuard&) = delete;

private:
    tnn::Module& module_;
    bool was_training_;
};

}  // namespace

std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t a, std::uint64_t b) noexcept {
    const auto step = [](std::uint64_t z) {
        z += 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31U);
    };
    return step(step(step(seed) ^ a) ^ b);
}

std::string batch_shape_text(at::IntArrayRef shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        s += i == 0 ? std::string("N") : ", " + std::to_string(shape[i]);
    }
    return s + "]";
}

void require_rows_by_columns(const std::vector<std::int64_t>& out) {
    if (out.size() != 2) {
        throw SpecError("the network's output must be 2-D (rows x columns), got " + batch_shape_text(out) +
                        " (add a Flatten layer)");
    }
    if (out[0] != 2) {
        // Scores would be read for the wrong rows (a Flatten with start_dim 0 folds the batch).
        throw SpecError("the network's output must keep one row per sample: 2 samples gave " + shape_text(out) +
                        " (a layer folds the batch dimension into another)");
    }
}

std::string shape_text(at::IntArrayRef shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        s += (i == 0 ? "" : ", ") + std::to_string(shape[i]);
    }
    return s + "]";
}

Network::Network(Architecture layers, std::uint64_t seed, bool initialise)
    : layers_(std::move(layers)),
      root_(std::make_shared<tnn::Module>("SynergosModel")),
      dropout_generator_(
          std::make_shared<at::Generator>(at::make_generator<at::CPUGeneratorImpl>(seed))) {
    at::Generator init = at::make_generator<at::CPUGeneratorImpl>(seed);
    modules_.reserve(layers_.size());
    for (const LayerSpec& l : layers_) {
        tnn::AnyModule module = make_module(l, dropout_generator_);
        root_->register_module(l.name, module.ptr());
        if (initialise) {
            init_parameters(l, *module.ptr(), init);
        }
        modules_.push_back(std::move(module));
    }
    for (std::size_t i = layers_.size(); i-- > 0;) {
        const LayerSpec& l = layers_[i];
        const bool class_dim = l.dim == 1 || l.dim == -1;
        if (l.activation != Activation::Identity) {
            output_op_ = {i, false, l.activation};
        } else if (l.type == LayerType::Sigmoid) {
            output_op_ = {i, true, Activation::Sigmoid};
        } else if (l.type == LayerType::Softmax && class_dim) {
            output_op_ = {i, true, Activation::Softmax};
        } else if (l.type == LayerType::LogSoftmax && class_dim) {
            output_op_ = {i, true, Activation::LogSoftmax};
        } else if (l.type == LayerType::Dropout || l.type == LayerType::Identity) {
            continue;  // keeps the output's shape and, in eval mode, its values
        }
        break;
    }
}

::torch::Tensor Network::activate(const ::torch::Tensor& x, std::size_t index) const {
    switch (layers_[index].activation) {
        case Activation::Identity:
            return x;
        case Activation::Relu:
            return ::torch::relu(x);
        case Activation::Sigmoid:
            return ::torch::sigmoid(x);
        case Activation::Tanh:
            return ::torch::tanh(x);
        case Activation::Softmax:
            return ::torch::softmax(x, 1);
        case Activation::LogSoftmax:
            return ::torch::log_softmax(x, 1);
        case Activation::LeakyRelu:
            return ::torch::leaky_relu(x, 0.01);
        case Activation::Elu:
            return ::torch::elu(x);
        case Activation::Gelu:
            return ::torch::gelu(x);
        case Activation::Selu:
            return ::torch::selu(x);
        case Activation::Silu:
            return ::torch::silu(x);
        case Activation::Softplus:
            return ::torch::softplus(x);
    }
    return x;
}

::torch::Tensor Network::forward(const ::torch::Tensor& input, bool skip_output_op) {
    ::torch::Tensor x = input;
    const bool skip = skip_output_op && output_op_.kind != Activation::Identity;
    for (std::size_t i = 0; i < modules_.size(); ++i) {
        const bool here = skip && i == output_op_.index;
        if (!(here && output_op_.is_layer)) {
            x = modules_[i].forward(x);
        }
        if (!(here && !output_op_.is_layer)) {
            x = activate(x, i);
        }
    }
    return x;
}

std::vector<std::int64_t> Network::dry_run(const std::vector<std::int64_t>& sample_shape) {
    if (sample_shape.empty()) {
        throw SpecError("input shape is empty");
    }
    std::vector<std::int64_t> shape{2};  // 2 rows: BatchNorm without running stats needs > 1
    for (std::int64_t d : sample_shape) {
        if (d <= 0) {
            throw SpecError("input shape has a dimension <= 0");
        }
        shape.push_back(d);
    }
    ::torch::NoGradGuard no_grad;
    ModeGuard mode(*root_);
    ::torch::Tensor x = ::torch::zeros(shape);
    for (std::size_t i = 0; i < modules_.size(); ++i) {
        const LayerSpec& l = layers_[i];
        check_input(l, x);
        const std::string input_text = batch_shape_text(x.sizes());
        try {
            x = modules_[i].forward(x);
        } catch (const c10::Error& e) {
            std::string what = e.what_without_backtrace();
            what = what.substr(0, what.find('\n'));
            throw SpecError(layer_label(l) + ": cannot take input of shape " + input_text + ": " +
                            what);
        }
        if ((l.activation == Activation::Softmax || l.activation == Activation::LogSoftmax) &&
            x.dim() < 2) {
            throw SpecError(layer_label(l) + ": activation '" + l.activation_name +
                            "' needs an output with at least 2 dimensions");
        }
        x = activate(x, i);
    }
    return x.sizes().vec();
}

std::vector<std::pair<std::string, ::torch::Tensor>> Network::state_entries() const {
    std::vector<std::pair<std::string, ::torch::Tensor>> out;
    for (std::size_t i = 0; i < modules_.size(); ++i) {
        const auto& module = *modules_[i].ptr();
        for (const auto& p : module.named_parameters(/*recurse=*/false)) {
            out.emplace_back(layers_[i].name + "." + p.key(), p.value());
        }
        for (const auto& b : module.named_buffers(/*recurse=*/false)) {
            out.emplace_back(layers_[i].name + "." + b.key(), b.value());
        }
    }
    return out;
}

std::vector<std::pair<std::string, ::torch::Tensor>> Network::named_parameters() const {
    std::vector<std::pair<std::string, ::torch::Tensor>> out;
    for (std::size_t i = 0; i < modules_.size(); ++i) {
        for (const auto& p : modules_[i].ptr()->named_parameters(/*recurse=*/false)) {
            if (p.value().requires_grad()) {
                out.emplace_back(layers_[i].name + "." + p.key(), p.value());
            }
        }
    }
    return out;
}

std::int64_t Network::parameter_count() const {
    std::int64_t n = 0;
    for (const auto& p : named_parameters()) {
        n += p.second.numel();
    }
    return n;
}

void Network::set_training(bool on) {
    root_->train(on);
}

void Network::seed_dropout(std::uint64_t seed) {
    *dropout_generator_ = at::make_generator<at::CPUGeneratorImpl>(seed);
}

bool Network::has_batch_norm() const noexcept {
    for (const LayerSpec& l : layers_) {
        if (l.type == LayerType::BatchNorm1d || l.type == LayerType::BatchNorm2d) {
            return true;
        }
    }
    return false;
}

bool Network::has_untracked_batch_norm() const noexcept {
    for (const LayerSpec& l : layers_) {
        if ((l.type == LayerType::BatchNorm1d || l.type == LayerType::BatchNorm2d) &&
            !l.track_running_stats) {
            return true;
        }
    }
    return false;
}

sdk::Status check_shapes(const Architecture& layers, const std::vector<std::int64_t>& input_shape,
                         std::int64_t max_values) noexcept {
    try {
        if (input_shape.empty()) {
            check_size(layers, max_values);
            Network network(layers, 0, /*initialise=*/false);  // each layer's own arguments
            return sdk::Status::ok();
        }
        check_size(layers, max_values, &input_shape);  // before allocating anything
        // Shapes do not depend on the weights: skip the seeded init (a second pass).
        Network network(layers, 0, /*initialise=*/false);
        const auto out = network.dry_run(input_shape);
        require_rows_by_columns(out);
        return sdk::Status::ok();
    } catch (const SpecError& e) {
        return {sdk::ErrorCode::InvalidArgument, e.what()};
    } catch (const c10::Error& e) {
        return {sdk::ErrorCode::InvalidArgument, e.what_without_backtrace()};
    } catch (const std::bad_alloc&) {
        return {sdk::ErrorCode::ResourceExhausted, "out of memory checking the network's shapes"};
    } catch (const std::exception& e) {
        return {sdk::ErrorCode::Internal, std::string("shape check failed: ") + e.what()};
    }
}

}  // namespace synergos::plugins::torch
