// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <synergos/sdk/testing/fake_host.hpp>
#include <synergos/sdk/version.hpp>

#include "plugins/aggregator/fedavg/dl_plugin.hpp"
#include "strategy_helpers.hpp"

namespace {

using synergos::sdk::TensorMap;
using synergos::sdk::testing::FakeHost;
using namespace synergos::test;

TensorMap weights(float a, float b, bool with_delta_c) {
    TensorMap m;
    m.tensors.push_back(f32_tensor("nnl_0_linear.weight", {1, 2}, {a, b}));
    m.tensors.push_back(f32_tensor("nnl_0_linear.bias", {1}, {a - b}));
    if (with_delta_c) {
        m.tensors.push_back(
            f32_tensor("scaffold.delta_c.nnl_0_linear.weight", {1, 2}, {0.1F, 0.2F}));
        m.tensors.push_back(f32_tensor("scaffold.delta_c.nnl_0_linear.bias", {1}, {0.3F}));
    }
    return m;
}

}  // namespace

TEST_CASE("Every strategy module loads with RTLD_NOW | RTLD_LOCAL, checks its run and aggregates",
          "[integration][strategies]") {
    struct Module {
        const char* name;
        const char* run;
        const char* bad_run;  ///< refused by validate
    };
    const std::vector<Module> modules{
        {"fedavgm", R"({"algorithm": "FedAvgM"})", R"({"server_momentum": 2})"},
        {"fedadam", "{}", R"({"tau": -1})"},
        {"fedyogi", "{}", R"({"beta_2": 1})"},
        {"fedadagrad", "{}", R"({"server_lr": "high"})"},
        {"scaffold", "{}", R"({"server_lr": 0})"},
        {"fedmedian", "{}", "[]"},
        {"fedtrimmedavg", R"({"trim_fraction": 0.2})", R"({"trim_fraction": 0.6})"},
        {"krum", R"({"krum_f": 0})", R"({"krum_f": -2})"},
        {"multikrum", R"({"krum_f": 0, "multikrum_m": 2})", R"({"multikrum_m": 0})"},
        {"dpfedavg", R"({"dp_clip_norm": 1.0, "dp_noise_multiplier": 0.01})",
         R"({"dp_clip_norm": 1.0})"},
    };
    for (const Module& m : modules) {
        INFO(m.name);
        DlPlugin plugin(std::string(SYNERGOS_TEST_PLUGIN_DIR) + "/libsynergos-aggregator-" +
                        m.name + ".so");
        INFO(plugin.error());
        REQUIRE(plugin.is_open());
        const auto* abi = plugin.abi();
        REQUIRE(abi != nullptr);
        CHECK(abi->abi_major == synergos::sdk::kAbiMajor);
        CHECK(std::string(abi->fingerprint) == synergos::sdk::kFingerprint);
        const auto* descriptor = plugin.descriptor();
        REQUIRE(descriptor != nullptr);
        CHECK(std::string(descriptor->name) == m.name);
        CHECK(descriptor->kind == synergos::sdk::PluginKind::Aggregator);
        CHECK(descriptor->option_count == 0);
        auto* factory = plugin.factory<synergos::sdk::Aggregator>("aggregator");
        REQUIRE(factory != nullptr);

        FakeHost host;
        {
            auto aggregator = factory(host, synergos::sdk::Options{});
            REQUIRE(aggregator.has_value());
            CHECK((*aggregator)->validate(m.run).is_ok());
            CHECK((*aggregator)->validate(m.bad_run).code() ==
                  synergos::sdk::ErrorCode::InvalidArgument);
            auto session = (*aggregator)->open(m.run);
            REQUIRE(session.has_value());
            const bool scaffold = std::string(m.name) == "scaffold";
            std::vector<ClientUpdate> updates;
            for (int k = 0; k < 3; ++k) {
                updates.push_back({"p" + std::to_string(k), 10,
                                   weights(1.0F + 0.01F * static_cast<float>(k), -1.0F, scaffold)});
            }
            const TensorMap next = run_round(**session, weights(0.0F, 0.0F, false), 0, updates);
            const auto w = values_of(next, "nnl_0_linear.weight");
            // Every strategy moves the global (0, 0) towards the clients' (~1, -1).
            CHECK(w[0] > 0.0);
            CHECK(w[1] < 0.0);
            REQUIRE((*session)->save_state().has_value());
        }  // plugin objects die before the library closes
    }
}
