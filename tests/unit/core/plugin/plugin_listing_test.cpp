// SPDX-License-Identifier: Apache-2.0
// discover() over the real fixture plugins, and the text / JSON / markdown listings of it.
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/core/plugin/listing.hpp>
#include <synergos/core/plugin/loader.hpp>
#include <synergos/sdk/version.hpp>

#include "test_support.hpp"

using synergos::core::PluginLoader;
using synergos::core::render_plugin_listing;
using synergos::test::fixture_dir;
using synergos::test::fixture_file;
using synergos::test::fixture_prefix;
using synergos::test::TempDir;

namespace {

std::map<std::string, const PluginLoader::Discovered*> by_file(
    const std::vector<PluginLoader::Discovered>& entries) {
    std::map<std::string, const PluginLoader::Discovered*> out;
    for (const auto& entry : entries) {
        out[entry.file] = &entry;
    }
    return out;
}

}  // namespace

TEST_CASE("discover lists every plugin file with its descriptor or its refusal",
          "[unit][loader][listing]") {
    PluginLoader loader({fixture_dir()});
    const auto entries = loader.discover();
    REQUIRE(entries.size() == 8);
    const auto files = by_file(entries);

    const auto& good = *files.at(fixture_file("good"));
    REQUIRE(good.info.has_value());
    CHECK(good.info->name == "good");
    CHECK(good.info->version == "1.2.3");
    REQUIRE(good.library != nullptr);
    CHECK(std::string(good.info->options.at(0).key) == "prefix");  // views valid: library held

    CHECK(files.at(fixture_file("requires_option"))->info.has_value());
    // Descriptors are read, nothing is created: the throwing constructor never runs.
    CHECK(files.at(fixture_file("throws_in_constructor"))->info.has_value());

    const auto& major = *files.at(fixture_file("abi_major_mismatch"));
    REQUIRE_FALSE(major.info.has_value());
    CHECK(major.library == nullptr);
    CHECK_THAT(major.info.error().message,
               Catch::StartsWith(fixture_prefix("abi_major_mismatch") + ": ABI major mismatch"));
    CHECK_THAT(files.at(fixture_file("wrong_kind"))->info.error().message,
               Catch::EndsWith("wrong kind: expected logging, found storage"));
    CHECK_FALSE(files.at(fixture_file("missing_create_symbol"))->info.has_value());
    CHECK_FALSE(files.at(fixture_file("fingerprint_mismatch"))->info.has_value());
    CHECK_FALSE(files.at(fixture_file("abi_minor_newer"))->info.has_value());
}

TEST_CASE("A folder named twice on the search path is searched once", "[unit][loader][listing]") {
    PluginLoader loader({fixture_dir(), fixture_dir() + "/", fixture_dir() + "/."});
    const auto entries = loader.discover();
    REQUIRE(entries.size() == 8);  // as with the folder once: nothing shadowed by itself
    CHECK(by_file(entries).at(fixture_file("good"))->info.has_value());
}

TEST_CASE("discover reports shadowed and misnamed files and leaves open() unaffected",
          "[unit][loader][listing]") {
    TempDir dir;
    const std::string copy = dir.copy_fixture("good");
    const std::string misnamed = dir.copy_fixture("good", "libsynergos-nokind-good.so");
    dir.copy_fixture("good", "unrelated.so");  // not a plugin file name: ignored

    PluginLoader loader({dir.str(), fixture_dir()});
    const auto entries = loader.discover();
    REQUIRE(entries.size() == 10);
    const auto files = by_file(entries);
    CHECK(files.at(copy)->info.has_value());
    CHECK(files.at(misnamed)->info.error().message ==
          "file " + misnamed +
              ": name does not follow libsynergos-<kind>-<name>.so with a known kind");
    CHECK(files.at(fixture_file("good"))->info.error().message ==
          fixture_prefix("good") + ": shadowed by " + copy + " earlier on the search path");

    // Listing registered nothing: the fixture's own file still opens by explicit path.
    auto request = synergos::test::fixture_request("good");
    request.path = fixture_file("good");
    CHECK(loader.open(request).has_value());
}

TEST_CASE("The plugin listing renders as text", "[unit][loader][listing]") {
    PluginLoader loader({fixture_dir()});
    const std::string text = render_plugin_listing(loader.discover(), "text");
    CHECK_THAT(text, Catch::Contains("logging/good 1.2.3 (stable) - a well-formed fixture sink\n"
                                     "  file: " +
                                     fixture_file("good") + "\n"));
    CHECK_THAT(text, Catch::Contains("    prefix (string, default 'good'): text the sink logs "
                                     "at creation\n"));
    CHECK_THAT(text, Catch::Contains("    endpoint (string, required): where records go\n"));
    CHECK_THAT(text, Catch::Contains("    token (string, secret): access token\n"));
    CHECK_THAT(text, Catch::Contains("error: " + fixture_prefix("wrong_kind") + ": wrong kind"));
    CHECK(render_plugin_listing({}, "text") == "no plugins found\n");
}

TEST_CASE("The plugin listing renders as JSON", "[unit][loader][listing]") {
    PluginLoader loader({fixture_dir()});
    const auto doc = nlohmann::json::parse(render_plugin_listing(loader.discover(), "json"));
    REQUIRE(doc.at("plugins").size() == 3);
    REQUIRE(doc.at("errors").size() == 5);

    nlohmann::json requires_option;
    for (const auto& plugin : doc.at("plugins")) {
        if (plugin.at("name") == "requires_option") {
            requires_option = plugin;
        }
    }
    REQUIRE(requires_option.is_object());
    CHECK(requires_option.at("kind") == "logging");
    CHECK(requires_option.at("version") == "0.1.0");
    CHECK(requires_option.at("status") == "alpha");
    CHECK(requires_option.at("file") == fixture_file("requires_option"));
    CHECK(requires_option.at("abi").at("major") == SYNERGOS_SDK_ABI_MAJOR);
    const auto& options = requires_option.at("options");
    REQUIRE(options.size() == 9);
    CHECK(options[0] == nlohmann::json{{"key", "endpoint"},
                                       {"type", "string"},
                                       {"required", true},
                                       {"default", nullptr},
                                       {"description", "where records go"},
                                       {"secret", false}});
    CHECK(options[3].at("default") == "5s");
    CHECK(options[7].at("secret") == true);

    bool found_major = false;
    for (const auto& error : doc.at("errors")) {
        if (error.at("file") == fixture_file("abi_major_mismatch")) {
            found_major = true;
            CHECK(error.at("code") == "failed_precondition");
            CHECK_THAT(error.at("message").get<std::string>(),
                       Catch::Contains("ABI major mismatch"));
        }
    }
    CHECK(found_major);
}

TEST_CASE("The plugin listing renders as markdown with an options table",
          "[unit][loader][listing]") {
    PluginLoader loader({fixture_dir()});
    const std::string md = render_plugin_listing(loader.discover(), "markdown");
    CHECK_THAT(md, Catch::StartsWith("# Plugins\n"));
    CHECK_THAT(md, Catch::Contains("\n## logging/requires_option 0.1.0 (alpha)\n\nneeds an "
                                   "endpoint\n"));
    CHECK_THAT(md, Catch::Contains("| Option | Type | Required | Default | Description |\n"
                                   "| --- | --- | --- | --- | --- |\n"
                                   "| `endpoint` | string | yes | - | where records go |\n"
                                   "| `port` | int | no | `12201` | destination port |\n"));
    CHECK_THAT(md, Catch::Contains("| `extra` | json | no | - | extra fields \\| as JSON |\n"));
    CHECK_THAT(md, Catch::Contains("| `token` | string | no | - | access token (secret: "
                                   "redacted in logs) |\n"));
    CHECK_THAT(md, Catch::Contains("\n## Refused files\n\n- `" +
                                   fixture_file("abi_major_mismatch") + "`: "));
}

TEST_CASE("The plugin listing refuses an unknown format by name", "[unit][loader][listing]") {
    CHECK(synergos::core::is_listing_format("json"));
    CHECK_FALSE(synergos::core::is_listing_format("yaml"));
    CHECK_THROWS_WITH(render_plugin_listing({}, "yaml"),
                      "unknown listing format 'yaml'; valid formats: text, json, markdown");
}
