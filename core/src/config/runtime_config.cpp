// SPDX-License-Identifier: Apache-2.0
#include <arpa/inet.h>

#include <synergos/core/config/runtime_config.hpp>

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <regex>
#include <thread>

namespace synergos::core {

namespace {

std::string location_prefix(const std::string& file, int line) {
    if (file.empty()) {
        return "config";
    }
    return line > 0 ? file + ":" + std::to_string(line) : file;
}

std::string format_config_error(const std::string& file, int line, const std::string& key,
                                const std::string& message) {
    std::string text = location_prefix(file, line);
    if (!key.empty()) {
        text += ": key '" + key + "'";
    }
    return text + ": " + message;
}

PluginSection section(const std::string& key, std::string backend) {
    PluginSection s;
    s.backend = std::move(backend);
    s.source_key = key;
    return s;
}

std::vector<PluginSection> list_of(const std::string& key,
                                   std::initializer_list<const char*> names) {
    std::vector<PluginSection> out;
    int index = 0;
    for (const char* name : names) {
        out.push_back(section(key + "[" + std::to_string(index++) + "]", name));
    }
    return out;
}

/// The TTP functions of a default config. Optimisation is an optional module: without its
/// plugin the node still starts (with a warning) and only the optimisation routes answer 501.
std::vector<PluginSection> default_functions() {
    auto functions =
        list_of("ttp.functions", {"align", "train", "validate", "predict", "optimize"});
    functions.back().required = false;
    return functions;
}

nlohmann::json section_json(const PluginSection& s) {
    nlohmann::json j = nlohmann::json::object();
    j["backend"] = s.is_enabled() ? s.backend : std::string(kBackendNone);
    j["options"] = s.options;
    if (!s.path.empty()) {
        j["path"] = s.path;
    }
    if (!s.required) {
        j["required"] = false;
    }
    return j;
}

nlohmann::json list_json(const std::vector<PluginSection>& list) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& s : list) {
        nlohmann::json e = section_json(s);
        e["name"] = e["backend"];
        e.erase("backend");
        j.push_back(std::move(e));
    }
    return j;
}

[[noreturn]] void fail_at(const RuntimeConfig& config, const PluginSection* s,
                          const std::string& key, const std::string& message) {
    const int line = s != nullptr ? s->source_line : 0;
    throw ConfigError(line > 0 ? config.source_file : std::string(), line, key, message);
}

void validate_section(const RuntimeConfig& config, const PluginSection& s) {
    static const std::regex kName("[a-z0-9_]+");
    if (!s.is_enabled()) {
        return;
    }
    if (!std::regex_match(s.backend, kName)) {
        fail_at(config, &s, s.source_key, "plugin name '" + s.backend + "' must match [a-z0-9_]+");
    }
    for (const auto& [key, value] : s.options) {
        if (!std::regex_match(key, kName)) {
            fail_at(config, &s, s.source_key + ".options." + key,
                    "option names must match [a-z0-9_]+");
        }
    }
}

void validate_list(const RuntimeConfig& config, const std::vector<PluginSection>& list) {
    std::vector<std::string> seen;
    for (const auto& s : list) {
        validate_section(config, s);
        if (std::find(seen.begin(), seen.end(), s.backend) != seen.end()) {
            fail_at(config, &s, s.source_key, "plugin '" + s.backend + "' is listed twice");
        }
        seen.push_back(s.backend);
    }
}

}  // namespace

const char* role_name(Role role) noexcept {
    switch (role) {
        case Role::Director: return "director";
        case Role::Ttp: return "ttp";
        case Role::Worker: return "worker";
    }
    return "director";
}

std::optional<Role> parse_role(const std::string& name) noexcept {
    if (name == "director") {
        return Role::Director;
    }
    if (name == "ttp") {
        return Role::Ttp;
    }
    if (name == "worker") {
        return Role::Worker;
    }
    return std::nullopt;
}

std::optional<sdk::Level> parse_level(const std::string& name) noexcept {
    static constexpr std::pair<const char*, sdk::Level> kLevels[] = {
        {"trace", sdk::Level::Trace},      {"debug", sdk::Level::Debug},
        {"info", sdk::Level::Info},        {"warn", sdk::Level::Warn},
        {"warning", sdk::Level::Warn},     {"error", sdk::Level::Error},
        {"critical", sdk::Level::Critical}};
    for (const auto& [text, level] : kLevels) {
        if (name == text) {
            return level;
        }
    }
    return std::nullopt;
}

ConfigError::ConfigError(std::string file, int line, std::string key, const std::string& message)
    : std::runtime_error(format_config_error(file, line, key, message)),
      file_(std::move(file)),
      line_(line),
      key_(std::move(key)),
      detail_(message) {}

std::vector<std::string> default_censor_keys() {
    return {"*_dir",         "*_dirs",  "*_path",   "*_paths",     "*_file",   "path",
            "host",          "hosts",   "password", "token",       "*token",   "*tokens",
            "authorization", "secret",  "*_secret", "api_key",     "credentials", "url",
            "cookie",        "root",    "*_root"};
}

RuntimeConfig RuntimeConfig::defaults_for(Role role) {
    RuntimeConfig c;
    c.node.role = role;
    c.logging.sink = section("logging", "basic");
    c.logging.censor_keys = default_censor_keys();
    c.message_queue = section("message_queue", kBackendNone);
    c.storage = section("storage", kBackendNone);
    c.tracking = section("tracking", kBackendNone);
    c.model = section("model", kBackendNone);
    switch (role) {
        case Role::Director:
            // Embedded standalone: in-process queue and TTP for grid 0 (ARCHITECTURE.md).
            c.message_queue.backend = "memory";
            c.storage.backend = "sqlite";
            c.tracking.backend = "mlflow";
            c.ttp.functions = default_functions();
            c.aggregators = list_of("aggregators", {"fedavg", "fedprox"});
            c.model.backend = "torch";
            break;
        case Role::Ttp:
            // The queue has no sensible default for a TTP: validate() asks for one.
            c.message_queue.backend.clear();
            c.ttp.functions = default_functions();
            c.aggregators = list_of("aggregators", {"fedavg", "fedprox"});
            // No model backend: a TTP aggregates weights and never runs a network (its workers
            // do), so loading libtorch there only cost memory and start-up time.
            break;
        case Role::Worker:
            c.model.backend = "torch";
            c.data = list_of("data", {"tabular", "image"});
            break;
    }
    return c;
}

nlohmann::json RuntimeConfig::to_json() const {
    nlohmann::json j;
    j["node"] = {{"id", node.id}, {"role", role_name(node.role)}, {"stop_timeout_s", node.stop_timeout_s}};
    j["paths"] = {{"data_dir", node.data_dir},
                  {"outputs_dir", node.outputs_dir},
                  {"mlflow_dir", node.mlflow_dir}};
    j["plugins"] = {{"search_paths", plugin_search_paths}};
    nlohmann::json logging_json = section_json(logging.sink);
    logging_json["level"] = sdk::to_string(logging.level);
    logging_json["censored"] = logging.censored;
    logging_json["censor_keys"] = logging.censor_keys;
    logging_json["resolution_s"] = logging.resolution_s;
    logging_json["system_metrics"] = logging.system_metrics;
    j["logging"] = std::move(logging_json);
    j["message_queue"] = section_json(message_queue);
    j["storage"] = section_json(storage);
    j["tracking"] = section_json(tracking);
    j["ttp"] = {{"functions", list_json(ttp.functions)}, {"grid", ttp.grid}};
    j["aggregators"] = list_json(aggregators);
    j["model"] = section_json(model);
    j["data"] = list_json(data);
    j["http"] = {{"host", http.host},
                 {"port", http.port},
                 {"threads", http.threads},
                 {"body_limit_bytes", http.body_limit_bytes},
                 {"header_timeout_ms", http.header_timeout_ms},
                 {"body_timeout_ms", http.body_timeout_ms},
                 {"max_connections", http.max_connections},
                 {"max_connections_per_peer", http.max_connections_per_peer},
                 {"tls", !http.tls.cert_file.empty()},
                 {"mutual_tls", http.tls.require_client_cert},
                 {"allow_insecure", http.allow_insecure}};
    // Where tokens come from, never their value.
    auto source_json = [](const SecretSource& s) {
        return s.env.empty() ? nlohmann::json{{"source", "file"}}
                             : nlohmann::json{{"source", "env"}, {"variable", s.env}};
    };
    nlohmann::json tokens = nlohmann::json::array();
    for (const auto& t : http.tokens) {
        auto entry = source_json(t.source);
        entry["scope"] = t.scope;
        tokens.push_back(std::move(entry));
    }
    j["http"]["tokens"] = std::move(tokens);
    j["worker_client"] = {{"tls", worker_client.tls},
                          {"health_check_interval_s", worker_client.health_check_interval_s},
                          {"mutual_tls", !worker_client.cert_file.empty()},
                          {"token", worker_client.token.empty()
                                        ? nlohmann::json(nullptr)
                                        : source_json(worker_client.token)}};
    j["jobs"] = {{"max_attempts", jobs.max_attempts},
                 {"job_timeout_s", jobs.job_timeout_s},
                 {"retry_pause_ms", jobs.retry_pause_ms},
                 {"retry_pause_max_ms", jobs.retry_pause_max_ms}};
    j["cpus"] = cpus;
    j["gpus"] = gpus;
    j["effective_cpus"] = effective_cpus();
    if (!source_file.empty()) {
        j["config_file"] = source_file;
    }
    return j;
}

std::string RuntimeConfig::mlflow_store() const {
    if (tracking.backend == "mlflow") {
        if (auto it = tracking.options.find("root"); it != tracking.options.end() && !it->second.empty()) {
            return it->second;
        }
    }
    return node.mlflow_dir;
}

int allowed_cpus() noexcept {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
        return CPU_COUNT(&set);
    }
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

int RuntimeConfig::effective_cpus() const {
    const int available = allowed_cpus();
    return cpus > 0 ? std::min(cpus, available) : available;
}

void validate(const RuntimeConfig& config) {
    auto fail = [&](const std::string& key, const std::string& message) {
        throw ConfigError({}, 0, key, message);
    };
    if (config.node.id.empty()) {
        fail("node.id", "must not be empty");
    }
    // The server binds this address: a host name passed every check and then failed the start,
    // after the job service had resumed its jobs.
    if (in6_addr any{}; ::inet_pton(AF_INET, config.http.host.c_str(), &any) != 1 &&
                        ::inet_pton(AF_INET6, config.http.host.c_str(), &any) != 1) {
        fail("http.host", "'" + config.http.host +
                              "' is not an IP address to listen on (e.g. 127.0.0.1, 0.0.0.0 or ::; not a "
                              "host name)");
    }
    for (const auto& [key, value] : {std::pair{"paths.data_dir", &config.node.data_dir},
                                     std::pair{"paths.outputs_dir", &config.node.outputs_dir},
                                     std::pair{"paths.mlflow_dir", &config.node.mlflow_dir}}) {
        if (value->empty()) {
            fail(key, "must not be empty");
        }
    }
    if (!resolution_in_range(config.logging.resolution_s)) {
        fail("logging.resolution_s", "must be 0.01-86400 seconds");
    }
    if (config.http.port < 0 || config.http.port > 65535) {
        fail("http.port", "must be in 0..65535, got " + std::to_string(config.http.port));
    }
    if (config.http.threads < 1 || config.http.threads > kMaxHttpThreads) {
        fail("http.threads", "must be 1-" + std::to_string(kMaxHttpThreads));
    }
    if (config.http.body_limit_bytes == 0) {
        fail("http.body_limit_bytes", "must be positive");
    }
    if (config.http.header_timeout_ms <= 0 || config.http.header_timeout_ms > kMaxHttpTimeoutMs) {
        fail("http.header_timeout_ms", "must be 1-" + std::to_string(kMaxHttpTimeoutMs) + " (ms)");
    }
    if (config.http.body_timeout_ms <= 0 || config.http.body_timeout_ms > kMaxHttpTimeoutMs) {
        fail("http.body_timeout_ms", "must be 1-" + std::to_string(kMaxHttpTimeoutMs) + " (ms)");
    }
    if (config.http.max_connections < 1) {
        fail("http.max_connections", "must be at least 1");
    }
    if (config.http.max_connections_per_peer < 0) {
        fail("http.max_connections_per_peer", "must be 0 (no limit of its own) or more");
    }
    const auto& tls = config.http.tls;
    if (tls.cert_file.empty() != tls.key_file.empty()) {
        fail(tls.cert_file.empty() ? "http.tls.cert_file" : "http.tls.key_file",
             "http.tls needs both cert_file and key_file");
    }
    if (!tls.ca_file.empty() && tls.cert_file.empty()) {
        // Without its own certificate the server speaks plain HTTP and would never use the CA.
        fail("http.tls.ca_file", "needs http.tls.cert_file and key_file (TLS is off without them)");
    }
    if (tls.require_client_cert && (tls.ca_file.empty() || tls.cert_file.empty())) {
        fail("http.tls.require_client_cert",
             "mutual TLS needs http.tls.cert_file, key_file and ca_file");
    }
    const auto& wc = config.worker_client;
    if (wc.cert_file.empty() != wc.key_file.empty()) {
        fail(wc.cert_file.empty() ? "worker_client.cert_file" : "worker_client.key_file",
             "a client certificate needs both cert_file and key_file");
    }
    if (!wc.tls && (!wc.ca_file.empty() || !wc.cert_file.empty())) {
        fail("worker_client.tls", "must be true when ca_file or cert_file is set");
    }
    if (config.jobs.max_attempts < 1) {
        fail("jobs.max_attempts", "must be at least 1");
    }
    if (config.node.role == Role::Director && config.message_queue.backend == "memory" &&
        config.ttp.grid != 0) {
        fail("ttp.grid", "a standalone director's embedded TTP serves grid 0; other grids need a "
                         "broker and `synergos ttp --grid N`");
    }
    if (config.jobs.job_timeout_s <= 0 || config.jobs.job_timeout_s > kMaxJobTimeoutS) {
        fail("jobs.job_timeout_s", "must be 1-" + std::to_string(kMaxJobTimeoutS) + " (seconds)");
    }
    if (config.cpus < 0) {
        fail("cpus", "must be 0 (auto) or positive");
    }
    if (config.gpus < 0) {
        fail("gpus", "must be 0 or positive");
    }
    if (config.ttp.grid < 0) {
        fail("ttp.grid", "must be 0 or positive");
    }
    validate_section(config, config.logging.sink);
    validate_section(config, config.message_queue);
    validate_section(config, config.storage);
    validate_section(config, config.tracking);
    validate_section(config, config.model);
    validate_list(config, config.ttp.functions);
    validate_list(config, config.aggregators);
    validate_list(config, config.data);

    const auto& mq = config.message_queue;
    if (config.node.role == Role::Ttp && !mq.is_enabled()) {
        fail_at(config, &mq, "message_queue.backend",
                "a ttp needs a message queue: pass --queue rabbitmq HOST PORT or set "
                "message_queue.backend");
    }
    if (config.node.role != Role::Director && mq.backend == "memory") {
        fail_at(config, &mq, "message_queue.backend",
                "the in-process 'memory' queue only works inside a director; use rabbitmq");
    }
}

}  // namespace synergos::core
