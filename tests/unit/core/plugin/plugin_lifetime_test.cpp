// SPDX-License-Identifier: Apache-2.0
// The library must outlive every object it created (STYLE.md L4-L6, L12). Whether a library is
// still mapped is asked of the dynamic loader itself (dlopen with RTLD_NOLOAD).
#include <dlfcn.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include <synergos/core/plugin/loader.hpp>
#include <synergos/sdk/log_sink.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "test_support.hpp"

using synergos::core::PluginHandle;
using synergos::core::PluginLoader;
using synergos::sdk::LogSink;
using synergos::sdk::testing::FakeHost;
using synergos::test::fixture_dir;
using synergos::test::fixture_file;
using synergos::test::fixture_request;

namespace {

/// True when `file` is mapped in this process; does not load it.
bool is_loaded(const std::string& file) {
    void* handle = ::dlopen(file.c_str(), RTLD_NOW | RTLD_NOLOAD);
    if (handle == nullptr) {
        return false;
    }
    ::dlclose(handle);  // RTLD_NOLOAD still took a reference
    return true;
}

PluginHandle<LogSink> make_sink(FakeHost& host) {
    PluginLoader loader({fixture_dir()});
    auto made = loader.create<LogSink>(fixture_request("good"), host);
    REQUIRE(made.has_value());
    return std::move(made).value();
}

}  // namespace

TEST_CASE("A plugin library stays loaded while its object lives and unloads after it",
          "[unit][loader][lifetime]") {
    const std::string file = fixture_file("good");
    REQUIRE_FALSE(is_loaded(file));
    FakeHost host;
    {
        // The loader and every library reference are gone when make_sink returns.
        PluginHandle<LogSink> sink = make_sink(host);
        REQUIRE(sink);
        CHECK(sink.get_deleter().library.use_count() == 1);
        CHECK(is_loaded(file));

        synergos::sdk::LogRecord record;
        record.event = "after the loader is gone";
        sink->write(record);
        CHECK(sink->stats().written == 1);

        sink.reset();  // plugin destructor runs with the library still mapped
        CHECK(host.captured().contains("fixture sink destroyed"));
        CHECK(is_loaded(file));  // the deleter still holds the library
    }
    CHECK_FALSE(is_loaded(file));
}

TEST_CASE("Objects from the same library file keep it loaded until the last one goes",
          "[unit][loader][lifetime]") {
    const std::string file = fixture_file("good");
    FakeHost host;
    std::vector<PluginHandle<LogSink>> sinks;
    {
        PluginLoader loader({fixture_dir()});
        for (int i = 0; i < 3; ++i) {
            auto made = loader.create<LogSink>(fixture_request("good"), host);
            REQUIRE(made.has_value());
            sinks.push_back(std::move(made).value());
        }
    }
    // One PluginLibrary per open(); the dynamic loader counts the references to the file.
    CHECK(sinks.front().get_deleter().library->info().file == file);
    CHECK(sinks.back().get_deleter().library->info().file == file);
    PluginHandle<LogSink> moved = std::move(sinks.back());
    sinks.pop_back();
    sinks.clear();
    CHECK(is_loaded(file));
    synergos::sdk::LogRecord record;
    moved->write(record);
    CHECK(moved->stats().written == 1);
    moved.reset();
    CHECK(is_loaded(file));  // reset() deletes the object; the deleter keeps the library
    moved = PluginHandle<LogSink>();
    CHECK_FALSE(is_loaded(file));
}

TEST_CASE("Loading and unloading a plugin repeatedly is clean", "[unit][loader][lifetime]") {
    const std::string file = fixture_file("good");
    FakeHost host;
    for (int round = 0; round < 20; ++round) {
        auto sink = make_sink(host);
        synergos::sdk::LogRecord record;
        sink->write(record);
        REQUIRE(sink->stats().written == 1);
    }
    CHECK_FALSE(is_loaded(file));
    auto lines = host.captured().lines();
    CHECK(std::count_if(lines.begin(), lines.end(), [](const auto& line) {
              return line.event == "fixture sink destroyed";
          }) == 20);
}

TEST_CASE("Refused plugins are unloaded at once", "[unit][loader][lifetime]") {
    const std::string name =
        GENERATE(std::string("abi_major_mismatch"), std::string("fingerprint_mismatch"),
                 std::string("wrong_kind"), std::string("missing_create_symbol"),
                 std::string("throws_in_constructor"));
    FakeHost host;
    {
        PluginLoader loader({fixture_dir()});
        auto made = loader.create<LogSink>(fixture_request(name), host);
        REQUIRE_FALSE(made.has_value());
    }
    CHECK_FALSE(is_loaded(fixture_file(name)));
}

TEST_CASE("An opened library outlives the loader that opened it", "[unit][loader][lifetime]") {
    const std::string file = fixture_file("requires_option");
    std::shared_ptr<const synergos::core::PluginLibrary> library;
    {
        PluginLoader loader({fixture_dir()});
        auto opened = loader.open(fixture_request("requires_option"));
        REQUIRE(opened.has_value());
        library = std::move(opened).value();
    }
    CHECK(is_loaded(file));
    CHECK(std::string(library->descriptor().name) == "requires_option");
    CHECK(std::string(library->info().options.at(0).key) == "endpoint");
    library.reset();
    CHECK_FALSE(is_loaded(file));
}
