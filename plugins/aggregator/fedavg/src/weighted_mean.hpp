// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file weighted_mean.hpp
/// The server step shared by `fedavg` and `fedprox`: w = sum_k n_k w_k / sum_k n_k over every
/// tensor, folded into a single accumulator, whole updates or pieces of them as they arrive
/// (SDK 1.1 streaming), so memory stays at one model beside the global one.
/// Header-only so `fedprox` reuses it through its include path without a second copy.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
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

/// x[i] *= a (the in-place form of scaled_copy: the same product, rounded the same way)
inline void scale_in_place(float* x, float a, std::size_t n) noexcept {
    std::size_t i = 0;
    for (; i + kBlock <= n; i += kBlock) {
        for (std::size_t j = 0; j < kBlock; ++j) {
            x[i + j] = a * x[i + j];
        }
    }
    for (; i < n; ++i) {
        x[i] = a * x[i];
    }
}

/// The index of the first non-finite value (inf or NaN) in x[0, n), or n when every value is
/// finite. The fold's guard, so it costs about a read of the values: one pass summing them in
/// eight 4-float accumulators, loads and adds only (written with GCC vector types: GCC's own
/// vectorisation of a blocked loop keeps such accumulators in memory at -O2, several times
/// slower). An inf or a NaN
/// makes its lane's sum inf or NaN for good, so a finite total proves every value finite. A
/// non-finite total (also reached by finite values whose sum overflows, far beyond any weight)
/// sends a second, exact pass to find the index. The total is tested by its bits, so
/// -ffinite-math-only cannot fold the test away.
inline std::size_t first_non_finite(const float* x, std::size_t n) noexcept {
    constexpr std::uint32_t kExponent = 0x7f800000U;
    float total = 0.0F;
    std::size_t i = 0;
#if defined(__GNUC__)
    using Lanes = float __attribute__((vector_size(16)));
    constexpr std::size_t kStep = 32;  // 8 accumulators of 4 floats
    Lanes a0{}, a1{}, a2{}, a3{}, a4{}, a5{}, a6{}, a7{};
    for (; i + kStep <= n; i += kStep) {
        Lanes b0, b1, b2, b3, b4, b5, b6, b7;
        std::memcpy(&b0, x + i, sizeof b0);
        std::memcpy(&b1, x + i + 4, sizeof b1);
        std::memcpy(&b2, x + i + 8, sizeof b2);
        std::memcpy(&b3, x + i + 12, sizeof b3);
        std::memcpy(&b4, x + i + 16, sizeof b4);
        std::memcpy(&b5, x + i + 20, sizeof b5);
        std::memcpy(&b6, x + i + 24, sizeof b6);
        std::memcpy(&b7, x + i + 28, sizeof b7);
        a0 += b0;
        a1 += b1;
        a2 += b2;
        a3 += b3;
        a4 += b4;
        a5 += b5;
        a6 += b6;
        a7 += b7;
    }
    const Lanes a = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
    total = (a[0] + a[1]) + (a[2] + a[3]);
#endif
    for (; i < n; ++i) {
        total += x[i];
    }
    std::uint32_t bits;
    std::memcpy(&bits, &total, sizeof bits);
    if ((bits & kExponent) != kExponent) {
        return n;
    }
    for (i = 0; i < n; ++i) {
        std::memcpy(&bits, x + i, sizeof bits);
        if ((bits & kExponent) == kExponent) {
            return i;
        }
    }
    return n;
}

/// As above for doubles (F64 tensors, folded element by element anyway).
inline std::size_t first_non_finite(const double* x, std::size_t n) noexcept {
    constexpr std::uint64_t kExponent = 0x7ff0000000000000ULL;
    for (std::size_t i = 0; i < n; ++i) {
        std::uint64_t b;
        std::memcpy(&b, x + i, sizeof b);
        if ((b & kExponent) == kExponent) {
            return i;
        }
    }
    return n;
}

/// The first non-finite element of an F32 or F64 tensor whose byte size fits its shape, or
/// numel when there is none (always for integer tensors).
inline std::size_t first_non_finite(const sdk::Tensor& t, std::size_t numel) noexcept {
    switch (t.dtype) {
        case sdk::DType::F32:
            return first_non_finite(reinterpret_cast<const float*>(t.data.data()), numel);
        case sdk::DType::F64:
            return first_non_finite(reinterpret_cast<const double*>(t.data.data()), numel);
        default:
            return numel;
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
///
/// Float order: element i's sum is s = n_1 w_1[i], then s += n_k w_k[i] in the order the
/// updates (or their pieces) reach element i, whether they come whole (`add`) or in pieces
/// (`fold_piece`), so a streamed fold gives the bits a whole-update fold gives. Each update's
/// pieces of a tensor arrive in element order from 0, so the elements holding a sum are always
/// a prefix of the tensor (`Slot::ready`): below it a piece adds, above it it copies.
/// Threading: one thread at a time.
class WeightedMean {
public:
    /// Fixes the layout updates must match (names, dtypes, shapes) and clears the sums. An empty
    /// `layout` means "adopt the first update's layout". Buffers are kept for the next round when
    /// the layout is unchanged, and allocated here (on the caller's thread) when `take_mean` gave
    /// them away.
    sdk::Status reset(const sdk::TensorMap& layout) {
        if (auto status = check_self_consistent(layout, "global state"); !status) {
            return status;
        }
        total_ = 0;
        count_ = 0;
        for (Slot& slot : slots_) {
            slot.ready = 0;
        }
        if (layout.tensors.empty()) {
            has_layout_ = false;
            return sdk::Status::ok();
        }
        adopt_layout(specs_of(layout));
        return sdk::Status::ok();
    }

    /// Checks `update` against the layout and its floating values (all finite), then folds
    /// `samples * update` in. On error nothing changes (not even the layout of an empty global
    /// state). `samples` must be positive, and with `pending` (the samples of streamed updates
    /// still open) fit the round's int64 total.
    sdk::Status add(std::int64_t samples, const sdk::TensorMap& update, std::int64_t pending = 0) {
        if (auto status = check_samples(samples, pending); !status) {
            return status;
        }
        std::vector<const sdk::Tensor*> matched;
        if (has_layout_) {
            if (auto status = match(update, matched); !status) {
                return status;
            }
        } else if (auto status = check_self_consistent(update, "update"); !status) {
            return status;
        }
        // Every tensor's size now fits its shape (matched, or self-consistent), and nothing is
        // folded until all of them are known finite: a whole update is refused whole.
        for (const sdk::Tensor& t : update.tensors) {
            if (auto status = check_finite(t); !status) {
                return status;
            }
        }
        if (!has_layout_) {
            adopt_layout(specs_of(update));
            if (auto status = match(update, matched); !status) {
                return status;
            }
        }
        for (std::size_t s = 0; s < slots_.size(); ++s) {
            fold_whole(s, samples, *matched[s]);
        }
        commit(samples);
        return sdk::Status::ok();
    }

    /// Streaming, step 1: checks a streamed update's layout (every slot once, same dtypes and
    /// shapes) and `samples` (as in `add`); `slot_of[i]` is then the slot of the update's tensor
    /// i. An update before any layout (empty global state) fixes it.
    sdk::Status check_stream(std::int64_t samples, const std::vector<sdk::TensorSpec>& layout,
                             std::vector<std::size_t>& slot_of, std::int64_t pending = 0) {
        if (auto status = check_samples(samples, pending); !status) {
            return status;
        }
        if (auto status = check_specs(layout, "update"); !status) {
            return status;
        }
        if (!has_layout_) {
            adopt_layout(layout);
        }
        slot_of.assign(layout.size(), 0);
        std::vector<bool> seen(slots_.size(), false);
        for (std::size_t i = 0; i < layout.size(); ++i) {
            const sdk::TensorSpec& t = layout[i];
            auto s = slot_index(t.name, i);
            if (!s) {
                return {sdk::ErrorCode::InvalidArgument,
                        "update has tensor '" + t.name + "', which the model does not have"};
            }
            if (auto st = check_like(t.name, t.dtype, t.shape, slots_[*s]); !st) {
                return st;
            }
            seen[*s] = true;
            slot_of[i] = *s;
        }
        for (std::size_t s = 0; s < slots_.size(); ++s) {
            if (!seen[s]) {
                return {sdk::ErrorCode::InvalidArgument,
                        "update lacks tensor '" + slots_[s].name + "'"};
            }
        }
        return sdk::Status::ok();
    }

    /// Streaming, step 2: folds `weight * values` into elements [offset, offset + count) of F32
    /// slot `slot`. The caller checked the range and that the values are finite
    /// (`detail::first_non_finite`): nothing here can refuse a piece.
    void fold_piece(std::size_t slot, std::int64_t samples, std::size_t offset,
                    const float* values, std::size_t count) noexcept {
        Slot& s = slots_[slot];
        const auto weight = static_cast<float>(samples);
        float* sums = s.f32() + offset;
        // offset <= ready: this update's earlier pieces reached `offset`, and `ready` is the
        // furthest any update reached.
        const std::size_t added = std::min(count, s.ready - std::min(s.ready, offset));
        detail::scaled_add(sums, values, weight, added);
        detail::scaled_copy(sums + added, values + added, weight, count - added);
        s.ready = std::max(s.ready, offset + count);
    }

    /// Folds a whole tensor into slot `slot` (checked by `check_tensor`, or by `match` and
    /// `check_finite`).
    void fold_whole(std::size_t slot, std::int64_t samples, const sdk::Tensor& t) noexcept {
        Slot& s = slots_[slot];
        if (s.dtype == sdk::DType::F32) {
            fold_piece(slot, samples, 0, t.f32(), s.numel);
            return;
        }
        const auto weight_d = static_cast<double>(samples);
        for (std::size_t i = 0; i < s.numel; ++i) {
            const double v = weight_d * detail::element_as_double(t, i);
            s.wide[i] = i < s.ready ? s.wide[i] + v : v;
        }
        s.ready = s.numel;
    }

    /// Whether `t` fits slot `slot` (dtype, shape, bytes) and its floating values are finite.
    sdk::Status check_tensor(std::size_t slot, const sdk::Tensor& t) const {
        const Slot& s = slots_[slot];
        if (t.dtype != s.dtype || t.shape != s.shape ||
            t.data.size() != s.numel * sdk::dtype_size(s.dtype)) {
            return {sdk::ErrorCode::InvalidArgument,
                    "update tensor '" + t.name + "' (" + sdk::to_string(t.dtype) + " " +
                        detail::shape_text(t.shape) + ", " + std::to_string(t.data.size()) +
                        " bytes) does not fit the model's " + sdk::to_string(s.dtype) + " " +
                        detail::shape_text(s.shape)};
        }
        return check_finite(t);
    }

    /// InvalidArgument naming the tensor and the element when an F32 or F64 tensor holds an inf
    /// or a NaN (one would poison the sums, and with them the next global model). Precondition:
    /// the tensor's byte size fits its shape.
    static sdk::Status check_finite(const sdk::Tensor& t) {
        const std::size_t numel = t.data.size() / sdk::dtype_size(t.dtype);
        if (const std::size_t bad = detail::first_non_finite(t, numel); bad < numel) {
            return {sdk::ErrorCode::InvalidArgument, "update tensor '" + t.name +
                                                         "' has a non-finite value at element " +
                                                         std::to_string(bad)};
        }
        return sdk::Status::ok();
    }

    /// Streaming, step 3: a completely folded update counts (its samples join the total, which
    /// `check_samples` made sure has room for them).
    void commit(std::int64_t samples) noexcept {
        total_ += samples;
        ++count_;
    }

    std::size_t slot_count() const noexcept { return slots_.size(); }
    sdk::DType slot_dtype(std::size_t slot) const noexcept { return slots_[slot].dtype; }
    std::size_t slot_numel(std::size_t slot) const noexcept { return slots_[slot].numel; }
    const std::string& slot_name(std::size_t slot) const noexcept { return slots_[slot].name; }

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
                detail::scaled_copy(t.f32(), slot.f32(), inv, slot.numel);
            } else {
                for (std::size_t i = 0; i < slot.numel; ++i) {
                    detail::store_from_double(t, i, slot.wide[i] * inv_d);
                }
            }
            out.tensors.push_back(std::move(t));
        }
        return out;
    }

    /// As `mean` (the same bits), but the F32 tensors are the sums' own buffers, divided in place
    /// and moved out: no second model is allocated. The sums are gone until the next `reset`.
    sdk::Result<sdk::TensorMap> take_mean() {
        if (count_ == 0) {
            return sdk::Error{sdk::ErrorCode::FailedPrecondition, "no update arrived"};
        }
        sdk::TensorMap out;
        out.tensors.reserve(slots_.size());
        const double inv_d = 1.0 / static_cast<double>(total_);
        const auto inv = static_cast<float>(inv_d);
        for (Slot& slot : slots_) {
            sdk::Tensor t;
            t.name = slot.name;
            t.dtype = slot.dtype;
            t.shape = slot.shape;
            if (slot.dtype == sdk::DType::F32) {
                detail::scale_in_place(slot.f32(), inv, slot.numel);
                t.data = std::move(slot.bytes);
                slot.bytes = {};
            } else {
                t.data.resize(slot.numel * sdk::dtype_size(slot.dtype));
                for (std::size_t i = 0; i < slot.numel; ++i) {
                    detail::store_from_double(t, i, slot.wide[i] * inv_d);
                }
            }
            out.tensors.push_back(std::move(t));
        }
        count_ = 0;
        total_ = 0;
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
        /// F32 sums, as bytes so `take_mean` can hand the buffer to a Tensor.
        std::vector<unsigned char> bytes;
        std::vector<double> wide;  ///< F64 and integer sums
        std::size_t ready = 0;     ///< elements [0, ready) hold sums of this round

        float* f32() noexcept { return reinterpret_cast<float*>(bytes.data()); }
        const float* f32() const noexcept { return reinterpret_cast<const float*>(bytes.data()); }
    };

    /// An update's tensor `name` must have its model slot's dtype and shape.
    static sdk::Status check_like(const std::string& name, sdk::DType dtype,
                                  const std::vector<std::int64_t>& shape, const Slot& slot) {
        if (dtype != slot.dtype) {
            return {sdk::ErrorCode::InvalidArgument, "update tensor '" + name + "' is " +
                                                         sdk::to_string(dtype) + ", the model has " +
                                                         sdk::to_string(slot.dtype)};
        }
        if (shape != slot.shape) {
            return {sdk::ErrorCode::InvalidArgument,
                    "update tensor '" + name + "' has shape " + detail::shape_text(shape) +
                        ", the model has " + detail::shape_text(slot.shape)};
        }
        return sdk::Status::ok();
    }

    /// Positive, and room in the total for `samples` beside the committed and `pending` ones:
    /// a claimed count near INT64_MAX would otherwise wrap the total (undefined behaviour).
    sdk::Status check_samples(std::int64_t samples, std::int64_t pending) const {
        if (samples <= 0) {
            return {sdk::ErrorCode::InvalidArgument,
                    "samples must be positive (got " + std::to_string(samples) + ")"};
        }
        std::int64_t sum = 0;
        if (pending < 0 || __builtin_add_overflow(total_, pending, &sum) ||
            __builtin_add_overflow(sum, samples, &sum)) {
            return {sdk::ErrorCode::InvalidArgument,
                    "samples " + std::to_string(samples) +
                        " overflow the round's total of samples (int64)"};
        }
        return sdk::Status::ok();
    }

    static std::vector<sdk::TensorSpec> specs_of(const sdk::TensorMap& map) {
        std::vector<sdk::TensorSpec> specs;
        specs.reserve(map.tensors.size());
        for (const sdk::Tensor& t : map.tensors) {
            specs.push_back({t.name, t.dtype, t.shape});
        }
        return specs;
    }

    static sdk::Status check_specs(const std::vector<sdk::TensorSpec>& specs, const char* what) {
        std::set<std::string> names;
        for (const sdk::TensorSpec& t : specs) {
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
        }
        return sdk::Status::ok();
    }

    static sdk::Status check_self_consistent(const sdk::TensorMap& map, const char* what) {
        if (auto status = check_specs(specs_of(map), what); !status) {
            return status;
        }
        for (const sdk::Tensor& t : map.tensors) {
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

    static std::int64_t numel_of(const std::vector<std::int64_t>& shape) {
        std::int64_t n = 1;
        for (std::int64_t d : shape) {
            n *= d;
        }
        return n;
    }

    void adopt_layout(const std::vector<sdk::TensorSpec>& layout) {
        bool same = layout.size() == slots_.size();
        for (std::size_t i = 0; same && i < slots_.size(); ++i) {
            const sdk::TensorSpec& t = layout[i];
            same = t.name == slots_[i].name && t.dtype == slots_[i].dtype &&
                   t.shape == slots_[i].shape;
        }
        has_layout_ = true;
        if (!same) {
            slots_.clear();
            index_.clear();
            slots_.reserve(layout.size());
            for (const sdk::TensorSpec& t : layout) {
                Slot slot;
                slot.name = t.name;
                slot.dtype = t.dtype;
                slot.shape = t.shape;
                slot.numel = static_cast<std::size_t>(numel_of(t.shape));
                index_.emplace(slot.name, slots_.size());
                slots_.push_back(std::move(slot));
            }
        }
        // Kept buffers stay (touching fresh memory costs more than reusing it); buffers that
        // `take_mean` handed out are made again here, on the thread that starts the round.
        for (Slot& slot : slots_) {
            if (slot.dtype == sdk::DType::F32) {
                slot.bytes.resize(slot.numel * sizeof(float));
            } else {
                slot.wide.resize(slot.numel);
            }
        }
    }

    /// The slot named `name`; `hint` is tried first (updates usually keep the layout's order).
    std::optional<std::size_t> slot_index(const std::string& name, std::size_t hint) const {
        if (hint < slots_.size() && slots_[hint].name == name) {
            return hint;
        }
        auto it = index_.find(name);
        if (it == index_.end()) {
            return std::nullopt;
        }
        return it->second;
    }

    /// matched[s] = the update's tensor for slot s; every slot exactly once, nothing extra.
    sdk::Status match(const sdk::TensorMap& update,
                      std::vector<const sdk::Tensor*>& matched) const {
        matched.assign(slots_.size(), nullptr);
        for (std::size_t i = 0; i < update.tensors.size(); ++i) {
            const sdk::Tensor& t = update.tensors[i];
            auto found = slot_index(t.name, i);
            if (!found) {
                return {sdk::ErrorCode::InvalidArgument,
                        "update has tensor '" + t.name + "', which the model does not have"};
            }
            const std::size_t s = *found;
            if (matched[s] != nullptr) {
                return {sdk::ErrorCode::InvalidArgument,
                        "update has tensor '" + t.name + "' twice"};
            }
            const Slot& slot = slots_[s];
            if (auto st = check_like(t.name, t.dtype, t.shape, slot); !st) {
                return st;
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

/// An aggregation session whose server step is the n-weighted mean (FedAvg and FedProx), fed
/// whole updates (`accumulate`) or streamed ones (SDK 1.1). Strategy state: none, so
/// `save_state` is empty and `load_state` accepts only an empty map.
class WeightedMeanSession final : public sdk::StreamingAggregationSession {
public:
    /// `strategy` prefixes every error message ("fedavg", "fedprox").
    explicit WeightedMeanSession(std::string strategy) : strategy_(std::move(strategy)) {}

    sdk::Status begin_round(const sdk::TensorMap& global, int round) noexcept override {
        try {
            open_.clear();
            spoilt_by_.clear();
            contributors_.clear();
            is_open_ = false;
            if (auto status = mean_.reset(global); !status) {
                return fail(status, "round " + std::to_string(round));
            }
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
            if (auto status = check_new(participant); !status) {
                return status;
            }
            if (auto status = mean_.add(samples, weights, pending_samples()); !status) {
                return fail(status,
                            "participant '" + participant + "', round " + std::to_string(round_));
            }
            contributors_.insert(participant);
            return sdk::Status::ok();
        } catch (const std::exception& e) {
            return {sdk::ErrorCode::Internal, strategy_ + ": accumulate failed: " + e.what()};
        }
    }

    sdk::Result<UpdateId> begin_update(
        const std::string& participant, std::int64_t samples,
        const std::vector<sdk::TensorSpec>& layout) noexcept override {
        try {
            if (auto status = check_new(participant); !status) {
                return status;
            }
            Open update;
            if (auto status = mean_.check_stream(samples, layout, update.slot_of, pending_samples());
                !status) {
                return fail(status,
                            "participant '" + participant + "', round " + std::to_string(round_));
            }
            update.participant = participant;
            update.samples = samples;
            update.done.assign(layout.size(), 0);
            const UpdateId id = next_id_++;
            open_.emplace(id, std::move(update));
            return id;
        } catch (const std::exception& e) {
            return sdk::Error{sdk::ErrorCode::Internal,
                              strategy_ + ": begin_update failed: " + e.what()};
        }
    }

    sdk::Status fold(UpdateId id, std::size_t tensor, std::uint64_t offset, const float* values,
                     std::size_t count) noexcept override {
        try {
            auto it = open_.find(id);
            if (it == open_.end()) {
                return unknown(id);
            }
            Open& u = it->second;
            if (tensor >= u.slot_of.size()) {
                return close(it, "names tensor " + std::to_string(tensor) + " of " +
                                     std::to_string(u.slot_of.size()));
            }
            const std::size_t slot = u.slot_of[tensor];
            const std::size_t numel = mean_.slot_numel(slot);
            if (mean_.slot_dtype(slot) != sdk::DType::F32) {
                return close(it, "sent tensor '" + mean_.slot_name(slot) + "' (" +
                                     sdk::to_string(mean_.slot_dtype(slot)) + ") as F32 pieces");
            }
            if (offset != u.done[tensor] || count > numel - u.done[tensor] ||
                (count > 0 && values == nullptr)) {
                return close(it, "sent elements [" + std::to_string(offset) + ", " +
                                     std::to_string(offset + count) + ") of tensor '" +
                                     mean_.slot_name(slot) + "' (" + std::to_string(numel) +
                                     " elements), expected the piece at element " +
                                     std::to_string(u.done[tensor]));
            }
            // Checked before anything of the piece is folded: a refused first piece leaves the
            // round good; after folded pieces, `close` spoils the round (they cannot be taken
            // back), so the round runs again without this participant.
            if (const std::size_t bad = detail::first_non_finite(values, count); bad < count) {
                return close(it, "update tensor '" + mean_.slot_name(slot) +
                                     "' has a non-finite value at element " +
                                     std::to_string(offset + bad));
            }
            mean_.fold_piece(slot, u.samples, static_cast<std::size_t>(offset), values, count);
            u.done[tensor] += count;
            u.folded = u.folded || count > 0;
            return sdk::Status::ok();
        } catch (const std::exception& e) {
            return {sdk::ErrorCode::Internal, strategy_ + ": fold failed: " + e.what()};
        }
    }

    sdk::Status fold_tensor(UpdateId id, const sdk::Tensor& tensor) noexcept override {
        try {
            auto it = open_.find(id);
            if (it == open_.end()) {
                return unknown(id);
            }
            Open& u = it->second;
            std::size_t index = u.slot_of.size();
            for (std::size_t i = 0; i < u.slot_of.size(); ++i) {
                if (mean_.slot_name(u.slot_of[i]) == tensor.name) {
                    index = i;
                    break;
                }
            }
            if (index == u.slot_of.size()) {
                return close(it, "sent tensor '" + tensor.name + "', which its layout lacks");
            }
            const std::size_t slot = u.slot_of[index];
            if (u.done[index] != 0) {
                return close(it, "sent tensor '" + tensor.name + "' twice");
            }
            if (auto status = mean_.check_tensor(slot, tensor); !status) {
                return close(it, status.message());
            }
            mean_.fold_whole(slot, u.samples, tensor);
            u.done[index] = mean_.slot_numel(slot);
            u.folded = true;
            return sdk::Status::ok();
        } catch (const std::exception& e) {
            return {sdk::ErrorCode::Internal, strategy_ + ": fold_tensor failed: " + e.what()};
        }
    }

    sdk::Status end_update(UpdateId id) noexcept override {
        try {
            auto it = open_.find(id);
            if (it == open_.end()) {
                return unknown(id);
            }
            Open& u = it->second;
            for (std::size_t i = 0; i < u.slot_of.size(); ++i) {
                const std::size_t numel = mean_.slot_numel(u.slot_of[i]);
                if (u.done[i] != numel) {
                    return close(it, "ended with " + std::to_string(u.done[i]) + " of the " +
                                         std::to_string(numel) + " elements of tensor '" +
                                         mean_.slot_name(u.slot_of[i]) + "'");
                }
            }
            mean_.commit(u.samples);
            contributors_.insert(u.participant);
            open_.erase(it);
            return sdk::Status::ok();
        } catch (const std::exception& e) {
            return {sdk::ErrorCode::Internal, strategy_ + ": end_update failed: " + e.what()};
        }
    }

    bool abandon_update(UpdateId id) noexcept override {
        try {
            auto it = open_.find(id);
            if (it == open_.end()) {
                return false;
            }
            const bool folded = it->second.folded;
            if (folded && spoilt_by_.empty()) {
                spoilt_by_ = it->second.participant;
            }
            open_.erase(it);
            return folded;
        } catch (...) {
            spoilt_by_ = spoilt_by_.empty() ? "an abandoned update" : spoilt_by_;
            return true;
        }
    }

    sdk::Result<sdk::TensorMap> finish_round() noexcept override {
        try {
            if (!is_open_) {
                return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                  strategy_ + ": finish_round without an open round"};
            }
            if (!spoilt_by_.empty()) {
                return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                  strategy_ + ": round " + std::to_string(round_) +
                                      " holds part of the update of participant '" + spoilt_by_ +
                                      "', which did not complete; begin the round again"};
            }
            if (!open_.empty()) {
                return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                  strategy_ + ": the update of participant '" +
                                      open_.begin()->second.participant + "' for round " +
                                      std::to_string(round_) + " is still open"};
            }
            if (mean_.updates() == 0) {
                return sdk::Error{
                    sdk::ErrorCode::FailedPrecondition,
                    strategy_ + ": no update arrived for round " + std::to_string(round_)};
            }
            // The next global model is built in the sums' buffers: no second model at the peak.
            auto result = mean_.take_mean();
            is_open_ = false;
            if (result) {
                // Each update was finite, but n_k * w_k summed in float32 can still overflow:
                // workers must never be sent an inf model.
                for (const sdk::Tensor& t : result->tensors) {
                    const std::size_t numel = t.data.size() / sdk::dtype_size(t.dtype);
                    if (const std::size_t bad = detail::first_non_finite(t, numel); bad < numel) {
                        return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                          strategy_ + ": round " + std::to_string(round_) +
                                              ": the weighted mean of tensor '" + t.name +
                                              "' is not finite at element " + std::to_string(bad) +
                                              " (weights times samples overflow float32)"};
                    }
                }
            }
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
    /// A streamed update: its tensors' slots and how many elements of each were folded.
    struct Open {
        std::string participant;
        std::int64_t samples = 0;
        std::vector<std::size_t> slot_of;
        std::vector<std::uint64_t> done;
        bool folded = false;
    };

    sdk::Status fail(const sdk::Status& status, const std::string& where) const {
        return {status.code(), strategy_ + ": " + where + ": " + status.message()};
    }

    /// The samples of the streamed updates still open (each was admitted with room for it in
    /// the total, so this sum does not overflow).
    std::int64_t pending_samples() const noexcept {
        std::int64_t sum = 0;
        for (const auto& [id, u] : open_) {
            sum += u.samples;
        }
        return sum;
    }

    /// Whether an update of `participant` may start now.
    sdk::Status check_new(const std::string& participant) const {
        if (!is_open_) {
            return {sdk::ErrorCode::FailedPrecondition,
                    strategy_ + ": update from participant '" + participant +
                        "' arrived outside a round (call begin_round first)"};
        }
        bool open = false;
        for (const auto& [id, u] : open_) {
            open = open || u.participant == participant;
        }
        if (open || contributors_.count(participant) != 0) {
            return {sdk::ErrorCode::AlreadyExists, strategy_ + ": participant '" + participant +
                                                       "' already sent an update for round " +
                                                       std::to_string(round_)};
        }
        return sdk::Status::ok();
    }

    sdk::Status unknown(UpdateId id) const {
        return {sdk::ErrorCode::FailedPrecondition,
                strategy_ + ": no open update " + std::to_string(id) + " in round " +
                    std::to_string(round_)};
    }

    /// Ends an update on a bad piece: InvalidArgument naming the participant; the round is
    /// spoilt when the update had already folded data.
    sdk::Status close(std::unordered_map<UpdateId, Open>::iterator it, const std::string& why) {
        const std::string participant = it->second.participant;
        if (it->second.folded && spoilt_by_.empty()) {
            spoilt_by_ = participant;
        }
        open_.erase(it);
        return {sdk::ErrorCode::InvalidArgument, strategy_ + ": participant '" + participant +
                                                     "', round " + std::to_string(round_) + ": " +
                                                     why};
    }

    std::string strategy_;
    WeightedMean mean_;
    std::set<std::string> contributors_;
    std::unordered_map<UpdateId, Open> open_;
    UpdateId next_id_ = 1;
    std::string spoilt_by_;  ///< participant whose partial update is in the sums, if any
    int round_ = -1;
    bool is_open_ = false;
};

}  // namespace synergos::plugins::fedavg
