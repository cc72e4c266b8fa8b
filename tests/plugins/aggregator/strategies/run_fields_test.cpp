// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <string>

#include "aggregator_common/run_fields.hpp"

namespace {

using synergos::plugins::aggregator_common::Range;
using synergos::plugins::aggregator_common::RunFields;
using synergos::sdk::ErrorCode;

}  // namespace

TEST_CASE("RunFields reads a number, its default, and refuses bad values naming the field",
          "[unit][strategies]") {
    auto run = RunFields::parse(R"({"server_lr": 0.5, "tau": null, "beta_1": "0.9",
                                    "beta_2": 1.0, "flag": true, "neg": -1})",
                                "fedadam");
    REQUIRE(run.has_value());
    CHECK(*run->number("server_lr", 1.0, Range::positive()) == 0.5);
    CHECK(*run->number("tau", 1e-3, Range::positive()) == 1e-3);   // null: default
    CHECK(*run->number("absent", 2.5, Range::positive()) == 2.5);  // absent: default
    struct Bad {
        const char* field;
        Range range;
        const char* text;
    };
    for (const Bad& bad : {Bad{"beta_1", Range::closed_open(0, 1), "must be a number in [0, 1)"},
                           Bad{"beta_2", Range::closed_open(0, 1), "(got 1.0)"},
                           Bad{"flag", Range::positive(), "must be a number > 0 (got true)"},
                           Bad{"neg", Range::non_negative(), "must be a number >= 0 (got -1)"}}) {
        INFO(bad.field);
        auto v = run->number(bad.field, 0.0, bad.range);
        REQUIRE_FALSE(v.has_value());
        CHECK(v.error().code == ErrorCode::InvalidArgument);
        CHECK_THAT(v.error().message,
                   Catch::StartsWith("fedadam: field '" + std::string(bad.field) + "'"));
        CHECK_THAT(v.error().message, Catch::Contains(bad.text));
    }
}

TEST_CASE("RunFields reads integers, accepting integral floats only", "[unit][strategies]") {
    auto run = RunFields::parse(R"({"a": 3, "b": 2.0, "c": 2.5, "d": -1, "e": "1",
                                    "f": 18446744073709551615})",
                                "krum");
    REQUIRE(run.has_value());
    CHECK(*run->integer("a", 0, 0, 10) == 3);
    CHECK(*run->integer("b", 0, 0, 10) == 2);
    CHECK(*run->integer("absent", 7, 0, 10) == 7);
    CHECK_FALSE(run->optional_integer("absent", 0, 10)->has_value());
    for (const char* field : {"c", "d", "e", "f"}) {
        INFO(field);
        auto v = run->integer(field, 0, 0, 10);
        REQUIRE_FALSE(v.has_value());
        CHECK_THAT(v.error().message, Catch::Contains("field '" + std::string(field) +
                                                      "' must be an integer in [0, 10]"));
    }
}

TEST_CASE("RunFields refuses a run that is not a JSON object and reports required fields",
          "[unit][strategies]") {
    for (const char* text : {"[1]", "{oops", "3", ""}) {
        INFO(text);
        auto run = RunFields::parse(text, "dpfedavg");
        REQUIRE_FALSE(run.has_value());
        CHECK(run.error().code == ErrorCode::InvalidArgument);
        CHECK_THAT(run.error().message, Catch::StartsWith("dpfedavg: the run"));
    }
    auto run = RunFields::parse(R"({"dp_clip_norm": null})", "dpfedavg");
    REQUIRE(run.has_value());
    auto clip = run->required_number("dp_clip_norm", Range::positive());
    REQUIRE_FALSE(clip.has_value());
    CHECK(clip.error().message == "dpfedavg: field 'dp_clip_norm' is required (a number > 0)");
}
