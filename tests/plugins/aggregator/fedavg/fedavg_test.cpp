// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <memory>
#include <string>

#include <nlohmann/json.hpp>
#include <synergos/sdk/testing/fake_host.hpp>
#include <synergos/sdk/version.hpp>

#include "fedavg.hpp"
#include "plugins/aggregator/fedavg/dl_plugin.hpp"
#include "tensor_builders.hpp"

namespace {

using synergos::plugins::fedavg::FedAvg;
using synergos::sdk::ErrorCode;
using synergos::sdk::TensorMap;
using synergos::sdk::testing::FakeHost;
using namespace synergos::test;

}  // namespace

TEST_CASE("FedAvg hands workers mu 0 whatever the run's mu", "[unit][fedavg]") {
    FakeHost host;
    FedAvg fedavg(host, {});
    for (const char* run : {R"({})", R"({"mu": 0.1})", R"({"mu": 0.0, "algorithm": "FedAvg"})"}) {
        INFO(run);
        // The original asserted mu == 0 (so FedAvg with default arguments crashed); we ignore it.
        CHECK(fedavg.validate(run).is_ok());
        const auto args = nlohmann::json::parse(fedavg.worker_arguments(run));
        CHECK(args == nlohmann::json{{"mu", 0.0}});
    }
}

TEST_CASE("FedAvg refuses a run that is not a JSON object", "[unit][fedavg]") {
    FakeHost host;
    FedAvg fedavg(host, {});
    for (const char* run : {"[1, 2]", "{not json", "42"}) {
        INFO(run);
        auto status = fedavg.validate(run);
        CHECK(status.code() == ErrorCode::InvalidArgument);
        CHECK_THAT(status.message(), Catch::Contains("fedavg"));
        CHECK_FALSE(fedavg.open(run).has_value());
    }
}

TEST_CASE("The fedavg module loads with RTLD_NOW | RTLD_LOCAL and aggregates",
          "[integration][fedavg]") {
    DlPlugin plugin(std::string(SYNERGOS_TEST_PLUGIN_DIR) + "/libsynergos-aggregator-fedavg.so");
    REQUIRE(plugin.is_open());
    const auto* abi = plugin.abi();
    REQUIRE(abi != nullptr);
    CHECK(abi->abi_major == synergos::sdk::kAbiMajor);
    CHECK(std::string(abi->fingerprint) == synergos::sdk::kFingerprint);
    const auto* descriptor = plugin.descriptor();
    REQUIRE(descriptor != nullptr);
    CHECK(std::string(descriptor->name) == "fedavg");
    CHECK(descriptor->kind == synergos::sdk::PluginKind::Aggregator);
    auto* factory = plugin.factory<synergos::sdk::Aggregator>("aggregator");
    REQUIRE(factory != nullptr);

    FakeHost host;
    {
        auto aggregator = factory(host, synergos::sdk::Options{});
        REQUIRE(aggregator.has_value());
        auto session = (*aggregator)->open("{}");
        REQUIRE(session.has_value());
        TensorMap a;
        a.tensors.push_back(f32_tensor("w", {2}, {1.0F, 2.0F}));
        TensorMap b;
        b.tensors.push_back(f32_tensor("w", {2}, {4.0F, -1.0F}));
        REQUIRE((*session)->begin_round(a, 0).is_ok());
        REQUIRE((*session)->accumulate("a", 1, a).is_ok());
        REQUIRE((*session)->accumulate("b", 2, b).is_ok());
        auto mean = (*session)->finish_round();
        REQUIRE(mean.has_value());
        const auto w = f32_values(mean->tensors[0]);
        CHECK(w[0] == Approx(3.0));
        CHECK(w[1] == Approx(0.0).margin(1e-6));
    }  // plugin objects die before the library closes
}
