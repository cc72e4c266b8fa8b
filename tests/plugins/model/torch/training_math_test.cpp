// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "torch_test_support.hpp"

namespace {

using synergos::sdk::Dataset;
using synergos::sdk::TensorMap;
using namespace synergos::test;

constexpr const char* kLinear =
    R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 1},
        "activation": ""}])";
constexpr const char* kPlainSgd =
    R"({"criterion": "MSELoss", "optimizer": "SGD", "lr": 0.1, "lr_scheduler": "", "lr_decay": 0,
        "epochs": 1, "patience": null, "mu": 0})";

const std::vector<std::array<double, 2>> kX{{1, 2}, {3, -1}, {0.5, 0.5}};
const std::vector<double> kY{1, -2, 0.3};

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

TensorMap linear_state(double w0, double w1, double b) {
    return TensorMap{
        {f32("nnl_0_linear.weight", {1, 2}, {static_cast<float>(w0), static_cast<float>(w1)}),
         f32("nnl_0_linear.bias", {1}, {static_cast<float>(b)})}};
}

/// Parameters (w0, w1, b) of the linear model, as doubles.
using Params = std::array<double, 3>;

Params params_of(const TensorMap& m) {
    const auto w = floats(m.tensors[0]);
    const auto b = floats(m.tensors[1]);
    return {w[0], w[1], b[0]};
}

/// MSE loss and its gradient for the linear model, computed by hand in double.
double mse(const Params& p, Params* grad) {
    const double n = static_cast<double>(kX.size());
    double loss = 0;
    Params g{0, 0, 0};
    for (std::size_t r = 0; r < kX.size(); ++r) {
        const double residual = p[0] * kX[r][0] + p[1] * kX[r][1] + p[2] - kY[r];
        loss += residual * residual / n;
        g[0] += 2 * residual * kX[r][0] / n;
        g[1] += 2 * residual * kX[r][1] / n;
        g[2] += 2 * residual / n;
    }
    if (grad != nullptr) {
        *grad = g;
    }
    return loss;
}

void check_params(const TensorMap& got, const Params& want) {
    const Params p = params_of(got);
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(p[i] == Approx(want[i]).margin(1e-6));
    }
}

double sign(double v) {
    return v > 0 ? 1.0 : (v < 0 ? -1.0 : 0.0);
}

}  // namespace

TEST_CASE("One full-batch SGD epoch takes exactly one gradient step", "[unit][torch]") {
    TorchFixture f;
    auto model = f.build(kLinear, "{}");
    const Params p0{0.5, -0.25, 0.1};
    REQUIRE(model->load_state(linear_state(p0[0], p0[1], p0[2])).is_ok());
    auto report = model->train(regression(), kPlainSgd, nullptr);
    REQUIRE(report.has_value());
    Params g;
    const double loss = mse(p0, &g);
    check_params(report->weights, {p0[0] - 0.1 * g[0], p0[1] - 0.1 * g[1], p0[2] - 0.1 * g[2]});
    REQUIRE(report->epoch_losses.size() == 1);
    CHECK(report->epoch_losses[0] == Approx(loss).epsilon(1e-6));
    CHECK(report->samples == 3);
    CHECK(report->epochs_run == 1);
    // The model keeps the trained weights.
    check_params(*model->state(), params_of(report->weights));
}

TEST_CASE("L1, L2 and the FedProx proximal term add their gradients", "[unit][torch]") {
    TorchFixture f;
    auto model = f.build(kLinear, "{}");
    const Params p0{0.5, -0.25, 0.1};
    const Params anchor{0.1, 0.2, -0.1};
    REQUIRE(model->load_state(linear_state(p0[0], p0[1], p0[2])).is_ok());
    const TensorMap reference = linear_state(anchor[0], anchor[1], anchor[2]);
    // weight_decay is ignored because l2_lambda is set (the original's rule).
    const std::string args = merge_args(
        kPlainSgd, R"({"l1_lambda": 0.05, "l2_lambda": 0.2, "mu": 0.3, "weight_decay": 0.7})");
    auto report = model->train(regression(), args, &reference);
    REQUIRE(report.has_value());

    Params g;
    double loss = mse(p0, &g);
    Params want;
    for (std::size_t i = 0; i < 3; ++i) {
        const double grad = g[i] + 0.05 * sign(p0[i]) + 0.2 * p0[i] + 0.3 * (p0[i] - anchor[i]);
        want[i] = p0[i] - 0.1 * grad;
        loss += 0.05 * std::fabs(p0[i]) + 0.1 * p0[i] * p0[i] +
                0.15 * (p0[i] - anchor[i]) * (p0[i] - anchor[i]);
    }
    check_params(report->weights, want);
    CHECK(report->epoch_losses[0] == Approx(loss).epsilon(1e-6));
}

TEST_CASE("Without l2_lambda, weight_decay reaches SGD", "[unit][torch]") {
    TorchFixture f;
    auto model = f.build(kLinear, "{}");
    const Params p0{0.5, -0.25, 0.1};
    REQUIRE(model->load_state(linear_state(p0[0], p0[1], p0[2])).is_ok());
    auto report =
        model->train(regression(), merge_args(kPlainSgd, R"({"weight_decay": 0.7})"), nullptr);
    REQUIRE(report.has_value());
    Params g;
    mse(p0, &g);
    check_params(report->weights,
                 {p0[0] - 0.1 * (g[0] + 0.7 * p0[0]), p0[1] - 0.1 * (g[1] + 0.7 * p0[1]),
                  p0[2] - 0.1 * (g[2] + 0.7 * p0[2])});
}

TEST_CASE("The proximal term needs the round's reference state", "[unit][torch]") {
    TorchFixture f;
    const std::string two_epochs = merge_args(kPlainSgd, R"({"epochs": 2, "mu": 2.0})");
    const Params p0{0.5, -0.25, 0.1};
    const TensorMap start = linear_state(p0[0], p0[1], p0[2]);
    const auto train = [&](const std::string& args, const TensorMap* reference) {
        auto model = f.build(kLinear, "{}");
        REQUIRE(model->load_state(start).is_ok());
        auto report = model->train(regression(), args, reference);
        REQUIRE(report.has_value());
        return report->weights;
    };
    // No reference: no proximal term, whatever mu says.
    CHECK(max_abs_diff(train(two_epochs, nullptr),
                       train(merge_args(two_epochs, R"({"mu": 0})"), nullptr)) == 0.0);
    // With the starting state as reference, epoch 2 sees mu (w1 - w0).
    Params g0;
    mse(p0, &g0);
    Params p1;
    for (std::size_t i = 0; i < 3; ++i) {
        p1[i] = p0[i] - 0.1 * g0[i];
    }
    Params g1;
    mse(p1, &g1);
    Params want;
    for (std::size_t i = 0; i < 3; ++i) {
        want[i] = p1[i] - 0.1 * (g1[i] + 2.0 * (p1[i] - p0[i]));
    }
    check_params(train(two_epochs, &start), want);
}

TEST_CASE("SGD under CyclicLR uses the cycled lr and momentum of each epoch", "[unit][torch]") {
    TorchFixture f;
    auto model = f.build(kLinear, "{}");
    const Params p0{0.5, -0.25, 0.1};
    REQUIRE(model->load_state(linear_state(p0[0], p0[1], p0[2])).is_ok());
    const std::string args =
        R"({"criterion": "MSELoss", "base_lr": 0.05, "max_lr": 0.15, "step_size_up": 4,
            "epochs": 2, "patience": null, "mu": 0})";
    auto report = model->train(regression(), args, nullptr);
    REQUIRE(report.has_value());

    // Epoch 0: lr 0.05, momentum 0.9 (buffer = g0). Epoch 1: lr 0.075, momentum 0.875.
    Params g0;
    mse(p0, &g0);
    Params p1;
    for (std::size_t i = 0; i < 3; ++i) {
        p1[i] = p0[i] - 0.05 * g0[i];
    }
    Params g1;
    mse(p1, &g1);
    Params want;
    for (std::size_t i = 0; i < 3; ++i) {
        want[i] = p1[i] - 0.075 * (0.875 * g0[i] + g1[i]);
    }
    check_params(report->weights, want);
    REQUIRE(report->epoch_losses.size() == 2);
    CHECK(report->epoch_losses[1] == Approx(mse(p1, nullptr)).epsilon(1e-6));
}

TEST_CASE("The first step of Adam, AdamW, RMSprop and Adagrad matches their update rules",
          "[unit][torch]") {
    struct Case {
        const char* optimizer;
        double step;   ///< |update| / lr per unit sign(g)
        double decay;  ///< decoupled weight decay (AdamW default 0.01)
    };
    const auto c = GENERATE(Case{"Adam", 1.0, 0.0}, Case{"AdamW", 1.0, 0.01},
                            Case{"RMSprop", 10.0, 0.0}, Case{"Adagrad", 1.0, 0.0});
    INFO(c.optimizer);
    TorchFixture f;
    auto model = f.build(kLinear, "{}");
    const Params p0{0.5, -0.25, 0.1};
    REQUIRE(model->load_state(linear_state(p0[0], p0[1], p0[2])).is_ok());
    const std::string args = merge_args(
        kPlainSgd, std::string(R"({"optimizer": ")") + c.optimizer + R"(", "lr": 0.01})");
    auto report = model->train(regression(), args, nullptr);
    REQUIRE(report.has_value());
    Params g;
    mse(p0, &g);
    Params want;
    for (std::size_t i = 0; i < 3; ++i) {
        want[i] = p0[i] * (1 - 0.01 * c.decay) - 0.01 * c.step * sign(g[i]);
    }
    const Params got = params_of(report->weights);
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(got[i] == Approx(want[i]).margin(1e-5));
    }
}

TEST_CASE("NLLLoss after a softmax output is the true cross-entropy", "[unit][torch]") {
    TorchFixture f;
    // The softmax as the last layer's activation, as a layer of its own, or with a Dropout after
    // it (auto_fix leaves layers after the output Linear). Before, only the first counted: the
    // others computed -mean(p_true), the original's quirk.
    const char* architecture = GENERATE(
        R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 3},
            "activation": "softmax"}])",
        R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 3}, "activation": ""},
            {"l_type": "Softmax", "structure": {"dim": 1}, "activation": ""}])",
        R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 3},
            "activation": "softmax"},
            {"l_type": "Dropout", "structure": {"p": 0.5}, "activation": ""}])");
    INFO(architecture);
    auto model = f.build(architecture, "{}");
    const std::vector<float> w{1, 0, 0, 1, -1, 1};
    const std::vector<float> b{0, 0.5F, -0.5F};
    REQUIRE(model
                ->load_state(TensorMap{
                    {f32("nnl_0_linear.weight", {3, 2}, w), f32("nnl_0_linear.bias", {3}, b)}})
                .is_ok());
    const std::vector<float> x{1, 2, -1, 0.5F, 0.3F, -2};
    const std::vector<int> labels{2, 0, 1};
    const Dataset data = classify_data({2}, x, labels, 3);
    auto out = model->infer(data, R"({"criterion": "NLLLoss"})");
    REQUIRE(out.has_value());
    REQUIRE(out->width == 3);

    double cross_entropy = 0;
    double original_quirk = 0;  // -mean(p_true): what the original computed
    for (std::size_t r = 0; r < 3; ++r) {
        std::array<double, 3> z{};
        double norm = 0;
        for (std::size_t c = 0; c < 3; ++c) {
            z[c] = w[c * 2] * x[r * 2] + w[c * 2 + 1] * x[r * 2 + 1] + b[c];
            norm += std::exp(z[c]);
        }
        for (std::size_t c = 0; c < 3; ++c) {
            CHECK(out->scores[r * 3 + c] == Approx(std::exp(z[c]) / norm).margin(1e-6));
        }
        const auto y = static_cast<std::size_t>(labels[r]);
        cross_entropy += -(z[y] - std::log(norm)) / 3;
        original_quirk += -(std::exp(z[y]) / norm) / 3;
    }
    CHECK(out->loss == Approx(cross_entropy).epsilon(1e-6));
    CHECK(std::fabs(out->loss - original_quirk) > 0.1);
}

TEST_CASE("Outputs of logit criteria are scored as the probabilities the criterion reads them as",
          "[unit][torch]") {
    // BCEWithLogitsLoss and CrossEntropyLoss apply the sigmoid or softmax themselves, so the
    // network outputs logits. Read raw, the binary cut at 0.5 took a logit of 0.3 (probability
    // 0.57, class 1) and of -0.2 alike, and the saved scores were not probabilities.
    TorchFixture f;
    std::vector<float> x;
    for (const auto& row : kX) {
        x.push_back(static_cast<float>(row[0]));
        x.push_back(static_cast<float>(row[1]));
    }
    const std::vector<int> labels{1, 0, 1};
    auto binary = f.build(kLinear, "{}");
    REQUIRE(binary->load_state(linear_state(0.5, -0.25, 0.1)).is_ok());
    auto out = binary->infer(classify_data({2}, x, labels, 2),
                             R"({"criterion": "BCEWithLogitsLoss", "action": "classify"})");
    REQUIRE(out.has_value());
    double bce = 0;
    for (std::size_t r = 0; r < 3; ++r) {
        const double z = 0.5 * kX[r][0] - 0.25 * kX[r][1] + 0.1;
        const double p = 1 / (1 + std::exp(-z));
        CHECK(out->scores[r] == Approx(p).margin(1e-6));
        bce += -(labels[r] ? std::log(p) : std::log(1 - p)) / 3;
    }
    CHECK(out->loss == Approx(bce).epsilon(1e-6));  // the loss still takes the logits

    // A sigmoid output is a probability already. Before, it was squashed again: every score
    // landed in (0.5, 0.73) and every row read as class 1.
    auto squashed = f.build(
        R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 1},
            "activation": "sigmoid"}])",
        "{}");
    REQUIRE(squashed->load_state(linear_state(0.5, -0.25, 0.1)).is_ok());
    auto read = squashed->infer(classify_data({2}, x, labels, 2),
                                R"({"criterion": "BCEWithLogitsLoss", "action": "classify"})");
    REQUIRE(read.has_value());
    for (std::size_t r = 0; r < 3; ++r) {
        const double z = 0.5 * kX[r][0] - 0.25 * kX[r][1] + 0.1;
        CHECK(read->scores[r] == Approx(1 / (1 + std::exp(-z))).margin(1e-6));
    }

    auto multi = f.build(
        R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 3},
            "activation": ""}])",
        "{}");
    const std::vector<float> w{1, 0, 0, 1, -1, 1};
    const std::vector<float> b{0, 0.5F, -0.5F};
    REQUIRE(multi
                ->load_state(TensorMap{
                    {f32("nnl_0_linear.weight", {3, 2}, w), f32("nnl_0_linear.bias", {3}, b)}})
                .is_ok());
    const std::vector<int> classes{2, 0, 1};
    auto many = multi->infer(classify_data({2}, x, classes, 3), R"({"criterion": "CrossEntropyLoss"})");
    REQUIRE(many.has_value());
    double cross_entropy = 0;
    for (std::size_t r = 0; r < 3; ++r) {
        std::array<double, 3> z{};
        double norm = 0;
        for (std::size_t c = 0; c < 3; ++c) {
            z[c] = w[c * 2] * x[r * 2] + w[c * 2 + 1] * x[r * 2 + 1] + b[c];
            norm += std::exp(z[c]);
        }
        for (std::size_t c = 0; c < 3; ++c) {
            CHECK(many->scores[r * 3 + c] == Approx(std::exp(z[c]) / norm).margin(1e-6));
        }
        cross_entropy += -(z[static_cast<std::size_t>(classes[r])] - std::log(norm)) / 3;
    }
    CHECK(many->loss == Approx(cross_entropy).epsilon(1e-6));

    // A regression read with a plain criterion keeps its raw outputs.
    auto reg = binary->infer(regression(), R"({"criterion": "MSELoss"})");
    REQUIRE(reg.has_value());
    CHECK(reg->scores[0] == Approx(0.5 * kX[0][0] - 0.25 * kX[0][1] + 0.1).margin(1e-6));
}

TEST_CASE("Binary BCELoss and regression MSELoss inference losses", "[unit][torch]") {
    TorchFixture f;
    auto model = f.build(
        R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 1},
            "activation": "sigmoid"}])",
        "{}");
    REQUIRE(model->load_state(linear_state(0.5, -0.25, 0.1)).is_ok());
    const std::vector<int> labels{1, 0, 1};
    std::vector<float> x;
    for (const auto& row : kX) {
        x.push_back(static_cast<float>(row[0]));
        x.push_back(static_cast<float>(row[1]));
    }
    auto out = model->infer(classify_data({2}, x, labels, 2), R"({"criterion": "BCELoss"})");
    REQUIRE(out.has_value());
    double bce = 0;
    for (std::size_t r = 0; r < 3; ++r) {
        const double p = 1 / (1 + std::exp(-(0.5 * kX[r][0] - 0.25 * kX[r][1] + 0.1)));
        CHECK(out->scores[r] == Approx(p).margin(1e-6));
        bce += -(labels[r] ? std::log(p) : std::log(1 - p)) / 3;
    }
    CHECK(out->loss == Approx(bce).epsilon(1e-6));

    auto linear = f.build(kLinear, "{}");
    REQUIRE(linear->load_state(linear_state(0.5, -0.25, 0.1)).is_ok());
    auto reg = linear->infer(regression(), R"({"criterion": "MSELoss"})");
    REQUIRE(reg.has_value());
    CHECK(reg->loss == Approx(mse({0.5, -0.25, 0.1}, nullptr)).epsilon(1e-6));
}

TEST_CASE("The seed and the round fix the batch order", "[unit][torch]") {
    TorchFixture f;
    const std::string arch =
        R"([{"l_type": "Linear", "structure": {"in_features": 4, "out_features": 3},
            "activation": "relu"},
            {"l_type": "Dropout", "structure": {"p": 0.3}, "activation": ""},
            {"l_type": "Linear", "structure": {"in_features": 3, "out_features": 1},
                "activation": ""}])";
    std::vector<float> y(40);
    const auto x = pseudo_features(160, 3);
    for (std::size_t r = 0; r < 40; ++r) {
        y[r] = x[r * 4] - 2 * x[r * 4 + 2];
    }
    const Dataset data = regression_data({4}, x, y);
    const std::string args =
        R"({"criterion": "MSELoss", "lr": 0.05, "lr_scheduler": "", "batch_size": 8, "epochs": 3,
            "seed": 11})";
    const auto train = [&](const std::string& a) {
        auto model = f.build(arch, a);
        auto report = model->train(data, a, nullptr);
        REQUIRE(report.has_value());
        return report->weights;
    };
    const TensorMap first = train(args);
    CHECK(max_abs_diff(first, train(args)) == 0.0);
    CHECK(max_abs_diff(first, train(merge_args(args, R"({"round": 1})"))) > 1e-6);
    CHECK(max_abs_diff(first, train(merge_args(args, R"({"seed": 12})"))) > 1e-6);
}

TEST_CASE("Local early stopping ends the round after patience epochs without improvement",
          "[unit][torch]") {
    TorchFixture f;
    auto model = f.build(kLinear, "{}");
    // delta is huge, so no epoch after the first counts as an improvement.
    auto report = model->train(
        regression(), merge_args(kPlainSgd, R"({"epochs": 10, "patience": 2, "delta": 1e9})"),
        nullptr);
    REQUIRE(report.has_value());
    CHECK(report->epochs_run == 3);
    CHECK(report->epoch_losses.size() == 3);
}

TEST_CASE("Training refuses bad data and bad reference states with clear errors", "[unit][torch]") {
    TorchFixture f;
    auto model = f.build(kLinear, "{}");
    const auto before = *model->state();
    Dataset short_features = regression();
    short_features.features.pop_back();
    auto r1 = model->train(short_features, kPlainSgd, nullptr);
    REQUIRE_FALSE(r1.has_value());
    CHECK_THAT(r1.error().message, Catch::Contains("features hold 5 values"));

    Dataset wrong_width = regression();
    wrong_width.sample_shape = {3};
    wrong_width.features.assign(9, 0.0F);
    auto r2 = model->train(wrong_width, kPlainSgd, nullptr);
    REQUIRE_FALSE(r2.has_value());
    CHECK_THAT(r2.error().message, Catch::Contains("layer 0 (Linear)"));

    Dataset nan = regression();
    nan.features[1] = std::nanf("");
    auto r3 = model->train(nan, kPlainSgd, nullptr);
    REQUIRE_FALSE(r3.has_value());
    CHECK_THAT(r3.error().message, Catch::Contains("NaN"));

    const TensorMap bad_reference{
        {f32("nnl_0_linear.weight", {2, 1}, {0, 0}), f32("nnl_0_linear.bias", {1}, {0})}};
    auto r4 = model->train(regression(), merge_args(kPlainSgd, R"({"mu": 0.1})"), &bad_reference);
    REQUIRE_FALSE(r4.has_value());
    CHECK_THAT(r4.error().message, Catch::Contains("reference tensor 'nnl_0_linear.weight'"));

    auto r5 = model->train(regression(), R"({"criterion": "MSELoss"})", nullptr);
    REQUIRE_FALSE(r5.has_value());
    CHECK_THAT(r5.error().message, Catch::Contains("base_lr"));
    // None of the refused calls changed the weights.
    CHECK(max_abs_diff(before, *model->state()) == 0.0);
}

TEST_CASE("A training call that fails half-way leaves the weights as they were", "[unit][torch]") {
    TorchFixture f;
    // No sigmoid: BCELoss accepts the output only while it stays in [0, 1]. It starts at 0.5
    // and every step (label 1) pushes it up, so a few batches in, BCELoss refuses its input.
    auto model = f.build(
        R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 1},
            "activation": ""}])",
        "{}");
    const TensorMap before = linear_state(0.5, 0.5, 0.0);
    REQUIRE(model->load_state(before).is_ok());
    auto report = model->train(
        classify_data({2}, std::vector<float>(16, 0.5F), std::vector<int>(8, 1), 2),
        R"({"criterion": "BCELoss", "lr": 0.05, "lr_scheduler": "", "batch_size": 1})", nullptr);
    REQUIRE_FALSE(report.has_value());
    CHECK_THAT(report.error().message, Catch::Contains("training failed in epoch 0"));
    CHECK(max_abs_diff(before, *model->state()) == 0.0);
}
