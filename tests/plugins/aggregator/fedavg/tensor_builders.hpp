// SPDX-License-Identifier: Apache-2.0
#pragma once

/// Small builders for TensorMaps in aggregator tests.

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <synergos/sdk/tensor.hpp>

namespace synergos::test {

inline sdk::Tensor f32_tensor(std::string name, std::vector<std::int64_t> shape,
                              const std::vector<float>& values) {
    sdk::Tensor t;
    t.name = std::move(name);
    t.dtype = sdk::DType::F32;
    t.shape = std::move(shape);
    t.data.resize(values.size() * sizeof(float));
    std::memcpy(t.data.data(), values.data(), t.data.size());
    return t;
}

inline sdk::Tensor i64_tensor(std::string name, std::vector<std::int64_t> shape,
                              const std::vector<std::int64_t>& values) {
    sdk::Tensor t;
    t.name = std::move(name);
    t.dtype = sdk::DType::I64;
    t.shape = std::move(shape);
    t.data.resize(values.size() * sizeof(std::int64_t));
    std::memcpy(t.data.data(), values.data(), t.data.size());
    return t;
}

inline std::vector<float> f32_values(const sdk::Tensor& t) {
    std::vector<float> out(static_cast<std::size_t>(t.numel()));
    std::memcpy(out.data(), t.data.data(), out.size() * sizeof(float));
    return out;
}

inline std::vector<std::int64_t> i64_values(const sdk::Tensor& t) {
    std::vector<std::int64_t> out(static_cast<std::size_t>(t.numel()));
    std::memcpy(out.data(), t.data.data(), out.size() * sizeof(std::int64_t));
    return out;
}

/// Deterministic values in [-2, 2) (a small LCG; no dependence on <random> implementations).
inline std::vector<float> pseudo_random(std::size_t n, std::uint32_t seed) {
    std::vector<float> out(n);
    std::uint32_t s = seed * 2654435761U + 12345U;
    for (float& v : out) {
        s = s * 1664525U + 1013904223U;
        v = static_cast<float>(s >> 8U) / static_cast<float>(1U << 24U) * 4.0F - 2.0F;
    }
    return out;
}

}  // namespace synergos::test
