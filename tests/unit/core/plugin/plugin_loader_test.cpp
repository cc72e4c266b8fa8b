// SPDX-License-Identifier: Apache-2.0
// One TEST_CASE per refusal, each loading a real fixture plugin and checking the whole error line.
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include <synergos/core/plugin/loader.hpp>
#include <synergos/sdk/log_sink.hpp>
#include <synergos/sdk/storage_backend.hpp>
#include <synergos/sdk/testing/fake_host.hpp>
#include <synergos/sdk/version.hpp>

#include "test_support.hpp"

using synergos::core::AbiExpectation;
using synergos::core::PluginLoader;
using synergos::core::PluginRequest;
using synergos::sdk::ErrorCode;
using synergos::sdk::LogSink;
using synergos::sdk::testing::FakeHost;
using synergos::test::fixture_dir;
using synergos::test::fixture_file;
using synergos::test::fixture_prefix;
using synergos::test::fixture_request;
using synergos::test::TempDir;

namespace {

/// Opens `request` with a loader over the fixture dir and returns the error (fails if it loads).
synergos::sdk::Error open_error(const PluginRequest& request) {
    PluginLoader loader({fixture_dir()});
    auto opened = loader.open(request);
    REQUIRE_FALSE(opened.has_value());
    INFO(opened.error().message);
    CHECK(opened.error().message.find('\n') == std::string::npos);
    return opened.error();
}

/// Creates `request` as a log sink and returns the error (fails if it is created).
synergos::sdk::Error create_error(const PluginRequest& request) {
    PluginLoader loader({fixture_dir()});
    FakeHost host;
    auto made = loader.create<LogSink>(request, host);
    REQUIRE_FALSE(made.has_value());
    INFO(made.error().message);
    CHECK(made.error().message.find('\n') == std::string::npos);
    return made.error();
}

}  // namespace

TEST_CASE("PluginLoader creates a well-formed plugin and reports its descriptor",
          "[unit][loader]") {
    PluginLoader loader({fixture_dir()});
    FakeHost host;
    auto made = loader.create<LogSink>(fixture_request("good"), host);
    REQUIRE(made.has_value());
    auto& sink = *made.value();
    REQUIRE(sink.start().is_ok());
    synergos::sdk::LogRecord record;
    record.event = "hello";
    sink.write(record);
    sink.write(record);
    CHECK(sink.stats().written == 2);
    // The option default reached the constructor, which logged through the host.
    CHECK(host.captured().contains("fixture sink created"));
    REQUIRE_FALSE(host.captured().lines().empty());
    CHECK(host.captured().lines().front().fields_json == R"({"prefix":"good"})");

    const auto& info = made.value().get_deleter().library->info();
    CHECK(info.name == "good");
    CHECK(info.kind == synergos::sdk::PluginKind::LogSink);
    CHECK(info.version == "1.2.3");
    CHECK(info.status == "stable");
    CHECK(info.file == fixture_file("good"));
    CHECK(info.abi_major == SYNERGOS_SDK_ABI_MAJOR);
    CHECK(info.abi_minor == SYNERGOS_SDK_ABI_MINOR);
    CHECK(info.fingerprint == SYNERGOS_SDK_FINGERPRINT);
    REQUIRE(info.option_info.size() == 3);
    CHECK(info.option_keys == std::vector<std::string>{"prefix", "capacity", "stop_ms"});
    CHECK(info.option_info[1].default_value == std::optional<std::string>("8"));
    CHECK(std::string(info.options[0].key) == "prefix");
    sink.stop();
}

TEST_CASE("PluginLoader passes configured options to the plugin", "[unit][loader]") {
    PluginLoader loader({fixture_dir()});
    FakeHost host;
    auto request = fixture_request("good");
    request.options["prefix"] = "configured";
    auto made = loader.create<LogSink>(request, host);
    REQUIRE(made.has_value());
    CHECK(host.captured().lines().front().fields_json == R"({"prefix":"configured"})");
}

TEST_CASE("PluginLoader refuses a plugin that is not on the search path, listing those that are",
          "[unit][loader]") {
    TempDir empty;
    PluginLoader loader({empty.str(), fixture_dir()});
    auto opened = loader.open(fixture_request("nosuch"));
    REQUIRE_FALSE(opened.has_value());
    CHECK(opened.error().code == ErrorCode::NotFound);
    CHECK(opened.error().message ==
          "plugin 'nosuch' (kind logging): not found: no libsynergos-logging-nosuch.so in [" +
              empty.str() + ", " + fixture_dir() +
              "]; available logging plugins: abi_major_mismatch, abi_minor_newer, "
              "fingerprint_mismatch, good, missing_create_symbol, requires_option, "
              "throws_in_constructor, wrong_kind");

    PluginRequest storage;
    storage.kind = synergos::sdk::PluginKind::Storage;
    storage.name = "sqlite";
    auto none = loader.open(storage);
    REQUIRE_FALSE(none.has_value());
    CHECK_THAT(none.error().message, Catch::EndsWith("; available storage plugins: none"));
}

TEST_CASE("PluginLoader refuses an explicit path that does not exist", "[unit][loader]") {
    TempDir dir;
    auto request = fixture_request("good");
    request.path = dir.str() + "/libsynergos-logging-good.so";
    auto error = open_error(request);
    CHECK(error.code == ErrorCode::NotFound);
    CHECK(error.message ==
          "plugin 'good' (kind logging, file " + request.path + "): file not found");
}

TEST_CASE("PluginLoader refuses a plugin of the wrong kind", "[unit][loader]") {
    auto error = open_error(fixture_request("wrong_kind"));
    CHECK(error.code == ErrorCode::FailedPrecondition);
    CHECK(error.message ==
          fixture_prefix("wrong_kind") + ": wrong kind: expected logging, found storage");
}

TEST_CASE("PluginLoader refuses a plugin built against another SDK major", "[unit][loader]") {
    auto error = open_error(fixture_request("abi_major_mismatch"));
    CHECK(error.code == ErrorCode::FailedPrecondition);
    CHECK(error.message == fixture_prefix("abi_major_mismatch") +
                               ": ABI major mismatch: expected " +
                               std::to_string(SYNERGOS_SDK_ABI_MAJOR) + ", found " +
                               std::to_string(SYNERGOS_SDK_ABI_MAJOR + 1));
}

TEST_CASE("PluginLoader refuses a plugin built against a newer SDK minor", "[unit][loader]") {
    const std::string host_version =
        std::to_string(SYNERGOS_SDK_ABI_MAJOR) + "." + std::to_string(SYNERGOS_SDK_ABI_MINOR);
    const std::string plugin_version =
        std::to_string(SYNERGOS_SDK_ABI_MAJOR) + "." + std::to_string(SYNERGOS_SDK_ABI_MINOR + 1);
    auto error = open_error(fixture_request("abi_minor_newer"));
    CHECK(error.code == ErrorCode::FailedPrecondition);
    CHECK(error.message == fixture_prefix("abi_minor_newer") +
                               ": newer ABI minor: expected at most " + host_version + ", found " +
                               plugin_version);
}

TEST_CASE("PluginLoader accepts a plugin built against an older SDK minor", "[unit][loader]") {
    // A host one minor ahead sees the abi_minor_newer fixture as an older plugin.
    auto expected = AbiExpectation::current();
    expected.abi_minor += 1;
    PluginLoader loader({fixture_dir()}, expected);
    FakeHost host;
    auto made = loader.create<LogSink>(fixture_request("abi_minor_newer"), host);
    REQUIRE(made.has_value());
    CHECK(made.value()->stats().written == 0);
}

TEST_CASE("PluginLoader refuses a plugin with another build fingerprint", "[unit][loader]") {
    auto error = open_error(fixture_request("fingerprint_mismatch"));
    CHECK(error.code == ErrorCode::FailedPrecondition);
    CHECK(error.message == fixture_prefix("fingerprint_mismatch") +
                               ": build fingerprint mismatch: expected '" +
                               SYNERGOS_SDK_FINGERPRINT +
                               "', found 'othercc-99;libother-1;boost-1_01' (rebuild the plugin "
                               "with the host's compiler, standard library and Boost)");

    SECTION("the host's own expectation is what is compared") {
        PluginLoader strict({fixture_dir()}, AbiExpectation{SYNERGOS_SDK_ABI_MAJOR,
                                                            SYNERGOS_SDK_ABI_MINOR, "other-host"});
        auto opened = strict.open(fixture_request("good"));
        REQUIRE_FALSE(opened.has_value());
        CHECK_THAT(opened.error().message,
                   Catch::Contains("expected 'other-host', found '" +
                                   std::string(SYNERGOS_SDK_FINGERPRINT) + "'"));
    }
}

TEST_CASE("PluginLoader refuses a plugin without its factory entry point", "[unit][loader]") {
    auto error = open_error(fixture_request("missing_create_symbol"));
    CHECK(error.code == ErrorCode::FailedPrecondition);
    CHECK(error.message == fixture_prefix("missing_create_symbol") +
                               ": missing entry point synergos_plugin_create_logging; found: "
                               "synergos_plugin_abi, synergos_plugin_descriptor");
}

TEST_CASE("PluginLoader refuses an unknown option key, listing the valid ones", "[unit][loader]") {
    auto request = fixture_request("requires_option");
    request.options = {{"endpoint", "127.0.0.1"}, {"colour", "red"}};
    auto error = create_error(request);
    CHECK(error.code == ErrorCode::InvalidArgument);
    CHECK(error.message == fixture_prefix("requires_option") +
                               ": unknown option 'colour'; valid options: endpoint, port, "
                               "verbose, timeout, ratio, tags, extra, token, pin");
}

TEST_CASE("PluginLoader refuses a plugin whose required option is missing", "[unit][loader]") {
    auto request = fixture_request("requires_option");
    request.options = {{"port", "1"}};
    auto error = create_error(request);
    CHECK(error.code == ErrorCode::InvalidArgument);
    CHECK(error.message ==
          fixture_prefix("requires_option") + ": missing required option 'endpoint' (string)");
}

TEST_CASE("PluginLoader refuses option values that do not parse as their type", "[unit][loader]") {
    struct Row {
        const char* key;
        const char* value;
        const char* expected;
    };
    const Row row = GENERATE(
        Row{"port", "12x", "option 'port' expects int, found '12x'"},
        Row{"port", "", "option 'port' expects int, found ''"},
        Row{"verbose", "maybe", "option 'verbose' expects bool, found 'maybe'"},
        Row{"timeout", "5 parsecs", "option 'timeout' expects duration_ms, found '5 parsecs'"},
        Row{"timeout", "-1", "option 'timeout' expects duration_ms, found '-1'"},
        Row{"ratio", "nan", "option 'ratio' expects double, found 'nan'"},
        Row{"extra", "{\"a\":", "option 'extra' expects json, found '{\"a\":'"},
        Row{"pin", "12ab", "option 'pin' expects int, found '***'"});
    auto request = fixture_request("requires_option");
    request.options = {{"endpoint", "127.0.0.1"}, {row.key, row.value}};
    auto error = create_error(request);
    CHECK(error.code == ErrorCode::InvalidArgument);
    CHECK(error.message == fixture_prefix("requires_option") + ": " + row.expected);
}

TEST_CASE("PluginLoader fills defaults and normalises option values", "[unit][loader]") {
    PluginLoader loader({fixture_dir()});
    auto request = fixture_request("requires_option");
    request.options = {{"endpoint", "127.0.0.1"}, {"token", "s3cret"}};
    auto library = loader.open(request);
    REQUIRE(library.has_value());

    auto options = PluginLoader::validate_options(*library.value(), request);
    REQUIRE(options.has_value());
    CHECK(options->values() == std::map<std::string, std::string>{{"endpoint", "127.0.0.1"},
                                                                  {"port", "12201"},
                                                                  {"verbose", "false"},
                                                                  {"timeout", "5000"},
                                                                  {"token", "s3cret"}});
    auto redacted = synergos::core::redact_options(library.value()->info(), *options);
    CHECK(redacted.at("token") == "***");
    CHECK(redacted.at("endpoint") == "127.0.0.1");

    request.options = {{"endpoint", "e"}, {"verbose", "YES"}, {"timeout", "2m"},
                       {"ratio", "0.25"}, {"tags", "a, b"},   {"extra", R"({"k": [1, 2]})"}};
    options = PluginLoader::validate_options(*library.value(), request);
    REQUIRE(options.has_value());
    CHECK(options->get_bool("verbose"));
    CHECK(options->get_int("timeout") == 120000);
    CHECK(options->get_double("ratio") == 0.25);
    CHECK(options->get_list("tags") == std::vector<std::string>{"a", "b"});
    CHECK(options->get_string("extra") == R"({"k": [1, 2]})");
}

TEST_CASE("PluginLoader reports a factory that throws as one error, nothing crosses",
          "[unit][loader]") {
    auto error = create_error(fixture_request("throws_in_constructor"));
    CHECK(error.code == ErrorCode::Internal);
    CHECK(error.message == fixture_prefix("throws_in_constructor") +
                               ": plugin factory failed: fixture constructor failure");
}

TEST_CASE("PluginLoader refuses a plugin file others can write", "[unit][loader]") {
    TempDir dir;
    const std::string file = dir.copy_fixture("good");
    REQUIRE(::chmod(file.c_str(), 0666) == 0);
    PluginLoader loader({dir.str()});
    auto opened = loader.open(fixture_request("good"));
    REQUIRE_FALSE(opened.has_value());
    CHECK(opened.error().code == ErrorCode::PermissionDenied);
    CHECK(opened.error().message ==
          "plugin 'good' (kind logging, file " + file +
              "): unsafe permissions: expected a file not writable by group or others, "
              "found mode 0666");
}

TEST_CASE("PluginLoader refuses a file that is not a loadable library", "[unit][loader]") {
    TempDir dir;
    const std::string file = dir.str() + "/libsynergos-logging-garbage.so";
    std::ofstream(file) << "this is not an ELF file\n";
    ::chmod(file.c_str(), 0644);
    PluginLoader loader({dir.str()});
    auto opened = loader.open(fixture_request("garbage"));
    REQUIRE_FALSE(opened.has_value());
    CHECK(opened.error().code == ErrorCode::FailedPrecondition);
    CHECK_THAT(opened.error().message, Catch::StartsWith("plugin 'garbage' (kind logging, file " +
                                                         file + "): cannot load: ") &&
                                           Catch::Contains(file));
    CHECK(opened.error().message.find('\n') == std::string::npos);
}

TEST_CASE("PluginLoader refuses a second file claiming an already loaded plugin",
          "[unit][loader]") {
    TempDir dir;
    const std::string copy = dir.copy_fixture("good");
    PluginLoader loader({fixture_dir()});
    auto first = loader.open(fixture_request("good"));
    REQUIRE(first.has_value());
    // Opening the same file again is fine.
    REQUIRE(loader.open(fixture_request("good")).has_value());

    auto request = fixture_request("good");
    request.path = copy;
    auto second = loader.open(request);
    REQUIRE_FALSE(second.has_value());
    CHECK(second.error().message == "plugin 'good' (kind logging, file " + copy +
                                        "): duplicate plugin: expected one file per kind and "
                                        "name, found it already loaded from " +
                                        fixture_file("good"));
}

TEST_CASE("PluginLoader resolves names in search-path order and honours an explicit path",
          "[unit][loader]") {
    TempDir first;
    const std::string copy = first.copy_fixture("good");
    {
        PluginLoader loader({first.str(), fixture_dir()});
        auto opened = loader.open(fixture_request("good"));
        REQUIRE(opened.has_value());
        CHECK(opened.value()->info().file == copy);
    }
    {
        PluginLoader loader({fixture_dir(), first.str()});
        auto opened = loader.open(fixture_request("good"));
        REQUIRE(opened.has_value());
        CHECK(opened.value()->info().file == fixture_file("good"));
    }
    {
        TempDir elsewhere;
        const std::string renamed = elsewhere.copy_fixture("good", "custom-name.so");
        PluginLoader loader({});
        auto request = fixture_request("good");
        request.path = renamed;
        auto opened = loader.open(request);
        REQUIRE(opened.has_value());
        CHECK(opened.value()->info().file == renamed);
    }
}

TEST_CASE("PluginLoader refuses a request whose name is not a plugin name", "[unit][loader]") {
    const std::string name = GENERATE(std::string("../good"), std::string(""), std::string("Good"),
                                      std::string(65, 'a'));
    PluginLoader loader({fixture_dir()});
    auto opened = loader.open(fixture_request(name));
    REQUIRE_FALSE(opened.has_value());
    CHECK(opened.error().code == ErrorCode::InvalidArgument);
    CHECK(opened.error().message == "plugin '" + name +
                                        "' (kind logging): invalid name: expected [a-z0-9_]+ of "
                                        "at most 64 characters");
}

TEST_CASE("PluginLoader refuses create through an interface of another kind", "[unit][loader]") {
    PluginLoader loader({fixture_dir()});
    FakeHost host;
    auto made = loader.create<synergos::sdk::StorageBackend>(fixture_request("good"), host);
    REQUIRE_FALSE(made.has_value());
    CHECK(made.error().message ==
          "plugin 'good' (kind logging): requested through the storage "
          "interface: expected kind storage, found logging");
}
