// SPDX-License-Identifier: Apache-2.0
// Runs the real `synergos` executable as a child process.

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <synergos/core/http/client.hpp>

#include "support/child_process.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using synergos::tests::Child;

constexpr std::chrono::seconds kTimeout(30);

/// The JSON records among stderr lines (both the console fallback and the basic sink's
/// json_file lines are one JSON object per line with "event" and "fields").
std::vector<json> records(const std::vector<std::string>& lines) {
    std::vector<json> out;
    for (const auto& line : lines) {
        if (!line.empty() && line[0] == '{') {
            json r = json::parse(line, nullptr, false);
            if (!r.is_discarded() && r.contains("event")) {
                out.push_back(std::move(r));
            }
        }
    }
    return out;
}

bool has_event(const std::vector<std::string>& lines, const std::string& event) {
    for (const auto& r : records(lines)) {
        if (r["event"] == event) {
            return true;
        }
    }
    return false;
}

struct TempDir {
    fs::path path;
    TempDir() {
        std::random_device rd;
        path = fs::temp_directory_path() / ("synergos-cli-test-" + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

}  // namespace

TEST_CASE("check-config on a broken file exits non-zero with one line naming file and key",
          "[cli]") {
    const std::string file = std::string(SYNERGOS_CLI_DATA_DIR) + "/broken.yaml";
    Child child({"check-config", file});
    const auto code = child.wait(kTimeout);
    REQUIRE(code.has_value());
    CHECK(*code == 78);  // EX_CONFIG: a service manager does not restart it
    REQUIRE(child.err_lines().size() == 1);
    const std::string& line = child.err_lines()[0];
    CHECK_THAT(line, Catch::Contains(file + ":6") && Catch::Contains("key 'http.prot'") &&
                         Catch::Contains("unknown key"));
    CHECK(child.out_lines().empty());
}

TEST_CASE("check-config names a flag mistake in one line", "[cli]") {
    Child child({"check-config", std::string(SYNERGOS_CLI_DATA_DIR) + "/broken.yaml", "--queue",
                 "rabbitmq"});
    const auto code = child.wait(kTimeout);
    REQUIRE(code.has_value());
    CHECK(*code != 0);
    REQUIRE(child.err_lines().size() == 1);
}

TEST_CASE("A usage mistake exits 2 with one line", "[cli]") {
    Child child({"director", "--no-such-flag"});
    const auto code = child.wait(kTimeout);
    REQUIRE(code.has_value());
    CHECK(*code == 2);
    REQUIRE(child.err_lines().size() == 1);
    CHECK_THAT(child.err_lines()[0], Catch::Contains("no-such-flag"));
}

TEST_CASE("plugins exits non-zero when a plugin file cannot be loaded and still lists it",
          "[cli]") {
    TempDir dir;
    const fs::path bad = dir.path / "libsynergos-logging-broken.so";
    std::ofstream(bad) << "not a shared library\n";
    fs::permissions(bad, fs::perms::owner_read | fs::perms::owner_write);
    Child child({"plugins", "--format", "json", "--plugin-path", dir.path.string()});
    const auto code = child.wait(kTimeout);
    REQUIRE(code.has_value());
    CHECK(*code == 1);
    const json listing = json::parse(child.out_text());
    REQUIRE(listing["errors"].is_array());
    bool named = false;
    for (const auto& e : listing["errors"]) {
        named = named || e.dump().find("libsynergos-logging-broken.so") != std::string::npos;
    }
    CHECK(named);
    REQUIRE(child.err_lines().size() == 1);
    CHECK_THAT(child.err_lines()[0], Catch::Contains("1 plugin file could not be loaded"));
}

TEST_CASE("plugins --format json prints a parsable listing", "[cli]") {
    Child child({"plugins", "--format", "json"});
    const auto code = child.wait(kTimeout);
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    const json listing = json::parse(child.out_text());
    REQUIRE(listing.contains("plugins"));
    REQUIRE(listing["plugins"].is_array());
    for (const auto& p : listing["plugins"]) {
        CHECK(p.contains("name"));
        CHECK(p.contains("kind"));
        CHECK(p.contains("version"));
        CHECK(p.contains("file"));
        CHECK(p.contains("options"));
    }
#if defined(SYNERGOS_CLI_HAVE_BASIC_PLUGINS)
    bool found_basic = false;
    for (const auto& p : listing["plugins"]) {
        found_basic = found_basic || (p["kind"] == "logging" && p["name"] == "basic");
    }
    CHECK(found_basic);  // found through <exe dir>/../plugins, with no --plugin-path
#endif
}

#if defined(SYNERGOS_CLI_HAVE_BASIC_PLUGINS)
namespace {

/// A director on the memory queue and SQLite, with no TTP functions, aggregators or model:
/// `<dir>/director.yaml`. `node` is the node mapping's body; `logging` the lines from the plugins
/// block to the logging block.
fs::path write_config(const fs::path& dir, const std::string& node, const std::string& logging) {
    const fs::path config = dir / "director.yaml";
    std::ofstream(config) << "node: {" << node << "}\n"
                          << "paths: {data_dir: data, outputs_dir: outputs, mlflow_dir: mlflow}\n"
                          << logging
                          << "message_queue: memory\n"
                             "storage: sqlite\n"
                             "tracking: none\n"
                             "ttp: {functions: []}\n"
                             "aggregators: []\n"
                             "model: none\n";
    return config;
}

/// The same on the basic sink (JSON records on stderr). `logging_extra` adds lines to the logging
/// block.
fs::path write_director_config(const fs::path& dir, const std::string& node_id,
                               const std::string& logging_extra = "") {
    return write_config(dir, "id: " + node_id,
                        "logging:\n"
                        "  backend: basic\n"
                        "  options: {output: none, json_file: stderr}\n" +
                            logging_extra);
}

}  // namespace

TEST_CASE("A director stops in reverse order on SIGTERM and exits 0", "[cli][lifecycle]") {
    TempDir dir;
    // The system-metrics sampler reports every 0.2 s: the test waits for its first record.
    const fs::path config = write_director_config(dir.path, "cli-1", "  resolution_s: 0.2\n");
    Child child({"director", "--config", config.string(), "--port", "0", "--censored"});
    // Wait for a real system-metrics record: the role is up and the sampler has a baseline.
    REQUIRE(child.read_until([](const auto& lines) { return has_event(lines, "system metrics"); },
                             kTimeout));
    child.signal(SIGTERM);
    const auto code = child.wait(kTimeout);
    REQUIRE(code.has_value());
    CHECK(*code == 0);

    std::vector<std::string> started;
    std::vector<std::string> stopped;
    bool snapshot_censored = false;
    bool stop_requested = false;
    for (const auto& r : records(child.err_lines())) {
        if (r["event"] == "component started") {
            started.push_back(r["fields"]["component"]);
        } else if (r["event"] == "component stopped") {
            stopped.push_back(r["fields"]["component"]);
        } else if (r["event"] == "configuration snapshot") {
            snapshot_censored = r["fields"]["paths"]["data_dir"] == "*CENSORED*";
        } else if (r["event"] == "stop requested") {
            stop_requested = r["fields"]["reason"] == "SIGTERM";
        } else if (r["event"] == "system metrics") {
            CHECK(r["logger"] == "director/cli-1");
            CHECK(r["fields"]["cpu_percent"].contains("process"));
            CHECK(r["fields"]["memory"]["rss_bytes"].get<double>() > 0);
        }
    }
    // The plugins come first in this order; the role may add components (REST, job service)
    // after them. Whatever started stops, in reverse order.
    REQUIRE(started.size() >= 4);
    CHECK(std::vector<std::string>(started.begin(), started.begin() + 4) ==
          std::vector<std::string>{"logging/basic", "storage/sqlite", "mq/memory",
                                   "system metrics"});
    CHECK(stopped == std::vector<std::string>(started.rbegin(), started.rend()));
    // The connect routes' writer stops after the server and before the store it writes to.
    const auto at = [&](const std::string& name) {
        return std::find(stopped.begin(), stopped.end(), name) - stopped.begin();
    };
    CHECK(at("rest api") < at("rest writer"));
    CHECK(at("rest writer") < at("storage/sqlite"));
    CHECK(at("storage/sqlite") < static_cast<std::ptrdiff_t>(stopped.size()));
    CHECK(snapshot_censored);
    CHECK(stop_requested);
}
#if defined(SYNERGOS_CLI_HAVE_TORCH)
TEST_CASE("A process started with --cpus N runs libtorch on N intra-op threads", "[cli][cpus]") {
    TempDir dir;
    fs::path config = write_director_config(dir.path, "cli-3");
    {
        std::ifstream in(config);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        text.replace(text.find("model: none"), 11, "model: torch");
        std::ofstream(config) << text;
    }
    // 2 where the machine allows it: libtorch's own default is one thread per physical core,
    // which is 1 on a 2-vCPU VM, so --cpus 1 would not show anything there.
    const int n = std::min(2, static_cast<int>(std::thread::hardware_concurrency()));
    ::unsetenv("OMP_NUM_THREADS");
    Child child({"director", "--config", config.string(), "--port", "0", "--cpus", std::to_string(n)});
    REQUIRE(child.read_until([](const auto& lines) { return has_event(lines, "role started"); },
                             kTimeout));
    int intra_op = -1;
    int logged_cpus = -1;
    for (const auto& r : records(child.err_lines())) {
        const std::string event = r["event"].get<std::string>();
        if (event == "torch: intra-op threads") {
            intra_op = r["fields"].value("intra_op_threads", -1);
        } else if (event.rfind("synergos ", 0) == 0) {
            logged_cpus = r["fields"].value("cpus", -1);
        }
    }
    CHECK(intra_op == n);
    CHECK(logged_cpus == n);
    // Not pinned: the director may still run on every CPU this test may.
    std::ifstream status("/proc/" + std::to_string(child.pid()) + "/status");
    std::ifstream own("/proc/self/status");
    const auto allowed = [](std::ifstream& in) {
        std::string line;
        while (std::getline(in, line)) {
            if (line.rfind("Cpus_allowed_list:", 0) == 0) {
                return line;
            }
        }
        return std::string();
    };
    const std::string theirs = allowed(status);
    CHECK(!theirs.empty());
    CHECK(theirs == allowed(own));
    child.signal(SIGTERM);
    const auto code = child.wait(kTimeout);
    REQUIRE(code.has_value());
    CHECK(*code == 0);
}
#endif

TEST_CASE("A second director on the same data directory refuses to start and names the first",
          "[cli][lifecycle]") {
    // It came up, published the first one's running jobs again and trained them alongside it,
    // over the same checkpoints, into one model reported as a success.
    TempDir dir;
    const fs::path config = write_director_config(dir.path, "cli-lock");
    const auto started = [](Child& c) {
        return c.read_until([](const auto& lines) { return has_event(lines, "role started"); }, kTimeout);
    };
    Child first({"director", "--config", config.string(), "--port", "0"});
    REQUIRE(started(first));
    Child second({"director", "--config", config.string(), "--port", "0"});
    const auto code = second.wait(kTimeout);
    REQUIRE(code.has_value());
    CHECK(*code == 1);
    bool refused = false;
    for (const auto& r : records(second.err_lines())) {
        refused = refused || (r["event"] == "start-up refused" &&
                              r["fields"]["error"].get<std::string>().find(
                                  "in use by another director (pid " + std::to_string(first.pid()) + ")") !=
                                  std::string::npos);
        CHECK(r["event"] != "component started");  // not even the store
    }
    CHECK(refused);
    // Once the first has stopped, the directory is free again.
    first.signal(SIGTERM);
    REQUIRE(first.wait(kTimeout).has_value());
    Child third({"director", "--config", config.string(), "--port", "0"});
    REQUIRE(started(third));
    third.signal(SIGTERM);
    CHECK(third.wait(kTimeout) == std::optional<int>(0));
}

TEST_CASE("A director serves its job service's and store writer's metrics at GET /metrics",
          "[cli][metrics]") {
    TempDir dir;
    const fs::path config = write_director_config(dir.path, "cli-2");
    Child child({"director", "--config", config.string(), "--port", "0"});
    int port = 0;
    REQUIRE(child.read_until(
        [&](const auto& lines) {
            for (const auto& r : records(lines)) {
                if (r["event"] == "role started") {
                    port = r["fields"].value("port", 0);
                    return true;
                }
            }
            return false;
        },
        kTimeout));
    REQUIRE(port > 0);
    synergos::core::http::HttpClient client;
    const auto p = static_cast<std::uint16_t>(port);
    auto created = client.request(
        "POST", "127.0.0.1", p, "/ttp/connect/collaborations",
        R"({"collab_id":"m1","mq":{"host":"127.0.0.1","ports":{"main":5672,"ui":15672},"secure":false}})");
    REQUIRE(created.has_value());
    REQUIRE(created->status == 201);
    auto page = client.request("GET", "127.0.0.1", p, "/metrics");
    REQUIRE(page.has_value());
    CHECK(page->status == 200);
    INFO(page->body);
    // The POST (the scrape itself is counted once answered), its one write and commit, and
    // the job service's figures, zero jobs so far.
    CHECK_THAT(page->body, Catch::Contains("synergos_http_responses_total{code=\"2xx\"} 1\n"));
    CHECK_THAT(page->body, Catch::Contains("synergos_rest_writes_total 1\n"));
    CHECK_THAT(page->body, Catch::Contains("synergos_rest_write_commit_seconds_count 1\n"));
    CHECK_THAT(page->body, Catch::Contains("synergos_jobs_submitted_total 0\n"));
    CHECK_THAT(page->body, Catch::Contains("# TYPE synergos_job_store_commit_seconds histogram\n"));
    child.signal(SIGTERM);
    const auto code = child.wait(kTimeout);
    REQUIRE(code.has_value());
    CHECK(*code == 0);
}
#endif

#if defined(SYNERGOS_CLI_HAVE_BASIC_PLUGINS)
namespace {

/// A director whose log sink (the loader's `good` fixture) takes a minute to stop: a component
/// that hangs in its stop. `node_extra` goes under `node:`.
fs::path write_hanging_director_config(const fs::path& dir, const std::string& node_extra) {
    return write_config(dir, "id: cli-hang" + node_extra,
                        "plugins: {search_paths: ['" SYNERGOS_TEST_FIXTURE_PLUGIN_DIR "']}\n"
                        "logging: {backend: good, options: {stop_ms: 60000}}\n");
}

/// The `forced exit` record on stderr (null when there is none).
json forced_exit(const Child& child) {
    for (const auto& r : records(child.err_lines())) {
        if (r["event"] == "forced exit") {
            return r;
        }
    }
    return nullptr;
}

}  // namespace

TEST_CASE("A second SIGTERM ends a director whose stop hangs, naming the component", "[cli][lifecycle]") {
    TempDir dir;
    Child child({"director", "--config", write_hanging_director_config(dir.path, "").string(), "--port", "0"});
    REQUIRE(child.read_until([&](const auto&) { return !child.out_lines().empty(); }, kTimeout));
    child.signal(SIGTERM);
    // Every other component has stopped once the sink (the first started) is stopping.
    REQUIRE(child.read_until([](const auto& lines) { return has_event(lines, "fixture sink stopping"); },
                             kTimeout));
    CHECK_FALSE(child.wait(std::chrono::milliseconds(500)).has_value());  // it does hang
    child.signal(SIGTERM);
    // Before: the second signal was ignored and the stop waited out the sink's minute.
    const auto code = child.wait(std::chrono::seconds(10));
    REQUIRE(code.has_value());
    CHECK(*code == 128 + SIGTERM);
    const json record = forced_exit(child);
    INFO(child.out_text());
    REQUIRE(record.is_object());
    CHECK(record["fields"]["component"] == "logging/good");
    CHECK(record["fields"]["reason"] == "a second SIGTERM while stopping");
}

TEST_CASE("A director whose stop outlasts node.stop_timeout_s exits 1, naming the component",
          "[cli][lifecycle]") {
    TempDir dir;
    Child child({"director", "--config", write_hanging_director_config(dir.path, ", stop_timeout_s: 1").string(),
                 "--port", "0"});
    REQUIRE(child.read_until([&](const auto&) { return !child.out_lines().empty(); }, kTimeout));
    child.signal(SIGTERM);
    // Before: no limit, so still stopping after 20 s (the sink takes 60).
    const auto code = child.wait(std::chrono::seconds(20));
    REQUIRE(code.has_value());
    CHECK(*code == 1);
    const json record = forced_exit(child);
    REQUIRE(record.is_object());
    CHECK(record["fields"]["component"] == "logging/good");
    CHECK(record["fields"]["reason"] == "stopping took longer than node.stop_timeout_s (1 s)");
}
#endif

#if defined(SYNERGOS_CLI_HAVE_BASIC_PLUGINS) && defined(SYNERGOS_CLI_FIXTURE_TTP_DIR)
TEST_CASE("A director refuses two TTP functions claiming one job process, naming both",
          "[cli][fatal]") {
    TempDir dir;
    const fs::path config = dir.path / "director.yaml";
    std::ofstream(config) << "node: {id: cli-clash}\n"
                             "paths: {data_dir: data, outputs_dir: outputs, mlflow_dir: mlflow}\n"
                             "plugins: {search_paths: ['" SYNERGOS_CLI_FIXTURE_TTP_DIR "']}\n"
                             "logging:\n"
                             "  backend: basic\n"
                             "  options: {output: none, json_file: stderr}\n"
                             "message_queue: memory\n"
                             "storage: sqlite\n"
                             "tracking: none\n"
                             "ttp:\n"
                             "  functions: [align, {name: fixture, options: {processes: preprocess}}]\n"
                             "aggregators: []\n"
                             "model: none\n";
    Child child({"director", "--config", config.string(), "--port", "0"});
    const auto code = child.wait(kTimeout);
    REQUIRE(code.has_value());
    CHECK(*code == 1);  // before: it started, and the fixture took every preprocessing job
    bool named = false;
    for (const auto& r : records(child.err_lines())) {
        if (r["event"] == "start-up failed") {
            const std::string error = r["fields"]["error"];
            INFO(error);
            named = error.find("'fixture'") != std::string::npos &&
                    error.find("'align'") != std::string::npos &&
                    error.find("'preprocess'") != std::string::npos;
        }
    }
    CHECK(named);
}
#endif

#if defined(SYNERGOS_CLI_HAVE_GRAYLOG)
TEST_CASE("A director with an unreadable token file refuses before it opens its store",
          "[cli][fatal]") {
    TempDir dir;
    const fs::path config = write_director_config(dir.path, "cli-token");
    std::ofstream(config, std::ios::app) << "http: {tokens: [{file: missing.token}]}\n";
    Child check({"check-config", config.string()});
    const auto checked = check.wait(kTimeout);
    REQUIRE(checked.has_value());
    CHECK(*checked == 78);
    REQUIRE(check.err_lines().size() == 1);
    CHECK_THAT(check.err_lines()[0], Catch::Contains("http.tokens[0]") && Catch::Contains("missing.token"));

    Child child({"director", "--config", config.string(), "--port", "0"});
    const auto code = child.wait(kTimeout);
    REQUIRE(code.has_value());
    CHECK(*code == 78);  // EX_CONFIG, listed in the units' RestartPreventExitStatus
    bool refused = false;
    for (const auto& r : records(child.err_lines())) {
        refused = refused || (r["event"] == "start-up refused" &&
                              r["fields"]["error"].get<std::string>().find("missing.token") != std::string::npos);
        CHECK(r["event"] != "component started");  // no plugin was started
    }
    CHECK(refused);
    CHECK_FALSE(fs::exists(dir.path / "data"));  // the store was never created
}

TEST_CASE("A start-up failure is on stderr even when the logs go to an unreachable Graylog",
          "[cli][fatal]") {
    TempDir dir;
    // ".invalid" never resolves (RFC 6761): the Graylog sink starts and drops every record. No
    // model plugin: the worker role refuses to start after its plugins did.
    const fs::path config = dir.path / "worker.yaml";
    std::ofstream(config) << "node: {id: cli-fatal}\n"
                             "paths: {data_dir: data, outputs_dir: outputs, mlflow_dir: mlflow}\n"
                             "logging:\n"
                             "  backend: graylog\n"
                             "  options: {host: graylog.invalid, port: 12201, transport: tcp,\n"
                             "            connect_timeout_ms: 200, flush_timeout_ms: 200}\n"
                             "  resolution_s: 60\n"
                             "message_queue: none\n"
                             "data: []\n"
                             "model: none\n";
    Child child({"worker", "--config", config.string(), "--port", "0"});
    const auto code = child.wait(kTimeout);
    REQUIRE(code.has_value());
    CHECK(*code == 1);
    std::string err;
    for (const auto& line : child.err_lines()) {
        err += line + "\n";
    }
    INFO(err);
    bool reason_shown = false;
    for (const auto& r : records(child.err_lines())) {
        if (r["event"] == "start-up failed") {
            CHECK(r["level"] == "critical");
            CHECK(r["logger"] == "worker/cli-fatal");
            reason_shown = r["fields"]["error"].get<std::string>().find("model plugin") !=
                           std::string::npos;
        }
    }
    CHECK(reason_shown);
}
#endif
