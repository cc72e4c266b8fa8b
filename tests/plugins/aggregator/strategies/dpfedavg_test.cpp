// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "dpfedavg.hpp"
#include "strategy_helpers.hpp"

namespace {

using synergos::plugins::dpfedavg::DpFedAvg;
using synergos::sdk::ErrorCode;
using synergos::sdk::TensorMap;
using synergos::sdk::testing::FakeHost;
using namespace synergos::test;

/// A model with two float tensors (clipping is over both jointly) and an integer counter.
TensorMap model(const std::vector<float>& w, const std::vector<float>& b, std::int64_t n) {
    TensorMap m;
    m.tensors.push_back(f32_tensor("w", {static_cast<std::int64_t>(w.size())}, w));
    m.tensors.push_back(f32_tensor("b", {static_cast<std::int64_t>(b.size())}, b));
    m.tensors.push_back(i64_tensor("n", {}, {n}));
    return m;
}

/// global + scale * direction, over both float tensors.
TensorMap shifted(const TensorMap& global, const std::vector<float>& direction, double scale,
                  std::int64_t n = 99) {
    auto w = values_of(global, "w");
    auto b = values_of(global, "b");
    std::vector<float> nw(w.size());
    std::vector<float> nb(b.size());
    for (std::size_t i = 0; i < w.size(); ++i) {
        nw[i] = static_cast<float>(w[i] + scale * direction[i]);
    }
    for (std::size_t i = 0; i < b.size(); ++i) {
        nb[i] = static_cast<float>(b[i] + scale * direction[w.size() + i]);
    }
    return model(nw, nb, n);
}

/// The float values of a map, flattened (w then b).
std::vector<double> flat(const TensorMap& m) {
    auto v = values_of(m, "w");
    const auto b = values_of(m, "b");
    v.insert(v.end(), b.begin(), b.end());
    return v;
}

double norm(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) {
        s += x * x;
    }
    return std::sqrt(s);
}

std::vector<double> minus(const std::vector<double>& a, const std::vector<double>& b) {
    std::vector<double> d(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        d[i] = a[i] - b[i];
    }
    return d;
}

std::string run_json(double clip, double z, const std::string& extra = "") {
    std::string fields = nlohmann::json{{"dp_clip_norm", clip}, {"dp_noise_multiplier", z}}.dump();
    fields.pop_back();  // the closing brace: `extra` continues the object
    return fields + extra + "}";
}

std::unique_ptr<synergos::sdk::AggregationSession> open(DpFedAvg& dp, const std::string& run) {
    REQUIRE(dp.validate(run).is_ok());
    auto session = dp.open(run);
    REQUIRE(session.has_value());
    return std::move(*session);
}

}  // namespace

TEST_CASE("DP-FedAvg clips every update to dp_clip_norm over all float tensors jointly",
          "[unit][strategies][acceptance]") {
    FakeHost host;
    DpFedAvg dp(host, {});
    const double clip = 0.5;
    const TensorMap global = model(pseudo_random(40, 1), pseudo_random(10, 2), 7);
    const auto raw = pseudo_random(50, 3);
    std::vector<float> unit(raw.size());
    {
        std::vector<double> d(raw.begin(), raw.end());
        const double n = norm(d);
        for (std::size_t i = 0; i < raw.size(); ++i) {
            unit[i] = static_cast<float>(raw[i] / n);
        }
    }

    SECTION("one client at a time: the step never exceeds the clip norm") {
        // Noise 1e-9 * clip: negligible, so the step is the clipped update itself.
        for (double factor : {0.01, 0.3, 0.99, 1.01, 2.0, 10.0, 1e3, 1e5}) {
            INFO("update norm = " << factor << " * clip");
            auto session = open(dp, run_json(clip, 1e-9, R"(, "dp_seed": 1)"));
            const TensorMap update = shifted(global, unit, factor * clip);
            const TensorMap next = run_round(*session, global, 0, {{"a", 10, update}});
            const auto step = minus(flat(next), flat(global));
            CHECK(norm(step) <= clip * (1 + 1e-5));
            if (factor <= 1.0) {
                require_close(flat(next), flat(update), 1e-6);
            } else {
                CHECK(norm(step) == Approx(clip).epsilon(1e-4));
            }
            CHECK(values_of(next, "n") == std::vector<double>{7});  // integers keep the global's
        }
    }
    SECTION("five clients: the result is the unweighted mean of the clipped updates") {
        std::vector<ClientUpdate> updates;
        std::vector<double> expected(50, 0.0);
        const std::vector<double> factors{0.5, 2.0, 10.0, 100.0, 1000.0};
        for (std::size_t k = 0; k < factors.size(); ++k) {
            // Different directions per client.
            auto dir = pseudo_random(50, 10 + static_cast<std::uint32_t>(k));
            std::vector<double> d(dir.begin(), dir.end());
            const double n = norm(d);
            for (float& v : dir) {
                v = static_cast<float>(v / n);
            }
            TensorMap u = shifted(global, dir, factors[k] * clip);
            const auto delta = minus(flat(u), flat(global));
            const double scale = std::min(1.0, clip / norm(delta));  // independent clipping
            INFO("client " << k << " clipped norm " << norm(delta) * scale);
            REQUIRE(norm(delta) * scale <= clip * (1 + 1e-12));
            for (std::size_t i = 0; i < 50; ++i) {
                expected[i] += delta[i] * scale / 5.0;
            }
            updates.push_back({"p" + std::to_string(k), static_cast<std::int64_t>(1 + 100 * k), u});
        }
        auto session = open(dp, run_json(clip, 1e-9, R"(, "dp_seed": 1)"));
        const TensorMap next = run_round(*session, global, 0, updates);
        require_close(minus(flat(next), flat(global)), expected, 1e-6);
    }
}

TEST_CASE("DP-FedAvg's noise has the spread dp_noise_multiplier * dp_clip_norm / n",
          "[unit][strategies][acceptance]") {
    FakeHost host;
    DpFedAvg dp(host, {});
    const std::size_t size = 40000;
    const TensorMap global = model(pseudo_random(size - 8, 5), pseudo_random(8, 6), 0);
    // Identical updates with norm below the clip: the aggregate minus (global + update) is
    // exactly the noise.
    const auto raw = pseudo_random(size, 7);
    std::vector<double> d(raw.begin(), raw.end());
    const double n = norm(d);
    std::vector<float> unit(size);
    for (std::size_t i = 0; i < size; ++i) {
        unit[i] = static_cast<float>(raw[i] / n);
    }
    struct Case {
        double clip, z;
        std::size_t clients;
    };
    for (const Case& c : {Case{0.8, 1.3, 4}, Case{0.8, 1.3, 1}, Case{2.0, 0.5, 5}}) {
        const double sigma = c.z * c.clip / static_cast<double>(c.clients);
        INFO("clip " << c.clip << " z " << c.z << " clients " << c.clients << " sigma " << sigma);
        auto session = open(dp, run_json(c.clip, c.z));
        const TensorMap update = shifted(global, unit, 0.5 * c.clip);
        std::vector<ClientUpdate> updates;
        for (std::size_t k = 0; k < c.clients; ++k) {
            updates.push_back({"p" + std::to_string(k), 10, update});
        }
        const TensorMap next = run_round(*session, global, 0, updates);
        const auto noise = minus(flat(next), flat(update));
        double mean = 0;
        for (double v : noise) {
            mean += v;
        }
        mean /= static_cast<double>(size);
        double var = 0;
        std::size_t within = 0;
        for (double v : noise) {
            var += (v - mean) * (v - mean);
            within += std::fabs(v) < sigma ? 1 : 0;
        }
        const double sd = std::sqrt(var / static_cast<double>(size - 1));
        // Standard error of the sample sd is sigma / sqrt(2 * 40000) = 0.35%: 2% is > 5 s.e.
        CHECK(sd == Approx(sigma).epsilon(0.02));
        CHECK(std::fabs(mean) < 5 * sigma / std::sqrt(static_cast<double>(size)));
        // A Gaussian puts 68.27% within one sigma (s.e. 0.23%).
        CHECK(static_cast<double>(within) / static_cast<double>(size) ==
              Approx(0.6827).margin(0.01));
    }
}

TEST_CASE("DP-FedAvg's noise is reproducible only with dp_seed", "[unit][strategies]") {
    FakeHost host;
    DpFedAvg dp(host, {});
    const TensorMap global = model(pseudo_random(30, 1), pseudo_random(3, 2), 0);
    const std::vector<ClientUpdate> updates{{"a", 1, global}, {"b", 1, global}};
    const std::string seeded = run_json(1.0, 1.0, R"(, "dp_seed": 7)");
    auto s1 = open(dp, seeded);
    auto s2 = open(dp, seeded);
    const TensorMap a0 = run_round(*s1, global, 0, updates);
    const TensorMap b0 = run_round(*s2, global, 0, updates);
    CHECK(a0.tensors[0].data == b0.tensors[0].data);
    CHECK(a0.tensors[0].data != global.tensors[0].data);
    const TensorMap a1 = run_round(*s1, global, 1, updates);
    CHECK(a1.tensors[0].data != a0.tensors[0].data);  // another round, other noise
    CHECK(host.captured().contains("dp_seed is set"));

    auto u1 = open(dp, run_json(1.0, 1.0));
    auto u2 = open(dp, run_json(1.0, 1.0));
    CHECK(run_round(*u1, global, 0, updates).tensors[0].data !=
          run_round(*u2, global, 0, updates).tensors[0].data);
}

TEST_CASE("DP-FedAvg reports the epsilon spent after every round and keeps it across a resume",
          "[unit][strategies][acceptance]") {
    FakeHost host;
    DpFedAvg dp(host, {});
    const std::string run = run_json(1.0, 1.0, R"(, "dp_seed": 3)");
    CHECK(nlohmann::json::parse(dp.worker_arguments(run)) == nlohmann::json{{"mu", 0.0}});
    auto session = open(dp, run);
    auto before = session->save_state();
    REQUIRE(before.has_value());
    CHECK(scalar_of(*before, "metric.dp_epsilon") == 0.0);

    // Hand-computed (see rdp_accountant_test.cpp): sigma 1, delta 1e-5,
    // T = 1: 5.298526139 (alpha 5.8); T = 2: 4.4 + 11.512925465 / 3.4 = 7.786154549 (alpha 4.4);
    // T = 3: 5.7 + 11.512925465 / 2.8 = 9.811759095 (alpha 3.8).
    const std::vector<double> expected{5.298526139, 7.786154549, 9.811759095};
    const TensorMap global = model(pseudo_random(20, 1), pseudo_random(2, 2), 0);
    const std::vector<ClientUpdate> updates{{"a", 1, shifted(global, pseudo_random(22, 4), 0.1)},
                                            {"b", 1, shifted(global, pseudo_random(22, 5), 0.1)}};
    TensorMap x = global;
    TensorMap saved_after_round_1;
    TensorMap x_after_round_1;
    for (int r = 0; r < 3; ++r) {
        x = run_round(*session, x, r, updates);
        auto state = session->save_state();
        REQUIRE(state.has_value());
        CHECK(scalar_of(*state, "metric.dp_epsilon") == Approx(expected[r]).epsilon(1e-9));
        CHECK(scalar_of(*state, "metric.dp_delta") == 1e-5);
        CHECK(scalar_of(*state, "dpfedavg.rounds") == r + 1);
        if (r == 1) {
            saved_after_round_1 = *state;
            x_after_round_1 = x;
        }
    }
    int logged = 0;
    for (const auto& line : host.captured().lines()) {
        if (line.event == "dpfedavg: privacy spent") {
            const auto fields = nlohmann::json::parse(line.fields_json);
            CHECK(fields["epsilon"].get<double>() == Approx(expected[logged]).epsilon(1e-9));
            ++logged;
        }
    }
    CHECK(logged == 3);

    // A resumed job continues the accounting (and, seeded, redraws the same noise).
    auto resumed = open(dp, run);
    REQUIRE(resumed->load_state(saved_after_round_1).is_ok());
    const TensorMap y = run_round(*resumed, x_after_round_1, 2, updates);
    CHECK(y.tensors[0].data == x.tensors[0].data);
    auto state = resumed->save_state();
    REQUIRE(state.has_value());
    CHECK(scalar_of(*state, "metric.dp_epsilon") == Approx(expected[2]).epsilon(1e-9));

    // A state from another accountant grid or with missing parts is refused.
    TensorMap partial;
    partial.tensors.push_back(*saved_after_round_1.find("dpfedavg.rdp"));
    CHECK_THAT(resumed->load_state(partial).message(), Catch::Contains("incomplete"));
    TensorMap other_grid = saved_after_round_1;
    other_grid.find("dpfedavg.orders")->data[0] ^= 1U;
    CHECK(resumed->load_state(other_grid).code() == ErrorCode::InvalidArgument);
}

TEST_CASE("DP-FedAvg refuses missing or bad privacy fields and names them", "[unit][strategies]") {
    FakeHost host;
    DpFedAvg dp(host, {});
    struct Bad {
        const char* run;
        const char* text;
    };
    for (const Bad& bad :
         {Bad{R"({"dp_noise_multiplier": 1})", "field 'dp_clip_norm' is required"},
          Bad{R"({"dp_clip_norm": 1})", "field 'dp_noise_multiplier' is required"},
          Bad{R"({"dp_clip_norm": 0, "dp_noise_multiplier": 1})",
              "'dp_clip_norm' must be a number > 0"},
          Bad{R"({"dp_clip_norm": 1, "dp_noise_multiplier": 0})", "'dp_noise_multiplier'"},
          Bad{R"({"dp_clip_norm": 1, "dp_noise_multiplier": 1, "dp_delta": 1})",
              "'dp_delta' must be a number in (0, 1)"},
          Bad{R"({"dp_clip_norm": 1, "dp_noise_multiplier": 1, "dp_seed": -1})", "'dp_seed'"},
          Bad{R"({"dp_clip_norm": 1, "dp_noise_multiplier": 1, "dp_seed": "7"})", "'dp_seed'"}}) {
        INFO(bad.run);
        auto st = dp.validate(bad.run);
        CHECK(st.code() == ErrorCode::InvalidArgument);
        CHECK_THAT(st.message(), Catch::StartsWith("dpfedavg: "));
        CHECK_THAT(st.message(), Catch::Contains(bad.text));
        CHECK_FALSE(dp.open(bad.run).has_value());
    }
    // A NaN update is refused before it reaches the norm (NaN would escape clipping).
    auto session = open(dp, run_json(1.0, 1.0));
    const TensorMap global = model({0, 0}, {0}, 0);
    REQUIRE(session->begin_round(global, 0).is_ok());
    CHECK(session->accumulate("nan", 1, model({NAN, 0}, {0}, 0)).code() ==
          ErrorCode::InvalidArgument);
    CHECK(session->accumulate("zero", 0, global).code() == ErrorCode::InvalidArgument);
    CHECK(session->finish_round().error().code == ErrorCode::FailedPrecondition);
}

TEST_CASE("DP-FedAvg clamps noised BatchNorm running variances at 0 and nothing else",
          "[unit][strategies]") {
    FakeHost host;
    DpFedAvg dp(host, {});
    // z 3, C 1, n 1: noise sd 3 on variances of 0.01, so most would go negative unclamped.
    auto session = open(dp, run_json(1.0, 3.0, R"(, "dp_seed": 7)"));
    TensorMap global;
    global.tensors.push_back(f32_tensor("bn.running_mean", {64}, std::vector<float>(64, 0.01F)));
    global.tensors.push_back(f32_tensor("bn.running_var", {64}, std::vector<float>(64, 0.01F)));
    const TensorMap out = run_round(*session, global, 0, {{"a", 1, global}});
    const auto var = values_of(out, "bn.running_var");
    const auto mean = values_of(out, "bn.running_mean");
    CHECK(*std::min_element(var.begin(), var.end()) >= 0.0);
    CHECK(std::count(var.begin(), var.end(), 0.0) > 10);  // clamped, not redrawn
    CHECK(*std::max_element(var.begin(), var.end()) > 0.5);  // the noise is still there
    CHECK(*std::min_element(mean.begin(), mean.end()) < -0.5);  // other tensors: untouched
}
