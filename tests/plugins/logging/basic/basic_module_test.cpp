// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <map>
#include <memory>
#include <string>

#include <boost/dll/shared_library.hpp>

#include <nlohmann/json.hpp>

#include <synergos/sdk/export.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "basic_sink.hpp"
#include "temp_dir.hpp"

namespace sdk = synergos::sdk;

TEST_CASE("libsynergos-logging-basic.so exports its ABI, descriptor and a working factory",
          "[integration][logging]") {
    const std::string path =
        std::string(SYNERGOS_TEST_PLUGIN_DIR) + "/libsynergos-logging-basic.so";
    boost::dll::shared_library library(
        path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);

    const auto& abi = library.get_alias<const sdk::AbiInfo>(sdk::kAbiAlias);
    CHECK(abi.struct_size == sizeof(sdk::AbiInfo));
    CHECK(abi.abi_major == sdk::kAbiMajor);
    CHECK(std::string(abi.fingerprint) == sdk::kFingerprint);

    const auto& descriptor = library.get_alias<const sdk::PluginDescriptor>(sdk::kDescriptorAlias);
    CHECK(std::string(descriptor.name) == "basic");
    CHECK(descriptor.kind == sdk::PluginKind::LogSink);
    REQUIRE(descriptor.option_count > 0);
    std::map<std::string, std::string> defaults;
    for (std::size_t i = 0; i < descriptor.option_count; ++i) {
        const auto& spec = descriptor.options[i];
        CHECK(std::string(spec.description).size() > 10);
        if (spec.default_value != nullptr) {
            defaults[spec.key] = spec.default_value;
        }
    }
    CHECK(defaults.at("output") == "stderr");

    synergos::test::TempDir dir;
    auto values = defaults;  // what the host does: defaults first, then the configured values
    values["output"] = "none";
    values["json_file"] = dir.file("module.jsonl");

    auto& create = library.get_alias<sdk::Factory<sdk::LogSink>>("synergos_plugin_create_logging");
    sdk::testing::FakeHost host(dir.path().string());
    {
        auto created = create(host, sdk::Options(values));
        REQUIRE(created.has_value());
        std::unique_ptr<sdk::LogSink> sink = std::move(created).value();
        REQUIRE(sink->start().is_ok());
        sdk::LogRecord record;
        record.event = "through the module";
        record.fields_json = R"({"k":"v"})";
        sink->write(record);
        sink->stop();
        CHECK(sink->stats().written == 1);
    }  // the sink is destroyed before the library is unloaded
    const auto lines = synergos::test::read_lines(dir.file("module.jsonl"));
    REQUIRE(lines.size() == 1);
    CHECK(nlohmann::json::parse(lines[0])["fields"]["k"] == "v");

    // A bad option comes back as an error naming it, not as an exception.
    values["color"] = "plaid";
    auto refused = create(host, sdk::Options(values));
    REQUIRE_FALSE(refused.has_value());
    CHECK_THAT(refused.error().message, Catch::Contains("option 'color'"));
}

TEST_CASE("the README options table matches the descriptor", "[unit][logging]") {
    const std::string readme = synergos::test::read_file(std::string(SYNERGOS_TEST_SOURCE_DIR) +
                                                         "/plugins/logging/basic/README.md");
    REQUIRE_FALSE(readme.empty());
    const auto& descriptor = synergos::plugins::basic::kBasicDescriptor;
    for (std::size_t i = 0; i < descriptor.option_count; ++i) {
        const auto& spec = descriptor.options[i];
        const std::string default_cell =
            spec.default_value == nullptr ? "(none)" : "`" + std::string(spec.default_value) + "`";
        const std::string row = "| `" + std::string(spec.key) + "` | " + sdk::to_string(spec.type) +
                                " | " + (spec.required ? "yes" : "no") + " | " + default_cell +
                                " |";
        CAPTURE(row);
        CHECK(readme.find(row) != std::string::npos);
    }
    // No row for an option the plugin does not have (rows of the "## Options" section only).
    const auto section_begin = readme.find("\n## Options");
    REQUIRE(section_begin != std::string::npos);
    const auto section_end = readme.find("\n## ", section_begin + 1);
    const auto section = readme.substr(section_begin, section_end - section_begin);
    std::size_t rows = 0;
    for (auto pos = section.find("\n| `"); pos != std::string::npos;
         pos = section.find("\n| `", pos + 1)) {
        ++rows;
    }
    CHECK(rows == descriptor.option_count);
}
