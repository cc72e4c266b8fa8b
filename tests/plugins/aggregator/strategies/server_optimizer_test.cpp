// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "fedadagrad.hpp"
#include "fedadam.hpp"
#include "fedavgm.hpp"
#include "fedyogi.hpp"
#include "strategy_helpers.hpp"

namespace {

using synergos::sdk::Aggregator;
using synergos::sdk::ErrorCode;
using synergos::sdk::TensorMap;
using synergos::sdk::testing::FakeHost;
using namespace synergos::test;

TensorMap model(const std::vector<float>& w, const std::vector<float>& b, std::int64_t batches) {
    TensorMap m;
    m.tensors.push_back(f32_tensor("nnl_0_linear.weight", {2, 2}, w));
    m.tensors.push_back(f32_tensor("nnl_0_linear.bias", {2}, b));
    m.tensors.push_back(i64_tensor("nnl_1_batchnorm1d.num_batches_tracked", {}, {batches}));
    return m;
}

/// The paper's server step, written out independently of the plugin for each rule. State is
/// per coordinate; `x`, `avg` are the flattened float weights.
struct Reference {
    std::string rule;
    double lr, momentum, beta_1, beta_2, tau;
    std::vector<double> m, v;

    std::vector<double> step(const std::vector<double>& x, const std::vector<double>& avg) {
        if (m.empty()) {
            m.assign(x.size(), 0.0);
            v.assign(x.size(), tau * tau);  // Reddi et al. Algorithm 2: v_{-1} >= tau^2
        }
        std::vector<double> out(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) {
            const double d = avg[i] - x[i];
            if (rule == "fedavgm") {
                // Hsu et al. 2019: v <- beta v + Delta w; w <- w - v (pseudo-gradient -Delta).
                m[i] = momentum * m[i] + d;
                out[i] = x[i] + lr * m[i];
                continue;
            }
            m[i] = beta_1 * m[i] + (1 - beta_1) * d;
            if (rule == "fedadagrad") {
                v[i] = v[i] + d * d;
            } else if (rule == "fedadam") {
                v[i] = beta_2 * v[i] + (1 - beta_2) * d * d;
            } else {  // fedyogi
                const double s = v[i] - d * d;
                v[i] = v[i] - (1 - beta_2) * d * d * (s > 0 ? 1.0 : (s < 0 ? -1.0 : 0.0));
            }
            out[i] = x[i] + lr * m[i] / (std::sqrt(v[i]) + tau);
        }
        return out;
    }
};

std::vector<double> flat(const TensorMap& m) {
    auto w = values_of(m, "nnl_0_linear.weight");
    const auto b = values_of(m, "nnl_0_linear.bias");
    w.insert(w.end(), b.begin(), b.end());
    return w;
}

/// n-weighted mean of the flattened float weights.
std::vector<double> weighted_mean(const std::vector<ClientUpdate>& updates) {
    std::vector<double> sum(6, 0.0);
    double total = 0;
    for (const auto& u : updates) {
        const auto f = flat(u.weights);
        for (std::size_t i = 0; i < f.size(); ++i) {
            sum[i] += static_cast<double>(u.samples) * f[i];
        }
        total += static_cast<double>(u.samples);
    }
    for (double& s : sum) {
        s /= total;
    }
    return sum;
}

std::unique_ptr<Aggregator> make(const std::string& name, FakeHost& host) {
    if (name == "fedavgm") {
        return std::make_unique<synergos::plugins::fedavgm::FedAvgM>(host,
                                                                     synergos::sdk::Options{});
    }
    if (name == "fedadam") {
        return std::make_unique<synergos::plugins::fedadam::FedAdam>(host,
                                                                     synergos::sdk::Options{});
    }
    if (name == "fedyogi") {
        return std::make_unique<synergos::plugins::fedyogi::FedYogi>(host,
                                                                     synergos::sdk::Options{});
    }
    return std::make_unique<synergos::plugins::fedadagrad::FedAdagrad>(host,
                                                                       synergos::sdk::Options{});
}

const TensorMap kGlobal = model({0.5F, -1.0F, 2.0F, 0.0F}, {0.1F, 0.2F}, 7);

/// Two rounds of client updates; round 1's updates are offsets from round 0's result so the
/// moments carry over with a different pseudo-gradient.
std::vector<ClientUpdate> round0() {
    return {{"alice", 10, model({1.0F, -0.5F, 1.5F, 0.25F}, {0.0F, 0.4F}, 9)},
            {"bob", 30, model({0.0F, -1.5F, 2.5F, -0.25F}, {0.3F, 0.1F}, 11)}};
}
std::vector<ClientUpdate> round1() {
    return {{"alice", 20, model({0.75F, -0.25F, 2.25F, 0.5F}, {-0.5F, 0.5F}, 12)},
            {"bob", 20, model({0.25F, -2.0F, 1.75F, 0.0F}, {0.2F, 0.0F}, 14)}};
}

}  // namespace

TEST_CASE(
    "FedAvgM, FedAdam, FedYogi and FedAdagrad match their papers' server step over two rounds",
    "[unit][strategies]") {
    struct Case {
        const char* name;
        const char* run;
        Reference ref;
    };
    const std::vector<Case> cases{
        {"fedavgm", "{}", {"fedavgm", 1.0, 0.9, 0, 0, 0, {}, {}}},
        {"fedavgm",
         R"({"server_lr": 0.5, "server_momentum": 0.6})",
         {"fedavgm", 0.5, 0.6, 0, 0, 0, {}, {}}},
        {"fedadam", "{}", {"fedadam", 1e-2, 0, 0.9, 0.99, 1e-3, {}, {}}},
        {"fedadam",
         R"({"server_lr": 0.3, "beta_1": 0.5, "beta_2": 0.9, "tau": 0.05})",
         {"fedadam", 0.3, 0, 0.5, 0.9, 0.05, {}, {}}},
        {"fedyogi", "{}", {"fedyogi", 1e-2, 0, 0.9, 0.99, 1e-3, {}, {}}},
        {"fedyogi",
         R"({"server_lr": 0.3, "beta_1": 0.5, "beta_2": 0.9, "tau": 0.05})",
         {"fedyogi", 0.3, 0, 0.5, 0.9, 0.05, {}, {}}},
        {"fedadagrad", "{}", {"fedadagrad", 1e-1, 0, 0.9, 0.99, 1e-3, {}, {}}},
        {"fedadagrad",
         R"({"server_lr": 0.3, "beta_1": 0.0, "tau": 0.05})",
         {"fedadagrad", 0.3, 0, 0.0, 0.99, 0.05, {}, {}}},
    };
    for (Case c : cases) {
        INFO(c.name << " " << c.run);
        FakeHost host;
        auto aggregator = make(c.name, host);
        REQUIRE(aggregator->validate(c.run).is_ok());
        CHECK(nlohmann::json::parse(aggregator->worker_arguments(c.run)) ==
              nlohmann::json{{"mu", 0.0}});
        auto session = aggregator->open(c.run);
        REQUIRE(session.has_value());

        const TensorMap x1 = run_round(**session, kGlobal, 0, round0());
        const auto want1 = c.ref.step(flat(kGlobal), weighted_mean(round0()));
        require_close(flat(x1), want1, 1e-6);
        // Integer tensors take the n-weighted mean rounded: (10*9 + 30*11) / 40 = 10.5 -> 11.
        CHECK(values_of(x1, "nnl_1_batchnorm1d.num_batches_tracked") == std::vector<double>{11});
        CHECK(x1.tensors[0].name == "nnl_0_linear.weight");  // the global's order

        const TensorMap x2 = run_round(**session, x1, 1, round1());
        const auto want2 = c.ref.step(flat(x1), weighted_mean(round1()));
        require_close(flat(x2), want2, 1e-6);
    }
}

TEST_CASE("FedAdam's first step with the paper's defaults, by hand", "[unit][strategies]") {
    // Delta = 0.5: m = 0.1 * 0.5 = 0.05; v = 0.99 * 1e-6 + 0.01 * 0.25 = 0.00250099;
    // step = 0.01 * 0.05 / (sqrt(0.00250099) + 0.001) = 0.0098020190...
    FakeHost host;
    synergos::plugins::fedadam::FedAdam fedadam(host, {});
    auto session = fedadam.open("{}");
    REQUIRE(session.has_value());
    TensorMap global;
    global.tensors.push_back(f32_tensor("w", {1}, {1.0F}));
    TensorMap client;
    client.tensors.push_back(f32_tensor("w", {1}, {1.5F}));
    const auto next = run_round(**session, global, 0, {{"a", 5, client}});
    CHECK(values_of(next, "w")[0] == Approx(1.0098020190).margin(1e-6));
}

TEST_CASE("A server step that overflows fails the round instead of returning inf",
          "[unit][strategies]") {
    FakeHost host;
    synergos::plugins::fedavgm::FedAvgM fedavgm(host, {});
    auto session = fedavgm.open(R"({"server_lr": 1e38})");
    REQUIRE(session.has_value());
    TensorMap global;
    global.tensors.push_back(f32_tensor("w", {2}, {1.0F, 1.0F}));
    TensorMap client;
    client.tensors.push_back(f32_tensor("w", {2}, {1.0F, 11.0F}));  // 1e38 * 10 > FLT_MAX
    REQUIRE((*session)->begin_round(global, 2).is_ok());
    REQUIRE((*session)->accumulate("a", 1, client).is_ok());
    auto next = (*session)->finish_round();
    REQUIRE_FALSE(next.has_value());
    CHECK(next.error().code == ErrorCode::FailedPrecondition);
    CHECK_THAT(next.error().message, Catch::Contains("round 2"));
    CHECK_THAT(next.error().message, Catch::Contains("tensor 'w' non-finite"));
}

TEST_CASE("A server optimizer resumed from its saved state takes exactly the same next step",
          "[unit][strategies]") {
    for (const char* name : {"fedavgm", "fedadam", "fedyogi", "fedadagrad"}) {
        INFO(name);
        FakeHost host;
        auto aggregator = make(name, host);
        auto continuous = aggregator->open("{}");
        REQUIRE(continuous.has_value());
        const TensorMap x1 = run_round(**continuous, kGlobal, 0, round0());
        auto saved = (*continuous)->save_state();
        REQUIRE(saved.has_value());
        CHECK(saved->find(std::string(name) + ".m.nnl_0_linear.weight") != nullptr);
        CHECK((saved->find(std::string(name) + ".v.nnl_0_linear.bias") != nullptr) ==
              (std::string(name) != "fedavgm"));
        CHECK(scalar_of(*saved, std::string(name) + ".rounds") == 1);
        const TensorMap x2 = run_round(**continuous, x1, 1, round1());

        // A new session (as after a TTP restart) loads the checkpointed state.
        auto resumed = aggregator->open("{}");
        REQUIRE(resumed.has_value());
        REQUIRE((*resumed)->load_state(*saved).is_ok());
        const TensorMap y2 = run_round(**resumed, x1, 1, round1());
        for (std::size_t t = 0; t < x2.tensors.size(); ++t) {
            CHECK(y2.tensors[t].data == x2.tensors[t].data);
        }
        // Without the state the step differs: the test would notice a lost moment.
        auto fresh = aggregator->open("{}");
        REQUIRE(fresh.has_value());
        const TensorMap z2 = run_round(**fresh, x1, 1, round1());
        CHECK(z2.tensors[0].data != x2.tensors[0].data);
    }
}

TEST_CASE("Server optimizers refuse bad state and bad updates and change nothing",
          "[unit][strategies]") {
    FakeHost host;
    synergos::plugins::fedadam::FedAdam fedadam(host, {});
    auto session = fedadam.open("{}");
    REQUIRE(session.has_value());
    auto& s = **session;

    SECTION("a saved state with an unknown tensor") {
        TensorMap bad;
        bad.tensors.push_back(f32_tensor("fedyogi.m.w", {1}, {0.0F}));
        auto st = s.load_state(bad);
        CHECK(st.code() == ErrorCode::InvalidArgument);
        CHECK_THAT(st.message(), Catch::Contains("fedyogi.m.w"));
    }
    SECTION("a saved state that does not fit the model is refused at begin_round") {
        auto other = fedadam.open("{}");
        REQUIRE(other.has_value());
        TensorMap small;
        small.tensors.push_back(f32_tensor("nnl_0_linear.weight", {2, 2}, {0, 0, 0, 0}));
        run_round(**other, small, 0, {{"a", 1, small}});
        auto saved = (*other)->save_state();
        REQUIRE(saved.has_value());
        REQUIRE(s.load_state(*saved).is_ok());
        auto st = s.begin_round(kGlobal, 1);
        CHECK(st.code() == ErrorCode::FailedPrecondition);
        CHECK_THAT(st.message(), Catch::Contains("nnl_0_linear.bias"));
    }
    SECTION("an update with a NaN, or a wrong shape, is refused and not folded") {
        REQUIRE(s.begin_round(kGlobal, 4).is_ok());
        REQUIRE(s.accumulate("good", 10, round0()[0].weights).is_ok());
        TensorMap nan = round0()[1].weights;
        nan.tensors[1] = f32_tensor("nnl_0_linear.bias", {2}, {0.0F, std::nanf("")});
        auto st = s.accumulate("nan", 30, nan);
        CHECK(st.code() == ErrorCode::InvalidArgument);
        CHECK_THAT(st.message(), Catch::Contains("participant 'nan', round 4"));
        CHECK_THAT(st.message(), Catch::Contains("nnl_0_linear.bias"));
        CHECK_THAT(st.message(), Catch::Contains("non-finite"));
        TensorMap shape = round0()[1].weights;
        shape.tensors[0] = f32_tensor("nnl_0_linear.weight", {4}, {0, 0, 0, 0});
        CHECK(s.accumulate("shape", 30, shape).code() == ErrorCode::InvalidArgument);
        CHECK(s.accumulate("good", 10, round0()[0].weights).code() == ErrorCode::AlreadyExists);
        auto next = s.finish_round();
        REQUIRE(next.has_value());
        Reference ref{"fedadam", 1e-2, 0, 0.9, 0.99, 1e-3, {}, {}};
        require_close(flat(*next), ref.step(flat(kGlobal), flat(round0()[0].weights)), 1e-6);
    }
    SECTION("rounds out of order") {
        CHECK(s.accumulate("a", 1, kGlobal).code() == ErrorCode::FailedPrecondition);
        CHECK(s.finish_round().error().code == ErrorCode::FailedPrecondition);
        REQUIRE(s.begin_round(kGlobal, 0).is_ok());
        CHECK(s.finish_round().error().code == ErrorCode::FailedPrecondition);  // no update
        CHECK(s.load_state({}).code() == ErrorCode::FailedPrecondition);        // round open
    }
}

TEST_CASE("Server optimizers refuse bad run fields and name them", "[unit][strategies]") {
    FakeHost host;
    struct Bad {
        const char* plugin;
        const char* run;
        const char* field;
    };
    for (const Bad& bad :
         {Bad{"fedavgm", R"({"server_lr": 0})", "server_lr"},
          Bad{"fedavgm", R"({"server_momentum": 1.0})", "server_momentum"},
          Bad{"fedadam", R"({"beta_1": -0.1})", "beta_1"},
          Bad{"fedadam", R"({"beta_2": "0.99"})", "beta_2"}, Bad{"fedyogi", R"({"tau": 0})", "tau"},
          Bad{"fedadagrad", R"({"server_lr": -1})", "server_lr"},
          Bad{"fedadagrad", "[]", "the run must be a JSON object"}}) {
        INFO(bad.plugin << " " << bad.run);
        auto aggregator = make(bad.plugin, host);
        auto st = aggregator->validate(bad.run);
        CHECK(st.code() == ErrorCode::InvalidArgument);
        CHECK_THAT(st.message(), Catch::StartsWith(std::string(bad.plugin) + ": "));
        CHECK_THAT(st.message(), Catch::Contains(bad.field));
        CHECK_FALSE(aggregator->open(bad.run).has_value());
    }
}

TEST_CASE("A server step does not leave a BatchNorm running variance negative",
          "[unit][strategies]") {
    FakeHost host;
    synergos::plugins::fedadam::FedAdam fedadam(host, {});
    // FedAdam's first step with server_lr 1 and the default beta_1, beta_2, tau moves 0.001 by
    // about -0.05 and 0.5 by about -0.9: both would end below 0.
    auto session = fedadam.open(R"({"server_lr": 1.0})");
    REQUIRE(session.has_value());
    TensorMap global;
    global.tensors.push_back(f32_tensor("bn.running_var", {2}, {0.001F, 0.5F}));
    global.tensors.push_back(f32_tensor("bn.running_mean", {2}, {0.001F, 0.5F}));
    TensorMap client;
    client.tensors.push_back(f32_tensor("bn.running_var", {2}, {0.0F, 0.4F}));
    client.tensors.push_back(f32_tensor("bn.running_mean", {2}, {0.0F, 0.4F}));
    const TensorMap next = run_round(**session, global, 0, {{"a", 1, client}});
    const auto var = values_of(next, "bn.running_var");
    CHECK(var[0] == 0.0);
    CHECK(var[1] == 0.0);
    const auto mean = values_of(next, "bn.running_mean");  // a mean may go negative
    CHECK(mean[0] == Approx(0.001 - 0.05).margin(1e-4));
    CHECK(mean[1] < -0.3);
}
