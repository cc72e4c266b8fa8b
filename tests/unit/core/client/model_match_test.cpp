// SPDX-License-Identifier: Apache-2.0
// `synergos submit` keeps a stored experiment whose model is the job file's as alignment's
// auto_fix fitted it, and rewrites it for any other change.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "model_match.hpp"

using nlohmann::json;
using synergos::core::client::same_model;

namespace {

json linear(int in, int out, const char* activation, bool input = false) {
    return {{"is_input", input},
            {"l_type", "Linear"},
            {"structure", {{"in_features", in}, {"out_features", out}}},
            {"activation", activation == nullptr ? json() : json(activation)}};
}

}  // namespace

TEST_CASE("A stored model counts as the job file's when only auto_fix changed it", "[unit][client]") {
    // heart_disease: 13 raw inputs become 28 one-hot features, 1 output becomes 5 softmax ones.
    const json file = json::array({linear(13, 16, "relu", true), linear(16, 1, "sigmoid")});
    const json fitted = json::array({linear(28, 16, "relu", true), linear(16, 5, "softmax")});
    CHECK(same_model(fitted, file, true));
    CHECK_FALSE(same_model(fitted, file, false));  // auto_fix off: nothing was fitted
    // A binary head keeps its activation under auto_fix: a change there is the user's.
    const json binary = json::array({linear(28, 16, "relu", true), linear(16, 1, "sigmoid")});
    json edited = binary;
    edited[1]["activation"] = nullptr;
    CHECK_FALSE(same_model(binary, edited, true));
    // A hidden layer's change is never auto_fix's.
    edited = file;
    edited[0]["structure"]["out_features"] = 32;
    CHECK_FALSE(same_model(fitted, edited, true));
}

TEST_CASE("auto_fix fits in_features only when the first layer is Linear", "[unit][client]") {
    const json conv = {{"is_input", true},
                       {"l_type", "Conv2d"},
                       {"structure", {{"in_channels", 1}, {"out_channels", 4}, {"kernel_size", 3}}},
                       {"activation", "relu"}};
    const json flatten = {{"is_input", false}, {"l_type", "Flatten"}, {"structure", json::object()},
                          {"activation", nullptr}};
    const json stored = json::array({conv, flatten, linear(100, 10, "softmax")});
    json file = stored;
    file[2]["structure"]["in_features"] = 2704;  // the user's correction, not alignment's
    CHECK_FALSE(same_model(stored, file, true));
    file = stored;
    file[2]["structure"]["out_features"] = 62;  // the output layer: alignment sets it
    CHECK(same_model(stored, file, true));
}
