// SPDX-License-Identifier: Apache-2.0
// SCAFFOLD's client side in the torch plugin (Karimireddy et al. 2020, Algorithm 1, option II),
// checked against the formula computed by hand in double on a linear model with MSE loss:
//   K full-batch SGD steps  y <- y - lr * (g(y) - c_i + c)
//   c_i+ = c_i - c + (x - y) / (K * lr),   reply gains scaffold.delta_c.* = c_i+ - c_i.
#include <catch2/catch.hpp>

#include <array>
#include <string>
#include <vector>

#include "torch_test_support.hpp"

namespace {

using synergos::sdk::Dataset;
using synergos::sdk::ErrorCode;
using synergos::sdk::TensorMap;
using namespace synergos::test;

constexpr const char* kLinear =
    R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 1},
        "activation": ""}])";
constexpr int kSteps = 4;
constexpr double kLr = 0.05;
const std::string kScaffoldSgd =
    R"({"criterion": "MSELoss", "optimizer": "SGD", "lr": 0.05, "lr_scheduler": "",
        "lr_decay": 0, "epochs": 4, "patience": null, "mu": 0, "scaffold": true})";

const std::vector<std::array<double, 2>> kX{{1, 2}, {3, -1}, {0.5, 0.5}, {-1, 0.25}};
const std::vector<double> kY{1, -2, 0.3, 0.7};

using Params = std::array<double, 3>;  // w0, w1, b

Dataset regression() {
    std::vector<float> x;
    std::vector<float> y;
    for (std::size_t r = 0; r < kX.size(); ++r) {
        x.push_back(static_cast<float>(kX[r][0]));
        x.push_back(static_cast<float>(kX[r][1]));
        y.push_back(static_cast<float>(kY[r]));
    }
    return regression_data({2}, x, y);
}

/// The linear model's tensors named `prefix` + the model names.
TensorMap linear(const Params& p, const std::string& prefix = "") {
    return TensorMap{{f32(prefix + "nnl_0_linear.weight", {1, 2},
                          {static_cast<float>(p[0]), static_cast<float>(p[1])}),
                      f32(prefix + "nnl_0_linear.bias", {1}, {static_cast<float>(p[2])})}};
}

/// The full-batch mean squared error's gradient, by hand.
Params mse_gradient(const Params& p) {
    const double n = static_cast<double>(kX.size());
    Params g{0, 0, 0};
    for (std::size_t r = 0; r < kX.size(); ++r) {
        const double residual = p[0] * kX[r][0] + p[1] * kX[r][1] + p[2] - kY[r];
        g[0] += 2 * residual * kX[r][0] / n;
        g[1] += 2 * residual * kX[r][1] / n;
        g[2] += 2 * residual / n;
    }
    return g;
}

/// Params of tensors `prefix`+weight and `prefix`+bias in `m`.
Params params_of(const TensorMap& m, const std::string& prefix = "") {
    const auto* w = m.find(prefix + "nnl_0_linear.weight");
    const auto* b = m.find(prefix + "nnl_0_linear.bias");
    REQUIRE(w != nullptr);
    REQUIRE(b != nullptr);
    const auto wv = floats(*w);
    const auto bv = floats(*b);
    return {wv[0], wv[1], bv[0]};
}

struct Expected {
    Params y;
    Params delta_c;
};

/// The paper's client round, independently of the plugin.
Expected client_round(const Params& x, const Params& c, const Params& c_i) {
    Params y = x;
    for (int k = 0; k < kSteps; ++k) {
        const Params g = mse_gradient(y);
        for (std::size_t i = 0; i < 3; ++i) {
            y[i] -= kLr * (g[i] - c_i[i] + c[i]);
        }
    }
    Expected e{y, {}};
    for (std::size_t i = 0; i < 3; ++i) {
        const double c_i_plus = c_i[i] - c[i] + (x[i] - y[i]) / (kSteps * kLr);
        e.delta_c[i] = c_i_plus - c_i[i];
    }
    return e;
}

void check(const Params& got, const Params& want) {
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(got[i] == Approx(want[i]).margin(2e-5));
    }
}

TensorMap concat(std::vector<TensorMap> parts) {
    TensorMap out;
    for (auto& p : parts) {
        for (auto& t : p.tensors) {
            out.tensors.push_back(std::move(t));
        }
    }
    return out;
}

}  // namespace

TEST_CASE("SCAFFOLD: one client round matches the paper's option II computed by hand",
          "[unit][torch][scaffold]") {
    TorchFixture f;
    auto model = f.build(kLinear, "{}");
    const Params x{0.2, -0.3, 0.1};
    const Params c{0.05, -0.02, 0.01};
    const Params c_i{-0.01, 0.03, 0.02};
    REQUIRE(model->load_state(linear(x)).is_ok());
    const TensorMap reference =
        concat({linear(x), linear(c, "scaffold.c."), linear(c_i, "scaffold.c_i.")});

    auto report = model->train(regression(), kScaffoldSgd, &reference);
    REQUIRE(report.has_value());
    const Expected want = client_round(x, c, c_i);
    check(params_of(report->weights), want.y);
    check(params_of(report->weights, "scaffold.delta_c."), want.delta_c);
    // The reply holds the model's tensors and one Delta c per floating tensor, nothing else.
    CHECK(report->weights.tensors.size() == 4);
    // The controls changed the trajectory: without them the weights differ.
    const Expected plain = client_round(x, {0, 0, 0}, {0, 0, 0});
    CHECK(std::fabs(plain.y[0] - want.y[0]) > 1e-3);
}

TEST_CASE("SCAFFOLD: absent controls are zero (round 0) and mean plain SGD",
          "[unit][torch][scaffold]") {
    TorchFixture f;
    auto model = f.build(kLinear, "{}");
    const Params x{0.5, -0.25, 0.1};
    REQUIRE(model->load_state(linear(x)).is_ok());
    const TensorMap reference = linear(x);
    auto report = model->train(regression(), kScaffoldSgd, &reference);
    REQUIRE(report.has_value());
    const Expected want = client_round(x, {0, 0, 0}, {0, 0, 0});
    check(params_of(report->weights), want.y);
    check(params_of(report->weights, "scaffold.delta_c."), want.delta_c);
}

TEST_CASE("SCAFFOLD: two rounds carry c_i+ = c_i + Delta c_i", "[unit][torch][scaffold]") {
    TorchFixture f;
    auto model = f.build(kLinear, "{}");
    Params x{0.3, 0.1, -0.2};
    Params c_i{0, 0, 0};
    const Params c{0.02, 0.04, -0.03};
    for (int round = 0; round < 2; ++round) {
        REQUIRE(model->load_state(linear(x)).is_ok());
        const TensorMap reference =
            concat({linear(x), linear(c, "scaffold.c."), linear(c_i, "scaffold.c_i.")});
        auto report = model->train(regression(), kScaffoldSgd, &reference);
        REQUIRE(report.has_value());
        const Expected want = client_round(x, c, c_i);
        check(params_of(report->weights), want.y);
        check(params_of(report->weights, "scaffold.delta_c."), want.delta_c);
        const Params delta = params_of(report->weights, "scaffold.delta_c.");
        for (std::size_t i = 0; i < 3; ++i) {
            c_i[i] += delta[i];
        }
        x = params_of(report->weights);
    }
}

TEST_CASE("SCAFFOLD: a control that does not fit is refused and changes nothing",
          "[unit][torch][scaffold]") {
    TorchFixture f;
    auto model = f.build(kLinear, "{}");
    const Params x{0.2, -0.3, 0.1};
    REQUIRE(model->load_state(linear(x)).is_ok());
    TensorMap reference = linear(x);
    reference.tensors.push_back(f32("scaffold.c.nnl_0_linear.weight", {2}, {0.1F, 0.2F}));
    auto report = model->train(regression(), kScaffoldSgd, &reference);
    REQUIRE_FALSE(report.has_value());
    CHECK(report.error().code == ErrorCode::InvalidArgument);
    CHECK_THAT(report.error().message, Catch::Contains("nnl_0_linear.weight"));
    check(params_of(*model->state()), x);

    // SCAFFOLD needs the round's global weights.
    auto no_reference = model->train(regression(), kScaffoldSgd, nullptr);
    REQUIRE_FALSE(no_reference.has_value());
    CHECK(no_reference.error().code == ErrorCode::InvalidArgument);
    CHECK_THAT(no_reference.error().message, Catch::Contains("scaffold"));
}
