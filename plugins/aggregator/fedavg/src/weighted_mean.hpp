// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file weighted_mean.hpp
/// The server step shared by `fedavg` and `fedprox`: w = sum_k n_k w_k / sum_k n_k over every
/// tensor, folded one update at a time into a single accumulator (memory ~ one model).
/// Header-only so `fedprox` reuses it through its include path without a second copy.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/status.hpp>
#include <synergos/sdk/tensor.hpp>

namespace synergos::plugins::fedavg {

namespace detail {

/// Block size of the folding loops: a fixed inner trip count lets GCC vectorise at -O2, whose
/// "very cheap" cost model refuses loops with an unknown trip count.
inline constexpr std::size_t kBlock = 16;

/// dst[i] = a * src[i]
inline void scaled_copy(float* __restrict dst, const float* __restrict src, float a,
                        std::size_t n) noexcept {
    std::size_t i = 0;
    for (; i + kBlock <= n; i += kBlock) {
        for (std::size_t j = 0; j < kBlock; ++j) {
            dst[i + j] = a * src[i + j];
        }
    }
    for (; i < n; ++i) {
        dst[i] = a * src[i];
    }
}

/// dst[i] += a * src[i]
inline void scaled_add(float* __restrict dst, const float* __restrict src, float a,
                       std::size_t n) noexcept {
    std::size_t i = 0;
    for (; i + kBlock <= n; i += kBlock) {
        for (std::size_t j = 0; j < kBlock; ++j) {
            dst[i + j] += a * src[i + j];
        }
    }
    for (; i < n; ++i) {
        dst[i] += a * src[i];
    }
}

/// Reads element `i` of an integer or F64 tensor as a double.
inline double element_as_double(const sdk::Tensor& t, std::size_t i) noexcept {
    const unsigned char* p = t.data.data() + i * sdk::dtype_size(t.dtype);
    switch (t.dtype) {
        case sdk::DType::F64: {
            double v;
            std::memcpy(&v, p, sizeof v);
            return v;
        }
        case sdk::DType::I64: {
            std::int64_t v;
            std::memcpy(&v, p, sizeof v);
            return static_cast<double>(v);
        }
        case sdk::DType::I32: {
            std::int32_t v;
            std::memcpy(&v, p, sizeof v);
            return static_cast<double>(v);
        }
        case sdk::DType::U8:
            return static_cast<double>(*p);
        case sdk::DType::F32: {
            float v;
            std::memcpy(&v, p, sizeof v);
            return static_cast<double>(v);
        }
    }
    return 0.0;
}

/// Writes `v` into element `i`; integer dtypes get the value rounded to nearest.
inline void store_from_double(sdk::Tensor& t, std::size_t i, double v) noexcept {
    unsigned char* p = t.data.data() + i * sdk::dtype_size(t.dtype);
    switch (t.dtype) {
        case sdk::DType::F64:
            std::memcpy(p, &v, sizeof v);
            return;
        case sdk::DType::I64: {
            const std::int64_t r = std::llround(v);
            std::memcpy(p, &r, sizeof r);
            return;
        }
        case sdk::DType::I32: {
            const auto r = static_cast<std::int32_t>(std::lround(v));
            std::memcpy(p, &r, sizeof r);
            return;
        }
        case sdk::DType::U8:
            *p = static_cast<unsigned char>(std::lround(v));
            return;
        case sdk::DType::F32: {
            const auto f = static_cast<float>(v);
            std::memcpy(p, &f, sizeof f);
            return;
        }
    }
}

inline std::string shape_text(const std::vector<std::int64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        s += (i ? ", " : "") + std::to_string(shape[i]);
    }
    return s + "]";
}

}  // namespace detail

/// n-weighted mean of tensor maps. F32 tensors are summed in float32 (n_k * w_k) and scaled by
/// 1 / sum n_k at the end; F64 and integer tensors (BatchNorm's `num_batches_tracked`) are
/// summed in double and integers are rounded to nearest at the end.
/// Threading: one thread at a time.
class WeightedMean {
public:
    /// Fixes the layout updates must match (names, dtypes, shapes) and clears the sums. An empty
    /// `layout` means "adopt the first update's layout". Buffers are kept for the next round when
    /// the layout is unchanged.
    sdk::Status reset(const sdk::TensorMap& layout) {
        if (auto status = check_self_consistent(layout, "global state"); !status) {
            return status;
        }
        total_ = 0;
        count_ = 0;
        if (layout.tensors.empty()) {
            has_layout_ = false;
            return sdk::Status::ok();
        }
        adopt_layout(layout);
        return sdk::Status::ok();
    }

    /// Checks `update` against the layout, then folds `samples * update` in. On error nothing
    /// changes. `samples` must be positive.
    sdk::Status add(std::int64_t samples, const sdk::TensorMap& update) {
        if (samples <= 0) {
            return {sdk::ErrorCode::InvalidArgument,
                    "samples must be positive (got " + std::to_string(samples) + ")"};
        }
        if (!has_layout_) {
            if (auto status = check_self_consistent(update, "update"); !status) {
                return status;
            }
            adopt_layout(update);
        }
        std::vector<const sdk::Tensor*> matched;
        if (auto status = match(update, matched); !status) {
            return status;
        }
        const auto weight = static_cast<float>(samples);
        const auto weight_d = static_cast<double>(samples);
        const bool first = count_ == 0;
        for (std::size_t s = 0; s < slots_.size(); ++s) {
            Slot& slot = slots_[s];
            const sdk::Tensor& t = *matched[s];
            if (slot.dtype == sdk::DType::F32) {
                float* acc = slot.f32.data();
                if (first) {
                    detail::scaled_copy(acc, t.f32(), weight, slot.numel);
                } else {
                    detail::scaled_add(acc, t.f32(), weight, slot.numel);
                }
            } else {
                for (std::size_t i = 0; i < slot.numel; ++i) {
                    const double v = weight_d * detail::element_as_double(t, i);
                    slot.wide[i] = first ? v : slot.wide[i] + v;
                }
            }
        }
        total_ += samples;
        ++count_;
        return sdk::Status::ok();
    }

    /// The mean of everything added since `reset`, in layout order. Fails when nothing was added.
    sdk::Result<sdk::TensorMap> mean() const {
        if (count_ == 0) {
            return sdk::Error{sdk::ErrorCode::FailedPrecondition, "no update arrived"};
        }
        sdk::TensorMap out;
        out.tensors.reserve(slots_.size());
        const double inv_d = 1.0 / static_cast<double>(total_);
        const auto inv = static_cast<float>(inv_d);
        for (const Slot& slot : slots_) {
            sdk::Tensor t;
            t.name = slot.name;
            t.dtype = slot.dtype;
            t.shape = slot.shape;
            t.data.resize(slot.numel * sdk::dtype_size(slot.dtype));
            if (slot.dtype == sdk::DType::F32) {
                detail::scaled_copy(t.f32(), slot.f32.data(), inv, slot.numel);
            } else {
                for (std::size_t i = 0; i < slot.numel; ++i) {
                    detail::store_from_double(t, i, slot.wide[i] * inv_d);
                }
            }
            out.tensors.push_back(std::move(t));
        }
        return out;
    }

    std::int64_t total_samples() const noexcept { return total_; }
    std::size_t updates() const noexcept { return count_; }

private:
    struct Slot {
        std::string name;
        sdk::DType dtype = sdk::DType::F32;
        std::vector<std::int64_t> shape;
        std::size_t numel = 0;
        std::vector<float> f32;    ///< F32 sums
        std::vector<double> wide;  ///< F64 and integer sums
    };

    static sdk::Status check_self_consistent(const sdk::TensorMap& map, const char* what) {
        std::set<std::string> names;
        for (const sdk::Tensor& t : map.tensors) {
            if (!names.insert(t.name).second) {
                return {sdk::ErrorCode::InvalidArgument,
                        std::string(what) + " has tensor '" + t.name + "' twice"};
            }
            for (std::int64_t d : t.shape) {
                if (d < 0) {
                    return {
                        sdk::ErrorCode::InvalidArgument,
                        std::string(what) + " tensor '" + t.name + "' has a negative dimension"};
                }
            }
            if (t.data.size() != static_cast<std::size_t>(t.numel()) * sdk::dtype_size(t.dtype)) {
                return {sdk::ErrorCode::InvalidArgument,
                        std::string(what) + " tensor '" + t.name + "' holds " +
                            std::to_string(t.data.size()) + " bytes, its shape " +
                            detail::shape_text(t.shape) + " needs " +
                            std::to_string(t.numel() * sdk::dtype_size(t.dtype))};
            }
        }
        return sdk::Status::ok();
    }

    void adopt_layout(const sdk::TensorMap& layout) {
        bool same = layout.tensors.size() == slots_.size();
        for (std::size_t i = 0; same && i < slots_.size(); ++i) {
            const sdk::Tensor& t = layout.tensors[i];
            same = t.name == slots_[i].name && t.dtype == slots_[i].dtype &&
                   t.shape == slots_[i].shape;
        }
        has_layout_ = true;
        if (same) {
            return;  // keep the buffers: touching fresh memory costs more than reusing it
        }
        slots_.clear();
        index_.clear();
        slots_.reserve(layout.tensors.size());
        for (const sdk::Tensor& t : layout.tensors) {
            Slot slot;
            slot.name = t.name;
            slot.dtype = t.dtype;
            slot.shape = t.shape;
            slot.numel = static_cast<std::size_t>(t.numel());
            if (t.dtype == sdk::DType::F32) {
                slot.f32.resize(slot.numel);
            } else {
                slot.wide.resize(slot.numel);
            }
            index_.emplace(slot.name, slots_.size());
            slots_.push_back(std::move(slot));
        }
    }

    /// matched[s] = the update's tensor for slot s; every slot exactly once, nothing extra.
    sdk::Status match(const sdk::TensorMap& update,
                      std::vector<const sdk::Tensor*>& matched) const {
        matched.assign(slots_.size(), nullptr);
        for (std::size_t i = 0; i < update.tensors.size(); ++i) {
            const sdk::Tensor& t = update.tensors[i];
            std::size_t s = i;
            if (s >= slots_.size() || slots_[s].name != t.name) {
                auto it = index_.find(t.name);
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
            const Slot& slot = slots_[s];
            if (t.dtype != slot.dtype) {
                return {sdk::ErrorCode::InvalidArgument,
                        "update tensor '" + t.name + "' is " + sdk::to_string(t.dtype) +
                            ", the model has " + sdk::to_string(slot.dtype)};
            }
            if (t.shape != slot.shape) {
                return {sdk::ErrorCode::InvalidArgument,
                        "update tensor '" + t.name + "' has shape " + detail::shape_text(t.shape) +
                            ", the model has " + detail::shape_text(slot.shape)};
            }
            if (t.data.size() != slot.numel * sdk::dtype_size(slot.dtype)) {
                return {sdk::ErrorCode::InvalidArgument,
                        "update tensor '" + t.name + "' holds " + std::to_string(t.data.size()) +
                            " bytes, expected " +
                            std::to_string(slot.numel * sdk::dtype_size(slot.dtype))};
            }
            matched[s] = &t;
        }
        for (std::size_t s = 0; s < slots_.size(); ++s) {
            if (matched[s] == nullptr) {
                return {sdk::ErrorCode::InvalidArgument,
                        "update lacks tensor '" + slots_[s].name + "'"};
            }
        }
        return sdk::Status::ok();
    }

    std::vector<Slot> slots_;
    std::unordered_map<std::string, std::size_t> index_;
    std::int64_t total_ = 0;
    std::size_t count_ = 0;
    bool has_layout_ = false;
};

/// An aggregation session whose server step is the n-weighted mean (FedAvg and FedProx).
/// Strategy state: none, so `save_state` is empty and `load_state` accepts only an empty map.
class WeightedMeanSession final : public sdk::AggregationSession {
public:
    /// `strategy` prefixes every error message ("fedavg", "fedprox").
    explicit WeightedMeanSession(std::string strategy) : strategy_(std::move(strategy)) {}

    sdk::Status begin_round(const sdk::TensorMap& global, int round) noexcept override {
        try {
            if (auto status = mean_.reset(global); !status) {
                return fail(status, "round " + std::to_string(round));
            }
            contributors_.clear();
            round_ = round;
            is_open_ = true;
            return sdk::Status::ok();
        } catch (const std::exception& e) {
            return {sdk::ErrorCode::Internal, strategy_ + ": begin_round failed: " + e.what()};
        }
    }

    sdk::Status accumulate(const std::string& participant, std::int64_t samples,
                           const sdk::TensorMap& weights) noexcept override {
        try {
            if (!is_open_) {
                return {sdk::ErrorCode::FailedPrecondition,
                        strategy_ + ": update from participant '" + participant +
                            "' arrived outside a round (call begin_round first)"};
            }
            if (contributors_.count(participant) != 0) {
                return {sdk::ErrorCode::AlreadyExists, strategy_ + ": participant '" + participant +
                                                           "' already sent an update for round " +
                                                           std::to_string(round_)};
            }
            if (auto status = mean_.add(samples, weights); !status) {
                return fail(status,
                            "participant '" + participant + "', round " + std::to_string(round_));
            }
            contributors_.insert(participant);
            return sdk::Status::ok();
        } catch (const std::exception& e) {
            return {sdk::ErrorCode::Internal, strategy_ + ": accumulate failed: " + e.what()};
        }
    }

    sdk::Result<sdk::TensorMap> finish_round() noexcept override {
        try {
            if (!is_open_) {
                return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                  strategy_ + ": finish_round without an open round"};
            }
            if (mean_.updates() == 0) {
                return sdk::Error{
                    sdk::ErrorCode::FailedPrecondition,
                    strategy_ + ": no update arrived for round " + std::to_string(round_)};
            }
            auto result = mean_.mean();
            is_open_ = false;
            return result;
        } catch (const std::exception& e) {
            return sdk::Error{sdk::ErrorCode::Internal,
                              strategy_ + ": finish_round failed: " + e.what()};
        }
    }

    sdk::Result<sdk::TensorMap> save_state() noexcept override { return sdk::TensorMap{}; }

    sdk::Status load_state(const sdk::TensorMap& state) noexcept override {
        if (!state.tensors.empty()) {
            return {sdk::ErrorCode::InvalidArgument,
                    strategy_ + ": keeps no strategy state, but the saved state has " +
                        std::to_string(state.tensors.size()) + " tensors"};
        }
        return sdk::Status::ok();
    }

private:
    sdk::Status fail(const sdk::Status& status, const std::string& where) const {
        return {status.code(), strategy_ + ": " + where + ": " + status.message()};
    }

    std::string strategy_;
    WeightedMean mean_;
    std::set<std::string> contributors_;
    int round_ = -1;
    bool is_open_ = false;
};

}  // namespace synergos::plugins::fedavg
