// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "fedmedian.hpp"
#include "fedtrimmedavg.hpp"
#include "krum.hpp"
#include "multikrum.hpp"
#include "strategy_helpers.hpp"
#include "weighted_mean.hpp"

namespace {

using synergos::sdk::Aggregator;
using synergos::sdk::ErrorCode;
using synergos::sdk::TensorMap;
using synergos::sdk::testing::FakeHost;
using namespace synergos::test;

std::unique_ptr<Aggregator> make(const std::string& name, FakeHost& host) {
    const synergos::sdk::Options none;
    if (name == "fedmedian") {
        return std::make_unique<synergos::plugins::fedmedian::FedMedian>(host, none);
    }
    if (name == "fedtrimmedavg") {
        return std::make_unique<synergos::plugins::fedtrimmedavg::FedTrimmedAvg>(host, none);
    }
    if (name == "krum") {
        return std::make_unique<synergos::plugins::krum::Krum>(host, none);
    }
    return std::make_unique<synergos::plugins::multikrum::MultiKrum>(host, none);
}

TensorMap point(float x, float y, std::int64_t batches = 0) {
    TensorMap m;
    m.tensors.push_back(f32_tensor("w", {2}, {x, y}));
    m.tensors.push_back(i64_tensor("n", {}, {batches}));
    return m;
}

TensorMap aggregate(const std::string& name, const std::string& run,
                    const std::vector<ClientUpdate>& updates) {
    FakeHost host;
    auto aggregator = make(name, host);
    REQUIRE(aggregator->validate(run).is_ok());
    auto session = aggregator->open(run);
    REQUIRE(session.has_value());
    return run_round(**session, updates.front().weights, 0, updates);
}

/// Krum by brute force, independently of the plugin: score(i) = sum of the n - f - 2 smallest
/// squared distances to the others; returns the indices ordered by score (ties: lower index).
std::vector<std::size_t> krum_order(const std::vector<std::vector<double>>& pts, std::size_t f) {
    const std::size_t n = pts.size();
    std::vector<double> score(n);
    for (std::size_t i = 0; i < n; ++i) {
        std::vector<double> d;
        for (std::size_t j = 0; j < n; ++j) {
            if (j == i) {
                continue;
            }
            double s = 0;
            for (std::size_t k = 0; k < pts[i].size(); ++k) {
                s += (pts[i][k] - pts[j][k]) * (pts[i][k] - pts[j][k]);
            }
            d.push_back(s);
        }
        std::sort(d.begin(), d.end());
        score[i] = std::accumulate(d.begin(), d.begin() + static_cast<long>(n - f - 2), 0.0);
    }
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), 0U);
    std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) {
        return score[a] < score[b];
    });
    return order;
}

}  // namespace

TEST_CASE("FedMedian is the coordinate-wise median (Yin et al. 2018)", "[unit][strategies]") {
    TensorMap a, b, c, d, e;
    // Columns: {1,2,3,7,100} -> 3; {10,20,30,40,-50} -> 20; {-3,-1,-2,100,0} -> -1.
    for (auto [m, v, n] : {std::tuple{&a, std::vector<float>{1, 10, -3}, 1},
                           std::tuple{&b, std::vector<float>{2, 20, -1}, 5},
                           std::tuple{&c, std::vector<float>{3, 30, -2}, 2},
                           std::tuple{&d, std::vector<float>{7, 40, 100}, 9},
                           std::tuple{&e, std::vector<float>{100, -50, 0}, 4}}) {
        m->tensors.push_back(f32_tensor("w", {3}, v));
        m->tensors.push_back(i64_tensor("n", {}, {n}));
    }
    // Sample counts are ignored: a faulty client could claim any.
    const auto out = aggregate(
        "fedmedian", "{}", {{"a", 1, a}, {"b", 1000, b}, {"c", 1, c}, {"d", 1, d}, {"e", 1, e}});
    CHECK(values_of(out, "w") == std::vector<double>{3, 20, -1});
    CHECK(values_of(out, "n") == std::vector<double>{4});
    // An even count takes the mean of the two middle values: {1,2,3,7} -> 2.5.
    const auto even =
        aggregate("fedmedian", "{}", {{"a", 1, a}, {"b", 1, b}, {"c", 1, c}, {"d", 1, d}});
    CHECK(values_of(even, "w") == std::vector<double>{2.5, 25, -1.5});
}

TEST_CASE("FedTrimmedAvg drops floor(beta n) values at each end (Yin et al. 2018)",
          "[unit][strategies]") {
    std::vector<ClientUpdate> updates;
    const std::vector<float> col0{1, 2, 3, 7, 100, -40, 5, 6, 8, 4};
    for (std::size_t i = 0; i < col0.size(); ++i) {
        TensorMap m;
        m.tensors.push_back(f32_tensor("w", {2}, {col0[i], static_cast<float>(i)}));
        updates.push_back({"p" + std::to_string(i), 1, m});
    }
    // Default beta 0.2 with n = 10: k = 2. Sorted col0: -40 1 2 3 4 5 6 7 8 100 -> mean(2..7)=4.5
    // col1: 0..9 -> mean(2..7) = 4.5.
    auto out = aggregate("fedtrimmedavg", "{}", updates);
    require_close(values_of(out, "w"), {4.5, 4.5}, 1e-6);
    // beta 0.1: k = 1 -> mean(1..8) of col0 = (1+2+3+4+5+6+7+8)/8 = 4.5; col1 mean(1..8) = 4.5.
    out = aggregate("fedtrimmedavg", R"({"trim_fraction": 0.1})", updates);
    require_close(values_of(out, "w"), {4.5, 4.5}, 1e-6);
    // beta 0: the plain mean.
    out = aggregate("fedtrimmedavg", R"({"trim_fraction": 0.0})", updates);
    require_close(values_of(out, "w"), {9.6, 4.5}, 1e-5);
    // Five clients, beta 0.2: k = 1 -> col {1,2,3,7,100} -> mean(2,3,7) = 4.
    updates.resize(5);
    out = aggregate("fedtrimmedavg", R"({"trim_fraction": 0.2})", updates);
    CHECK(values_of(out, "w")[0] == Approx(4.0));
    CHECK(synergos::plugins::aggregator_common::trim_count(0.29, 100) == 29);
    CHECK(synergos::plugins::aggregator_common::trim_count(0.2, 5) == 1);
}

TEST_CASE(
    "Krum selects the update with the lowest score, and Multi-Krum averages the m best "
    "(Blanchard et al. 2017)",
    "[unit][strategies]") {
    // a(0,0) b(0.9,0) c(0,1) d(1,1) e(10,10), f = 1: each score sums the 2 nearest.
    // a: 0.81 + 1 = 1.81, b: 0.81 + 1.01 = 1.82, c: 1 + 1 = 2, d: 1 + 1.01 = 2.01, e: 162 + 181.
    const std::vector<ClientUpdate> updates{{"e", 1, point(10, 10, 50)},
                                            {"c", 1, point(0, 1, 3)},
                                            {"a", 1, point(0, 0, 1)},
                                            {"d", 1, point(1, 1, 4)},
                                            {"b", 9, point(0.9F, 0, 2)}};
    std::vector<std::vector<double>> pts;
    for (const auto& u : updates) {
        pts.push_back(values_of(u.weights, "w"));
    }
    const auto order = krum_order(pts, 1);
    CHECK(updates[order[0]].participant == "a");
    CHECK(updates[order[1]].participant == "b");
    CHECK(updates[order[4]].participant == "e");

    auto out = aggregate("krum", R"({"krum_f": 1})", updates);
    CHECK(values_of(out, "w") == std::vector<double>{0, 0});
    CHECK(values_of(out, "n") == std::vector<double>{1});  // the selected update's counter

    // Multi-Krum, default m = n - f = 4: mean of a, b, c, d.
    out = aggregate("multikrum", R"({"krum_f": 1})", updates);
    require_close(values_of(out, "w"), {(0 + 0.9 + 0 + 1) / 4.0, 0.5}, 1e-6);
    CHECK(values_of(out, "n") == std::vector<double>{3});  // (1+2+3+4)/4 = 2.5 rounds to 3
    out = aggregate("multikrum", R"({"krum_f": 1, "multikrum_m": 2})", updates);
    require_close(values_of(out, "w"), {0.45, 0.0}, 1e-6);
    // m above n - f is capped at n - f.
    out = aggregate("multikrum", R"({"krum_f": 1, "multikrum_m": 5})", updates);
    require_close(values_of(out, "w"), {0.475, 0.5}, 1e-6);
    // m = 1 is Krum.
    out = aggregate("multikrum", R"({"krum_f": 1, "multikrum_m": 1})", updates);
    CHECK(values_of(out, "w") == std::vector<double>{0, 0});
}

TEST_CASE("Krum refuses a round with fewer than 2f + 3 updates, naming krum_f",
          "[unit][strategies]") {
    FakeHost host;
    synergos::plugins::krum::Krum krum(host, {});
    auto session = krum.open(R"({"krum_f": 1})");
    REQUIRE(session.has_value());
    REQUIRE((*session)->begin_round(point(0, 0), 2).is_ok());
    for (int i = 0; i < 4; ++i) {
        REQUIRE((*session)->accumulate("p" + std::to_string(i), 1, point(i, 0)).is_ok());
    }
    auto out = (*session)->finish_round();
    REQUIRE_FALSE(out.has_value());
    CHECK(out.error().code == ErrorCode::FailedPrecondition);
    CHECK_THAT(out.error().message, Catch::Contains("krum_f = 1"));
    CHECK_THAT(out.error().message, Catch::Contains("round 2"));
    // The round stays open: one more update makes it valid.
    REQUIRE((*session)->accumulate("p4", 1, point(4, 0)).is_ok());
    CHECK((*session)->finish_round().has_value());
}

TEST_CASE(
    "With one of five clients sending garbage scaled by 100, the robust strategies stay "
    "near the honest mean while FedAvg does not",
    "[unit][strategies][acceptance]") {
    // A model-shaped map: [5, 13] weights, 5 biases, a BatchNorm counter.
    const std::vector<float> honest_w = pseudo_random(65, 11);
    const std::vector<float> honest_b = pseudo_random(5, 12);
    auto honest = [&](std::uint32_t seed) {
        // Honest clients differ from the honest mean by small, zero-mean noise (+-0.01).
        auto w = pseudo_random(65, seed);
        auto b = pseudo_random(5, seed + 1000);
        for (std::size_t i = 0; i < w.size(); ++i) {
            w[i] = honest_w[i] + 0.005F * w[i];
        }
        for (std::size_t i = 0; i < b.size(); ++i) {
            b[i] = honest_b[i] + 0.005F * b[i];
        }
        TensorMap m;
        m.tensors.push_back(f32_tensor("nnl_0_linear.weight", {5, 13}, w));
        m.tensors.push_back(f32_tensor("nnl_0_linear.bias", {5}, b));
        m.tensors.push_back(i64_tensor("nnl_1_batchnorm1d.num_batches_tracked", {}, {10}));
        return m;
    };
    TensorMap garbage;
    {
        auto w = pseudo_random(65, 999);
        auto b = pseudo_random(5, 998);
        for (float& v : w) {
            v *= 100.0F;
        }
        for (float& v : b) {
            v *= 100.0F;
        }
        garbage.tensors.push_back(f32_tensor("nnl_0_linear.weight", {5, 13}, w));
        garbage.tensors.push_back(f32_tensor("nnl_0_linear.bias", {5}, b));
        garbage.tensors.push_back(
            i64_tensor("nnl_1_batchnorm1d.num_batches_tracked", {}, {100000}));
    }
    std::vector<ClientUpdate> updates{{"w1", 100, honest(1)},
                                      {"w2", 100, honest(2)},
                                      {"w3", 100, honest(3)},
                                      {"w4", 100, honest(4)},
                                      {"w5", 100, garbage}};
    // The honest mean, computed directly.
    TensorMap honest_mean;
    {
        std::vector<float> w(65, 0.0F);
        std::vector<float> b(5, 0.0F);
        for (std::size_t k = 0; k < 4; ++k) {
            const auto uw = values_of(updates[k].weights, "nnl_0_linear.weight");
            const auto ub = values_of(updates[k].weights, "nnl_0_linear.bias");
            for (std::size_t i = 0; i < 65; ++i) {
                w[i] += static_cast<float>(uw[i] / 4);
            }
            for (std::size_t i = 0; i < 5; ++i) {
                b[i] += static_cast<float>(ub[i] / 4);
            }
        }
        honest_mean.tensors.push_back(f32_tensor("nnl_0_linear.weight", {5, 13}, w));
        honest_mean.tensors.push_back(f32_tensor("nnl_0_linear.bias", {5}, b));
    }
    // Honest clients sit ~0.04 from their mean (L2 over 70 values); the garbage ~ 100 * 9.
    double spread = 0.0;
    for (std::size_t k = 0; k < 4; ++k) {
        spread = std::max(spread, l2_distance(updates[k].weights, honest_mean));
    }
    INFO("largest honest distance to the honest mean " << spread);
    REQUIRE(spread < 0.1);

    synergos::plugins::fedavg::WeightedMeanSession fedavg("fedavg");
    const double fedavg_distance =
        l2_distance(run_round(fedavg, updates[0].weights, 0, updates), honest_mean);
    INFO("fedavg " << fedavg_distance);
    CHECK(fedavg_distance > 50.0);

    for (const auto& [name, run] :
         std::vector<std::pair<std::string, std::string>>{{"fedmedian", "{}"},
                                                          {"fedtrimmedavg", "{}"},
                                                          {"krum", R"({"krum_f": 1})"},
                                                          {"krum", "{}"},
                                                          {"multikrum", R"({"krum_f": 1})"}}) {
        INFO(name << " " << run);
        // Every arrival order gives the same result.
        std::vector<TensorMap> results;
        for (std::size_t rotate = 0; rotate < updates.size(); ++rotate) {
            auto order = updates;
            std::rotate(order.begin(), order.begin() + static_cast<long>(rotate), order.end());
            results.push_back(aggregate(name, run, order));
        }
        for (const auto& r : results) {
            CHECK(r.tensors[0].data == results[0].tensors[0].data);
        }
        const double distance = l2_distance(results[0], honest_mean);
        INFO("distance " << distance);
        CHECK(distance <= 1.5 * spread);
        CHECK(values_of(results[0], "nnl_1_batchnorm1d.num_batches_tracked") ==
              std::vector<double>{10});
    }
}

TEST_CASE("Robust strategies refuse bad fields, bad updates and stray state",
          "[unit][strategies]") {
    FakeHost host;
    struct Bad {
        const char* plugin;
        const char* run;
        const char* field;
    };
    for (const Bad& bad :
         {Bad{"fedtrimmedavg", R"({"trim_fraction": 0.5})", "trim_fraction"},
          Bad{"fedtrimmedavg", R"({"trim_fraction": -0.1})", "trim_fraction"},
          Bad{"krum", R"({"krum_f": -1})", "krum_f"}, Bad{"krum", R"({"krum_f": 1.5})", "krum_f"},
          Bad{"multikrum", R"({"multikrum_m": 0})", "multikrum_m"},
          Bad{"fedmedian", "not json", "not valid JSON"}}) {
        INFO(bad.plugin << " " << bad.run);
        auto aggregator = make(bad.plugin, host);
        auto st = aggregator->validate(bad.run);
        CHECK(st.code() == ErrorCode::InvalidArgument);
        CHECK_THAT(st.message(), Catch::StartsWith(std::string(bad.plugin) + ": "));
        CHECK_THAT(st.message(), Catch::Contains(bad.field));
    }
    // Other strategies' fields are ignored: one run can be replayed with another algorithm.
    CHECK(make("fedmedian", host)->validate(R"({"krum_f": -1, "mu": 0.1})").is_ok());

    auto session = make("fedmedian", host)->open("{}");
    REQUIRE(session.has_value());
    REQUIRE((*session)->begin_round(point(0, 0), 0).is_ok());
    REQUIRE((*session)->accumulate("a", 1, point(1, 1)).is_ok());
    TensorMap inf = point(1, 1);
    inf.tensors[0] = f32_tensor("w", {2}, {1.0F, INFINITY});
    CHECK((*session)->accumulate("inf", 1, inf).code() == ErrorCode::InvalidArgument);
    CHECK((*session)->accumulate("zero", 0, point(5, 5)).code() == ErrorCode::InvalidArgument);
    CHECK((*session)->accumulate("a", 1, point(2, 2)).code() == ErrorCode::AlreadyExists);
    auto out = (*session)->finish_round();
    REQUIRE(out.has_value());
    CHECK(values_of(*out, "w") == std::vector<double>{1, 1});  // the refused ones were not kept

    auto state = (*session)->save_state();
    REQUIRE(state.has_value());
    CHECK(state->tensors.empty());
    TensorMap metrics;
    metrics.tensors.push_back(f32_tensor("metric.loss", {}, {0.5F}));
    CHECK((*session)->load_state(metrics).is_ok());
    CHECK((*session)->load_state(point(0, 0)).code() == ErrorCode::InvalidArgument);
}

TEST_CASE("Krum logs which participants it selected", "[unit][strategies]") {
    FakeHost host;
    synergos::plugins::krum::Krum krum(host, {});
    auto session = krum.open("{}");
    REQUIRE(session.has_value());
    run_round(**session, point(0, 0), 3,
              {{"x", 1, point(0, 0)}, {"y", 1, point(0.1F, 0)}, {"z", 1, point(50, 50)}});
    bool found = false;
    for (const auto& line : host.captured().lines()) {
        if (line.event == "krum: updates selected") {
            const auto fields = nlohmann::json::parse(line.fields_json);
            CHECK(fields["round"] == 3);
            CHECK(fields["selected"] == nlohmann::json::array({"x"}));
            found = true;
        }
    }
    CHECK(found);
}

TEST_CASE("FedTrimmedAvg never trims every value and warns once when it trims none",
          "[unit][strategies]") {
    using synergos::plugins::aggregator_common::trim_count;
    CHECK(trim_count(0.4999999996, 2) == 0);  // floor(0.9999999992 + 1e-9) is 1: capped
    CHECK(trim_count(0.49999999995, 10) == 4);
    CHECK(trim_count(0.2, 4) == 0);

    FakeHost host;
    synergos::plugins::fedtrimmedavg::FedTrimmedAvg trimmed(host, {});
    const std::string run = R"({"trim_fraction": 0.4999999996})";
    REQUIRE(trimmed.validate(run).is_ok());
    auto session = trimmed.open(run);
    REQUIRE(session.has_value());
    const std::vector<ClientUpdate> two{{"a", 1, point(1, 2, 2)}, {"b", 1, point(3, 6, 4)}};
    // n = 2: the mean of both (before: both trimmed, 0 / 0 = NaN).
    require_close(values_of(run_round(**session, point(0, 0), 0, two), "w"), {2, 4}, 1e-6);
    require_close(values_of(run_round(**session, point(0, 0), 1, two), "w"), {2, 4}, 1e-6);
    int warnings = 0;
    for (const auto& line : host.captured().lines()) {
        if (line.event == "fedtrimmedavg: nothing trimmed") {
            CHECK(line.level == synergos::sdk::Level::Warn);
            CHECK(nlohmann::json::parse(line.fields_json)["updates"] == 2);
            ++warnings;
        }
    }
    CHECK(warnings == 1);  // once per session, not every round
}
