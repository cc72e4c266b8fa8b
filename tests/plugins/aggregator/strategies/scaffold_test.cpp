// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "scaffold.hpp"
#include "strategy_helpers.hpp"

namespace {

using synergos::plugins::scaffold::Scaffold;
using synergos::sdk::DType;
using synergos::sdk::ErrorCode;
using synergos::sdk::TensorMap;
using synergos::sdk::testing::FakeHost;
using namespace synergos::test;

TensorMap weights(const std::vector<float>& w, float b, std::int64_t n) {
    TensorMap m;
    m.tensors.push_back(f32_tensor("w", {3}, w));
    m.tensors.push_back(f32_tensor("b", {1}, {b}));
    m.tensors.push_back(i64_tensor("n", {}, {n}));
    return m;
}

/// A worker reply: trained weights plus Delta c_i for every floating tensor.
TensorMap reply(const std::vector<float>& w, float b, std::int64_t n, const std::vector<float>& dw,
                float db) {
    TensorMap m = weights(w, b, n);
    m.tensors.push_back(f32_tensor("scaffold.delta_c.w", {3}, dw));
    m.tensors.push_back(f32_tensor("scaffold.delta_c.b", {1}, {db}));
    return m;
}

const TensorMap kGlobal = weights({1, 2, 3}, 0.5F, 4);

std::vector<ClientUpdate> round0() {
    return {{"alice", 1, reply({2, 2, 2}, 1.0F, 6, {0.1F, -0.2F, 0.3F}, 0.05F)},
            {"bob", 3, reply({0, 4, 3}, 0.0F, 8, {-0.3F, 0.2F, 0.1F}, 0.15F)}};
}

std::unique_ptr<synergos::sdk::AggregationSession> open(Scaffold& scaffold, const char* run) {
    auto session = scaffold.open(run);
    REQUIRE(session.has_value());
    return std::move(*session);
}

}  // namespace

TEST_CASE("SCAFFOLD's server step matches Karimireddy et al. 2020, Algorithm 1",
          "[unit][strategies]") {
    FakeHost host;
    Scaffold scaffold(host, {});
    const char* run = R"({"server_lr": 0.5})";
    REQUIRE(scaffold.validate(run).is_ok());
    CHECK(nlohmann::json::parse(scaffold.worker_arguments(run)) ==
          nlohmann::json{{"mu", 0.0}, {"scaffold", true}});
    auto session = open(scaffold, run);

    // Round 0 (no c in the global: c = 0).
    // mean y = (1 * alice + 3 * bob) / 4: w {0.5, 3.5, 2.75}, b 0.25, n 7.5 -> 8.
    // x <- x + 0.5 (mean - x): w {0.75, 2.75, 2.875}, b 0.375.
    // c <- c + (1 / N) sum Delta c, N = 2: w {-0.1, 0, 0.2}, b 0.1.
    const TensorMap x1 = run_round(*session, kGlobal, 0, round0());
    std::vector<std::string> names;
    for (const auto& t : x1.tensors) {
        names.push_back(t.name);
    }
    CHECK(names == std::vector<std::string>{"w", "b", "n", "scaffold.c.w", "scaffold.c.b"});
    require_close(values_of(x1, "w"), {0.75, 2.75, 2.875}, 1e-6);
    require_close(values_of(x1, "b"), {0.375}, 1e-6);
    CHECK(values_of(x1, "n") == std::vector<double>{8});
    require_close(values_of(x1, "scaffold.c.w"), {-0.1, 0.0, 0.2}, 1e-6);
    require_close(values_of(x1, "scaffold.c.b"), {0.1}, 1e-6);
    CHECK(x1.find("scaffold.c.w")->dtype == DType::F32);  // the model's dtype, for the worker

    // Round 1: the global carries c; only bob answers. N stays 2 (the most seen), so
    // c <- c + Delta c_bob / 2, and x moves halfway to bob's weights.
    const std::vector<ClientUpdate> round1{
        {"bob", 3, reply({1, 1, 1}, 1.0F, 9, {0.2F, 0.2F, 0.2F}, 0.0F)}};
    const TensorMap x2 = run_round(*session, x1, 1, round1);
    require_close(values_of(x2, "w"),
                  {0.75 + 0.5 * (1 - 0.75), 2.75 + 0.5 * (1 - 2.75), 2.875 + 0.5 * (1 - 2.875)},
                  1e-6);
    require_close(values_of(x2, "scaffold.c.w"), {0.0, 0.1, 0.3}, 1e-6);
    require_close(values_of(x2, "scaffold.c.b"), {0.1}, 1e-6);
}

TEST_CASE("SCAFFOLD's control variate survives a resumed job", "[unit][strategies]") {
    FakeHost host;
    Scaffold scaffold(host, {});
    auto continuous = open(scaffold, "{}");
    const TensorMap x1 = run_round(*continuous, kGlobal, 0, round0());
    auto saved = continuous->save_state();
    REQUIRE(saved.has_value());
    require_close(values_of(*saved, "scaffold.c.w"), {-0.1, 0.0, 0.2}, 1e-7);
    CHECK(saved->find("scaffold.c.w")->dtype == DType::F64);
    CHECK(scalar_of(*saved, "scaffold.clients") == 2);
    CHECK(scalar_of(*saved, "scaffold.rounds") == 1);
    const std::vector<ClientUpdate> round1{
        {"alice", 2, reply({1, 0, 1}, 0.5F, 9, {0.4F, 0.0F, -0.2F}, 0.1F)}};
    const TensorMap x2 = run_round(*continuous, x1, 1, round1);

    auto resumed = open(scaffold, "{}");
    REQUIRE(resumed->load_state(*saved).is_ok());
    const TensorMap y2 = run_round(*resumed, x1, 1, round1);
    REQUIRE(y2.tensors.size() == x2.tensors.size());
    for (std::size_t t = 0; t < x2.tensors.size(); ++t) {
        CHECK(y2.tensors[t].name == x2.tensors[t].name);
        CHECK(y2.tensors[t].data == x2.tensors[t].data);
    }
    // A session that lost the state computes another c: N = 1 and c starts from 0.
    auto fresh = open(scaffold, "{}");
    const TensorMap z2 = run_round(*fresh, x1, 1, round1);
    CHECK(z2.find("scaffold.c.w")->data != x2.find("scaffold.c.w")->data);
}

TEST_CASE("SCAFFOLD refuses an update without a well-formed Delta c and folds nothing of it",
          "[unit][strategies]") {
    FakeHost host;
    Scaffold scaffold(host, {});
    auto session = open(scaffold, "{}");
    REQUIRE(session->begin_round(kGlobal, 5).is_ok());
    REQUIRE(session->accumulate("alice", 1, round0()[0].weights).is_ok());

    TensorMap bad = round0()[1].weights;
    std::string expected;
    SECTION("no Delta c at all (a worker without the client side)") {
        bad = weights({0, 4, 3}, 0.0F, 8);
        expected = "lacks tensor 'scaffold.delta_c.w'";
    }
    SECTION("Delta c missing for one tensor") {
        bad.tensors.pop_back();
        expected = "lacks tensor 'scaffold.delta_c.b'";
    }
    SECTION("Delta c with the wrong shape") {
        bad.tensors[3] = f32_tensor("scaffold.delta_c.w", {2}, {0, 0});
        expected = "scaffold.delta_c.w";
    }
    SECTION("Delta c for an integer tensor") {
        bad.tensors.push_back(f32_tensor("scaffold.delta_c.n", {}, {1}));
        expected = "no floating tensor 'n'";
    }
    SECTION("an unknown scaffold tensor") {
        bad.tensors.push_back(f32_tensor("scaffold.momentum.w", {3}, {0, 0, 0}));
        expected = "scaffold.momentum.w";
    }
    SECTION("a non-finite Delta c") {
        bad.tensors[4] = f32_tensor("scaffold.delta_c.b", {1}, {NAN});
        expected = "non-finite";
    }
    auto status = session->accumulate("bob", 3, bad);
    INFO(status.message());
    CHECK(status.code() == ErrorCode::InvalidArgument);
    CHECK_THAT(status.message(), Catch::Contains(expected));
    CHECK_THAT(status.message(), Catch::Contains("participant 'bob', round 5"));

    // Only alice was folded: x = alice's weights, c = Delta c_alice / 1.
    auto next = session->finish_round();
    REQUIRE(next.has_value());
    require_close(values_of(*next, "w"), {2, 2, 2}, 1e-6);
    require_close(values_of(*next, "scaffold.c.w"), {0.1, -0.2, 0.3}, 1e-6);
}

TEST_CASE("SCAFFOLD ignores an echoed server control and refuses a bad saved state",
          "[unit][strategies]") {
    FakeHost host;
    Scaffold scaffold(host, {});
    auto session = open(scaffold, "{}");
    auto updates = round0();
    updates[0].weights.tensors.push_back(f32_tensor("scaffold.c.w", {3}, {9, 9, 9}));
    const TensorMap x1 = run_round(*session, kGlobal, 0, updates);
    require_close(values_of(x1, "scaffold.c.w"), {-0.1, 0.0, 0.2}, 1e-6);

    auto other = open(scaffold, "{}");
    TensorMap state;
    state.tensors.push_back(f32_tensor("scaffold.c.w", {3}, {0, 0, 0}));
    CHECK_THAT(other->load_state(state).message(), Catch::Contains("incomplete"));
    state.tensors.push_back(i64_tensor("scaffold.clients", {}, {2}));
    state.tensors.push_back(i64_tensor("scaffold.rounds", {}, {1}));
    state.tensors.push_back(f32_tensor("fedadam.m.w", {3}, {0, 0, 0}));
    CHECK_THAT(other->load_state(state).message(), Catch::Contains("fedadam.m.w"));
    state.tensors.pop_back();
    REQUIRE(other->load_state(state).is_ok());
    // c lacks 'b', which the model has: refused when the round begins.
    auto begun = other->begin_round(kGlobal, 1);
    CHECK(begun.code() == ErrorCode::FailedPrecondition);
    CHECK_THAT(begun.message(), Catch::Contains("'b'"));
    CHECK(scaffold.validate(R"({"server_lr": 0})").code() == ErrorCode::InvalidArgument);
}

TEST_CASE("SCAFFOLD fails the round when the server control leaves the model's float range",
          "[unit][strategies]") {
    FakeHost host;
    Scaffold scaffold(host, {});
    auto session = open(scaffold, "{}");
    const float big = std::numeric_limits<float>::max();
    // One worker sending Delta c = FLT_MAX every round: c reaches FLT_MAX, then 2 * FLT_MAX.
    const std::vector<ClientUpdate> pushy{{"alice", 1, reply({1, 2, 3}, 0.5F, 4, {big, 0, 0}, 0)}};
    const TensorMap x1 = run_round(*session, kGlobal, 0, pushy);
    CHECK(values_of(x1, "scaffold.c.w")[0] == static_cast<double>(big));

    REQUIRE(session->begin_round(x1, 1).is_ok());
    REQUIRE(session->accumulate("alice", 1, pushy[0].weights).is_ok());
    auto next = session->finish_round();
    REQUIRE_FALSE(next.has_value());
    CHECK(next.error().code == ErrorCode::FailedPrecondition);
    CHECK_THAT(next.error().message, Catch::Contains("round 1"));
    CHECK_THAT(next.error().message, Catch::Contains("server control for tensor 'w'"));
    // The failed round left c as it was.
    auto saved = session->save_state();
    REQUIRE(saved.has_value());
    CHECK(values_of(*saved, "scaffold.c.w")[0] == static_cast<double>(big));
}

TEST_CASE("SCAFFOLD keeps a BatchNorm running variance at 0 when a large server step overshoots it",
          "[unit][strategies]") {
    FakeHost host;
    Scaffold scaffold(host, {});
    auto session = open(scaffold, R"({"server_lr": 2})");
    TensorMap global;
    global.tensors.push_back(f32_tensor("bn.running_var", {2}, {1.0F, 1.0F}));
    global.tensors.push_back(f32_tensor("bn.running_mean", {2}, {1.0F, 1.0F}));
    TensorMap update;
    update.tensors.push_back(f32_tensor("bn.running_var", {2}, {0.1F, 0.9F}));
    update.tensors.push_back(f32_tensor("bn.running_mean", {2}, {0.1F, 0.9F}));
    update.tensors.push_back(f32_tensor("scaffold.delta_c.bn.running_var", {2}, {0, 0}));
    update.tensors.push_back(f32_tensor("scaffold.delta_c.bn.running_mean", {2}, {0, 0}));
    const TensorMap x1 = run_round(*session, global, 0, {{"alice", 1, update}});
    // 1 + 2 * (0.1 - 1) = -0.8: clamped to 0 for the variance only. Before, -0.8 went out.
    const auto var = values_of(x1, "bn.running_var");
    const auto mean = values_of(x1, "bn.running_mean");
    CHECK(var[0] == 0.0);
    CHECK(var[1] == Approx(0.8));
    CHECK(mean[0] == Approx(-0.8));
    CHECK(mean[1] == Approx(0.8));
}
