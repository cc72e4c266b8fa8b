// SPDX-License-Identifier: Apache-2.0
#include <filesystem>
#include <fstream>
#include <random>
#include <chrono>
#include <string>

#include <catch2/catch.hpp>

#include <synergos/core/config/config_loader.hpp>
#include <synergos/core/config/plugin_requests.hpp>
#include <synergos/core/config/runtime_config.hpp>

namespace fs = std::filesystem;
using synergos::core::build_config;
using synergos::core::ConfigError;
using synergos::core::FlagOverrides;
using synergos::core::overlay_yaml;
using synergos::core::Role;
using synergos::core::RuntimeConfig;

namespace {

/// A temp folder removed at scope exit.
struct TempDir {
    fs::path path;
    TempDir() {
        std::random_device rd;
        path = fs::temp_directory_path() / ("synergos-config-test-" + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string write(const std::string& name, const std::string& text) const {
        std::ofstream(path / name) << text;
        return (path / name).string();
    }
};

RuntimeConfig load_text(const std::string& yaml, Role role = Role::Director) {
    RuntimeConfig c = RuntimeConfig::defaults_for(role);
    overlay_yaml(c, yaml, "test.yaml", "/etc/synergos");
    return c;
}

/// Runs `fn`, expecting a ConfigError; returns it.
template <typename Fn>
ConfigError expect_error(Fn fn) {
    try {
        fn();
    } catch (const ConfigError& e) {
        return e;
    }
    FAIL("expected a ConfigError");
    return ConfigError({}, 0, {}, {});
}

}  // namespace

TEST_CASE("Role defaults follow the architecture", "[unit][config]") {
    SECTION("a director embeds the memory queue, sqlite, mlflow and the TTP functions") {
        const auto c = RuntimeConfig::defaults_for(Role::Director);
        CHECK(c.message_queue.backend == "memory");
        CHECK(c.storage.backend == "sqlite");
        CHECK(c.tracking.backend == "mlflow");
        CHECK(c.logging.sink.backend == "basic");
        CHECK(c.logging.resolution_s == 5.0);
        CHECK(c.http.port == 5000);
        REQUIRE(c.ttp.functions.size() == 5);
        CHECK(c.ttp.functions[1].backend == "train");
    }
    SECTION("a worker loads data pipelines and a model, no queue") {
        const auto c = RuntimeConfig::defaults_for(Role::Worker);
        CHECK_FALSE(c.message_queue.is_enabled());
        CHECK_FALSE(c.storage.is_enabled());
        CHECK(c.data.size() == 2);
        CHECK(c.ttp.functions.empty());
    }
    SECTION("the MLflow store is the tracker's root when set, else the node's folder") {
        auto c = RuntimeConfig::defaults_for(Role::Director);
        c.node.mlflow_dir = "/srv/mlflow";
        CHECK(c.mlflow_store() == "/srv/mlflow");
        c.tracking.options["root"] = "/data/mlruns";
        CHECK(c.mlflow_store() == "/data/mlruns");
        c.tracking.backend = "none";
        CHECK(c.mlflow_store() == "/srv/mlflow");
    }
    SECTION("a TTP runs functions and aggregators, no model backend (its workers train)") {
        const auto c = RuntimeConfig::defaults_for(Role::Ttp);
        CHECK_FALSE(c.model.is_enabled());
        CHECK(c.aggregators.size() == 2);
        CHECK_FALSE(c.ttp.functions.empty());
    }
    SECTION("the default censor keys cover paths, hosts and credentials") {
        const auto keys = synergos::core::default_censor_keys();
        for (const char* key : {"*_dir", "*_path", "path", "host", "password", "token", "url"}) {
            CHECK(std::find(keys.begin(), keys.end(), key) != keys.end());
        }
    }
}

TEST_CASE("A full YAML document overlays every section", "[unit][config]") {
    const auto c = load_text(R"(
node: {id: dir-7, role: director}
paths: {data_dir: /srv/data, outputs_dir: out, mlflow_dir: /srv/mlflow}
plugins: {search_paths: [plugins, /opt/p]}
logging:
  backend: graylog
  options: {host: 10.0.0.5, port: 12201, transport: udp}
  level: debug
  censored: true
  censor_keys: [secret_sauce, "*_dir"]
  resolution_s: 2.5
message_queue:
  backend: rabbitmq
  options: {host: mq, port: 5672, queues: [a, b], tls: {verify: true}}
storage: sqlite
tracking: {backend: none}
ttp:
  functions: [train, {name: align, options: {timeout_ms: 100}, required: false}]
  grid: 3
aggregators: [fedavg]
http: {host: 127.0.0.1, port: 0, threads: 4, body_limit_bytes: 1024, header_timeout_ms: 5,
       body_timeout_ms: 6, max_connections: 7, max_connections_per_peer: 3}
jobs: {max_attempts: 5, job_timeout_s: 60, retry_pause_ms: 250, retry_pause_max_ms: 4000}
worker_client: {health_check_interval_s: 0}
cpus: 3
gpus: 1
)");
    CHECK(c.node.id == "dir-7");
    CHECK(c.node.data_dir == "/srv/data");
    CHECK(c.node.outputs_dir == "/etc/synergos/out");  // relative to the file's folder
    CHECK(c.plugin_search_paths == std::vector<std::string>{"/etc/synergos/plugins", "/opt/p"});
    CHECK(c.logging.sink.backend == "graylog");
    CHECK(c.logging.sink.options.at("transport") == "udp");
    CHECK(c.logging.level == synergos::sdk::Level::Debug);
    CHECK(c.logging.censored);
    CHECK(c.logging.censor_keys == std::vector<std::string>{"secret_sauce", "*_dir"});
    CHECK(c.logging.resolution_s == 2.5);
    CHECK(c.message_queue.options.at("queues") == "a,b");                // list -> string_list
    CHECK(c.message_queue.options.at("tls") == R"({"verify":"true"})");  // nested -> json
    CHECK(c.storage.backend == "sqlite");
    CHECK_FALSE(c.tracking.is_enabled());
    REQUIRE(c.ttp.functions.size() == 2);
    CHECK(c.ttp.functions[1].backend == "align");
    CHECK(c.ttp.functions[1].options.at("timeout_ms") == "100");
    CHECK_FALSE(c.ttp.functions[1].required);
    CHECK(c.ttp.grid == 3);
    CHECK(c.aggregators.size() == 1);
    CHECK(c.http.port == 0);
    CHECK(c.http.threads == 4);
    CHECK(c.http.max_connections == 7);
    CHECK(c.http.max_connections_per_peer == 3);
    CHECK(c.jobs.max_attempts == 5);
    CHECK(c.jobs.retry_pause_ms == 250);
    CHECK(c.jobs.retry_pause_max_ms == 4000);
    CHECK(c.worker_client.health_check_interval_s == 0);
    CHECK(c.cpus == 3);
    CHECK(c.gpus == 1);
}

TEST_CASE("Config errors name the file, the line and the key", "[unit][config]") {
    SECTION("an unknown top-level key") {
        auto e = expect_error([] { load_text("node: {id: a}\nhtpp: {port: 1}\n"); });
        CHECK(e.line() == 2);
        CHECK(e.key() == "htpp");
        CHECK_THAT(e.what(), Catch::Contains("test.yaml:2") && Catch::Contains("unknown key") &&
                                 Catch::Contains("http"));
    }
    SECTION("a key given twice, at the top, in a section or in plugin options") {
        // The first value won and the second was ignored, even an invalid one.
        auto top = expect_error([] { load_text("http: {port: 5000}\nnode: {id: a}\nhttp: {port: 99999}\n"); });
        CHECK(top.line() == 3);
        CHECK(top.key() == "http");
        CHECK_THAT(top.what(), Catch::Contains("duplicate key (first on line 1)"));
        auto nested = expect_error([] { load_text("http:\n  port: 5000\n  port: 5001\n"); });
        CHECK(nested.line() == 3);
        CHECK(nested.key() == "http.port");
        auto options = expect_error([] {
            load_text("storage:\n  backend: sqlite\n  options:\n    synchronous: FULL\n    synchronous: OFF\n");
        });
        CHECK(options.line() == 5);
        CHECK(options.key() == "storage.options.synchronous");
    }
    SECTION("an unknown key inside a section") {
        auto e = expect_error([] { load_text("http:\n  host: x\n  prot: 80\n"); });
        CHECK(e.line() == 3);
        CHECK(e.key() == "http.prot");
    }
    SECTION("a port that is not a number") {
        auto e = expect_error([] { load_text("http:\n  port: eighty\n"); });
        CHECK(e.line() == 2);
        CHECK(e.key() == "http.port");
        CHECK_THAT(e.what(), Catch::Contains("expected an integer") && Catch::Contains("eighty"));
    }
    SECTION("a port out of range") {
        auto e = expect_error([] { load_text("http: {port: 70000}\n"); });
        CHECK(e.key() == "http.port");
        CHECK_THAT(e.what(), Catch::Contains("0..65535"));
    }
    SECTION("a level that does not exist") {
        auto e = expect_error([] { load_text("logging: {level: loud}\n"); });
        CHECK(e.key() == "logging.level");
    }
    SECTION("more HTTP threads than the server runs") {
        auto e = expect_error([] { load_text("http: {threads: 65}\n"); });
        CHECK(e.key() == "http.threads");
        CHECK_THAT(e.what(), Catch::Contains("64"));
    }
    SECTION("a document whose aliases expand to millions of values") {
        // Under 1 KB; 10^7 values once expanded (took 10 s and 860 MB before it was refused).
        std::string text = "x0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n";
        for (int level = 1; level <= 7; ++level) {
            const std::string prev = "*a" + std::to_string(level - 1);
            text += "x" + std::to_string(level) + ": &a" + std::to_string(level) + " [";
            for (int i = 0; i < 10; ++i) {
                text += (i ? ", " : "") + prev;
            }
            text += "]\n";
        }
        auto e = expect_error([&] { load_text(text); });
        CHECK_THAT(e.what(), Catch::Contains("more than 1000000 values"));
    }
    SECTION("a plugin option nested deeper than any config") {
        // Before, the walk that counts values stopped at depth 64: aliases nested below it were
        // never counted, and the option's JSON expanded every one of them.
        const std::string text = "model: {backend: torch, options: {x: " + std::string(70, '[') + "1" +
                                 std::string(70, ']') + "}}\n";
        auto e = expect_error([&] { load_text(text); });
        CHECK_THAT(e.what(), Catch::Contains("nested deeper than 64 levels"));
    }
    SECTION("a negative connection limit per address") {
        auto e = expect_error([] { load_text("http: {max_connections_per_peer: -1}\n"); });
        CHECK(e.key() == "http.max_connections_per_peer");
    }
    SECTION("an HTTP timeout past seven days (it would overflow the clock)") {
        auto e = expect_error([] { load_text("http: {body_timeout_ms: 9223372036854775807}\n"); });
        CHECK(e.key() == "http.body_timeout_ms");
    }
    SECTION("a server CA file without the server's own certificate") {
        TempDir dir;
        const auto file = dir.write("ca.yaml", "http: {tls: {ca_file: /etc/ca.pem}}\n");
        auto e = expect_error([&] { build_config(Role::Director, file, {}); });
        CHECK(e.key() == "http.tls.ca_file");
        CHECK_THAT(e.what(), Catch::Contains("cert_file"));
    }
    SECTION("a standalone director's embedded TTP on another grid than 0") {
        TempDir dir;
        const auto file = dir.write("grid.yaml", "ttp: {grid: 1}\n");
        auto e = expect_error([&] { build_config(Role::Director, file, {}); });
        CHECK(e.key() == "ttp.grid");
        FlagOverrides broker;  // with a broker, a director runs no TTP: the value is not its
        broker.queue = std::vector<std::string>{"rabbitmq", "mq", "5672"};
        CHECK(build_config(Role::Director, file, broker).ttp.grid == 1);
    }
    SECTION("a worker health check interval past an hour") {
        auto e = expect_error([] { load_text("worker_client: {health_check_interval_s: 3601}\n"); });
        CHECK(e.key() == "worker_client.health_check_interval_s");
    }
    SECTION("a retry pause cap below the first pause") {
        auto e = expect_error([] { load_text("jobs: {retry_pause_ms: 5000, retry_pause_max_ms: 1000}\n"); });
        CHECK(e.key() == "jobs.retry_pause_max_ms");
        CHECK_THAT(e.what(), Catch::Contains("5000"));
    }
    SECTION("a host name to listen on (the server binds addresses only)") {
        TempDir dir;
        const auto file = dir.write("named.yaml", "http: {host: worker-1.internal}\n");
        // Before: accepted, and the director failed at start, after resuming its jobs.
        auto e = expect_error([&] { build_config(Role::Worker, file, {}); });
        CHECK(e.key() == "http.host");
        CHECK_THAT(e.what(), Catch::Contains("worker-1.internal"));
        FlagOverrides bracketed;
        bracketed.host = "[::1]";
        CHECK(expect_error([&] { build_config(Role::Director, std::nullopt, bracketed); }).key() == "http.host");
        FlagOverrides v6;
        v6.host = "::1";
        CHECK(build_config(Role::Director, std::nullopt, v6).http.host == "::1");
    }
    SECTION("a value a flag set is the flag's mistake, not the file's") {
        TempDir dir;
        const auto file = dir.write("worker.yaml", "node: {role: worker}\n");
        FlagOverrides memory;
        memory.queue = std::vector<std::string>{"memory"};
        // Before: "worker.yaml: key 'message_queue.backend' ...", a key the file does not set.
        auto e = expect_error([&] { build_config(Role::Worker, file, memory); });
        CHECK(e.file().empty());
        CHECK(e.key() == "message_queue.backend");
        CHECK_THAT(e.what(), Catch::Contains("set by --queue"));
    }
    SECTION("a config that is a device, not a file") {
        // /dev/zero or a FIFO was read to no end; /dev/null loaded as an empty config.
        auto e = expect_error([] { build_config(Role::Director, std::string("/dev/null"), {}); });
        CHECK_THAT(e.what(), Catch::Contains("not a regular file"));
    }
    SECTION("a stop time limit of zero (nothing could ever stop)") {
        auto e = expect_error([] { load_text("node: {stop_timeout_s: 0}\n"); });
        CHECK(e.key() == "node.stop_timeout_s");
        CHECK(load_text("node: {stop_timeout_s: 5}\n").node.stop_timeout_s == 5);
    }
    SECTION("a job time limit past ten years") {
        auto e = expect_error([] { load_text("jobs: {job_timeout_s: 315360001}\n"); });
        CHECK(e.key() == "jobs.job_timeout_s");
        CHECK_THAT(e.what(), Catch::Contains("315360000"));
    }
    SECTION("a resolution the clock cannot hold (the sampler logged without pause)") {
        for (const char* value : {"1e10", "1e-10", "86401", "0.001"}) {
            INFO(value);
            auto e = expect_error([&] {
                load_text(std::string("logging: {resolution_s: ") + value + "}\n");
            });
            CHECK(e.key() == "logging.resolution_s");
            CHECK_THAT(e.what(), Catch::Contains("0.01-86400"));
        }
    }
    SECTION("a zero resolution") {
        auto e = expect_error([] { load_text("logging: {resolution_s: 0}\n"); });
        CHECK(e.key() == "logging.resolution_s");
    }
    SECTION("broken YAML syntax") {
        auto e = expect_error([] { load_text("http: {port: 1\nnode: [\n"); });
        CHECK(e.line() > 0);
        CHECK_THAT(e.what(), Catch::Contains("invalid YAML"));
    }
    SECTION("a document that is not a mapping") {
        auto e = expect_error([] { load_text("- a\n- b\n"); });
        CHECK_THAT(e.what(), Catch::Contains("mapping"));
    }
    SECTION("a file written for another role") {
        auto e = expect_error([] { load_text("node: {role: worker}\n", Role::Director); });
        CHECK(e.key() == "node.role");
        CHECK_THAT(e.what(), Catch::Contains("worker") && Catch::Contains("director"));
    }
    SECTION("a plugin list entry without a name") {
        auto e = expect_error([] { load_text("ttp:\n  functions:\n    - {options: {a: 1}}\n"); });
        CHECK(e.key() == "ttp.functions[0].name");
        CHECK(e.line() == 3);
    }
    SECTION("a plugin option without a value") {
        auto e =
            expect_error([] { load_text("storage:\n  backend: sqlite\n  options:\n    path:\n"); });
        CHECK(e.key() == "storage.options.path");
    }
    SECTION("an invalid plugin name is caught by validation with its line") {
        TempDir dir;
        const auto file = dir.write("bad.yaml", "node: {id: x}\nstorage:\n  backend: SQLite!\n");
        auto e = expect_error([&] { build_config(Role::Director, file, {}); });
        CHECK(e.file() == file);
        CHECK(e.line() == 3);
        CHECK(e.key() == "storage");
    }
    SECTION("a missing file") {
        auto e = expect_error([] { build_config(Role::Director, "/nonexistent/x.yaml", {}); });
        CHECK_THAT(e.what(),
                   Catch::Contains("/nonexistent/x.yaml") && Catch::Contains("not found"));
    }
}

TEST_CASE("Flags override the file, which overrides defaults", "[unit][config]") {
    TempDir dir;
    const auto file = dir.write("d.yaml", R"(
node: {id: from-file}
http: {port: 6000, threads: 3}
logging: {backend: graylog, options: {host: g, port: 1, transport: udp}}
)");
    SECTION("no flags: the file wins over defaults") {
        const auto c = build_config(Role::Director, file, {});
        CHECK(c.node.id == "from-file");
        CHECK(c.http.port == 6000);
        CHECK(c.http.threads == 3);
        CHECK(c.http.body_limit_bytes == synergos::core::HttpConfig{}.body_limit_bytes);
        CHECK(c.source_file == file);
    }
    SECTION("flags win over the file") {
        FlagOverrides f;
        f.id = "from-flag";
        f.port = 7001;
        f.logging_variant = std::vector<std::string>{"graylog", "h2", "9201"};
        f.debug = true;
        f.censored = true;
        f.logging_resolution_s = 1.5;
        const auto c = build_config(Role::Director, file, f);
        CHECK(c.node.id == "from-flag");
        CHECK(c.http.port == 7001);
        CHECK(c.logging.sink.options.at("host") == "h2");
        CHECK(c.logging.sink.options.at("port") == "9201");
        CHECK(c.logging.sink.options.at("transport") == "udp");  // same variant: options merge
        CHECK(c.logging.level == synergos::sdk::Level::Debug);
        CHECK(c.logging.censored);
        CHECK(c.logging.resolution_s == 1.5);
    }
    SECTION("the same variant by flag keeps the file's plugin library path") {
        const auto with_path =
            dir.write("lp.yaml", "logging: {backend: graylog, path: /opt/p/libg.so, options: {host: g}}\n");
        FlagOverrides f;
        f.logging_variant = std::vector<std::string>{"graylog", "h3", "9202"};
        const auto c = build_config(Role::Director, with_path, f);
        CHECK(c.logging.sink.path == "/opt/p/libg.so");
        f.logging_variant = std::vector<std::string>{"basic"};
        CHECK(build_config(Role::Director, with_path, f).logging.sink.path.empty());
    }
    SECTION("switching variant by flag drops the file's options of the other backend") {
        FlagOverrides f;
        f.logging_variant = std::vector<std::string>{"basic"};
        const auto c = build_config(Role::Director, file, f);
        CHECK(c.logging.sink.backend == "basic");
        CHECK(c.logging.sink.options.empty());
    }
    SECTION("--plugin-path entries come before the file's search paths") {
        const auto with_paths = dir.write("p.yaml", "plugins: {search_paths: [/b]}\n");
        FlagOverrides f;
        f.plugin_paths = {"/a"};
        const auto c = build_config(Role::Director, with_paths, f);
        CHECK(c.plugin_search_paths == std::vector<std::string>{"/a", "/b"});
    }
}

TEST_CASE("The original flags map onto the plugin sections", "[unit][config]") {
    SECTION("--queue rabbitmq HOST PORT selects rabbitmq with host and port") {
        FlagOverrides f;
        f.queue = std::vector<std::string>{"rabbitmq", "10.1.2.3", "5672"};
        const auto c = build_config(Role::Director, std::nullopt, f);
        CHECK(c.message_queue.backend == "rabbitmq");
        CHECK(c.message_queue.options.at("host") == "10.1.2.3");
        CHECK(c.message_queue.options.at("port") == "5672");
    }
    SECTION("no --queue on a director means the embedded memory queue") {
        const auto c = build_config(Role::Director, std::nullopt, {});
        CHECK(c.message_queue.backend == "memory");
    }
    SECTION("--queue rabbitmq without HOST PORT is refused naming the flag") {
        FlagOverrides f;
        f.queue = std::vector<std::string>{"rabbitmq"};
        auto e = expect_error([&] { build_config(Role::Director, std::nullopt, f); });
        CHECK(e.key() == "--queue");
    }
    SECTION("a variant that takes no address is told so whatever follows its name") {
        FlagOverrides f;
        f.logging_variant = std::vector<std::string>{"basic", "x", "y"};
        auto e = expect_error([&] { build_config(Role::Director, std::nullopt, f); });
        CHECK(e.key() == "--logging_variant");
        CHECK_THAT(e.what(), Catch::Contains("'basic' takes no HOST and PORT"));
        f = FlagOverrides{};
        f.queue = std::vector<std::string>{"memory", "h", "notaport"};
        e = expect_error([&] { build_config(Role::Director, std::nullopt, f); });
        CHECK(e.key() == "--queue");
        CHECK_THAT(e.what(), Catch::Contains("'memory' is in-process and takes no HOST and PORT"));
    }
    SECTION("--queue with a bad port is refused") {
        FlagOverrides f;
        f.queue = std::vector<std::string>{"rabbitmq", "h", "port"};
        auto e = expect_error([&] { build_config(Role::Director, std::nullopt, f); });
        CHECK_THAT(e.what(), Catch::Contains("PORT"));
    }
    SECTION("--queue kafka is refused listing the variants") {
        FlagOverrides f;
        f.queue = std::vector<std::string>{"kafka", "h", "1"};
        auto e = expect_error([&] { build_config(Role::Director, std::nullopt, f); });
        CHECK_THAT(e.what(), Catch::Contains("rabbitmq, memory"));
    }
    SECTION("a missing --logging_variant means basic; a missing -r means 5 s") {
        const auto c = build_config(Role::Ttp, std::nullopt, [] {
            FlagOverrides f;
            f.queue = std::vector<std::string>{"rabbitmq", "mq", "5672"};
            return f;
        }());
        CHECK(c.logging.sink.backend == "basic");
        CHECK(c.logging.resolution_s == 5.0);
    }
    SECTION("--logging_variant graylog HOST PORT") {
        FlagOverrides f;
        f.logging_variant = std::vector<std::string>{"graylog", "gl", "9200"};
        const auto c = build_config(Role::Director, std::nullopt, f);
        CHECK(c.logging.sink.backend == "graylog");
        CHECK(c.logging.sink.options.at("host") == "gl");
        CHECK(c.logging.sink.options.at("port") == "9200");
    }
    SECTION("--logging_variant graylog alone uses the role's original port") {
        FlagOverrides f;
        f.logging_variant = std::vector<std::string>{"graylog"};
        f.queue = std::vector<std::string>{"rabbitmq", "mq", "5672"};
        const auto c = build_config(Role::Ttp, std::nullopt, f);
        CHECK(c.logging.sink.options.at("host") == "127.0.0.1");
        CHECK(c.logging.sink.options.at("port") == "9300");
    }
    SECTION("--logging_variant graylog HOST without PORT is refused") {
        FlagOverrides f;
        f.logging_variant = std::vector<std::string>{"graylog", "gl"};
        auto e = expect_error([&] { build_config(Role::Director, std::nullopt, f); });
        CHECK(e.key() == "--logging_variant");
        CHECK_THAT(e.what(), Catch::Contains("PORT"));
    }
    SECTION("--queue memory with HOST PORT is refused") {
        FlagOverrides f;
        f.queue = std::vector<std::string>{"memory", "h", "1"};
        auto e = expect_error([&] { build_config(Role::Director, std::nullopt, f); });
        CHECK(e.key() == "--queue");
    }
    SECTION("a ttp without a queue is refused") {
        auto e = expect_error([] { build_config(Role::Ttp, std::nullopt, {}); });
        CHECK(e.key() == "message_queue.backend");
    }
    SECTION("--grid, --cpus, --gpus and the directories") {
        FlagOverrides f;
        f.queue = std::vector<std::string>{"rabbitmq", "mq", "5672"};
        f.grid = 2;
        f.cpus = 1;
        f.gpus = 0;
        f.data_dir = "relative/data";
        const auto c = build_config(Role::Ttp, std::nullopt, f);
        CHECK(c.ttp.grid == 2);
        CHECK(c.cpus == 1);
        CHECK(c.effective_cpus() == 1);
        CHECK(fs::path(c.node.data_dir).is_absolute());
        CHECK_THAT(c.node.data_dir, Catch::EndsWith("relative/data"));
    }
    SECTION("a random node id when none is given") {
        const auto a = build_config(Role::Director, std::nullopt, {});
        const auto b = build_config(Role::Director, std::nullopt, {});
        CHECK_FALSE(a.node.id.empty());
        CHECK(a.node.id != b.node.id);
    }
    SECTION("check-config takes the role from the file") {
        TempDir dir;
        const auto file = dir.write("w.yaml", "node: {role: worker}\n");
        const auto c = build_config(std::nullopt, file, {});
        CHECK(c.node.role == Role::Worker);
    }
}

TEST_CASE("Configured plugins come out in start order", "[unit][config]") {
    auto c = RuntimeConfig::defaults_for(Role::Director);
    c.ttp.functions.resize(1);
    c.aggregators.clear();
    c.model.backend = "none";
    const auto plugins = synergos::core::configured_plugins(c);
    std::vector<std::string> names;
    for (const auto& p : plugins) {
        names.push_back(std::string(synergos::sdk::kind_name(p.request.kind)) + "/" +
                        p.request.name);
    }
    CHECK(names == std::vector<std::string>{"logging/basic", "tracking/mlflow", "storage/sqlite",
                                            "mq/memory", "ttp/align"});
}

TEST_CASE("The effective config serialises to JSON", "[unit][config]") {
    const auto c = build_config(Role::Director, std::nullopt, {});
    const auto j = c.to_json();
    CHECK(j["node"]["role"] == "director");
    CHECK(j["message_queue"]["backend"] == "memory");
    CHECK(j["http"]["port"] == 5000);
    CHECK(j["logging"]["resolution_s"] == 5.0);
    CHECK(j["ttp"]["functions"].size() == 5);
}
