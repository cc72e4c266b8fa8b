// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include <boost/dll/shared_library.hpp>

#include <synergos/sdk/export.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "temp_dir.hpp"

namespace sdk = synergos::sdk;
using synergos::test::mlflow::slurp;
using synergos::test::mlflow::TempDir;

TEST_CASE("libsynergos-tracking-mlflow.so exports its descriptor and a working factory",
          "[integration][mlflow]") {
    const std::string path =
        std::string(SYNERGOS_TEST_PLUGIN_DIR) + "/libsynergos-tracking-mlflow.so";
    boost::dll::shared_library library(
        path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    const auto& abi = library.get_alias<const sdk::AbiInfo>(sdk::kAbiAlias);
    CHECK(abi.struct_size == sizeof(sdk::AbiInfo));
    const auto& descriptor = library.get_alias<const sdk::PluginDescriptor>(sdk::kDescriptorAlias);
    CHECK(std::string(descriptor.name) == "mlflow");
    CHECK(descriptor.kind == sdk::PluginKind::Tracking);
    std::map<std::string, std::string> defaults;
    std::map<std::string, std::string> keys;
    for (std::size_t i = 0; i < descriptor.option_count; ++i) {
        const auto& spec = descriptor.options[i];
        keys[spec.key] = sdk::to_string(spec.type);
        if (spec.default_value != nullptr) {
            defaults[spec.key] = spec.default_value;
        }
    }
    CHECK(keys == std::map<std::string, std::string>{
                      {"root", "path"}, {"sync_metrics", "bool"}, {"user", "string"}});

    TempDir dir;
    sdk::testing::FakeHost host(dir.path().string());
    auto& create = library.get_alias<sdk::Factory<sdk::Tracker>>("synergos_plugin_create_tracking");
    {
        auto created = create(host, sdk::Options(defaults));
        REQUIRE(created.has_value());
        std::unique_ptr<sdk::Tracker> tracker = std::move(created).value();
        REQUIRE(tracker->start().is_ok());
        const auto experiment = tracker->ensure_experiment("through the module");
        REQUIRE(experiment.has_value());
        const auto run = tracker->ensure_run(*experiment, "r", {});
        REQUIRE(run.has_value());
        REQUIRE(tracker->log_metrics(*run, {{"loss", 0.5, 1, 42}}).is_ok());
        // Errors cross the boundary as values.
        CHECK(tracker->log_metrics(*run, {{"bad key!", 1, 1, 1}}).code() ==
              sdk::ErrorCode::InvalidArgument);
        tracker->stop();
        CHECK(slurp(dir.path() / "mlflow" / *experiment / *run / "metrics" / "loss") ==
              "42 0.5 1\n");
    }
    CHECK(host.captured().contains("mlflow store ready"));
}
