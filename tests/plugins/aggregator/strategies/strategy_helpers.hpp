// SPDX-License-Identifier: Apache-2.0
#pragma once

/// Helpers shared by the strategy tests: building small models and running one round.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/tensor.hpp>

#include "plugins/aggregator/fedavg/tensor_builders.hpp"

namespace synergos::test {

struct ClientUpdate {
    std::string participant;
    std::int64_t samples = 1;
    sdk::TensorMap weights;
};

/// begin_round, one accumulate per update (in the given order), finish_round; REQUIREs success.
inline sdk::TensorMap run_round(sdk::AggregationSession& session, const sdk::TensorMap& global,
                                int round, const std::vector<ClientUpdate>& updates) {
    const auto begun = session.begin_round(global, round);
    INFO(begun.message());
    REQUIRE(begun.is_ok());
    for (const auto& u : updates) {
        const auto status = session.accumulate(u.participant, u.samples, u.weights);
        INFO(u.participant << ": " << status.message());
        REQUIRE(status.is_ok());
    }
    auto next = session.finish_round();
    if (!next) {
        FAIL(next.error().message);
    }
    return std::move(*next);
}

/// A tensor's values as doubles (F32, F64 or I64).
inline std::vector<double> values_of(const sdk::Tensor& t) {
    std::vector<double> out;
    if (t.dtype == sdk::DType::F32) {
        for (float v : f32_values(t)) {
            out.push_back(v);
        }
    } else if (t.dtype == sdk::DType::I64) {
        for (std::int64_t v : i64_values(t)) {
            out.push_back(static_cast<double>(v));
        }
    } else if (t.dtype == sdk::DType::F64) {
        out.resize(t.data.size() / sizeof(double));
        std::memcpy(out.data(), t.data.data(), t.data.size());
    }
    return out;
}

/// The values of tensor `name` in `map`; REQUIREs that it exists.
inline std::vector<double> values_of(const sdk::TensorMap& map, const std::string& name) {
    const sdk::Tensor* t = map.find(name);
    INFO("tensor " << name);
    REQUIRE(t != nullptr);
    return values_of(*t);
}

/// A scalar F64 tensor's value (e.g. metric.dp_epsilon); REQUIREs that it exists.
inline double scalar_of(const sdk::TensorMap& map, const std::string& name) {
    const auto v = values_of(map, name);
    REQUIRE(v.size() == 1);
    return v[0];
}

inline void require_close(const std::vector<double>& got, const std::vector<double>& want,
                          double margin) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        INFO("element " << i);
        REQUIRE(got[i] == Approx(want[i]).margin(margin));
    }
}

/// L2 distance between the float tensors of two maps (same names).
inline double l2_distance(const sdk::TensorMap& a, const sdk::TensorMap& b) {
    double sum = 0.0;
    for (const sdk::Tensor& t : a.tensors) {
        if (t.dtype != sdk::DType::F32) {
            continue;
        }
        const auto x = values_of(t);
        const auto y = values_of(b, t.name);
        for (std::size_t i = 0; i < x.size(); ++i) {
            sum += (x[i] - y[i]) * (x[i] - y[i]);
        }
    }
    return std::sqrt(sum);
}

}  // namespace synergos::test
