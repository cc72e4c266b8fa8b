// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "scaffold_client.hpp"
#include "scaffold_session.hpp"
#include "strategy_helpers.hpp"
#include "weighted_mean.hpp"

namespace {

namespace client = synergos::plugins::scaffold::client;
using synergos::sdk::ErrorCode;
using synergos::sdk::TensorMap;
using namespace synergos::test;

TensorMap one(const std::string& name, const std::vector<float>& values) {
    TensorMap m;
    m.tensors.push_back(f32_tensor(name, {static_cast<std::int64_t>(values.size())}, values));
    return m;
}

}  // namespace

TEST_CASE("The client correction is g + c - c_i, element-wise", "[unit][strategies]") {
    std::vector<float> g{1.0F, -2.0F, 0.5F};
    const std::vector<float> c{0.25F, 0.5F, -1.0F};
    const std::vector<float> ci{1.0F, 0.0F, 0.5F};
    client::correct_gradient(g.data(), c.data(), ci.data(), g.size());
    CHECK(g == std::vector<float>{0.25F, -1.5F, -1.0F});
    // Absent controls are zero (the first round).
    std::vector<float> h{1.0F, 2.0F};
    client::correct_gradient(h.data(), nullptr, nullptr, h.size());
    CHECK(h == std::vector<float>{1.0F, 2.0F});

    TensorMap grads = one("w", {1.0F, -2.0F, 0.5F});
    grads.tensors.push_back(i64_tensor("n", {}, {3}));
    auto corrected = client::corrected_gradients(grads, one("w", c), one("w", ci));
    REQUIRE(corrected.has_value());
    CHECK(values_of(*corrected, "w") == std::vector<double>{0.25, -1.5, -1.0});
    CHECK(values_of(*corrected, "n") == std::vector<double>{3});  // integers pass through
    auto only_c = client::corrected_gradients(grads, one("w", c), TensorMap{});
    REQUIRE(only_c.has_value());
    CHECK(values_of(*only_c, "w") == std::vector<double>{1.25, -1.5, -0.5});
    auto bad = client::corrected_gradients(grads, one("w", {1.0F}), TensorMap{});
    REQUIRE_FALSE(bad.has_value());
    CHECK_THAT(bad.error().message, Catch::Contains("server control tensor 'w'"));
}

TEST_CASE("Option II: c_i+ = c_i - c + (x - y) / (K lr), Delta c = c_i+ - c_i",
          "[unit][strategies]") {
    const TensorMap x = one("w", {1.0F, 2.0F});
    const TensorMap y = one("w", {0.5F, 2.5F});
    const TensorMap c = one("w", {0.1F, -0.1F});
    const TensorMap ci = one("w", {0.2F, 0.3F});
    // K = 5, lr = 0.1: (x - y) / 0.5 = {1, -1}; c_i+ = {0.2 - 0.1 + 1, 0.3 + 0.1 - 1}.
    auto update = client::option_ii_update(x, y, c, ci, 5, 0.1);
    REQUIRE(update.has_value());
    require_close(values_of(update->c_i, "w"), {1.1, -0.6}, 1e-6);
    require_close(values_of(update->delta_c, "w"), {0.9, -0.9}, 1e-6);
    // First round: c and c_i absent.
    auto first = client::option_ii_update(x, y, TensorMap{}, TensorMap{}, 5, 0.1);
    REQUIRE(first.has_value());
    require_close(values_of(first->c_i, "w"), {1.0, -1.0}, 1e-6);

    TensorMap reply = y;
    client::append_delta_c(reply, update->delta_c);
    REQUIRE(reply.find("scaffold.delta_c.w") != nullptr);

    CHECK(client::option_ii_update(x, y, c, ci, 0, 0.1).error().code == ErrorCode::InvalidArgument);
    CHECK(client::option_ii_update(x, y, c, ci, 5, 0.0).error().code == ErrorCode::InvalidArgument);
    CHECK_THAT(client::option_ii_update(x, one("v", {0, 0}), c, ci, 5, 0.1).error().message,
               Catch::Contains("'w'"));

    TensorMap body = x;
    body.tensors.push_back(f32_tensor("scaffold.c.w", {2}, {0.1F, -0.1F}));
    const auto split = client::split_server_body(body);
    REQUIRE(split.weights.tensors.size() == 1);
    CHECK(split.weights.tensors[0].name == "w");
    REQUIRE(split.c.tensors.size() == 1);
    CHECK(split.c.tensors[0].name == "w");
}

TEST_CASE("Client and server sides together remove client drift on heterogeneous quadratics",
          "[unit][strategies]") {
    // Client i minimises f_i(w) = 1/2 sum_j h_ij (w_j - a_ij)^2 with K local SGD steps. The
    // global optimum is w*_j = sum_i h_ij a_ij / sum_i h_ij. With unequal curvatures FedAvg
    // drifts to another fixed point; SCAFFOLD converges to w* (Karimireddy et al. 2020, Sec. 3).
    const std::vector<std::vector<double>> h{{0.5, 1, 2}, {2, 4, 0.5}, {4, 0.5, 1}};
    const std::vector<std::vector<double>> a{{1, -2, 0}, {-1, 1, 3}, {3, 0, -1}};
    const int steps = 10;
    const double lr = 0.1;
    std::vector<double> optimum(3);
    for (std::size_t j = 0; j < 3; ++j) {
        double num = 0;
        double den = 0;
        for (std::size_t i = 0; i < 3; ++i) {
            num += h[i][j] * a[i][j];
            den += h[i][j];
        }
        optimum[j] = num / den;
    }

    // One worker's round, as the torch plugin would run it. `c_i` is the worker's own state.
    auto local_round = [&](std::size_t i, const TensorMap& body, TensorMap& c_i, bool corrected) {
        auto server = client::split_server_body(body);
        TensorMap y = server.weights;
        for (int k = 0; k < steps; ++k) {
            const auto w = values_of(y, "w");
            std::vector<float> g(3);
            for (std::size_t j = 0; j < 3; ++j) {
                g[j] = static_cast<float>(h[i][j] * (w[j] - a[i][j]));
            }
            TensorMap grads = one("w", g);
            if (corrected) {
                auto fixed = client::corrected_gradients(grads, server.c, c_i);
                REQUIRE(fixed.has_value());
                grads = std::move(*fixed);
            }
            const auto gw = values_of(grads, "w");
            std::vector<float> next(3);
            for (std::size_t j = 0; j < 3; ++j) {
                next[j] = static_cast<float>(w[j] - lr * gw[j]);
            }
            y.tensors[0] = f32_tensor("w", {3}, next);
        }
        if (!corrected) {
            return y;
        }
        auto update = client::option_ii_update(server.weights, y, server.c, c_i, steps, lr);
        REQUIRE(update.has_value());
        c_i = update->c_i;
        client::append_delta_c(y, update->delta_c);
        return y;
    };
    auto max_error = [&](const TensorMap& x) {
        const auto w = values_of(x, "w");
        double e = 0;
        for (std::size_t j = 0; j < 3; ++j) {
            e = std::max(e, std::fabs(w[j] - optimum[j]));
        }
        return e;
    };

    synergos::plugins::scaffold::ScaffoldSession scaffold({1.0});
    synergos::plugins::fedavg::WeightedMeanSession fedavg("fedavg");
    TensorMap x_scaffold = one("w", {0, 0, 0});
    TensorMap x_fedavg = x_scaffold;
    std::vector<TensorMap> c_i(3);
    TensorMap none;
    for (int round = 0; round < 60; ++round) {
        std::vector<ClientUpdate> with;
        std::vector<ClientUpdate> without;
        for (std::size_t i = 0; i < 3; ++i) {
            with.push_back({"w" + std::to_string(i), 10, local_round(i, x_scaffold, c_i[i], true)});
            without.push_back({"w" + std::to_string(i), 10, local_round(i, x_fedavg, none, false)});
        }
        x_scaffold = run_round(scaffold, x_scaffold, round, with);
        x_fedavg = run_round(fedavg, x_fedavg, round, without);
    }
    INFO("scaffold " << max_error(x_scaffold) << ", fedavg " << max_error(x_fedavg));
    CHECK(max_error(x_scaffold) < 1e-4);
    CHECK(max_error(x_fedavg) > 0.3);
}
