// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file tensor.hpp
/// Named raw tensors: the form in which model weights travel (as safetensors on the wire) and
/// reach aggregators. Data is stored as raw little-endian bytes in row-major order.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace synergos::sdk {

/// Element types, named as in the safetensors format.
enum class DType : std::uint8_t { F32 = 1, F64, I64, I32, U8 };

/// Size in bytes of one element.
inline std::size_t dtype_size(DType dtype) noexcept {
    switch (dtype) {
        case DType::F32: return 4;
        case DType::F64: return 8;
        case DType::I64: return 8;
        case DType::I32: return 4;
        case DType::U8: return 1;
    }
    return 1;
}

/// The safetensors name of a dtype ("F32", ...).
inline const char* to_string(DType dtype) noexcept {
    switch (dtype) {
        case DType::F32: return "F32";
        case DType::F64: return "F64";
        case DType::I64: return "I64";
        case DType::I32: return "I32";
        case DType::U8: return "U8";
    }
    return "U8";
}

/// One named tensor. Invariant: data.size() == numel() * dtype_size(dtype).
struct Tensor {
    std::string name;
    DType dtype = DType::F32;
    std::vector<std::int64_t> shape;
    std::vector<unsigned char> data;

    std::int64_t numel() const noexcept {
        std::int64_t n = 1;
        for (std::int64_t d : shape) {
            n *= d;
        }
        return n;
    }
    float* f32() noexcept { return reinterpret_cast<float*>(data.data()); }
    const float* f32() const noexcept { return reinterpret_cast<const float*>(data.data()); }
};

/// An ordered list of named tensors (a model's state). Names are unique.
struct TensorMap {
    std::vector<Tensor> tensors;

    const Tensor* find(const std::string& name) const noexcept {
        for (const Tensor& t : tensors) {
            if (t.name == name) {
                return &t;
            }
        }
        return nullptr;
    }
    Tensor* find(const std::string& name) noexcept {
        for (Tensor& t : tensors) {
            if (t.name == name) {
                return &t;
            }
        }
        return nullptr;
    }
    /// Total bytes of tensor data.
    std::size_t byte_size() const noexcept {
        std::size_t n = 0;
        for (const Tensor& t : tensors) {
            n += t.data.size();
        }
        return n;
    }
};

}  // namespace synergos::sdk
