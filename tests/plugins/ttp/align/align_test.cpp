// SPDX-License-Identifier: Apache-2.0
// The align function's own rules: label order, model auto-fix and its option's range.

#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/sdk/testing/fake_host.hpp>

#include "align_function.hpp"

namespace {
namespace sdk = synergos::sdk;
using synergos::plugins::align::AlignFunction;
using synergos::plugins::align::auto_fix_model;
using synergos::plugins::align::sort_labels;
using nlohmann::json;
}  // namespace

TEST_CASE("Labels sort by their number and otherwise as strings", "[unit][ttp]") {
    CHECK(sort_labels({"target_10", "target_2", "target_1.5"}) ==
          std::vector<std::string>{"target_1.5", "target_2", "target_10"});
    CHECK(sort_labels({"target_b", "target_a"}) == std::vector<std::string>{"target_a", "target_b"});
    // "target_nan" is a name, not a number: NaN would break the ordering the sort needs (before,
    // undefined behaviour with many labels). With it, the labels sort as strings.
    std::vector<std::string> many;
    for (int i = 20; i >= 0; --i) {
        many.push_back("target_" + std::to_string(i));
    }
    many.push_back("target_nan");
    many.push_back("target_inf");
    auto sorted = sort_labels(many);
    REQUIRE(sorted.size() == many.size());
    CHECK(std::is_sorted(sorted.begin(), sorted.end()));
}

TEST_CASE("Auto-fix sets the first layer's inputs and the last Linear's outputs", "[unit][ttp]") {
    const json model = json::parse(R"([
        {"is_input": true, "l_type": "Linear", "structure": {"in_features": 4, "out_features": 8}, "activation": "relu"},
        {"is_input": false, "l_type": "Linear", "structure": {"in_features": 8, "out_features": 1}, "activation": "sigmoid"}])");
    const json fixed = auto_fix_model(model, 13, 5);
    CHECK(fixed[0]["structure"]["in_features"] == 13);
    CHECK(fixed[1]["structure"]["out_features"] == 5);
}

TEST_CASE("The align poll timeout outside 1 s to 7 days is refused naming the option", "[unit][ttp]") {
    sdk::testing::FakeHost host;
    const auto make = [&](const char* v) {
        return AlignFunction(host, sdk::Options(std::map<std::string, std::string>{{"poll_timeout_ms", v}}));
    };
    CHECK_THROWS_WITH(make("0"), Catch::Contains("ttp 'align': option 'poll_timeout_ms' must be"));
    CHECK_THROWS_WITH(make("9223372036854775807"), Catch::Contains("poll_timeout_ms"));
    CHECK_NOTHROW(make("600000"));
}
