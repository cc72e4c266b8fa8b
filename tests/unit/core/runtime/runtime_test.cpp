// SPDX-License-Identifier: Apache-2.0
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <synergos/core/config/config_loader.hpp>
#include <synergos/core/runtime/roles.hpp>
#include <synergos/core/runtime/runtime.hpp>

namespace fs = std::filesystem;
using nlohmann::json;
using synergos::core::PluginSection;
using synergos::core::Role;
using synergos::core::Runtime;
using synergos::core::RuntimeConfig;
using synergos::core::RuntimeOptions;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::random_device rd;
        path = fs::temp_directory_path() / ("synergos-runtime-test-" + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::vector<std::string> read_lines(const fs::path& file) {
    std::vector<std::string> lines;
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
        lines.push_back(line);
    }
    return lines;
}

/// Console lines captured in memory, with a wait for a line containing some text.
struct Console {
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<json> records;

    synergos::core::LoggerFactory::ConsoleWriter writer() {
        return [this](std::string_view line) {
            {
                std::lock_guard<std::mutex> lock(mutex);
                records.push_back(json::parse(line));
            }
            changed.notify_all();
        };
    }
    bool wait_for(const std::string& event, std::size_t count, std::chrono::seconds timeout) {
        std::unique_lock<std::mutex> lock(mutex);
        return changed.wait_for(lock, timeout, [&] {
            std::size_t seen = 0;
            for (const auto& r : records) {
                seen += r["event"] == event ? 1 : 0;
            }
            return seen >= count;
        });
    }
    std::vector<json> events(const std::string& event) {
        std::lock_guard<std::mutex> lock(mutex);
        std::vector<json> out;
        for (const auto& r : records) {
            if (r["event"] == event) {
                out.push_back(r);
            }
        }
        return out;
    }
};

PluginSection recorder(const std::string& key, const fs::path& journal) {
    PluginSection s;
    s.backend = "recorder";
    s.source_key = key;
    s.options["journal"] = journal.string();
    return s;
}

/// A config naming a recorder for every kind with start/stop, plus a recorder TTP function.
RuntimeConfig recorder_config(const TempDir& dir) {
    RuntimeConfig c = RuntimeConfig::defaults_for(Role::Director);
    const fs::path journal = dir.path / "journal.txt";
    c.node.id = "rt-1";
    c.node.data_dir = (dir.path / "data").string();
    c.plugin_search_paths = {SYNERGOS_RECORDER_PLUGIN_DIR};
    c.logging.sink = recorder("logging", journal);
    c.logging.sink.options["records"] = (dir.path / "records.txt").string();
    c.logging.system_metrics = false;
    c.tracking = recorder("tracking", journal);
    c.storage = recorder("storage", journal);
    c.message_queue = recorder("message_queue", journal);
    c.ttp.functions = {recorder("ttp.functions[0]", journal)};
    c.aggregators.clear();
    c.model.backend = "none";
    return c;
}

}  // namespace

TEST_CASE("Runtime starts plugins in order and stops them in reverse", "[unit][runtime]") {
    TempDir dir;
    Console console;
    {
        Runtime runtime(recorder_config(dir), RuntimeOptions{console.writer(), false, {}});
        const auto status = runtime.start_plugins();
        REQUIRE(status.is_ok());
        CHECK(runtime.log_sink() != nullptr);
        CHECK(runtime.tracker() != nullptr);
        CHECK(runtime.storage() != nullptr);
        CHECK(runtime.message_queue() != nullptr);
        CHECK(runtime.ttp_function("recorder") != nullptr);
        CHECK(runtime.ttp_function("train") == nullptr);
        runtime.add_component("rest", [&dir] {
            std::ofstream(dir.path / "journal.txt", std::ios::app) << "rest stop\n";
        });
        CHECK(runtime.started_components() ==
              std::vector<std::string>{"logging/recorder", "tracking/recorder", "storage/recorder",
                                       "mq/recorder", "ttp/recorder", "rest"});
        runtime.stop_all();
        runtime.stop_all();  // idempotent
    }
    const auto journal = read_lines(dir.path / "journal.txt");
    std::vector<std::string> lifecycle;
    for (const auto& line : journal) {
        if (line.find(" create") == std::string::npos) {
            lifecycle.push_back(line);
        }
    }
    CHECK(lifecycle ==
          std::vector<std::string>{
              "logging/recorder start", "tracking/recorder start", "storage/recorder start",
              "mq/recorder start", "rest stop", "ttp/recorder destroy", "mq/recorder stop",
              "mq/recorder destroy", "storage/recorder stop", "storage/recorder destroy",
              "tracking/recorder stop", "tracking/recorder destroy", "logging/recorder flush",
              "logging/recorder stop", "logging/recorder destroy"});
    // Plugins got the node's identity through their host context.
    CHECK_THAT(journal.front(),
               Catch::Contains("node=rt-1 role=director data_dir=" + (dir.path / "data").string()));

    // Between attach and detach, records went to the sink; the rest to the console.
    const auto records = read_lines(dir.path / "records.txt");
    auto sink_has = [&records](const std::string& event) {
        for (const auto& r : records) {
            if (r.rfind(event + " ", 0) == 0) {
                return true;
            }
        }
        return false;
    };
    CHECK(sink_has("configuration snapshot"));
    CHECK(sink_has("recorder created"));  // a plugin logging through its host context
    CHECK(sink_has("component stopped"));
    CHECK(console.events("plugin loaded").size() == 1);  // the sink's own loading: console
    const auto stopped = console.events("component stopped");
    REQUIRE(stopped.size() == 1);  // the sink's stop line, after it was detached
    CHECK(stopped[0]["fields"]["component"] == "logging/recorder");
}

TEST_CASE("A required plugin that fails to start stops the start-up and the rest stops in reverse",
          "[unit][runtime]") {
    TempDir dir;
    Console console;
    RuntimeConfig config = recorder_config(dir);
    config.message_queue.options["fail_start"] = "true";
    Runtime runtime(config, RuntimeOptions{console.writer(), false, {}});
    const auto status = runtime.start_plugins();
    REQUIRE_FALSE(status.is_ok());
    CHECK_THAT(status.message(), Catch::Contains("mq/recorder") &&
                                     Catch::Contains("message_queue") &&
                                     Catch::Contains("told to fail"));
    CHECK(runtime.ttp_function("recorder") == nullptr);  // never reached
    runtime.stop_all();
    const auto journal = read_lines(dir.path / "journal.txt");
    std::vector<std::string> tail(journal.end() - 9, journal.end());
    CHECK(tail == std::vector<std::string>{"mq/recorder start", "mq/recorder destroy",
                                           "storage/recorder stop", "storage/recorder destroy",
                                           "tracking/recorder stop", "tracking/recorder destroy",
                                           "logging/recorder flush", "logging/recorder stop",
                                           "logging/recorder destroy"});
}

TEST_CASE("A plugin missing from the search path is named in the error", "[unit][runtime]") {
    TempDir dir;
    Console console;
    RuntimeConfig config = recorder_config(dir);
    config.storage.backend = "nosuchstore";
    config.storage.source_line = 12;
    config.source_file = "/etc/synergos/d.yaml";
    Runtime runtime(config, RuntimeOptions{console.writer(), false, {}});
    const auto status = runtime.start_plugins();
    REQUIRE_FALSE(status.is_ok());
    CHECK_THAT(status.message(), Catch::Contains("storage/nosuchstore") &&
                                     Catch::Contains("config key 'storage', line 12"));

    SECTION("check-config reports it as one line with file, line and key") {
        std::size_t checked = 0;
        const auto check =
            synergos::core::check_configured_plugins(config, runtime.loader(), &checked);
        REQUIRE_FALSE(check.is_ok());
        CHECK_THAT(check.message(),
                   Catch::StartsWith(
                       "/etc/synergos/d.yaml:12: key 'storage': plugin storage/nosuchstore"));
        CHECK(check.message().find('\n') == std::string::npos);
    }
}

TEST_CASE("An optional plugin that fails is reported and skipped", "[unit][runtime]") {
    TempDir dir;
    Console console;
    RuntimeConfig config = recorder_config(dir);
    config.tracking.options["fail_start"] = "true";
    config.tracking.required = false;
    Runtime runtime(config, RuntimeOptions{console.writer(), false, {}});
    REQUIRE(runtime.start_plugins().is_ok());
    CHECK(runtime.tracker() == nullptr);
    REQUIRE(runtime.failed_plugins().size() == 1);
    CHECK(runtime.failed_plugins()[0].kind == "tracking");
    CHECK(runtime.storage() != nullptr);

    std::size_t checked = 0;
    std::vector<std::string> warnings;
    config.tracking.backend = "absent";
    CHECK(synergos::core::check_configured_plugins(config, runtime.loader(), &checked, &warnings)
              .is_ok());
    CHECK(checked == 4);
    REQUIRE(warnings.size() == 1);
    CHECK_THAT(warnings[0], Catch::Contains("tracking/absent") && Catch::Contains("ignored"));
}

TEST_CASE("check-config refuses an option the plugin does not declare", "[unit][runtime]") {
    TempDir dir;
    RuntimeConfig config = recorder_config(dir);
    config.storage.options["jornal"] = "x";
    config.storage.source_line = 7;
    config.source_file = "c.yaml";
    synergos::core::PluginLoader loader(config.plugin_search_paths);
    const auto status = synergos::core::check_configured_plugins(config, loader);
    REQUIRE_FALSE(status.is_ok());
    CHECK_THAT(status.message(),
               Catch::StartsWith("c.yaml:7: key 'storage'") && Catch::Contains("jornal"));
}

TEST_CASE("The configuration snapshot hides secrets, and censors when asked", "[unit][runtime]") {
    TempDir dir;
    Console console;
    RuntimeConfig config = recorder_config(dir);
    config.logging.sink.backend = "none";  // snapshot to the console
    config.message_queue.options["api_token"] = "s3cr3t";
    synergos::core::TokenConfig admin;
    admin.scope = "admin";
    admin.source.env = "SNAPSHOT_ADMIN_TOKEN";
    config.http.tokens.push_back(admin);
    config.worker_client.token.file = (dir.path / "worker.token").string();
    SECTION("secrets are hidden without --censored; paths are shown") {
        Runtime runtime(config, RuntimeOptions{console.writer(), false, {}});
        REQUIRE(runtime.start_plugins().is_ok());
        const auto snapshots = console.events("configuration snapshot");
        REQUIRE(snapshots.size() == 1);
        const json& fields = snapshots[0]["fields"];
        CHECK(fields["message_queue"]["options"]["api_token"] == "*CENSORED*");
        // Where each token comes from is shown (the entries never hold a token).
        CHECK(fields["http"]["tokens"] ==
              json::array({{{"source", "env"}, {"variable", "SNAPSHOT_ADMIN_TOKEN"}, {"scope", "admin"}}}));
        CHECK(fields["worker_client"]["token"] == json{{"source", "file"}});
        CHECK(fields["paths"]["data_dir"] == config.node.data_dir);
        CHECK(fields["node"]["id"] == "rt-1");
    }
    SECTION("--censored redacts paths and hosts too, recursively") {
        config.logging.censored = true;
        config.logging.censor_keys = synergos::core::default_censor_keys();
        Runtime runtime(config, RuntimeOptions{console.writer(), false, {}});
        REQUIRE(runtime.start_plugins().is_ok());
        const auto snapshots = console.events("configuration snapshot");
        REQUIRE(snapshots.size() == 1);
        const json& fields = snapshots[0]["fields"];
        CHECK(fields["paths"]["data_dir"] == "*CENSORED*");
        CHECK(fields["http"]["host"] == "*CENSORED*");
        CHECK(fields["message_queue"]["options"]["api_token"] == "*CENSORED*");
        CHECK(fields["http"]["tokens"] == "*CENSORED*");  // `*tokens` is a censor key
        // Not a censor key, but a path: --censored replaces paths in any value.
        CHECK(fields["message_queue"]["options"]["journal"] == "*CENSORED*");
    }
}

TEST_CASE("wait_for_stop wakes on request_stop from another thread", "[unit][runtime]") {
    TempDir dir;
    Console console;
    Runtime runtime(recorder_config(dir), RuntimeOptions{console.writer(), false, {}});
    CHECK_FALSE(runtime.wait_for_stop(std::chrono::milliseconds(10)));
    std::thread stopper([&runtime] { runtime.request_stop("test"); });
    CHECK(runtime.wait_for_stop(std::chrono::seconds(10)));
    stopper.join();
    CHECK(runtime.stop_requested());
    CHECK(runtime.stop_reason() == "test");
}

TEST_CASE("SIGTERM and SIGINT become a stop request", "[unit][runtime][signals]") {
    TempDir dir;
    Console console;
    const int signal_number = GENERATE(SIGTERM, SIGINT);
    Runtime runtime(recorder_config(dir), RuntimeOptions{console.writer(), true, {}});
    REQUIRE(::raise(signal_number) == 0);
    REQUIRE(runtime.wait_for_stop(std::chrono::seconds(10)));
    CHECK(runtime.stop_reason() == (signal_number == SIGINT ? "SIGINT" : "SIGTERM"));
}

TEST_CASE("A basic role runs until stopped and exits 0", "[unit][runtime]") {
    TempDir dir;
    Console console;
    RuntimeConfig config = recorder_config(dir);
    config.logging.sink.backend = "none";
    Runtime runtime(config, RuntimeOptions{console.writer(), false, {}});
    int exit_code = -1;
    std::thread role([&runtime, &exit_code] { exit_code = synergos::core::run_director(runtime); });
    REQUIRE(console.wait_for("role started", 1, std::chrono::seconds(10)));
    runtime.request_stop("test");
    role.join();
    CHECK(exit_code == 0);
    const auto stopped = console.events("component stopped");
    std::vector<std::string> order;
    for (const auto& r : stopped) {
        order.push_back(r["fields"]["component"]);
    }
    CHECK(order == std::vector<std::string>{"ttp/recorder", "mq/recorder", "storage/recorder",
                                            "tracking/recorder"});
}

TEST_CASE("A basic role whose start-up fails returns 1", "[unit][runtime]") {
    TempDir dir;
    Console console;
    RuntimeConfig config = recorder_config(dir);
    config.logging.sink.backend = "none";  // the critical line goes to the console
    config.storage.options["fail_start"] = "true";
    Runtime runtime(config, RuntimeOptions{console.writer(), false, {}});
    CHECK(synergos::core::run_worker(runtime) == 1);
    const auto critical = console.events("start-up failed");
    REQUIRE(critical.size() == 1);
    CHECK(critical[0]["level"] == "critical");
}

TEST_CASE("The plugin search path: config, environment, then built-in folders", "[unit][runtime]") {
    ::setenv("SYNERGOS_PLUGIN_PATH", "/env/a::/env/b/", 1);
    const auto paths =
        synergos::core::default_plugin_search_path({"/flag", "/cfg", "/flag"}, "/opt/synergos/bin");
    ::unsetenv("SYNERGOS_PLUGIN_PATH");
    REQUIRE(paths.size() >= 6);
    CHECK(std::vector<std::string>(paths.begin(), paths.begin() + 6) ==
          std::vector<std::string>{"/flag", "/cfg", "/env/a", "/env/b",
                                   "/opt/synergos/lib/synergos/plugins", "/opt/synergos/plugins"});
}
