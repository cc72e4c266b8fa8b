// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file tensor_layout.hpp
/// The layout of a model (tensor names, dtypes, shapes) and the checks every strategy runs on an
/// update before it touches any state: same tensors by name, same dtype and shape, data sizes
/// that fit, finite floating values. Plus small builders for state tensors.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <synergos/sdk/status.hpp>
#include <synergos/sdk/tensor.hpp>

#include "weighted_mean.hpp"  // fedavg's element access helpers (detail::element_as_double ...)

namespace synergos::plugins::aggregator_common {

/// F32 and F64 tensors are the trainable ones: strategies transform them. Integer tensors
/// (BatchNorm's num_batches_tracked) are counters and follow a simpler rule per strategy.
inline bool is_floating(sdk::DType dtype) noexcept {
    return dtype == sdk::DType::F32 || dtype == sdk::DType::F64;
}

inline double element(const sdk::Tensor& t, std::size_t i) noexcept {
    if (t.dtype == sdk::DType::F32) {
        float v;
        std::memcpy(&v, t.data.data() + i * sizeof v, sizeof v);
        return static_cast<double>(v);
    }
    return fedavg::detail::element_as_double(t, i);
}

/// Whether `v` is finite and representable in a floating tensor of this dtype (a double beyond
/// the float range would become inf, and converting it is undefined behaviour).
inline bool fits(sdk::DType dtype, double v) noexcept {
    if (!std::isfinite(v)) {
        return false;
    }
    return dtype != sdk::DType::F32 || std::fabs(v) <= std::numeric_limits<float>::max();
}

/// Writes `v` into element `i`; integer dtypes round to nearest.
inline void set_element(sdk::Tensor& t, std::size_t i, double v) noexcept {
    fedavg::detail::store_from_double(t, i, v);
}

inline bool starts_with(std::string_view s, std::string_view prefix) noexcept {
    return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

/// BatchNorm's running variance (`<layer>.running_var`): a variance, so the noise or a server
/// step must not leave it negative (evaluation takes its square root and gives NaN).
inline bool is_running_variance(std::string_view name) noexcept {
    constexpr std::string_view kSuffix = ".running_var";
    return name.size() >= kSuffix.size() &&
           name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0;
}

/// A value the server made for a tensor (`variance`: is_running_variance of its name): a running
/// variance is kept at 0 or above; anything else is left as it is.
inline double server_value(bool variance, double value) noexcept {
    return variance && value < 0.0 ? 0.0 : value;
}

/// A tensor shaped like `like` (same name unless given, dtype and shape), zero-filled.
inline sdk::Tensor zeros_like(const sdk::Tensor& like, std::string name = {}) {
    sdk::Tensor t;
    t.name = name.empty() ? like.name : std::move(name);
    t.dtype = like.dtype;
    t.shape = like.shape;
    t.data.assign(like.data.size(), 0);
    return t;
}

/// An F64 tensor holding `values` with the given shape.
inline sdk::Tensor f64_tensor(std::string name, std::vector<std::int64_t> shape,
                              const std::vector<double>& values) {
    sdk::Tensor t;
    t.name = std::move(name);
    t.dtype = sdk::DType::F64;
    t.shape = std::move(shape);
    t.data.resize(values.size() * sizeof(double));
    if (!values.empty()) {
        std::memcpy(t.data.data(), values.data(), t.data.size());
    }
    return t;
}

/// A 0-dim F64 tensor: the form of per-round figures (`metric.<name>`) and scalar state.
inline sdk::Tensor f64_scalar(std::string name, double value) {
    return f64_tensor(std::move(name), {}, {value});
}

/// A 0-dim I64 tensor.
inline sdk::Tensor i64_scalar(std::string name, std::int64_t value) {
    sdk::Tensor t;
    t.name = std::move(name);
    t.dtype = sdk::DType::I64;
    t.data.resize(sizeof value);
    std::memcpy(t.data.data(), &value, sizeof value);
    return t;
}

/// Every element of `t` as a double (any dtype). Precondition: the tensor is self-consistent.
inline std::vector<double> to_doubles(const sdk::Tensor& t) {
    std::vector<double> out(t.data.size() / sdk::dtype_size(t.dtype));
    for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = element(t, i);
    }
    return out;
}

/// `values` written into a tensor shaped like `like` (its dtype; integers rounded).
inline sdk::Tensor from_doubles(const sdk::Tensor& like, const std::vector<double>& values,
                                std::string name = {}) {
    sdk::Tensor t = zeros_like(like, std::move(name));
    for (std::size_t i = 0; i < values.size(); ++i) {
        set_element(t, i, values[i]);
    }
    return t;
}

/// Whether a tensor's byte size fits its shape and dtype (and no dimension is negative).
inline bool is_self_consistent(const sdk::Tensor& t) noexcept {
    for (std::int64_t d : t.shape) {
        if (d < 0) {
            return false;
        }
    }
    return t.data.size() == static_cast<std::size_t>(t.numel()) * sdk::dtype_size(t.dtype);
}

/// The first non-finite element of a floating tensor, or -1 (fedavg's scan, which the mean
/// runs on every update too).
inline std::int64_t first_non_finite(const sdk::Tensor& t) noexcept {
    const std::size_t n = t.data.size() / sdk::dtype_size(t.dtype);
    const std::size_t bad = fedavg::detail::first_non_finite(t, n);
    return bad < n ? static_cast<std::int64_t>(bad) : -1;
}

/// The names, dtypes and shapes every update of a round must have. Threading: a value type.
class Layout {
public:
    struct Entry {
        std::string name;
        sdk::DType dtype = sdk::DType::F32;
        std::vector<std::int64_t> shape;
        std::size_t numel = 0;
    };

    /// Adopts the layout of `model`, skipping tensors whose name starts with `skip_prefix`
    /// (e.g. SCAFFOLD's "scaffold." tensors that travel with the weights). On error (a tensor
    /// twice, a size that does not fit its shape) the layout is unchanged.
    sdk::Status reset(const sdk::TensorMap& model, std::string_view skip_prefix = {}) {
        std::vector<Entry> entries;
        std::unordered_map<std::string, std::size_t> index;
        for (const sdk::Tensor& t : model.tensors) {
            if (!skip_prefix.empty() && starts_with(t.name, skip_prefix)) {
                continue;
            }
            if (!is_self_consistent(t)) {
                return {sdk::ErrorCode::InvalidArgument,
                        "global tensor '" + t.name + "' holds " + std::to_string(t.data.size()) +
                            " bytes, which does not fit its dtype and shape " +
                            fedavg::detail::shape_text(t.shape)};
            }
            if (!index.emplace(t.name, entries.size()).second) {
                return {sdk::ErrorCode::InvalidArgument,
                        "global state has tensor '" + t.name + "' twice"};
            }
            entries.push_back(Entry{t.name, t.dtype, t.shape, static_cast<std::size_t>(t.numel())});
        }
        entries_ = std::move(entries);
        index_ = std::move(index);
        return sdk::Status::ok();
    }

    /// matched[s] = the update's tensor for entry s. Every entry exactly once, nothing extra
    /// (tensors starting with `skip_prefix` are ignored), dtypes and shapes equal, floating
    /// values finite. The message names the tensor; nothing is modified.
    sdk::Status match(const sdk::TensorMap& update, std::vector<const sdk::Tensor*>& matched,
                      std::string_view skip_prefix = {}) const {
        matched.assign(entries_.size(), nullptr);
        for (std::size_t i = 0; i < update.tensors.size(); ++i) {
            const sdk::Tensor& t = update.tensors[i];
            if (!skip_prefix.empty() && starts_with(t.name, skip_prefix)) {
                continue;
            }
            std::size_t s = i;
            if (s >= entries_.size() || entries_[s].name != t.name) {
                const auto it = index_.find(t.name);
                if (it == index_.end()) {
                    return {sdk::ErrorCode::InvalidArgument,
                            "update has tensor '" + t.name + "', which the model does not have"};
                }
                s = it->second;
            }
            if (matched[s] != nullptr) {
                return {sdk::ErrorCode::InvalidArgument,
                        "update has tensor '" + t.name + "' twice"};
            }
            if (auto status = check_entry(entries_[s], t, "update tensor"); !status) {
                return status;
            }
            matched[s] = &t;
        }
        for (std::size_t s = 0; s < entries_.size(); ++s) {
            if (matched[s] == nullptr) {
                return {sdk::ErrorCode::InvalidArgument,
                        "update lacks tensor '" + entries_[s].name + "'"};
            }
        }
        return sdk::Status::ok();
    }

    /// Checks one tensor against an entry: dtype, shape, byte size, finite values.
    static sdk::Status check_entry(const Entry& e, const sdk::Tensor& t, const char* what) {
        if (t.dtype != e.dtype) {
            return {sdk::ErrorCode::InvalidArgument,
                    std::string(what) + " '" + t.name + "' is " + sdk::to_string(t.dtype) +
                        ", the model has " + sdk::to_string(e.dtype)};
        }
        if (t.shape != e.shape) {
            return {sdk::ErrorCode::InvalidArgument,
                    std::string(what) + " '" + t.name + "' has shape " +
                        fedavg::detail::shape_text(t.shape) + ", the model has " +
                        fedavg::detail::shape_text(e.shape)};
        }
        if (t.data.size() != e.numel * sdk::dtype_size(e.dtype)) {
            return {sdk::ErrorCode::InvalidArgument,
                    std::string(what) + " '" + t.name + "' holds " + std::to_string(t.data.size()) +
                        " bytes, expected " + std::to_string(e.numel * sdk::dtype_size(e.dtype))};
        }
        if (const auto bad = first_non_finite(t); bad >= 0) {
            return {sdk::ErrorCode::InvalidArgument, std::string(what) + " '" + t.name +
                                                         "' has a non-finite value at element " +
                                                         std::to_string(bad)};
        }
        return sdk::Status::ok();
    }

    const std::vector<Entry>& entries() const noexcept { return entries_; }
    std::size_t size() const noexcept { return entries_.size(); }
    bool empty() const noexcept { return entries_.empty(); }
    /// Index of the entry named `name`, or size() when absent.
    std::size_t find(const std::string& name) const {
        const auto it = index_.find(name);
        return it == index_.end() ? entries_.size() : it->second;
    }
    bool same_as(const Layout& other) const {
        if (entries_.size() != other.entries_.size()) {
            return false;
        }
        for (std::size_t s = 0; s < entries_.size(); ++s) {
            const Entry& a = entries_[s];
            const Entry& b = other.entries_[s];
            if (a.name != b.name || a.dtype != b.dtype || a.shape != b.shape) {
                return false;
            }
        }
        return true;
    }

private:
    std::vector<Entry> entries_;
    std::unordered_map<std::string, std::size_t> index_;
};

/// One tensor of strategy state (a moment, a control variate), kept in double.
struct StateTensor {
    std::vector<std::int64_t> shape;
    std::vector<double> values;
};

/// Strategy state per floating model tensor, keyed by the model tensor's name. Ordered by name
/// so saved files are deterministic whatever the arrival order of anything.
using NamedState = std::map<std::string, StateTensor>;

/// Zero-filled (or `fill`-filled) state for every floating entry of `layout`.
inline NamedState state_like(const Layout& layout, double fill = 0.0) {
    NamedState state;
    for (const auto& e : layout.entries()) {
        if (is_floating(e.dtype)) {
            state.emplace(e.name, StateTensor{e.shape, std::vector<double>(e.numel, fill)});
        }
    }
    return state;
}

/// Checks that `state` has exactly one tensor per floating entry of `layout`, with the same
/// shape. `what` names the state in messages ("fedadam second moment").
inline sdk::Status check_state_fits(const NamedState& state, const Layout& layout,
                                    const std::string& what) {
    std::size_t floating = 0;
    for (const auto& e : layout.entries()) {
        if (!is_floating(e.dtype)) {
            continue;
        }
        ++floating;
        const auto it = state.find(e.name);
        if (it == state.end()) {
            return {sdk::ErrorCode::FailedPrecondition,
                    "the saved " + what + " has no tensor '" + e.name + "', which the model has"};
        }
        if (it->second.shape != e.shape) {
            return {sdk::ErrorCode::FailedPrecondition,
                    "the saved " + what + " of tensor '" + e.name + "' has shape " +
                        fedavg::detail::shape_text(it->second.shape) + ", the model has " +
                        fedavg::detail::shape_text(e.shape)};
        }
    }
    if (state.size() != floating) {
        for (const auto& [name, tensor] : state) {
            const std::size_t s = layout.find(name);
            if (s == layout.size() || !is_floating(layout.entries()[s].dtype)) {
                return {sdk::ErrorCode::FailedPrecondition,
                        "the saved " + what + " has tensor '" + name +
                            "', which is not a floating tensor of the model"};
            }
        }
    }
    return sdk::Status::ok();
}

/// Appends `state` as F64 tensors named `<prefix><tensor>`.
inline void append_state(sdk::TensorMap& out, const NamedState& state, const std::string& prefix) {
    for (const auto& [name, tensor] : state) {
        out.tensors.push_back(f64_tensor(prefix + name, tensor.shape, tensor.values));
    }
}

/// Reads one saved state tensor (any dtype) into `state` under `name`. InvalidArgument when the
/// tensor does not fit its shape, has a non-finite value, or `name` is there twice.
inline sdk::Status read_state_tensor(const sdk::Tensor& t, const std::string& name,
                                     NamedState& state) {
    if (!is_self_consistent(t)) {
        return {sdk::ErrorCode::InvalidArgument,
                "saved state tensor '" + t.name + "' does not fit its dtype and shape"};
    }
    if (const auto bad = first_non_finite(t); bad >= 0) {
        return {sdk::ErrorCode::InvalidArgument, "saved state tensor '" + t.name +
                                                     "' has a non-finite value at element " +
                                                     std::to_string(bad)};
    }
    if (!state.emplace(name, StateTensor{t.shape, to_doubles(t)}).second) {
        return {sdk::ErrorCode::InvalidArgument, "saved state has tensor '" + t.name + "' twice"};
    }
    return sdk::Status::ok();
}

/// Reads a 0-dim (or one-element) integer or float state tensor as an integer.
inline sdk::Result<std::int64_t> read_count(const sdk::Tensor& t) {
    if (!is_self_consistent(t) || t.numel() != 1) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          "saved state tensor '" + t.name + "' must hold one number"};
    }
    const double v = element(t, 0);
    if (!std::isfinite(v) || v < 0 || std::floor(v) != v) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          "saved state tensor '" + t.name + "' must be a count >= 0"};
    }
    return static_cast<std::int64_t>(v);
}

/// Per-round figures travel in save_state() as `metric.<name>` scalars (the train function
/// reports them); a strategy's load_state skips them.
inline constexpr std::string_view kMetricPrefix = "metric.";

}  // namespace synergos::plugins::aggregator_common
