// SPDX-License-Identifier: Apache-2.0
#include "architecture.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <limits>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "spec_error.hpp"

namespace synergos::plugins::torch {

namespace {

using nlohmann::json;

struct LayerTypeName {
    const char* name;
    LayerType type;
};

constexpr std::array<LayerTypeName, 20> kLayerTypes{{
    {"Linear", LayerType::Linear},
    {"Conv1d", LayerType::Conv1d},
    {"Conv2d", LayerType::Conv2d},
    {"MaxPool1d", LayerType::MaxPool1d},
    {"MaxPool2d", LayerType::MaxPool2d},
    {"AvgPool1d", LayerType::AvgPool1d},
    {"AvgPool2d", LayerType::AvgPool2d},
    {"Flatten", LayerType::Flatten},
    {"Dropout", LayerType::Dropout},
    {"BatchNorm1d", LayerType::BatchNorm1d},
    {"BatchNorm2d", LayerType::BatchNorm2d},
    {"ReLU", LayerType::ReLU},
    {"LeakyReLU", LayerType::LeakyReLU},
    {"ELU", LayerType::ELU},
    {"GELU", LayerType::GELU},
    {"Sigmoid", LayerType::Sigmoid},
    {"Tanh", LayerType::Tanh},
    {"Softmax", LayerType::Softmax},
    {"LogSoftmax", LayerType::LogSoftmax},
    {"Identity", LayerType::Identity},
}};

struct ActivationName {
    const char* name;
    Activation activation;
};

constexpr std::array<ActivationName, 11> kActivations{{
    {"relu", Activation::Relu},
    {"sigmoid", Activation::Sigmoid},
    {"tanh", Activation::Tanh},
    {"softmax", Activation::Softmax},
    {"log_softmax", Activation::LogSoftmax},
    {"leaky_relu", Activation::LeakyRelu},
    {"elu", Activation::Elu},
    {"gelu", Activation::Gelu},
    {"selu", Activation::Selu},
    {"silu", Activation::Silu},
    {"softplus", Activation::Softplus},
}};

/// Reads a layer's `structure` object, remembering which keys were used so unknown ones can be
/// refused (PyTorch would raise a TypeError for an unknown constructor argument).
class StructureReader {
public:
    StructureReader(const json& structure, std::string where)
        : structure_(structure), where_(std::move(where)) {}

    bool has(const char* key) const {
        auto it = structure_.find(key);
        return it != structure_.end() && !it->is_null();
    }

    std::int64_t required_int(const char* key) {
        if (!has(key)) {
            fail(std::string("structure.") + key + " is required");
        }
        used_.insert(key);
        return read_int(key, structure_.at(key));
    }

    std::int64_t int_or(const char* key, std::int64_t fallback) {
        if (!has(key)) {
            return mark(key, fallback);
        }
        used_.insert(key);
        return read_int(key, structure_.at(key));
    }

    double double_or(const char* key, double fallback) {
        if (!has(key)) {
            return mark(key, fallback);
        }
        const json& v = structure_.at(key);
        used_.insert(key);
        if (!v.is_number()) {
            fail(std::string("structure.") + key + " must be a number (got " + v.dump() + ")");
        }
        const double d = v.get<double>();
        if (!std::isfinite(d)) {
            fail(std::string("structure.") + key + " must be finite");
        }
        return d;
    }

    bool bool_or(const char* key, bool fallback) {
        if (!has(key)) {
            return mark(key, fallback);
        }
        const json& v = structure_.at(key);
        used_.insert(key);
        if (!v.is_boolean()) {
            fail(std::string("structure.") + key + " must be true or false (got " + v.dump() + ")");
        }
        return v.get<bool>();
    }

    std::string string_or(const char* key, const std::string& fallback) {
        if (!has(key)) {
            return mark(key, fallback);
        }
        const json& v = structure_.at(key);
        used_.insert(key);
        if (!v.is_string()) {
            fail(std::string("structure.") + key + " must be a string (got " + v.dump() + ")");
        }
        return v.get<std::string>();
    }

    /// An int or a list of `dims` ints (PyTorch's `_pair`/`_single`).
    std::vector<std::int64_t> tuple(const char* key, int dims) {
        const json& v = structure_.at(key);
        used_.insert(key);
        if (v.is_array()) {
            if (static_cast<int>(v.size()) != dims) {
                fail(std::string("structure.") + key + " must be an integer or a list of " +
                     std::to_string(dims) + " integers (got " + v.dump() + ")");
            }
            std::vector<std::int64_t> out;
            for (const json& e : v) {
                out.push_back(read_int(key, e));
            }
            return out;
        }
        return std::vector<std::int64_t>(static_cast<std::size_t>(dims), read_int(key, v));
    }

    std::vector<std::int64_t> tuple_or(const char* key, int dims, std::int64_t fallback) {
        if (!has(key)) {
            used_.insert(key);
            return std::vector<std::int64_t>(static_cast<std::size_t>(dims), fallback);
        }
        return tuple(key, dims);
    }

    /// Marks keys that PyTorch accepts but that change nothing here (e.g. `inplace`).
    void ignore(const char* key) { used_.insert(key); }

    /// Refuses any key not read.
    void finish() const {
        std::vector<std::string> unknown;
        for (const auto& item : structure_.items()) {
            if (used_.count(item.key()) == 0) {
                unknown.push_back(item.key());
            }
        }
        if (!unknown.empty()) {
            std::string allowed;
            for (const auto& k : used_) {
                allowed += (allowed.empty() ? "" : ", ") + k;
            }
            fail("unknown structure field '" + unknown.front() +
                 "' (allowed: " + (allowed.empty() ? std::string("none") : allowed) + ")");
        }
    }

    [[noreturn]] void fail(const std::string& what) const { throw SpecError(where_ + ": " + what); }

private:
    template <typename T>
    T mark(const char* key, T value) {
        used_.insert(key);
        return value;
    }

    std::int64_t read_int(const char* key, const json& v) const {
        if (v.is_number_integer()) {
            return v.get<std::int64_t>();
        }
        if (v.is_number_float()) {
            const double d = v.get<double>();
            if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
                return static_cast<std::int64_t>(d);
            }
        }
        fail(std::string("structure.") + key + " must be an integer (got " + v.dump() + ")");
    }

    const json& structure_;
    std::string where_;
    std::set<std::string> used_;
};

void require_positive(const StructureReader& r, const char* key, std::int64_t v) {
    if (v <= 0) {
        r.fail(std::string("structure.") + key + " must be a positive integer (got " +
               std::to_string(v) + ")");
    }
}

void require_positive(const StructureReader& r, const char* key,
                      const std::vector<std::int64_t>& v) {
    for (std::int64_t e : v) {
        require_positive(r, key, e);
    }
}

void require_non_negative(const StructureReader& r, const char* key,
                          const std::vector<std::int64_t>& v) {
    for (std::int64_t e : v) {
        if (e < 0) {
            r.fail(std::string("structure.") + key + " must not be negative (got " +
                   std::to_string(e) + ")");
        }
    }
}

void parse_conv(StructureReader& r, LayerSpec& l, int dims) {
    l.in = r.required_int("in_channels");
    l.out = r.required_int("out_channels");
    if (!r.has("kernel_size")) {
        r.fail("structure.kernel_size is required");
    }
    l.kernel_size = r.tuple("kernel_size", dims);
    l.stride = r.tuple_or("stride", dims, 1);
    l.dilation = r.tuple_or("dilation", dims, 1);
    l.groups = r.int_or("groups", 1);
    l.bias = r.bool_or("bias", true);
    l.padding_mode = r.string_or("padding_mode", "zeros");
    require_positive(r, "in_channels", l.in);
    require_positive(r, "out_channels", l.out);
    require_positive(r, "kernel_size", l.kernel_size);
    require_positive(r, "stride", l.stride);
    require_positive(r, "dilation", l.dilation);
    require_positive(r, "groups", l.groups);
    if (l.in % l.groups != 0 || l.out % l.groups != 0) {
        r.fail("structure.groups must divide in_channels and out_channels");
    }
    static const std::set<std::string> kModes{"zeros", "reflect", "replicate", "circular"};
    if (kModes.count(l.padding_mode) == 0) {
        r.fail("structure.padding_mode must be one of zeros, reflect, replicate, circular (got '" +
               l.padding_mode + "')");
    }
}

void parse_conv_padding(StructureReader& r, const json& structure, LayerSpec& l, int dims) {
    auto it = structure.find("padding");
    if (it != structure.end() && it->is_string()) {
        l.padding_text = r.string_or("padding", "");
        if (l.padding_text != "same" && l.padding_text != "valid") {
            r.fail("structure.padding must be an integer, a list, 'same' or 'valid' (got '" +
                   l.padding_text + "')");
        }
        if (l.padding_text == "same" &&
            std::any_of(l.stride.begin(), l.stride.end(), [](std::int64_t s) { return s != 1; })) {
            r.fail("structure.padding 'same' needs stride 1");
        }
        l.padding.assign(static_cast<std::size_t>(dims), 0);
        return;
    }
    l.padding = r.tuple_or("padding", dims, 0);
    require_non_negative(r, "padding", l.padding);
}

void parse_pool(StructureReader& r, LayerSpec& l, int dims, bool is_max) {
    if (!r.has("kernel_size")) {
        r.fail("structure.kernel_size is required");
    }
    l.kernel_size = r.tuple("kernel_size", dims);
    // PyTorch: stride None (or []) means stride = kernel_size.
    l.stride = r.has("stride") ? r.tuple("stride", dims) : l.kernel_size;
    r.ignore("stride");
    l.padding = r.tuple_or("padding", dims, 0);
    l.ceil_mode = r.bool_or("ceil_mode", false);
    require_positive(r, "kernel_size", l.kernel_size);
    require_positive(r, "stride", l.stride);
    require_non_negative(r, "padding", l.padding);
    for (std::size_t i = 0; i < l.padding.size(); ++i) {
        if (2 * l.padding[i] > l.kernel_size[i]) {
            r.fail("structure.padding must be at most half of kernel_size");
        }
    }
    if (is_max) {
        l.dilation = r.tuple_or("dilation", dims, 1);
        require_positive(r, "dilation", l.dilation);
        if (r.bool_or("return_indices", false)) {
            r.fail("structure.return_indices is not supported (the layer must return a tensor)");
        }
    } else {
        l.count_include_pad = r.bool_or("count_include_pad", true);
        if (dims == 2 && r.has("divisor_override")) {
            l.divisor_override = r.int_or("divisor_override", 0);
            require_positive(r, "divisor_override", *l.divisor_override);
        } else if (dims == 2) {
            r.ignore("divisor_override");
        }
    }
}

void parse_structure(const json& structure, LayerSpec& l) {
    StructureReader r(structure, layer_label(l));
    switch (l.type) {
        case LayerType::Linear:
            l.in = r.required_int("in_features");
            l.out = r.required_int("out_features");
            l.bias = r.bool_or("bias", true);
            require_positive(r, "in_features", l.in);
            require_positive(r, "out_features", l.out);
            break;
        case LayerType::Conv1d:
        case LayerType::Conv2d: {
            const int dims = l.type == LayerType::Conv1d ? 1 : 2;
            parse_conv(r, l, dims);
            parse_conv_padding(r, structure, l, dims);
            break;
        }
        case LayerType::MaxPool1d:
            parse_pool(r, l, 1, true);
            break;
        case LayerType::MaxPool2d:
            parse_pool(r, l, 2, true);
            break;
        case LayerType::AvgPool1d:
            parse_pool(r, l, 1, false);
            break;
        case LayerType::AvgPool2d:
            parse_pool(r, l, 2, false);
            break;
        case LayerType::Flatten:
            l.start_dim = r.int_or("start_dim", 1);
            l.end_dim = r.int_or("end_dim", -1);
            break;
        case LayerType::Dropout:
            l.p = r.double_or("p", 0.5);
            r.ignore("inplace");
            if (l.p < 0.0 || l.p > 1.0) {
                r.fail("structure.p must be between 0 and 1");
            }
            break;
        case LayerType::BatchNorm1d:
        case LayerType::BatchNorm2d: {
            l.in = r.required_int("num_features");
            require_positive(r, "num_features", l.in);
            l.eps = r.double_or("eps", 1e-5);
            if (l.eps <= 0.0) {
                r.fail("structure.eps must be positive");
            }
            if (structure.contains("momentum") && structure.at("momentum").is_null()) {
                l.momentum.reset();  // PyTorch: cumulative moving average
                r.ignore("momentum");
            } else {
                l.momentum = r.double_or("momentum", 0.1);
                if (*l.momentum < 0.0 || *l.momentum > 1.0) {
                    r.fail("structure.momentum must be between 0 and 1 or null");
                }
            }
            l.affine = r.bool_or("affine", true);
            l.track_running_stats = r.bool_or("track_running_stats", true);
            break;
        }
        case LayerType::Softmax:
        case LayerType::LogSoftmax:
            l.dim = r.int_or("dim", 1);
            break;
        case LayerType::LeakyReLU:
            l.negative_slope = r.double_or("negative_slope", 0.01);
            r.ignore("inplace");
            break;
        case LayerType::ELU:
            l.alpha = r.double_or("alpha", 1.0);
            r.ignore("inplace");
            break;
        case LayerType::GELU:
            l.approximate = r.string_or("approximate", "none");
            if (l.approximate != "none" && l.approximate != "tanh") {
                r.fail("structure.approximate must be 'none' or 'tanh'");
            }
            break;
        case LayerType::ReLU:
            r.ignore("inplace");
            break;
        case LayerType::Sigmoid:
        case LayerType::Tanh:
        case LayerType::Identity:
            break;
    }
    r.finish();
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

}  // namespace

int LayerSpec::spatial_dims() const noexcept {
    switch (type) {
        case LayerType::Conv1d:
        case LayerType::MaxPool1d:
        case LayerType::AvgPool1d:
            return 1;
        case LayerType::Conv2d:
        case LayerType::MaxPool2d:
        case LayerType::AvgPool2d:
            return 2;
        default:
            return 0;
    }
}

bool LayerSpec::has_parameters() const noexcept {
    switch (type) {
        case LayerType::Linear:
        case LayerType::Conv1d:
        case LayerType::Conv2d:
            return true;
        case LayerType::BatchNorm1d:
        case LayerType::BatchNorm2d:
            return affine;
        default:
            return false;
    }
}

namespace {

constexpr std::int64_t kSaturated = std::numeric_limits<std::int64_t>::max();

/// a * b for non-negative a and b, saturating: specs may hold any int64.
std::int64_t mul_sat(std::int64_t a, std::int64_t b) {
    if (a == 0 || b == 0) {
        return 0;
    }
    return a > kSaturated / b ? kSaturated : a * b;
}

std::int64_t add_sat(std::int64_t a, std::int64_t b) {
    return a > kSaturated - b ? kSaturated : a + b;
}

std::int64_t product(const std::vector<std::int64_t>& dims) {
    std::int64_t n = 1;
    for (std::int64_t d : dims) {
        n = mul_sat(n, d);
    }
    return n;
}

/// Output length of a conv/pool window along one dimension (torch's formula), or nullopt when
/// the window does not fit (libtorch refuses that input; the dry run names the layer).
std::optional<std::int64_t> window_output(std::int64_t length, std::int64_t kernel,
                                          std::int64_t stride, std::int64_t padding,
                                          std::int64_t dilation, bool ceil_mode) {
    const std::int64_t padded = add_sat(length, mul_sat(2, padding));
    const std::int64_t span = add_sat(mul_sat(dilation, kernel - 1), 1);
    if (padded < span) {
        return std::nullopt;
    }
    const std::int64_t n = padded - span;
    std::int64_t out = (ceil_mode ? n / stride + (n % stride != 0 ? 1 : 0) : n / stride) + 1;
    // torch: with ceil_mode the last window must start inside the input or left padding.
    if (ceil_mode && mul_sat(out - 1, stride) >= add_sat(length, padding)) {
        --out;
    }
    return out >= 1 ? std::optional<std::int64_t>(out) : std::nullopt;
}

/// The output shape of `l` for input `x` (batch first), or nullopt when `x` does not fit.
std::optional<std::vector<std::int64_t>> output_shape(const LayerSpec& l,
                                                      std::vector<std::int64_t> x) {
    const auto dims = static_cast<std::int64_t>(x.size());
    switch (l.type) {
        case LayerType::Linear:
            if (dims < 2 || x.back() != l.in) {
                return std::nullopt;
            }
            x.back() = l.out;
            return x;
        case LayerType::Conv1d:
        case LayerType::Conv2d:
        case LayerType::MaxPool1d:
        case LayerType::MaxPool2d:
        case LayerType::AvgPool1d:
        case LayerType::AvgPool2d: {
            const int k = l.spatial_dims();
            const bool conv = l.type == LayerType::Conv1d || l.type == LayerType::Conv2d;
            if (dims != 2 + k || (conv && x[1] != l.in)) {
                return std::nullopt;
            }
            if (conv) {
                x[1] = l.out;
            }
            for (int i = 0; i < k; ++i) {
                auto& length = x[static_cast<std::size_t>(2 + i)];
                if (conv && l.padding_text == "same") {
                    continue;  // stride 1 (checked when parsed): the length is kept
                }
                const auto u = static_cast<std::size_t>(i);
                const std::int64_t dilation = l.dilation.empty() ? 1 : l.dilation[u];
                const auto out = window_output(length, l.kernel_size[u], l.stride[u], l.padding[u],
                                               dilation, !conv && l.ceil_mode);
                if (!out) {
                    return std::nullopt;
                }
                length = *out;
            }
            return x;
        }
        case LayerType::BatchNorm1d:
            if ((dims != 2 && dims != 3) || x[1] != l.in) {
                return std::nullopt;
            }
            return x;
        case LayerType::BatchNorm2d:
            if (dims != 4 || x[1] != l.in) {
                return std::nullopt;
            }
            return x;
        case LayerType::Flatten: {
            const std::int64_t start = l.start_dim < 0 ? l.start_dim + dims : l.start_dim;
            const std::int64_t end = l.end_dim < 0 ? l.end_dim + dims : l.end_dim;
            if (start < 0 || end >= dims || start > end) {
                return std::nullopt;
            }
            std::vector<std::int64_t> out(x.begin(), x.begin() + start);
            out.push_back(
                product(std::vector<std::int64_t>(x.begin() + start, x.begin() + end + 1)));
            out.insert(out.end(), x.begin() + end + 1, x.end());
            return out;
        }
        default:
            return x;  // element-wise layers keep the shape
    }
}

}  // namespace

std::int64_t layer_values(const LayerSpec& l) {
    switch (l.type) {
        case LayerType::Linear:
            return add_sat(mul_sat(l.in, l.out), l.bias ? l.out : 0);
        case LayerType::Conv1d:
        case LayerType::Conv2d:
            return add_sat(mul_sat(l.out, mul_sat(l.in / l.groups, product(l.kernel_size))),
                           l.bias ? l.out : 0);
        case LayerType::BatchNorm1d:
        case LayerType::BatchNorm2d:
            // weight and bias; running mean and variance plus num_batches_tracked
            return add_sat(l.affine ? mul_sat(2, l.in) : 0,
                           l.track_running_stats ? add_sat(mul_sat(2, l.in), 1) : 0);
        default:
            return 0;
    }
}

std::vector<std::vector<std::int64_t>> sample_shapes(
    const Architecture& layers, const std::vector<std::int64_t>& sample_shape) {
    std::vector<std::vector<std::int64_t>> out;
    std::vector<std::int64_t> x{1};
    for (std::int64_t d : sample_shape) {
        if (d <= 0) {
            return out;
        }
        x.push_back(d);
    }
    for (const LayerSpec& l : layers) {
        auto next = output_shape(l, std::move(x));
        if (!next) {
            break;
        }
        x = std::move(*next);
        out.push_back(x);
    }
    return out;
}

void check_size(const Architecture& layers, std::int64_t max_values,
                const std::vector<std::int64_t>* sample_shape) {
    const std::string limit =
        "the limit of " + std::to_string(max_values) + " (torch plugin option max_parameters)";
    std::int64_t total = 0;
    for (const LayerSpec& l : layers) {
        const std::int64_t own = layer_values(l);
        total = add_sat(total, own);
        if (own > max_values) {
            throw SpecError(layer_label(l) + ": " + std::to_string(own) +
                            " parameters, more than " + limit);
        }
        if (total > max_values) {
            throw SpecError(layer_label(l) + ": its " + std::to_string(own) +
                            " parameters bring the network to " + std::to_string(total) +
                            ", more than " + limit);
        }
    }
    if (sample_shape == nullptr) {
        return;
    }
    // The dry run and every batch hold each layer's output: bound one sample's share too.
    // (A dimension <= 0 is left to the dry run, which names it.)
    const bool positive = std::all_of(sample_shape->begin(), sample_shape->end(),
                                      [](std::int64_t d) { return d > 0; });
    if (const std::int64_t input = product(*sample_shape); positive && input > max_values) {
        throw SpecError("the input holds " + std::to_string(input) +
                        " values per sample, more than " + limit);
    }
    const auto shapes = sample_shapes(layers, *sample_shape);
    for (std::size_t i = 0; i < shapes.size(); ++i) {
        if (const std::int64_t values = product(shapes[i]); values > max_values) {
            throw SpecError(layer_label(layers[i]) + ": its output holds " +
                            std::to_string(values) + " values per sample, more than " + limit);
        }
    }
}

std::int64_t peak_values_per_sample(const Architecture& layers, const std::vector<std::int64_t>& sample_shape) {
    std::int64_t peak = product(sample_shape);
    for (const auto& shape : sample_shapes(layers, sample_shape)) {
        peak = std::max(peak, product(shape));
    }
    return std::max<std::int64_t>(peak, 1);
}

std::string layer_label(const LayerSpec& layer) {
    return "layer " + std::to_string(layer.index) + " (" + layer.l_type + ")";
}

std::string supported_layer_types() {
    std::string out;
    for (const auto& t : kLayerTypes) {
        out += (out.empty() ? "" : ", ") + std::string(t.name);
    }
    return out;
}

std::string supported_activations() {
    std::string out;
    for (const auto& a : kActivations) {
        out += (out.empty() ? "" : ", ") + std::string(a.name);
    }
    return out;
}

Architecture parse_architecture(std::string_view architecture_json) {
    json doc;
    try {
        doc = json::parse(architecture_json);
    } catch (const json::exception& e) {
        throw SpecError(std::string("architecture is not valid JSON: ") + e.what());
    }
    if (!doc.is_array() || doc.empty()) {
        throw SpecError("architecture must be a non-empty JSON array of layers");
    }
    Architecture layers;
    layers.reserve(doc.size());
    for (std::size_t i = 0; i < doc.size(); ++i) {
        const json& item = doc[i];
        LayerSpec l;
        l.index = static_cast<int>(i);
        const std::string where = "layer " + std::to_string(i);
        if (!item.is_object()) {
            throw SpecError(where + ": must be an object with l_type, structure and activation");
        }
        auto type_it = item.find("l_type");
        if (type_it == item.end() || !type_it->is_string()) {
            throw SpecError(where + ": l_type is required and must be a string");
        }
        l.l_type = type_it->get<std::string>();
        const auto known = std::find_if(kLayerTypes.begin(), kLayerTypes.end(),
                                        [&](const LayerTypeName& t) { return l.l_type == t.name; });
        if (known == kLayerTypes.end()) {
            throw SpecError(where + ": unknown l_type '" + l.l_type +
                            "' (supported: " + supported_layer_types() + ")");
        }
        l.type = known->type;
        l.name = "nnl_" + std::to_string(i) + "_" + lower(l.l_type);

        auto act_it = item.find("activation");
        if (act_it != item.end() && !act_it->is_null()) {
            if (!act_it->is_string()) {
                throw SpecError(layer_label(l) + ": activation must be a string or null (got " +
                                act_it->dump() + ")");
            }
            l.activation_name = act_it->get<std::string>();
            if (!l.activation_name.empty()) {
                const auto act = std::find_if(
                    kActivations.begin(), kActivations.end(),
                    [&](const ActivationName& a) { return l.activation_name == a.name; });
                if (act == kActivations.end()) {
                    throw SpecError(layer_label(l) + ": unknown activation '" + l.activation_name +
                                    "' (supported: " + supported_activations() +
                                    ", or \"\"/null for none)");
                }
                l.activation = act->activation;
            }
        }

        auto structure_it = item.find("structure");
        static const json kEmpty = json::object();
        const json* structure = &kEmpty;
        if (structure_it != item.end() && !structure_it->is_null()) {
            if (!structure_it->is_object()) {
                throw SpecError(layer_label(l) + ": structure must be an object");
            }
            structure = &*structure_it;
        }
        parse_structure(*structure, l);

        for (const auto& field : item.items()) {
            static const std::set<std::string> kFields{"l_type", "structure", "activation",
                                                       "is_input"};
            if (kFields.count(field.key()) == 0) {
                throw SpecError(layer_label(l) + ": unknown field '" + field.key() +
                                "' (allowed: l_type, structure, activation, is_input)");
            }
        }
        layers.push_back(std::move(l));
    }
    return layers;
}

}  // namespace synergos::plugins::torch
