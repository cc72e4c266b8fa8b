// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <string>

#include "labels.hpp"
#include "spec_error.hpp"
#include "torch_test_support.hpp"
#include "train_args.hpp"

namespace {

using namespace synergos::plugins::torch;
using synergos::test::classify_data;
using synergos::test::regression_data;

TrainArgs with_criterion(const char* name) {
    return parse_train_args(std::string(R"({"criterion": ")") + name + "\"}");
}

std::string targets_error(const synergos::sdk::Dataset& d, bool classify, const char* criterion,
                          std::int64_t width) {
    try {
        make_targets(d, classify, with_criterion(criterion), width);
    } catch (const SpecError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("Binary labels become one float column of the positive class", "[unit][torch]") {
    const auto d = classify_data({1}, {0, 0, 0, 0}, {1, 0, 1, 1}, 2);
    CHECK(is_classification(parse_train_args("{}"), d));
    const auto t = make_targets(d, true, with_criterion("BCELoss"), 1);
    CHECK(t.kind == Targets::Kind::Float);
    CHECK(t.width == 1);
    CHECK(t.values == std::vector<float>{1, 0, 1, 1});
}

TEST_CASE("Multiclass labels become class indices for NLLLoss and CrossEntropyLoss",
          "[unit][torch]") {
    const auto d = classify_data({1}, {0, 0, 0}, {2, 0, 4}, 5);
    for (const char* criterion : {"NLLLoss", "CrossEntropyLoss"}) {
        const auto t = make_targets(d, true, with_criterion(criterion), 5);
        CHECK(t.kind == Targets::Kind::ClassIndex);
        CHECK(t.classes == std::vector<std::int64_t>{2, 0, 4});
    }
}

TEST_CASE("Multiclass labels become one-hot floats for other criteria", "[unit][torch]") {
    const auto d = classify_data({1}, {0, 0}, {2, 1}, 3);
    const auto t = make_targets(d, true, with_criterion("MSELoss"), 3);
    CHECK(t.kind == Targets::Kind::Float);
    CHECK(t.width == 3);
    CHECK(t.values == std::vector<float>{0, 0, 1, 0, 1, 0});
    // Two classes and a two-column output: one-hot too (the original's rule).
    const auto b = classify_data({1}, {0, 0}, {1, 0}, 2);
    CHECK(make_targets(b, true, with_criterion("BCELoss"), 2).values ==
          std::vector<float>{0, 1, 1, 0});
}

TEST_CASE("Regression labels pass through and need a matching output", "[unit][torch]") {
    const auto d = regression_data({2}, {0, 0, 0, 0}, {3.5F, -1.0F});
    CHECK_FALSE(is_classification(parse_train_args("{}"), d));
    CHECK(is_classification(parse_train_args(R"({"action": "classify"})"), d));
    const auto t = make_targets(d, false, with_criterion("MSELoss"), 1);
    CHECK(t.values == std::vector<float>{3.5F, -1.0F});
    CHECK_THAT(targets_error(d, false, "MSELoss", 2), Catch::Contains("outputs 2 columns"));
    CHECK_THAT(targets_error(d, false, "NLLLoss", 2), Catch::Contains("needs class labels"));
}

TEST_CASE("Label and output mismatches are clear errors", "[unit][torch]") {
    const auto five = classify_data({1}, {0, 0}, {4, 1}, 5);
    CHECK_THAT(targets_error(five, true, "BCELoss", 1),
               Catch::Contains("outputs 1 column but the labels have 5 classes"));
    CHECK_THAT(targets_error(five, true, "NLLLoss", 1),
               Catch::Contains("criterion NLLLoss needs one output column per class"));
    CHECK_THAT(targets_error(five, true, "MSELoss", 3), Catch::Contains("labels have 5 classes"));
    auto broken = five;
    broken.labels.pop_back();
    CHECK_THAT(targets_error(broken, true, "NLLLoss", 5), Catch::Contains("labels hold 9 values"));
}
