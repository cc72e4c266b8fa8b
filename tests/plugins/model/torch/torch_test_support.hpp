// SPDX-License-Identifier: Apache-2.0
#pragma once

/// Helpers for tests that drive the torch plugin through the SDK interfaces (no libtorch
/// headers here: these tests compile quickly).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <synergos/sdk/data_pipeline.hpp>
#include <synergos/sdk/model.hpp>
#include <synergos/sdk/tensor.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "torch_backend.hpp"

namespace synergos::test {

/// A backend over a fake host.
struct TorchFixture {
    sdk::testing::FakeHost host;
    plugins::torch::TorchBackend backend{host, sdk::Options{}};

    std::unique_ptr<sdk::Model> build(const std::string& architecture, const std::string& args) {
        auto model = backend.build(architecture, args);
        if (!model.has_value()) {
            FAIL("build failed: " << model.error().message);
        }
        return std::move(*model);
    }
};

/// Regression data: `features` row-major rows x prod(sample_shape), one raw target per row.
inline sdk::Dataset regression_data(std::vector<std::int64_t> sample_shape,
                                    std::vector<float> features, std::vector<float> targets) {
    sdk::Dataset d;
    d.sample_shape = std::move(sample_shape);
    d.rows = static_cast<std::int64_t>(targets.size());
    d.features = std::move(features);
    d.labels = std::move(targets);
    d.label_names = {"target"};
    return d;
}

/// Classification data with one-hot labels "target_<c>" for `classes` classes.
inline sdk::Dataset classify_data(std::vector<std::int64_t> sample_shape,
                                  std::vector<float> features, const std::vector<int>& labels,
                                  int classes) {
    sdk::Dataset d;
    d.sample_shape = std::move(sample_shape);
    d.rows = static_cast<std::int64_t>(labels.size());
    d.features = std::move(features);
    d.labels.assign(labels.size() * static_cast<std::size_t>(classes), 0.0F);
    for (std::size_t r = 0; r < labels.size(); ++r) {
        d.labels[r * static_cast<std::size_t>(classes) + static_cast<std::size_t>(labels[r])] =
            1.0F;
    }
    for (int c = 0; c < classes; ++c) {
        d.label_names.push_back("target_" + std::to_string(c));
    }
    return d;
}

/// `args` with the fields of `extra` added or replaced (how a worker merges strategy fields).
inline std::string merge_args(const std::string& args, const std::string& extra) {
    auto merged = nlohmann::json::parse(args);
    merged.update(nlohmann::json::parse(extra));
    return merged.dump();
}

inline sdk::Tensor f32(std::string name, std::vector<std::int64_t> shape,
                       const std::vector<float>& values) {
    sdk::Tensor t;
    t.name = std::move(name);
    t.dtype = sdk::DType::F32;
    t.shape = std::move(shape);
    t.data.resize(values.size() * sizeof(float));
    std::memcpy(t.data.data(), values.data(), t.data.size());
    return t;
}

inline std::vector<float> floats(const sdk::Tensor& t) {
    std::vector<float> out(t.data.size() / sizeof(float));
    std::memcpy(out.data(), t.data.data(), t.data.size());
    return out;
}

inline std::vector<std::int64_t> int64s(const sdk::Tensor& t) {
    std::vector<std::int64_t> out(t.data.size() / sizeof(std::int64_t));
    std::memcpy(out.data(), t.data.data(), t.data.size());
    return out;
}

/// Largest |a - b| over every F32 tensor; the maps must have the same names and shapes.
inline double max_abs_diff(const sdk::TensorMap& a, const sdk::TensorMap& b) {
    REQUIRE(a.tensors.size() == b.tensors.size());
    double worst = 0.0;
    for (std::size_t t = 0; t < a.tensors.size(); ++t) {
        REQUIRE(a.tensors[t].name == b.tensors[t].name);
        REQUIRE(a.tensors[t].shape == b.tensors[t].shape);
        REQUIRE(a.tensors[t].dtype == b.tensors[t].dtype);
        if (a.tensors[t].dtype == sdk::DType::I64) {
            const auto x = int64s(a.tensors[t]);
            const auto y = int64s(b.tensors[t]);
            for (std::size_t i = 0; i < x.size(); ++i) {
                worst = std::max(worst, std::fabs(static_cast<double>(x[i] - y[i])));
            }
            continue;
        }
        REQUIRE(a.tensors[t].dtype == sdk::DType::F32);
        const auto x = floats(a.tensors[t]);
        const auto y = floats(b.tensors[t]);
        for (std::size_t i = 0; i < x.size(); ++i) {
            worst = std::max(worst, std::fabs(static_cast<double>(x[i]) - y[i]));
        }
    }
    return worst;
}

/// Deterministic features in [-1, 1).
inline std::vector<float> pseudo_features(std::size_t n, std::uint32_t seed) {
    std::vector<float> out(n);
    std::uint32_t s = seed * 2654435761U + 7U;
    for (float& v : out) {
        s = s * 1664525U + 1013904223U;
        v = static_cast<float>(s >> 8U) / static_cast<float>(1U << 23U) - 1.0F;
    }
    return out;
}

}  // namespace synergos::test
