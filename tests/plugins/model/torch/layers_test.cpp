// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "torch_test_support.hpp"

namespace {

using synergos::sdk::Dataset;
using synergos::sdk::ErrorCode;
using synergos::sdk::TensorMap;
using namespace synergos::test;

/// One layer-type case: a tiny network, an input row, optional weights, the expected output.
struct LayerCase {
    const char* label;
    std::string architecture;
    std::vector<std::int64_t> sample_shape;
    std::vector<float> input;
    TensorMap state;  ///< loaded when not empty
    std::vector<float> expected;
    std::vector<std::string> state_names;
};

std::string layer(const char* type, const char* structure, const char* activation = "") {
    return std::string(R"({"l_type": ")") + type + R"(", "structure": )" + structure +
           R"(, "activation": ")" + activation + R"("})";
}

std::string net(std::initializer_list<std::string> layers) {
    std::string out = "[";
    for (const auto& l : layers) {
        out += (out.size() > 1 ? "," : "") + l;
    }
    return out + "]";
}

Dataset rows_of(const std::vector<std::int64_t>& shape, const std::vector<float>& input) {
    Dataset d;
    d.sample_shape = shape;
    d.rows = 1;
    d.features = input;
    return d;  // no labels: infer reports outputs only
}

std::vector<LayerCase> layer_cases() {
    const float e = std::exp(1.0F);
    const float s1 = 1 / (1 + e + e * e);  // softmax of [1, 2, 3] = [s1, e s1, e^2 s1]
    const std::string flat = layer("Flatten", "{}");
    std::vector<LayerCase> cases;
    cases.push_back({"Linear",
                     net({layer("Linear", R"({"in_features": 2, "out_features": 2})")}),
                     {2},
                     {1, 1},
                     TensorMap{{f32("nnl_0_linear.weight", {2, 2}, {1, 2, 3, 4}),
                                f32("nnl_0_linear.bias", {2}, {0.5F, -1})}},
                     {3.5F, 6},
                     {"nnl_0_linear.weight", "nnl_0_linear.bias"}});
    cases.push_back(
        {"Conv1d",
         net({layer("Conv1d", R"({"in_channels": 1, "out_channels": 1, "kernel_size": 2})"), flat}),
         {1, 3},
         {1, 4, 9},
         TensorMap{
             {f32("nnl_0_conv1d.weight", {1, 1, 2}, {1, -1}), f32("nnl_0_conv1d.bias", {1}, {0})}},
         {-3, -5},
         {"nnl_0_conv1d.weight", "nnl_0_conv1d.bias"}});
    cases.push_back(
        {"Conv2d",
         net({layer("Conv2d", R"({"in_channels": 1, "out_channels": 1, "kernel_size": 2})"), flat}),
         {1, 3, 3},
         {0, 1, 2, 3, 4, 5, 6, 7, 8},
         TensorMap{{f32("nnl_0_conv2d.weight", {1, 1, 2, 2}, {1, 1, 1, 1}),
                    f32("nnl_0_conv2d.bias", {1}, {0.5F})}},
         {8.5F, 12.5F, 20.5F, 24.5F},
         {"nnl_0_conv2d.weight", "nnl_0_conv2d.bias"}});
    cases.push_back({"MaxPool2d",
                     net({layer("MaxPool2d", R"({"kernel_size": 2})"), flat}),
                     {1, 4, 4},
                     {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
                     {},
                     {5, 7, 13, 15},
                     {}});
    cases.push_back({"AvgPool2d",
                     net({layer("AvgPool2d", R"({"kernel_size": 2})"), flat}),
                     {1, 4, 4},
                     {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
                     {},
                     {2.5F, 4.5F, 10.5F, 12.5F},
                     {}});
    cases.push_back({"MaxPool1d",
                     net({layer("MaxPool1d", R"({"kernel_size": 2})"), flat}),
                     {1, 6},
                     {1, 5, 2, 2, -3, 0},
                     {},
                     {5, 2, 0},
                     {}});
    cases.push_back({"AvgPool1d",
                     net({layer("AvgPool1d", R"({"kernel_size": 3})"), flat}),
                     {1, 6},
                     {1, 2, 3, 4, 5, 6},
                     {},
                     {2, 5},
                     {}});
    cases.push_back(
        {"Flatten", net({flat}), {2, 3}, {1, 2, 3, 4, 5, 6}, {}, {1, 2, 3, 4, 5, 6}, {}});
    cases.push_back({"Dropout (eval: identity)",
                     net({layer("Dropout", R"({"p": 0.5})")}),
                     {3},
                     {1, 2, 3},
                     {},
                     {1, 2, 3},
                     {}});
    cases.push_back(
        {"BatchNorm1d (eval: running statistics)",
         net({layer("BatchNorm1d", R"({"num_features": 2})")}),
         {2},
         {3, 1},
         TensorMap{{f32("nnl_0_batchnorm1d.weight", {2}, {2, 1}),
                    f32("nnl_0_batchnorm1d.bias", {2}, {0, 1}),
                    f32("nnl_0_batchnorm1d.running_mean", {2}, {1, -1}),
                    f32("nnl_0_batchnorm1d.running_var", {2}, {4, 1})}},
         {2, 3},
         {"nnl_0_batchnorm1d.weight", "nnl_0_batchnorm1d.bias", "nnl_0_batchnorm1d.running_mean",
          "nnl_0_batchnorm1d.running_var", "nnl_0_batchnorm1d.num_batches_tracked"}});
    cases.push_back(
        {"BatchNorm2d (eval: running statistics)",
         net({layer("BatchNorm2d", R"({"num_features": 1})"), flat}),
         {1, 1, 2},
         {3, 5},
         TensorMap{{f32("nnl_0_batchnorm2d.running_mean", {1}, {1}),
                    f32("nnl_0_batchnorm2d.running_var", {1}, {4})}},
         {1, 2},
         {"nnl_0_batchnorm2d.weight", "nnl_0_batchnorm2d.bias", "nnl_0_batchnorm2d.running_mean",
          "nnl_0_batchnorm2d.running_var", "nnl_0_batchnorm2d.num_batches_tracked"}});
    cases.push_back({"ReLU", net({layer("ReLU", "{}")}), {2}, {-1, 2}, {}, {0, 2}, {}});
    cases.push_back({"LeakyReLU",
                     net({layer("LeakyReLU", R"({"negative_slope": 0.2})")}),
                     {2},
                     {-1, 3},
                     {},
                     {-0.2F, 3},
                     {}});
    cases.push_back({"ELU", net({layer("ELU", "{}")}), {2}, {-1, 2}, {}, {1 / e - 1, 2}, {}});
    cases.push_back({"GELU", net({layer("GELU", "{}")}), {1}, {1}, {}, {0.8413447F}, {}});
    cases.push_back({"Sigmoid",
                     net({layer("Sigmoid", "{}")}),
                     {2},
                     {0, 2},
                     {},
                     {0.5F, 1 / (1 + std::exp(-2.0F))},
                     {}});
    cases.push_back({"Tanh", net({layer("Tanh", "{}")}), {1}, {0.5F}, {}, {std::tanh(0.5F)}, {}});
    cases.push_back({"Softmax",
                     net({layer("Softmax", R"({"dim": 1})")}),
                     {3},
                     {1, 2, 3},
                     {},
                     {s1, e * s1, e * e * s1},
                     {}});
    cases.push_back({"LogSoftmax",
                     net({layer("LogSoftmax", "{}")}),
                     {3},
                     {1, 2, 3},
                     {},
                     {std::log(s1), 1 + std::log(s1), 2 + std::log(s1)},
                     {}});
    cases.push_back({"Identity", net({layer("Identity", "{}")}), {2}, {7, -7}, {}, {7, -7}, {}});
    // Activations by name after a layer.
    cases.push_back(
        {"activation relu", net({layer("Identity", "{}", "relu")}), {2}, {-1, 1}, {}, {0, 1}, {}});
    cases.push_back({"activation softmax (dim 1)",
                     net({layer("Identity", "{}", "softmax")}),
                     {3},
                     {1, 2, 3},
                     {},
                     {s1, e * s1, e * e * s1},
                     {}});
    cases.push_back({"activation log_softmax (dim 1)",
                     net({layer("Identity", "{}", "log_softmax")}),
                     {3},
                     {1, 2, 3},
                     {},
                     {std::log(s1), 1 + std::log(s1), 2 + std::log(s1)},
                     {}});
    cases.push_back({"activation leaky_relu",
                     net({layer("Identity", "{}", "leaky_relu")}),
                     {1},
                     {-2},
                     {},
                     {-0.02F},
                     {}});
    cases.push_back(
        {"activation elu", net({layer("Identity", "{}", "elu")}), {1}, {-1}, {}, {1 / e - 1}, {}});
    cases.push_back({"activation gelu",
                     net({layer("Identity", "{}", "gelu")}),
                     {1},
                     {1},
                     {},
                     {0.8413447F},
                     {}});
    cases.push_back({"activation tanh",
                     net({layer("Identity", "{}", "tanh")}),
                     {1},
                     {0.5F},
                     {},
                     {std::tanh(0.5F)},
                     {}});
    cases.push_back({"activation sigmoid",
                     net({layer("Identity", "{}", "sigmoid")}),
                     {1},
                     {0},
                     {},
                     {0.5F},
                     {}});
    return cases;
}

}  // namespace

TEST_CASE("Every layer type and activation computes what PyTorch's does", "[unit][torch]") {
    TorchFixture f;
    for (const LayerCase& c : layer_cases()) {
        INFO(c.label << ": " << c.architecture);
        auto model = f.build(c.architecture, "{}");
        auto state = model->state();
        REQUIRE(state.has_value());
        std::vector<std::string> names;
        for (const auto& t : state->tensors) {
            names.push_back(t.name);
        }
        CHECK(names == c.state_names);
        if (!c.state.tensors.empty()) {
            // Partial states are refused; fill the rest from the model's own state.
            TensorMap full = *state;
            for (auto& t : full.tensors) {
                if (const auto* given = c.state.find(t.name)) {
                    t = *given;
                }
            }
            REQUIRE(model->load_state(full).is_ok());
        }
        auto out = model->infer(rows_of(c.sample_shape, c.input), "{}");
        REQUIRE(out.has_value());
        CHECK(out->rows == 1);
        REQUIRE(out->width == static_cast<std::int64_t>(c.expected.size()));
        for (std::size_t i = 0; i < c.expected.size(); ++i) {
            CHECK(out->scores[i] == Approx(c.expected[i]).margin(1e-5));
        }
    }
}

TEST_CASE("Initial weights follow PyTorch's default init and the seed", "[unit][torch]") {
    TorchFixture f;
    const std::string arch = net({layer("Linear", R"({"in_features": 100, "out_features": 50})")});
    auto a = f.build(arch, R"({"seed": 7})")->state();
    auto b = f.build(arch, R"({"seed": 7})")->state();
    auto c = f.build(arch, R"({"seed": 8})")->state();
    REQUIRE(a.has_value());
    CHECK(max_abs_diff(*a, *b) == 0.0);
    CHECK(max_abs_diff(*a, *c) > 0.01);
    // U(-1/sqrt(fan_in), 1/sqrt(fan_in)): |w| <= 0.1, std = 0.1/sqrt(3).
    const auto w = floats(a->tensors[0]);
    double sum = 0;
    double sq = 0;
    for (float v : w) {
        CHECK(std::fabs(v) <= 0.1F);
        sum += v;
        sq += static_cast<double>(v) * v;
    }
    const double mean = sum / static_cast<double>(w.size());
    const double stddev = std::sqrt(sq / static_cast<double>(w.size()) - mean * mean);
    CHECK(stddev == Approx(0.1 / std::sqrt(3.0)).epsilon(0.08));
    CHECK(f.build(arch, "{}")->parameter_count() == 5050);
}

TEST_CASE("validate finds shape mismatches and names the layer", "[unit][torch]") {
    TorchFixture f;
    const std::string args = R"({"base_lr": 0.0005, "max_lr": 0.005, "criterion": "NLLLoss"})";
    const std::string femnist = R"([
      {"activation": "relu", "is_input": true, "l_type": "Conv2d",
       "structure": {"in_channels": 1, "out_channels": 4, "kernel_size": 3, "stride": 1,
           "padding": 1}},
      {"activation": null, "is_input": false, "l_type": "Flatten", "structure": {}},
      {"activation": "softmax", "is_input": false, "l_type": "Linear",
       "structure": {"bias": true, "in_features": 3136, "out_features": 3}}])";
    CHECK(f.backend.validate(femnist, args, {1, 28, 28}).is_ok());
    // No shape known (an image project: its alignment names no features). Before, every such
    // validate failed "input shape is empty", so the director refused image projects' jobs.
    CHECK(f.backend.validate(femnist, args, {}).is_ok());
    const auto huge = f.backend.validate(
        net({layer("Linear", R"({"in_features": 100000, "out_features": 100000})")}), args, {});
    CHECK(huge.code() == ErrorCode::InvalidArgument);  // the layers are still bounded
    CHECK_THAT(huge.message(), Catch::Contains("max_parameters"));

    struct Case {
        std::string architecture;
        std::vector<std::int64_t> input;
        std::vector<std::string> expected;
    };
    const std::vector<Case> cases{
        {femnist, {1, 14, 14}, {"layer 2 (Linear)", "in_features=3136", "[N, 784]"}},
        {femnist, {3, 28, 28}, {"layer 0 (Conv2d)", "1 (in_channels)", "[N, 3, 28, 28]"}},
        {femnist, {784}, {"layer 0 (Conv2d)", "[N, 784]"}},
        {net({layer("Conv2d", R"({"in_channels": 1, "out_channels": 1, "kernel_size": 5})"),
              layer("Flatten", "{}")}),
         {1, 3, 3},
         {"layer 0 (Conv2d)", "cannot take input of shape [N, 1, 3, 3]"}},
        {net({layer("Linear", R"({"in_features": 4, "out_features": 3})"),
              layer("BatchNorm1d", R"({"num_features": 4})")}),
         {4},
         {"layer 1 (BatchNorm1d)", "4 (num_features)", "[N, 3]"}},
        {net({layer("Conv2d", R"({"in_channels": 1, "out_channels": 2, "kernel_size": 3})")}),
         {1, 8, 8},
         {"output must be 2-D", "Flatten"}},
        // Folds the batch into the rows: before, accepted, and scores were read for wrong rows.
        {net({layer("Flatten", R"({"start_dim": 0, "end_dim": 1})"),
              layer("Linear", R"({"in_features": 4, "out_features": 1})")}),
         {3, 4},
         {"one row per sample", "[6, 1]"}},
    };
    for (const auto& c : cases) {
        INFO(c.architecture);
        auto status = f.backend.validate(c.architecture, args, c.input);
        REQUIRE_FALSE(status.is_ok());
        CHECK(status.code() == ErrorCode::InvalidArgument);
        for (const auto& text : c.expected) {
            CHECK_THAT(status.message(), Catch::Contains(text));
        }
    }
}

TEST_CASE("validate and build name unknown layers, activations, optimizers and losses",
          "[unit][torch]") {
    TorchFixture f;
    const std::string good =
        net({layer("Linear", R"({"in_features": 4, "out_features": 1})", "sigmoid")});
    const std::string args = R"({"base_lr": 0.1, "max_lr": 0.2})";
    struct Case {
        std::string architecture;
        std::string args;
        std::string expected;
    };
    const std::vector<Case> cases{
        {net({layer("Linear", R"({"in_features": 4, "out_features": 1})"),
              layer("Transformer", "{}")}),
         args, "layer 1: unknown l_type 'Transformer'"},
        {net({layer("Linear", R"({"in_features": 4, "out_features": 1})", "mish")}), args,
         "layer 0 (Linear): unknown activation 'mish'"},
        {good, merge_args(args, R"({"optimizer": "SparseAdam"})"),
         "unknown optimizer 'SparseAdam'"},
        {good, merge_args(args, R"({"criterion": "CTCLoss"})"), "unknown criterion 'CTCLoss'"},
        {good, "{}", "run field 'base_lr' is required"},
    };
    for (const auto& c : cases) {
        INFO(c.architecture << " " << c.args);
        auto status = f.backend.validate(c.architecture, c.args, {4});
        CHECK(status.code() == ErrorCode::InvalidArgument);
        CHECK_THAT(status.message(), Catch::Contains(c.expected));
    }
    // build refuses the same architecture errors (it needs no training fields).
    auto built = f.backend.build(cases[0].architecture, "{}");
    REQUIRE_FALSE(built.has_value());
    CHECK_THAT(built.error().message, Catch::Contains("unknown l_type 'Transformer'"));
    CHECK(f.backend.build(good, "{}").has_value());
}
