// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <map>
#include <string>

#include <synergos/sdk/testing/fake_host.hpp>
#include <synergos/sdk/version.hpp>

#include "plugins/aggregator/fedavg/dl_plugin.hpp"
#include "torch_test_support.hpp"

TEST_CASE("The torch module loads with RTLD_NOW | RTLD_LOCAL and trains", "[integration][torch]") {
    using namespace synergos;
    test::DlPlugin plugin(std::string(SYNERGOS_TEST_PLUGIN_DIR) + "/libsynergos-model-torch.so");
    INFO(plugin.error());
    REQUIRE(plugin.is_open());
    const auto* abi = plugin.abi();
    REQUIRE(abi != nullptr);
    CHECK(abi->struct_size == sizeof(sdk::AbiInfo));
    CHECK(abi->abi_major == sdk::kAbiMajor);
    CHECK(std::string(abi->fingerprint) == sdk::kFingerprint);
    const auto* descriptor = plugin.descriptor();
    REQUIRE(descriptor != nullptr);
    CHECK(std::string(descriptor->name) == "torch");
    CHECK(descriptor->kind == sdk::PluginKind::Model);
    REQUIRE(descriptor->option_count == 2);
    CHECK(std::string(descriptor->options[0].key) == "threads");
    CHECK(std::string(descriptor->options[1].key) == "max_parameters");
    CHECK(std::string(descriptor->options[1].default_value) == "100000000");
    auto* factory = plugin.factory<sdk::ModelBackend>("model");
    REQUIRE(factory != nullptr);

    sdk::testing::FakeHost host;
    auto refused =
        factory(host, sdk::Options(std::map<std::string, std::string>{{"threads", "-3"}}));
    REQUIRE_FALSE(refused.has_value());
    CHECK_THAT(refused.error().message, Catch::Contains("option threads"));
    auto too_small =
        factory(host, sdk::Options(std::map<std::string, std::string>{{"max_parameters", "0"}}));
    REQUIRE_FALSE(too_small.has_value());
    CHECK_THAT(too_small.error().message, Catch::Contains("option max_parameters"));

    auto backend =
        factory(host, sdk::Options(std::map<std::string, std::string>{{"threads", "0"}}));
    REQUIRE(backend.has_value());
    const std::string arch =
        R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 1},
            "activation": "sigmoid"}])";
    const std::string args =
        R"({"criterion": "BCELoss", "base_lr": 0.1, "max_lr": 0.2, "epochs": 2})";
    CHECK((*backend)->validate(arch, args, {2}).is_ok());
    auto model = (*backend)->build(arch, args);
    REQUIRE(model.has_value());
    auto report =
        (*model)->train(test::classify_data({2}, {1, 0, 0, 1, 1, 1}, {1, 0, 1}, 2), args, nullptr);
    REQUIRE(report.has_value());
    CHECK(report->epochs_run == 2);
    // `model` and `backend` are destroyed before `plugin` closes the library.
}
