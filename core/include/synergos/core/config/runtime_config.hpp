// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file runtime_config.hpp
/// The effective configuration of one `synergos` process: defaults for its role, overlaid by the
/// YAML config file, overlaid by command-line flags (see cli.hpp). Plain data; every plugin
/// section names a backend (plugin) and its textual options.

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/log.hpp>

namespace synergos::core {

/// The role a process plays.
enum class Role : std::uint8_t { Director = 1, Ttp, Worker };

/// "director", "ttp" or "worker".
const char* role_name(Role role) noexcept;
/// Parses a role name; nullopt when unknown.
std::optional<Role> parse_role(const std::string& name) noexcept;
/// Parses a level name ("trace" ... "critical"; "warning" is accepted for "warn").
std::optional<sdk::Level> parse_level(const std::string& name) noexcept;

/// A configuration error: names the file, the line (0 when unknown) and the dotted key.
/// `what()` is the whole one-line message.
class ConfigError : public std::runtime_error {
public:
    ConfigError(std::string file, int line, std::string key, const std::string& message);

    const std::string& file() const noexcept { return file_; }
    int line() const noexcept { return line_; }
    const std::string& key() const noexcept { return key_; }
    /// The message without the location prefix.
    const std::string& detail() const noexcept { return detail_; }

private:
    std::string file_;
    int line_;
    std::string key_;
    std::string detail_;
};

/// The backend value that switches a section off.
inline constexpr const char* kBackendNone = "none";

/// One plugin choice: a subsystem section (`storage: {backend: sqlite, options: {...}}`) or one
/// entry of a plugin list (`ttp.functions: [train, {name: align, options: {...}}]`).
struct PluginSection {
    std::string backend;                         ///< plugin name; "none" (or empty) = off
    std::map<std::string, std::string> options;  ///< textual values, validated by the loader
    std::string path;                            ///< explicit library file (overrides search)
    bool required = true;                        ///< false: a failure is a warning, not fatal
    std::string source_key;                      ///< dotted key it came from, e.g. "storage"
    int source_line = 0;                         ///< line in the config file (0: default/flag)

    bool is_enabled() const { return !backend.empty() && backend != kBackendNone; }
};

/// `logging:` section.
struct LoggingConfig {
    PluginSection sink;                    ///< `backend` + `options` (basic, graylog)
    sdk::Level level = sdk::Level::Info;   ///< `--debug` sets Debug
    bool censored = false;                 ///< `--censored`
    std::vector<std::string> censor_keys;  ///< key patterns, `*` wildcard, case-insensitive
    double resolution_s = 5.0;             ///< system-metrics interval (`--logging_resolution`)
    bool system_metrics = true;            ///< sample and log system metrics
};

/// `ttp:` section.
struct TtpConfig {
    std::vector<PluginSection> functions;  ///< align, train, validate, predict, optimize
    int grid = 0;                          ///< `--grid`
};

/// Where a secret (a token) comes from: a file (its content, trailing whitespace dropped) or an
/// environment variable. The config holds only the reference; the value is read at start-up.
struct SecretSource {
    std::string file;  ///< `file: PATH`
    std::string env;   ///< `env: NAME`

    bool empty() const { return file.empty() && env.empty(); }
};

/// One accepted bearer token (`http.tokens[]`).
struct TokenConfig {
    SecretSource source;
    std::string scope = "admin";  ///< "read" (GET/HEAD) or "admin" (everything)
};

/// `http.tls`: TLS on the server (the director's API, the worker protocol).
struct ServerTlsConfig {
    std::string cert_file;  ///< empty: plain HTTP
    std::string key_file;
    std::string ca_file;               ///< CA that client certificates must chain to
    bool require_client_cert = false;  ///< mutual TLS
};

/// `worker_client:` how a TTP (or a standalone director's embedded TTP) calls its workers.
struct WorkerClientConfig {
    bool tls = false;       ///< https to every worker
    std::string ca_file;    ///< CA that worker certificates must chain to (empty: system CAs)
    std::string cert_file;  ///< client certificate for mutual TLS
    std::string key_file;
    SecretSource token;  ///< the bearer token workers expect from this TTP
    /// While a call waits with nothing moving, the worker's health is checked this often; 3
    /// failed checks in a row give the call up. 0: no checks.
    std::int64_t health_check_interval_s = 10;
};

/// `http:` section (the REST server).
struct HttpConfig {
    std::string host = "127.0.0.1";  ///< loopback unless told otherwise
    int port = 5000;  ///< 0: any free port
    int threads = 2;
    std::uint64_t body_limit_bytes = 64ULL << 20U;  ///< largest request body accepted
    std::int64_t header_timeout_ms = 10'000;
    std::int64_t body_timeout_ms = 60'000;
    int max_connections = 256;
    int max_connections_per_peer = 128;  ///< from one IP address; 0: no limit of its own
    ServerTlsConfig tls;
    std::vector<TokenConfig> tokens;  ///< empty: no authentication
    /// Serve a non-loopback address without TLS and tokens (`--allow-insecure`); warns.
    bool allow_insecure = false;
};

/// The HTTP server's limit on event-loop threads (`http.threads`).
inline constexpr int kMaxHttpThreads = 64;
/// The longest `http.header_timeout_ms` / `body_timeout_ms` (seven days): a larger value would
/// overflow the clock's duration and fire at once.
inline constexpr std::int64_t kMaxHttpTimeoutMs = 604'800'000;
/// logging.resolution_s (the system-metrics interval): 10 ms to a day. Past either end the
/// interval does not fit the clock (below 1 ns it is 0, past 292 years it overflows) and the
/// sampler would log without pause.
inline constexpr double kMinResolutionS = 0.01;
inline constexpr double kMaxResolutionS = 86'400.0;
inline bool resolution_in_range(double seconds) noexcept {
    return seconds >= kMinResolutionS && seconds <= kMaxResolutionS;  // false for NaN
}

/// The longest `jobs.job_timeout_s` (ten years): kept well inside the range of a millisecond
/// duration.
inline constexpr std::int64_t kMaxJobTimeoutS = 315'360'000;

/// `jobs:` section.
struct JobsConfig {
    int max_attempts = 3;  ///< attempts (a redelivery is not one) before a job is dead-lettered
    /// A TTP stops a job (this delivery) still running after this long; it fails for good.
    std::int64_t job_timeout_s = 86'400;
    /// A TTP's pause before retrying a failed attempt, doubling per attempt up to the max.
    std::int64_t retry_pause_ms = 1'000;
    std::int64_t retry_pause_max_ms = 30'000;
};

/// Node identity and directories.
struct NodeConfig {
    std::string id;  ///< `--id`; a random id when not given
    Role role = Role::Director;
    std::string data_dir = "data";
    std::string outputs_dir = "outputs";
    std::string mlflow_dir = "mlflow";
    /// `node.stop_timeout_s`: how long stopping may take before the process ends anyway, naming
    /// the component still stopping. Under compose's 30 s grace period, so this process says
    /// what hung before the engine's SIGKILL does it silently.
    int stop_timeout_s = 25;
};

/// Everything a process needs to start.
struct RuntimeConfig {
    NodeConfig node;
    std::vector<std::string> plugin_search_paths;  ///< `plugins.search_paths` (+ `--plugin-path`)
    LoggingConfig logging;
    PluginSection message_queue;
    PluginSection storage;
    PluginSection tracking;
    TtpConfig ttp;
    std::vector<PluginSection> aggregators;
    PluginSection model;
    std::vector<PluginSection> data;
    HttpConfig http;
    WorkerClientConfig worker_client;
    JobsConfig jobs;
    int cpus = 0;             ///< CPUs the compute pool is sized for; 0: libtorch's default (apply_cpu_limit)
    int gpus = 0;             ///< GPUs to use; this build's torch is CPU-only (a warning if > 0)
    std::string source_file;  ///< the YAML file loaded, empty when none

    /// The defaults of a role (ARCHITECTURE.md): a director embeds an in-process queue, SQLite
    /// storage, MLflow tracking and the TTP functions; a TTP talks to RabbitMQ; a worker holds
    /// data pipelines and the model backend.
    static RuntimeConfig defaults_for(Role role);

    /// The effective configuration as JSON (for the start-up snapshot and `check-config`).
    nlohmann::json to_json() const;
    /// CPUs the process may use: `cpus` capped at the CPUs its affinity mask allows; all of
    /// those when `cpus` is 0.
    int effective_cpus() const;
    /// Where the mlflow tracker writes (the dashboard links there): its `root` option when set,
    /// else the node's MLflow directory.
    std::string mlflow_store() const;
};

/// CPUs in the calling thread's affinity mask (a container's cpuset, or taskset); at least 1.
int allowed_cpus() noexcept;

/// The default censor key list: path-like keys (`*_dir(s)`, `*_path(s)`, `*_file`, `path`),
/// hosts, credentials and tokens.
std::vector<std::string> default_censor_keys();

/// Checks ranges and names (port, resolution, plugin names, ...). Throws ConfigError naming the
/// key (and the file/line when the value came from a file).
void validate(const RuntimeConfig& config);

}  // namespace synergos::core
