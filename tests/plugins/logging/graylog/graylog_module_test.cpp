// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>

#include <boost/dll/shared_library.hpp>

#include <synergos/sdk/export.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "gelf_receiver.hpp"
#include "graylog_sink.hpp"

namespace sdk = synergos::sdk;

TEST_CASE("libsynergos-logging-graylog.so exports its ABI, descriptor and a working factory",
          "[integration][logging]") {
    const std::string path =
        std::string(SYNERGOS_TEST_PLUGIN_DIR) + "/libsynergos-logging-graylog.so";
    boost::dll::shared_library library(
        path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);

    const auto& abi = library.get_alias<const sdk::AbiInfo>(sdk::kAbiAlias);
    CHECK(abi.struct_size == sizeof(sdk::AbiInfo));
    CHECK(abi.abi_major == sdk::kAbiMajor);
    CHECK(std::string(abi.fingerprint) == sdk::kFingerprint);

    const auto& descriptor = library.get_alias<const sdk::PluginDescriptor>(sdk::kDescriptorAlias);
    CHECK(std::string(descriptor.name) == "graylog");
    CHECK(descriptor.kind == sdk::PluginKind::LogSink);
    std::map<std::string, std::string> values;
    for (std::size_t i = 0; i < descriptor.option_count; ++i) {
        if (descriptor.options[i].default_value != nullptr) {
            values[descriptor.options[i].key] = descriptor.options[i].default_value;
        }
    }
    CHECK(values.at("chunk_size") == "8154");
    CHECK(values.at("buffer_records") == "65536");

    synergos::test::UdpGelfReceiver receiver;
    values["port"] = std::to_string(receiver.port());
    auto& create = library.get_alias<sdk::Factory<sdk::LogSink>>("synergos_plugin_create_logging");
    sdk::testing::FakeHost host;
    {
        auto created = create(host, sdk::Options(values));
        REQUIRE(created.has_value());
        std::unique_ptr<sdk::LogSink> sink = std::move(created).value();
        REQUIRE(sink->start().is_ok());
        sdk::LogRecord record;
        record.event = "through the module";
        record.host = "node-m";
        record.time = std::chrono::system_clock::now();
        record.fields_json = R"({"k":"v"})";
        sink->write(record);
        sink->flush();
        auto message = receiver.receive();
        REQUIRE(message.has_value());
        CHECK(synergos::test::gelf_violations(message->json).empty());
        CHECK(message->json["short_message"] == "through the module");
        CHECK(message->json["_k"] == "v");
        CHECK(message->encoding == synergos::test::Encoding::Zlib);  // the default
        sink->stop();
        CHECK(sink->stats().written == 1);
    }  // the sink and its thread are gone before the library is unloaded

    values["transport"] = "carrier-pigeon";
    auto refused = create(host, sdk::Options(values));
    REQUIRE_FALSE(refused.has_value());
    CHECK_THAT(refused.error().message, Catch::Contains("option 'transport'"));
}

TEST_CASE("the graylog README options table matches the descriptor", "[unit][logging]") {
    std::ifstream in(std::string(SYNERGOS_TEST_SOURCE_DIR) + "/plugins/logging/graylog/README.md");
    const std::string readme((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
    REQUIRE_FALSE(readme.empty());
    const auto& descriptor = synergos::plugins::graylog::kGraylogDescriptor;
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
