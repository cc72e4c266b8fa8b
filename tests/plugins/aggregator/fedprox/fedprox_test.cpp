// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "fedavg.hpp"
#include "fedprox.hpp"
#include "plugins/aggregator/fedavg/dl_plugin.hpp"
#include "plugins/aggregator/fedavg/tensor_builders.hpp"

namespace {

using synergos::plugins::fedavg::FedAvg;
using synergos::plugins::fedprox::FedProx;
using synergos::sdk::ErrorCode;
using synergos::sdk::TensorMap;
using synergos::sdk::testing::FakeHost;
using namespace synergos::test;

TensorMap client(std::uint32_t seed) {
    TensorMap m;
    m.tensors.push_back(f32_tensor("nnl_0_linear.weight", {4, 19}, pseudo_random(76, seed)));
    m.tensors.push_back(f32_tensor("nnl_0_linear.bias", {4}, pseudo_random(4, seed + 7)));
    m.tensors.push_back(i64_tensor("nnl_1_batchnorm1d.num_batches_tracked", {}, {seed}));
    return m;
}

TensorMap aggregate(synergos::sdk::Aggregator& aggregator, const std::string& run,
                    const std::vector<TensorMap>& updates, const std::vector<std::int64_t>& n) {
    auto session = aggregator.open(run);
    REQUIRE(session.has_value());
    REQUIRE((*session)->begin_round(updates[0], 0).is_ok());
    for (std::size_t k = 0; k < updates.size(); ++k) {
        REQUIRE((*session)->accumulate("p" + std::to_string(k), n[k], updates[k]).is_ok());
    }
    auto result = (*session)->finish_round();
    REQUIRE(result.has_value());
    return std::move(*result);
}

}  // namespace

TEST_CASE("FedProx hands workers the run's mu, 0.1 by default", "[unit][fedprox]") {
    FakeHost host;
    FedProx fedprox(host, {});
    CHECK(nlohmann::json::parse(fedprox.worker_arguments("{}"))["mu"] == 0.1);
    CHECK(nlohmann::json::parse(fedprox.worker_arguments(R"({"mu": null})"))["mu"] == 0.1);
    CHECK(nlohmann::json::parse(fedprox.worker_arguments(R"({"mu": 0.35})"))["mu"] == 0.35);
    CHECK(nlohmann::json::parse(fedprox.worker_arguments(R"({"mu": 0})"))["mu"] == 0.0);
}

TEST_CASE("FedProx refuses a bad mu and names the field", "[unit][fedprox]") {
    FakeHost host;
    FedProx fedprox(host, {});
    for (const char* run :
         {R"({"mu": -0.5})", R"({"mu": "0.1"})", R"({"mu": true})", "[]", "{oops"}) {
        INFO(run);
        auto status = fedprox.validate(run);
        CHECK(status.code() == ErrorCode::InvalidArgument);
        CHECK_THAT(status.message(), Catch::Contains("fedprox"));
        CHECK_FALSE(fedprox.open(run).has_value());
    }
    CHECK_THAT(fedprox.validate(R"({"mu": -0.5})").message(), Catch::Contains("'mu'"));
    // worker_arguments cannot fail: it falls back to the default and warns.
    CHECK(nlohmann::json::parse(fedprox.worker_arguments(R"({"mu": -1})"))["mu"] == 0.1);
    CHECK(host.captured().contains("fedprox"));
}

TEST_CASE("FedProx with mu 0 aggregates exactly like FedAvg", "[unit][fedprox]") {
    FakeHost host;
    FedProx fedprox(host, {});
    FedAvg fedavg(host, {});
    const std::vector<TensorMap> updates{client(1), client(2), client(3)};
    const std::vector<std::int64_t> n{17, 3, 40};
    for (const char* run : {R"({"mu": 0})", R"({"mu": 0.5})"}) {
        INFO(run);  // the server step does not depend on mu at all
        const TensorMap prox = aggregate(fedprox, run, updates, n);
        const TensorMap avg = aggregate(fedavg, run, updates, n);
        REQUIRE(prox.tensors.size() == avg.tensors.size());
        for (std::size_t t = 0; t < prox.tensors.size(); ++t) {
            CHECK(prox.tensors[t].name == avg.tensors[t].name);
            CHECK(prox.tensors[t].data == avg.tensors[t].data);
        }
    }
}

TEST_CASE("FedProx refuses an update holding a NaN or an inf naming the participant and tensor",
          "[unit][fedprox][finite]") {
    FakeHost host;
    FedProx fedprox(host, {});
    const std::vector<TensorMap> good{client(1), client(3)};
    const std::vector<std::int64_t> n{17, 40};
    const TensorMap others = aggregate(fedprox, R"({"mu": 0.5})", good, n);
    auto session = fedprox.open(R"({"mu": 0.5})");
    REQUIRE(session.has_value());
    REQUIRE((*session)->begin_round(good[0], 2).is_ok());
    REQUIRE((*session)->accumulate("p0", n[0], good[0]).is_ok());

    SECTION("a whole update with a NaN is refused and the mean is the others' alone") {
        TensorMap bad = client(2);
        const float nan = std::nanf("");
        std::memcpy(bad.tensors[1].data.data() + 3 * sizeof nan, &nan, sizeof nan);
        auto st = (*session)->accumulate("bad", 3, bad);
        CHECK(st.code() == ErrorCode::InvalidArgument);
        CHECK_THAT(st.message(), Catch::Contains("fedprox: participant 'bad', round 2"));
        CHECK_THAT(st.message(), Catch::Contains("'nnl_0_linear.bias'"));
        CHECK_THAT(st.message(), Catch::Contains("non-finite value at element 3"));
    }
    SECTION("a streamed piece with an inf is refused and folds nothing") {
        auto* streaming =
            dynamic_cast<synergos::sdk::StreamingAggregationSession*>(session->get());
        REQUIRE(streaming != nullptr);
        const TensorMap bad = client(2);
        std::vector<synergos::sdk::TensorSpec> specs;
        for (const auto& t : bad.tensors) {
            specs.push_back({t.name, t.dtype, t.shape});
        }
        auto id = streaming->begin_update("bad", 3, specs);
        REQUIRE(id.has_value());
        std::vector<float> w = f32_values(bad.tensors[0]);
        w[50] = std::numeric_limits<float>::infinity();
        auto st = streaming->fold(*id, 0, 0, w.data(), w.size());
        CHECK(st.code() == ErrorCode::InvalidArgument);
        CHECK_THAT(st.message(), Catch::Contains("fedprox: participant 'bad', round 2"));
        CHECK_THAT(st.message(), Catch::Contains("'nnl_0_linear.weight'"));
        CHECK_THAT(st.message(), Catch::Contains("non-finite value at element 50"));
    }
    REQUIRE((*session)->accumulate("p1", n[1], good[1]).is_ok());
    auto got = (*session)->finish_round();
    REQUIRE(got.has_value());
    REQUIRE(got->tensors.size() == others.tensors.size());
    for (std::size_t t = 0; t < others.tensors.size(); ++t) {
        CHECK(got->tensors[t].data == others.tensors[t].data);  // bit for bit
    }
}

TEST_CASE("The fedprox module loads with RTLD_NOW | RTLD_LOCAL", "[integration][fedprox]") {
    DlPlugin plugin(std::string(SYNERGOS_TEST_PLUGIN_DIR) + "/libsynergos-aggregator-fedprox.so");
    REQUIRE(plugin.is_open());
    REQUIRE(plugin.abi() != nullptr);
    REQUIRE(plugin.descriptor() != nullptr);
    CHECK(std::string(plugin.descriptor()->name) == "fedprox");
    auto* factory = plugin.factory<synergos::sdk::Aggregator>("aggregator");
    REQUIRE(factory != nullptr);
    FakeHost host;
    auto aggregator = factory(host, synergos::sdk::Options{});
    REQUIRE(aggregator.has_value());
    CHECK(nlohmann::json::parse((*aggregator)->worker_arguments(R"({"mu": 0.2})"))["mu"] == 0.2);
    // `aggregator` is destroyed before `plugin` closes the library (reverse declaration order).
}
