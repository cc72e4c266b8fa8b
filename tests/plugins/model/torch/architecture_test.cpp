// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <string>

#include "architecture.hpp"
#include "spec_error.hpp"

namespace {

using namespace synergos::plugins::torch;

std::string parse_error(const std::string& json) {
    try {
        parse_architecture(json);
    } catch (const SpecError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("The architecture parser names layers like the original", "[unit][torch]") {
    const auto layers = parse_architecture(R"([
      {"activation": "relu", "is_input": true, "l_type": "Conv2d",
       "structure": {"in_channels": 1, "out_channels": 4, "kernel_size": 3, "stride": 1,
           "padding": 1}},
      {"activation": null, "is_input": false, "l_type": "Flatten", "structure": {}},
      {"activation": "softmax", "is_input": false, "l_type": "Linear",
       "structure": {"bias": true, "in_features": 3136, "out_features": 3}}
    ])");
    REQUIRE(layers.size() == 3);
    CHECK(layers[0].name == "nnl_0_conv2d");
    CHECK(layers[1].name == "nnl_1_flatten");
    CHECK(layers[2].name == "nnl_2_linear");
    CHECK(layers[0].type == LayerType::Conv2d);
    CHECK(layers[0].kernel_size == std::vector<std::int64_t>{3, 3});
    CHECK(layers[0].padding == std::vector<std::int64_t>{1, 1});
    CHECK(layers[0].activation == Activation::Relu);
    CHECK(layers[1].activation == Activation::Identity);
    CHECK(layers[2].activation == Activation::Softmax);
    CHECK(layers[2].in == 3136);
    CHECK(layers[2].out == 3);
}

TEST_CASE("The architecture parser reads every layer type's structure", "[unit][torch]") {
    const auto layers = parse_architecture(R"([
      {"l_type": "Conv1d", "structure": {"in_channels": 2, "out_channels": 4, "kernel_size": [3],
          "padding": "same", "padding_mode": "circular"}, "activation": ""},
      {"l_type": "MaxPool1d", "structure": {"kernel_size": 2}, "activation": ""},
      {"l_type": "AvgPool2d", "structure": {"kernel_size": [2, 3], "stride": [1, 2],
          "count_include_pad": false, "divisor_override": 4}, "activation": ""},
      {"l_type": "BatchNorm1d", "structure": {"num_features": 5, "momentum": null,
          "affine": false}, "activation": ""},
      {"l_type": "Dropout", "structure": {"p": 0.25, "inplace": false}, "activation": ""},
      {"l_type": "Softmax", "structure": {"dim": -1}, "activation": ""},
      {"l_type": "LeakyReLU", "structure": {"negative_slope": 0.2}, "activation": ""},
      {"l_type": "GELU", "structure": {"approximate": "tanh"}, "activation": ""},
      {"l_type": "Flatten", "structure": {"start_dim": 2}, "activation": ""}
    ])");
    CHECK(layers[0].padding_text == "same");
    CHECK(layers[0].padding_mode == "circular");
    CHECK(layers[1].stride == std::vector<std::int64_t>{2});  // None -> kernel_size
    CHECK(layers[2].kernel_size == std::vector<std::int64_t>{2, 3});
    CHECK(layers[2].stride == std::vector<std::int64_t>{1, 2});
    CHECK_FALSE(layers[2].count_include_pad);
    CHECK(layers[2].divisor_override == 4);
    CHECK_FALSE(layers[3].momentum.has_value());
    CHECK_FALSE(layers[3].affine);
    CHECK_FALSE(layers[3].has_parameters());
    CHECK(layers[4].p == 0.25);
    CHECK(layers[5].dim == -1);
    CHECK(layers[6].negative_slope == 0.2);
    CHECK(layers[7].approximate == "tanh");
    CHECK(layers[8].start_dim == 2);
}

TEST_CASE("An unknown layer type is an error naming the layer and the type", "[unit][torch]") {
    const auto message = parse_error(R"([
      {"l_type": "Linear", "structure": {"in_features": 2, "out_features": 2}, "activation": ""},
      {"l_type": "Conv3d", "structure": {}, "activation": ""}])");
    CHECK_THAT(message, Catch::Contains("layer 1"));
    CHECK_THAT(message, Catch::Contains("unknown l_type 'Conv3d'"));
    CHECK_THAT(message, Catch::Contains("Linear, Conv1d"));
}

TEST_CASE("An unknown activation is an error naming the layer and the activation",
          "[unit][torch]") {
    const auto message = parse_error(
        R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 2},
            "activation": "swish"}])");
    CHECK_THAT(message, Catch::Contains("layer 0 (Linear)"));
    CHECK_THAT(message, Catch::Contains("unknown activation 'swish'"));
}

TEST_CASE("Bad structures are errors naming the layer and the field", "[unit][torch]") {
    struct Case {
        const char* json;
        const char* expected;
    };
    const auto c = GENERATE(
        Case{R"([{"l_type": "Linear", "structure": {"in_features": 2}, "activation": ""}])",
             "structure.out_features is required"},
        Case{
            R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 0},
                "activation": ""}])",
            "structure.out_features must be a positive integer"},
        Case{
            R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 3,
                "bias": "yes"}, "activation": ""}])",
            "structure.bias must be true or false"},
        Case{
            R"([{"l_type": "Linear", "structure": {"in_features": 2.5, "out_features": 3},
                "activation": ""}])",
            "structure.in_features must be an integer"},
        Case{
            R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 3,
                "in_channels": 4}, "activation": ""}])",
            "unknown structure field 'in_channels'"},
        Case{
            R"([{"l_type": "Conv2d", "structure": {"in_channels": 1, "out_channels": 2,
                "kernel_size": [3, 3, 3]}, "activation": ""}])",
            "structure.kernel_size must be an integer or a list of 2 integers"},
        Case{
            R"([{"l_type": "Conv2d", "structure": {"in_channels": 3, "out_channels": 2,
                "kernel_size": 3, "groups": 2}, "activation": ""}])",
            "groups must divide"},
        Case{
            R"([{"l_type": "MaxPool2d", "structure": {"kernel_size": 2, "return_indices": true},
                "activation": ""}])",
            "return_indices is not supported"},
        Case{R"([{"l_type": "Dropout", "structure": {"p": 1.5}, "activation": ""}])",
             "structure.p must be between 0 and 1"},
        Case{R"([{"l_type": "BatchNorm2d", "structure": {}, "activation": ""}])",
             "structure.num_features is required"},
        Case{
            R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 3},
                "activation": 3}])",
            "activation must be a string or null"},
        Case{
            R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 3},
                "activation": "", "bias": true}])",
            "unknown field 'bias'"},
        Case{R"([{"structure": {}}])", "l_type is required"}, Case{R"([])", "non-empty JSON array"},
        Case{R"({"l_type": "Linear"})", "non-empty JSON array"},
        Case{R"([{"l_type": "Linear",)", "not valid JSON"});
    INFO(c.json);
    CHECK_THAT(parse_error(c.json), Catch::Contains(c.expected));
}
