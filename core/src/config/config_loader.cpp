// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/config/config_loader.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include <synergos/core/jobs/messages.hpp>

namespace synergos::core {

namespace {

namespace fs = std::filesystem;

std::string join(const std::vector<std::string>& items, const char* separator) {
    std::string out;
    for (const auto& item : items) {
        if (!out.empty()) {
            out += separator;
        }
        out += item;
    }
    return out;
}

/// Reads typed values out of a YAML document; every error names the file, the line and the key.
class YamlReader {
public:
    YamlReader(std::string source, std::string base_dir)
        : source_(std::move(source)), base_dir_(std::move(base_dir)) {}

    [[noreturn]] void fail(const YAML::Node& node, const std::string& key,
                           const std::string& message) const {
        const int line = node.IsDefined() && node.Mark().line >= 0 ? node.Mark().line + 1 : 0;
        throw ConfigError(source_, line, key, message);
    }

    int line_of(const YAML::Node& node) const {
        return node.IsDefined() && node.Mark().line >= 0 ? node.Mark().line + 1 : 0;
    }

    const std::string& source() const { return source_; }

    /// Refuses keys outside `allowed`, listing the valid ones.
    void check_keys(const YAML::Node& map, const std::string& prefix,
                    const std::vector<std::string>& allowed) const {
        if (!map.IsMap()) {
            fail(map, prefix, "must be a mapping with keys: " + join(allowed, ", "));
        }
        for (const auto& item : map) {
            const std::string key = item.first.Scalar();
            if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
                const std::string full = prefix.empty() ? key : prefix + "." + key;
                fail(item.first, full, "unknown key (valid: " + join(allowed, ", ") + ")");
            }
        }
    }

    std::string text(const YAML::Node& node, const std::string& key) const {
        if (!node.IsScalar()) {
            fail(node, key, "must be a single value");
        }
        return node.Scalar();
    }

    std::int64_t integer(const YAML::Node& node, const std::string& key, std::int64_t min,
                         std::int64_t max) const {
        const std::string value = text(node, key);
        std::int64_t parsed = 0;
        std::size_t used = 0;
        try {
            parsed = std::stoll(value, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != value.size()) {
            fail(node, key, "expected an integer, got '" + value + "'");
        }
        if (parsed < min || parsed > max) {
            fail(node, key,
                 "must be in " + std::to_string(min) + ".." + std::to_string(max) + ", got " +
                     value);
        }
        return parsed;
    }

    double number(const YAML::Node& node, const std::string& key, double min_exclusive) const {
        const std::string value = text(node, key);
        double parsed = 0.0;
        std::size_t used = 0;
        try {
            parsed = std::stod(value, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != value.size() || !std::isfinite(parsed)) {
            fail(node, key, "expected a number, got '" + value + "'");
        }
        if (!(parsed > min_exclusive)) {
            fail(node, key, "must be a positive number, got " + value);
        }
        return parsed;
    }

    bool boolean(const YAML::Node& node, const std::string& key) const {
        const std::string value = text(node, key);
        if (value == "true" || value == "yes" || value == "on") {
            return true;
        }
        if (value == "false" || value == "no" || value == "off") {
            return false;
        }
        fail(node, key, "expected true or false, got '" + value + "'");
    }

    std::vector<std::string> string_list(const YAML::Node& node, const std::string& key) const {
        if (!node.IsSequence()) {
            fail(node, key, "must be a list");
        }
        std::vector<std::string> out;
        for (std::size_t i = 0; i < node.size(); ++i) {
            out.push_back(text(node[i], key + "[" + std::to_string(i) + "]"));
        }
        return out;
    }

    /// `{file: PATH}` or `{env: NAME}`: where a secret is read from at start-up (exactly one).
    SecretSource secret(const YAML::Node& node, const std::string& key) const {
        SecretSource out;
        if (node["file"]) {
            out.file = path(node["file"], key + ".file");
        }
        if (node["env"]) {
            out.env = text(node["env"], key + ".env");
            if (out.env.empty()) {
                fail(node["env"], key + ".env", "must name an environment variable");
            }
        }
        if (out.file.empty() == out.env.empty()) {
            fail(node, key, "needs exactly one of 'file' (a token file) or 'env' (a variable)");
        }
        return out;
    }

    /// A path; relative ones are taken from the config file's folder.
    std::string path(const YAML::Node& node, const std::string& key) const {
        const std::string value = text(node, key);
        if (value.empty()) {
            fail(node, key, "must not be empty");
        }
        fs::path p(value);
        if (p.is_relative() && !base_dir_.empty()) {
            p = fs::path(base_dir_) / p;
        }
        return p.lexically_normal().string();
    }

    /// Plugin options become text: scalars as they are, lists of scalars comma-joined (the
    /// SDK's string_list), anything nested as a JSON document (the SDK's json type).
    std::string option_value(const YAML::Node& node, const std::string& key) const {
        if (node.IsNull()) {
            fail(node, key, "has no value");
        }
        if (node.IsScalar()) {
            return node.Scalar();
        }
        if (node.IsSequence()) {
            bool all_scalars = true;
            for (const auto& item : node) {
                all_scalars = all_scalars && item.IsScalar();
            }
            if (all_scalars) {
                std::vector<std::string> items;
                for (const auto& item : node) {
                    items.push_back(item.Scalar());
                }
                return join(items, ",");
            }
        }
        try {
            return to_json(node).dump();
        } catch (const nlohmann::json::type_error&) {
            // A JSON document holds UTF-8 only (found by fuzz/config).
            fail(node, key, "is not valid UTF-8");
        }
    }

    nlohmann::json to_json(const YAML::Node& node) const {
        if (node.IsMap()) {
            nlohmann::json j = nlohmann::json::object();
            for (const auto& item : node) {
                j[item.first.Scalar()] = to_json(item.second);
            }
            return j;
        }
        if (node.IsSequence()) {
            nlohmann::json j = nlohmann::json::array();
            for (const auto& item : node) {
                j.push_back(to_json(item));
            }
            return j;
        }
        if (node.IsScalar()) {
            return node.Scalar();
        }
        return nullptr;
    }

    void options(const YAML::Node& node, const std::string& key,
                 std::map<std::string, std::string>& out) const {
        if (node.IsNull()) {
            return;
        }
        if (!node.IsMap()) {
            fail(node, key, "must be a mapping of option names to values");
        }
        for (const auto& item : node) {
            const std::string name = item.first.Scalar();
            out[name] = option_value(item.second, key + "." + name);
        }
    }

    /// A subsystem section: `storage: sqlite` or `storage: {backend, options, path, required}`.
    /// `extra` lists other keys the caller reads itself (e.g. logging's `level`).
    void plugin_section(const YAML::Node& node, const std::string& key, PluginSection& out,
                        const std::vector<std::string>& extra = {}) const {
        out.source_key = key;
        out.source_line = line_of(node);
        if (node.IsScalar()) {
            out = PluginSection{};
            out.backend = node.Scalar();
            out.source_key = key;
            out.source_line = line_of(node);
            return;
        }
        if (node.IsNull()) {
            out.backend = kBackendNone;
            out.options.clear();
            return;
        }
        std::vector<std::string> allowed = {"backend", "options", "path", "required"};
        allowed.insert(allowed.end(), extra.begin(), extra.end());
        check_keys(node, key, allowed);
        if (node["backend"]) {
            const std::string backend = text(node["backend"], key + ".backend");
            if (backend != out.backend) {
                out.options.clear();  // options of the default backend do not carry over
            }
            out.backend = backend;
            out.source_line = line_of(node["backend"]);
        }
        if (node["options"]) {
            options(node["options"], key + ".options", out.options);
        }
        if (node["path"]) {
            out.path = path(node["path"], key + ".path");
        }
        if (node["required"]) {
            out.required = boolean(node["required"], key + ".required");
        }
    }

    /// A plugin list: entries are a name or `{name, options, path, required}`.
    std::vector<PluginSection> plugin_list(const YAML::Node& node, const std::string& key) const {
        std::vector<PluginSection> out;
        if (node.IsNull()) {
            return out;
        }
        if (!node.IsSequence()) {
            fail(node, key, "must be a list of plugin names or {name, options} entries");
        }
        for (std::size_t i = 0; i < node.size(); ++i) {
            const YAML::Node entry = node[i];
            const std::string entry_key = key + "[" + std::to_string(i) + "]";
            PluginSection s;
            s.source_key = entry_key;
            s.source_line = line_of(entry);
            if (entry.IsScalar()) {
                s.backend = entry.Scalar();
            } else {
                check_keys(entry, entry_key, {"name", "options", "path", "required"});
                if (!entry["name"]) {
                    fail(entry, entry_key + ".name", "is required");
                }
                s.backend = text(entry["name"], entry_key + ".name");
                if (entry["options"]) {
                    options(entry["options"], entry_key + ".options", s.options);
                }
                if (entry["path"]) {
                    s.path = path(entry["path"], entry_key + ".path");
                }
                if (entry["required"]) {
                    s.required = boolean(entry["required"], entry_key + ".required");
                }
            }
            if (s.backend.empty() || s.backend == kBackendNone) {
                fail(entry, entry_key, "needs a plugin name");
            }
            out.push_back(std::move(s));
        }
        return out;
    }

private:
    std::string source_;
    std::string base_dir_;
};

/// Values a config document may expand to. Aliases make a document of a few hundred bytes
/// expand to billions of values (each level of `[*a, *a, ...]` multiplies them), which every
/// reader of it would walk; a real config has a few hundred.
constexpr std::size_t kMaxConfigValues = 1'000'000;

/// Refuses a key given twice in one mapping, anywhere in the document. yaml-cpp keeps both and
/// lookups see the first: the second was ignored without a word, even when it was invalid.
/// Also refuses a document that expands to more than kMaxConfigValues values.
void refuse_duplicate_keys(const YAML::Node& node, const std::string& path, const std::string& source_name,
                           std::size_t& values, int depth = 0) {
    if (depth > 64) {
        // Past any real config. Before, the walk stopped here, so aliases nested deeper were
        // neither counted nor checked, and a plugin option expanded them all (out of memory).
        const int line = node.Mark().line >= 0 ? node.Mark().line + 1 : 0;
        throw ConfigError(source_name, line, path, "nested deeper than 64 levels: refused");
    }
    if (++values > kMaxConfigValues) {
        const int line = node.Mark().line >= 0 ? node.Mark().line + 1 : 0;
        throw ConfigError(source_name, line, path,
                          "the document expands to more than " + std::to_string(kMaxConfigValues) +
                              " values (YAML aliases repeated in lists?): refused");
    }
    if (node.IsMap()) {
        std::map<std::string, int> seen;
        for (const auto& item : node) {
            const std::string key = item.first.IsScalar() ? item.first.Scalar() : std::string();
            const std::string full = path.empty() ? key : path + "." + key;
            const int line = item.first.Mark().line >= 0 ? item.first.Mark().line + 1 : 0;
            if (item.first.IsScalar()) {
                auto [it, fresh] = seen.emplace(key, line);
                if (!fresh) {
                    throw ConfigError(source_name, line, full,
                                      "duplicate key (first on line " + std::to_string(it->second) +
                                          "): give each key once");
                }
            }
            refuse_duplicate_keys(item.second, full, source_name, values, depth + 1);
        }
    } else if (node.IsSequence()) {
        for (std::size_t i = 0; i < node.size(); ++i) {
            refuse_duplicate_keys(node[i], path + "[" + std::to_string(i) + "]", source_name, values, depth + 1);
        }
    }
}

YAML::Node parse_document(const std::string& text, const std::string& source_name) {
    YAML::Node document;
    try {
        document = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        const int line = e.mark.line >= 0 ? e.mark.line + 1 : 0;
        throw ConfigError(source_name, line, {}, "invalid YAML: " + e.msg);
    }
    std::size_t values = 0;
    refuse_duplicate_keys(document, {}, source_name, values);
    return document;
}

std::string read_file(const std::string& path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) {
        throw ConfigError(path, 0, {}, "file not found");
    }
    if (fs::is_directory(path, ec)) {
        throw ConfigError(path, 0, {}, "is a directory, not a config file");
    }
    // A device or a FIFO (/dev/zero, /dev/stdin) was read to its end: memory without bound, or
    // a wait for a writer that never comes.
    if (!fs::is_regular_file(path, ec)) {
        throw ConfigError(path, 0, {}, "is not a regular file");
    }
    constexpr std::uintmax_t kMaxConfigBytes = 16 * 1024 * 1024;
    if (const auto size = fs::file_size(path, ec); !ec && size > kMaxConfigBytes) {
        throw ConfigError(path, 0, {}, "is " + std::to_string(size) + " bytes, more than a config file's 16 MiB");
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw ConfigError(path, 0, {}, "cannot be read");
    }
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

std::string folder_of(const std::string& path) {
    std::error_code ec;
    fs::path absolute = fs::absolute(path, ec);
    return ec ? fs::path(path).parent_path().string() : absolute.parent_path().string();
}

std::string random_id() {
    std::random_device device;
    std::mt19937_64 engine(device());
    std::uniform_int_distribution<std::uint64_t> dist;
    char buffer[17];
    std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(dist(engine)));
    return std::string(buffer).substr(0, 12);
}

int parse_port_flag(const std::string& flag, const std::string& value) {
    std::size_t used = 0;
    int port = -1;
    try {
        port = std::stoi(value, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != value.size() || port < 1 || port > 65535) {
        throw ConfigError({}, 0, flag, "PORT must be an integer in 1..65535, got '" + value + "'");
    }
    return port;
}

/// Default Graylog ports of the original deployment (reference 2.1): DIR 9200, TTP 9300, WKR 9400.
int default_graylog_port(Role role) {
    switch (role) {
        case Role::Director: return 9200;
        case Role::Ttp: return 9300;
        case Role::Worker: return 9400;
    }
    return 12201;
}

/// What a variant of a flag takes after its name.
enum class Address { Optional, Required, None };

/// `variants`: each valid variant with what it takes; `none_why` says why a variant without an
/// address takes none (e.g. "is in-process and "), for its error message.
void apply_variant(PluginSection& section, const std::string& flag, const std::string& section_key,
                   const std::vector<std::string>& args,
                   const std::vector<std::pair<std::string, Address>>& variants,
                   std::optional<int> default_port, const std::string& none_why = {}) {
    if (args.empty()) {
        throw ConfigError({}, 0, flag, "needs VARIANT [HOST PORT]");
    }
    const std::string& variant = args[0];
    const auto known = std::find_if(variants.begin(), variants.end(),
                                    [&](const auto& v) { return v.first == variant; });
    if (known == variants.end()) {
        std::vector<std::string> names;
        for (const auto& v : variants) {
            names.push_back(v.first);
        }
        throw ConfigError(
            {}, 0, flag, "unknown variant '" + variant + "' (valid: " + join(names, ", ") + ")");
    }
    // What the variant takes is checked before the values themselves: `basic x y` is told it
    // takes no address, not that 'y' is no port.
    if (known->second == Address::None && args.size() != 1) {
        throw ConfigError({}, 0, flag, "'" + variant + "' " + none_why + "takes no HOST and PORT");
    }
    if (known->second == Address::Required && args.size() != 3) {
        throw ConfigError({}, 0, flag, "'" + variant + "' needs HOST and PORT");
    }
    if (args.size() == 2) {
        throw ConfigError({}, 0, flag, "'" + variant + " " + args[1] + "' lacks the PORT");
    }
    if (args.size() > 3) {
        throw ConfigError(
            {}, 0, flag,
            "takes VARIANT [HOST PORT], got " + std::to_string(args.size()) + " values");
    }
    if (section.backend != variant) {
        // Another backend: the file's options and library path were for the old one.
        section.options.clear();
        section.path.clear();
    }
    section.backend = variant;
    section.source_key = section_key;
    section.source_line = 0;
    if (args.size() == 3) {
        section.options["host"] = args[1];
        section.options["port"] = std::to_string(parse_port_flag(flag, args[2]));
    } else if (default_port && section.options.count("port") == 0) {
        section.options["host"] =
            section.options.count("host") ? section.options["host"] : std::string("127.0.0.1");
        section.options["port"] = std::to_string(*default_port);
    }
}

std::string absolute_path(const std::string& path) {
    std::error_code ec;
    fs::path absolute = fs::absolute(path, ec);
    return ec ? path : absolute.lexically_normal().string();
}

}  // namespace

std::optional<Role> peek_config_role(const std::string& path) {
    const YAML::Node root = parse_document(read_file(path), path);
    if (!root.IsMap() || !root["node"] || !root["node"].IsMap() || !root["node"]["role"]) {
        return std::nullopt;
    }
    const YAML::Node role_node = root["node"]["role"];
    YamlReader reader(path, {});
    const std::string name = reader.text(role_node, "node.role");
    auto role = parse_role(name);
    if (!role) {
        reader.fail(role_node, "node.role",
                    "unknown role '" + name + "' (valid: director, ttp, worker)");
    }
    return role;
}

void overlay_yaml(RuntimeConfig& c, const std::string& yaml_text, const std::string& source_name,
                  const std::string& base_dir) {
    const YAML::Node root = parse_document(yaml_text, source_name);
    YamlReader r(source_name, base_dir);
    if (root.IsNull()) {
        return;  // an empty file keeps the defaults
    }
    if (!root.IsMap()) {
        r.fail(root, {}, "the document must be a mapping of sections");
    }
    r.check_keys(root, {},
                 {"node", "paths", "plugins", "logging", "message_queue", "storage", "tracking",
                  "ttp", "aggregators", "model", "data", "http", "worker_client", "jobs", "cpus",
                  "gpus"});

    if (const YAML::Node n = root["node"]) {
        r.check_keys(n, "node", {"id", "role", "stop_timeout_s"});
        if (n["stop_timeout_s"]) {
            c.node.stop_timeout_s =
                static_cast<int>(r.integer(n["stop_timeout_s"], "node.stop_timeout_s", 1, 86'400));
        }
        if (n["id"]) {
            c.node.id = r.text(n["id"], "node.id");
            if (c.node.id.empty()) {
                r.fail(n["id"], "node.id", "must not be empty");
            }
        }
        if (n["role"]) {
            const std::string name = r.text(n["role"], "node.role");
            auto role = parse_role(name);
            if (!role) {
                r.fail(n["role"], "node.role",
                       "unknown role '" + name + "' (valid: director, ttp, worker)");
            }
            if (*role != c.node.role) {
                r.fail(n["role"], "node.role",
                       "this file is for role " + name + ", not " + role_name(c.node.role));
            }
        }
    }
    if (const YAML::Node n = root["paths"]) {
        r.check_keys(n, "paths", {"data_dir", "outputs_dir", "mlflow_dir"});
        if (n["data_dir"]) {
            c.node.data_dir = r.path(n["data_dir"], "paths.data_dir");
        }
        if (n["outputs_dir"]) {
            c.node.outputs_dir = r.path(n["outputs_dir"], "paths.outputs_dir");
        }
        if (n["mlflow_dir"]) {
            c.node.mlflow_dir = r.path(n["mlflow_dir"], "paths.mlflow_dir");
        }
    }
    if (const YAML::Node n = root["plugins"]) {
        r.check_keys(n, "plugins", {"search_paths"});
        if (n["search_paths"]) {
            const YAML::Node list = n["search_paths"];
            if (!list.IsSequence()) {
                r.fail(list, "plugins.search_paths", "must be a list of folders");
            }
            c.plugin_search_paths.clear();
            for (std::size_t i = 0; i < list.size(); ++i) {
                c.plugin_search_paths.push_back(
                    r.path(list[i], "plugins.search_paths[" + std::to_string(i) + "]"));
            }
        }
    }
    if (const YAML::Node n = root["logging"]) {
        r.plugin_section(n, "logging", c.logging.sink,
                         {"level", "censored", "censor_keys", "resolution_s", "system_metrics"});
        if (n.IsMap()) {
            if (n["level"]) {
                const std::string name = r.text(n["level"], "logging.level");
                auto level = parse_level(name);
                if (!level) {
                    r.fail(n["level"], "logging.level",
                           "unknown level '" + name +
                               "' (valid: trace, debug, info, warn, error, critical)");
                }
                c.logging.level = *level;
            }
            if (n["censored"]) {
                c.logging.censored = r.boolean(n["censored"], "logging.censored");
            }
            if (n["censor_keys"]) {
                c.logging.censor_keys = r.string_list(n["censor_keys"], "logging.censor_keys");
            }
            if (n["resolution_s"]) {
                c.logging.resolution_s = r.number(n["resolution_s"], "logging.resolution_s", 0.0);
                if (!resolution_in_range(c.logging.resolution_s)) {
                    r.fail(n["resolution_s"], "logging.resolution_s",
                           "must be 0.01-86400 seconds, got " + r.text(n["resolution_s"], "logging.resolution_s"));
                }
            }
            if (n["system_metrics"]) {
                c.logging.system_metrics = r.boolean(n["system_metrics"], "logging.system_metrics");
            }
        }
    }
    if (const YAML::Node n = root["message_queue"]) {
        r.plugin_section(n, "message_queue", c.message_queue);
    }
    if (const YAML::Node n = root["storage"]) {
        r.plugin_section(n, "storage", c.storage);
    }
    if (const YAML::Node n = root["tracking"]) {
        r.plugin_section(n, "tracking", c.tracking);
    }
    if (const YAML::Node n = root["model"]) {
        r.plugin_section(n, "model", c.model);
    }
    if (const YAML::Node n = root["ttp"]) {
        r.check_keys(n, "ttp", {"functions", "grid"});
        if (n["functions"]) {
            c.ttp.functions = r.plugin_list(n["functions"], "ttp.functions");
        }
        if (n["grid"]) {
            c.ttp.grid = static_cast<int>(r.integer(n["grid"], "ttp.grid", 0, 1'000'000));
        }
    }
    if (const YAML::Node n = root["aggregators"]) {
        c.aggregators = r.plugin_list(n, "aggregators");
    }
    if (const YAML::Node n = root["data"]) {
        c.data = r.plugin_list(n, "data");
    }
    if (const YAML::Node n = root["http"]) {
        r.check_keys(n, "http",
                     {"host", "port", "threads", "body_limit_bytes", "header_timeout_ms",
                      "body_timeout_ms", "max_connections", "max_connections_per_peer", "tls", "tokens",
                       "allow_insecure"});
        if (const YAML::Node t = n["tls"]) {
            r.check_keys(t, "http.tls", {"cert_file", "key_file", "ca_file", "require_client_cert"});
            if (t["cert_file"]) {
                c.http.tls.cert_file = r.path(t["cert_file"], "http.tls.cert_file");
            }
            if (t["key_file"]) {
                c.http.tls.key_file = r.path(t["key_file"], "http.tls.key_file");
            }
            if (t["ca_file"]) {
                c.http.tls.ca_file = r.path(t["ca_file"], "http.tls.ca_file");
            }
            if (t["require_client_cert"]) {
                c.http.tls.require_client_cert =
                    r.boolean(t["require_client_cert"], "http.tls.require_client_cert");
            }
        }
        if (const YAML::Node t = n["tokens"]) {
            if (!t.IsSequence()) {
                r.fail(t, "http.tokens", "must be a list of {scope: read|admin, file|env: ...}");
            }
            c.http.tokens.clear();
            for (std::size_t i = 0; i < t.size(); ++i) {
                const std::string key = "http.tokens[" + std::to_string(i) + "]";
                const YAML::Node entry = t[i];
                r.check_keys(entry, key, {"scope", "file", "env"});
                TokenConfig token;
                if (entry["scope"]) {
                    token.scope = r.text(entry["scope"], key + ".scope");
                    if (token.scope != "read" && token.scope != "admin") {
                        r.fail(entry["scope"], key + ".scope",
                               "must be 'read' or 'admin', got '" + token.scope + "'");
                    }
                }
                token.source = r.secret(entry, key);
                c.http.tokens.push_back(std::move(token));
            }
        }
        if (n["allow_insecure"]) {
            c.http.allow_insecure = r.boolean(n["allow_insecure"], "http.allow_insecure");
        }
        if (n["host"]) {
            c.http.host = r.text(n["host"], "http.host");
        }
        if (n["port"]) {
            c.http.port = static_cast<int>(r.integer(n["port"], "http.port", 0, 65535));
        }
        if (n["threads"]) {
            c.http.threads = static_cast<int>(r.integer(n["threads"], "http.threads", 1, kMaxHttpThreads));
        }
        if (n["body_limit_bytes"]) {
            c.http.body_limit_bytes = static_cast<std::uint64_t>(
                r.integer(n["body_limit_bytes"], "http.body_limit_bytes", 1, INT64_MAX));
        }
        if (n["header_timeout_ms"]) {
            c.http.header_timeout_ms =
                r.integer(n["header_timeout_ms"], "http.header_timeout_ms", 1, kMaxHttpTimeoutMs);
        }
        if (n["body_timeout_ms"]) {
            c.http.body_timeout_ms =
                r.integer(n["body_timeout_ms"], "http.body_timeout_ms", 1, kMaxHttpTimeoutMs);
        }
        if (n["max_connections"]) {
            c.http.max_connections = static_cast<int>(
                r.integer(n["max_connections"], "http.max_connections", 1, 1'000'000));
        }
        if (n["max_connections_per_peer"]) {
            c.http.max_connections_per_peer = static_cast<int>(r.integer(
                n["max_connections_per_peer"], "http.max_connections_per_peer", 0, 1'000'000));
        }
    }
    if (const YAML::Node n = root["worker_client"]) {
        r.check_keys(n, "worker_client", {"tls", "ca_file", "cert_file", "key_file", "token", "health_check_interval_s"});
        auto& w = c.worker_client;
        if (n["health_check_interval_s"]) {
            w.health_check_interval_s =
                r.integer(n["health_check_interval_s"], "worker_client.health_check_interval_s", 0, 3600);
        }
        if (n["tls"]) {
            w.tls = r.boolean(n["tls"], "worker_client.tls");
        }
        if (n["ca_file"]) {
            w.ca_file = r.path(n["ca_file"], "worker_client.ca_file");
        }
        if (n["cert_file"]) {
            w.cert_file = r.path(n["cert_file"], "worker_client.cert_file");
        }
        if (n["key_file"]) {
            w.key_file = r.path(n["key_file"], "worker_client.key_file");
        }
        if (const YAML::Node t = n["token"]) {
            r.check_keys(t, "worker_client.token", {"file", "env"});
            w.token = r.secret(t, "worker_client.token");
        }
    }
    if (const YAML::Node n = root["jobs"]) {
        r.check_keys(n, "jobs", {"max_attempts", "job_timeout_s", "retry_pause_ms", "retry_pause_max_ms"});
        if (n["max_attempts"]) {
            c.jobs.max_attempts =
                static_cast<int>(r.integer(n["max_attempts"], "jobs.max_attempts", 1, jobs::kMaxAttempts));
        }
        if (n["job_timeout_s"]) {
            c.jobs.job_timeout_s =
                r.integer(n["job_timeout_s"], "jobs.job_timeout_s", 1, kMaxJobTimeoutS);
        }
        // Up to a day: a longer pause is a job parked, not retried.
        if (n["retry_pause_ms"]) {
            c.jobs.retry_pause_ms = r.integer(n["retry_pause_ms"], "jobs.retry_pause_ms", 0, 86'400'000);
        }
        if (n["retry_pause_max_ms"]) {
            c.jobs.retry_pause_max_ms = r.integer(n["retry_pause_max_ms"], "jobs.retry_pause_max_ms", 0, 86'400'000);
        }
        if (c.jobs.retry_pause_max_ms < c.jobs.retry_pause_ms) {
            r.fail(n["retry_pause_max_ms"] ? n["retry_pause_max_ms"] : n, "jobs.retry_pause_max_ms",
                   "must be at least jobs.retry_pause_ms (" + std::to_string(c.jobs.retry_pause_ms) + ")");
        }
    }
    if (const YAML::Node n = root["cpus"]) {
        c.cpus = static_cast<int>(r.integer(n, "cpus", 0, 65536));
    }
    if (const YAML::Node n = root["gpus"]) {
        c.gpus = static_cast<int>(r.integer(n, "gpus", 0, 1024));
    }
}

void overlay_yaml_file(RuntimeConfig& base, const std::string& path) {
    const std::string text = read_file(path);
    base.source_file = path;
    overlay_yaml(base, text, path, folder_of(path));
}

void apply_flags(RuntimeConfig& c, const FlagOverrides& f) {
    if (f.id) {
        if (f.id->empty()) {
            throw ConfigError({}, 0, "--id", "must not be empty");
        }
        c.node.id = *f.id;
    }
    if (f.queue) {
        apply_variant(c.message_queue, "--queue", "message_queue", *f.queue,
                      {{"rabbitmq", Address::Required}, {"memory", Address::None}}, std::nullopt,
                      "is in-process and ");
    }
    if (f.logging_variant) {
        apply_variant(c.logging.sink, "--logging_variant", "logging", *f.logging_variant,
                      {{"basic", Address::None}, {"graylog", Address::Optional}},
                      (*f.logging_variant)[0] == "graylog"
                          ? std::optional<int>(default_graylog_port(c.node.role))
                          : std::nullopt);
    }
    if (f.logging_resolution_s) {
        const double value = *f.logging_resolution_s;
        if (!resolution_in_range(value)) {
            throw ConfigError({}, 0, "--logging_resolution", "must be 0.01-86400 seconds");
        }
        c.logging.resolution_s = value;
    }
    if (f.cpus) {
        if (*f.cpus < 0) {
            throw ConfigError({}, 0, "--cpus", "must be 0 (no limit) or positive");
        }
        c.cpus = *f.cpus;
    }
    if (f.gpus) {
        if (*f.gpus < 0) {
            throw ConfigError({}, 0, "--gpus", "must be 0 or positive");
        }
        c.gpus = *f.gpus;
    }
    if (f.censored) {
        c.logging.censored = true;
    }
    if (f.debug) {
        c.logging.level = sdk::Level::Debug;
    }
    if (f.port) {
        if (*f.port < 0 || *f.port > 65535) {
            throw ConfigError({}, 0, "--port",
                              "must be in 0..65535, got " + std::to_string(*f.port));
        }
        c.http.port = *f.port;
    }
    if (f.host) {
        if (f.host->empty()) {
            throw ConfigError({}, 0, "--host", "must not be empty");
        }
        c.http.host = *f.host;
    }
    if (f.allow_insecure) {
        c.http.allow_insecure = true;
    }
    for (const auto& [value, target, flag] :
         {std::tuple{&f.data_dir, &c.node.data_dir, "--data-dir"},
          std::tuple{&f.outputs_dir, &c.node.outputs_dir, "--outputs-dir"},
          std::tuple{&f.mlflow_dir, &c.node.mlflow_dir, "--mlflow-dir"}}) {
        if (*value) {
            if ((*value)->empty()) {
                throw ConfigError({}, 0, flag, "must not be empty");
            }
            *target = absolute_path(**value);
        }
    }
    if (!f.plugin_paths.empty()) {
        std::vector<std::string> paths;
        for (const auto& p : f.plugin_paths) {
            if (p.empty()) {
                throw ConfigError({}, 0, "--plugin-path", "must not be empty");
            }
            paths.push_back(absolute_path(p));
        }
        paths.insert(paths.end(), c.plugin_search_paths.begin(), c.plugin_search_paths.end());
        c.plugin_search_paths = std::move(paths);
    }
    if (f.grid) {
        if (*f.grid < 0) {
            throw ConfigError({}, 0, "--grid", "must be 0 or positive");
        }
        c.ttp.grid = *f.grid;
    }
}

void finalise(RuntimeConfig& c) {
    if (c.node.id.empty()) {
        c.node.id = random_id();
    }
    c.node.data_dir = absolute_path(c.node.data_dir);
    c.node.outputs_dir = absolute_path(c.node.outputs_dir);
    c.node.mlflow_dir = absolute_path(c.node.mlflow_dir);
}

namespace {

/// The flag that set `key` (a config key), when one was given; nullptr otherwise.
const char* flag_that_set(const std::string& key, const FlagOverrides& f) {
    const auto under = [&](const char* section) {
        const std::string s = section;
        return key == s || key.rfind(s + ".", 0) == 0;
    };
    if (under("message_queue") && f.queue) {
        return "--queue";
    }
    if (under("logging") && (f.logging_variant || f.logging_resolution_s)) {
        return f.logging_variant ? "--logging_variant" : "--logging_resolution";
    }
    struct Single {
        const char* key;
        bool given;
        const char* flag;
    };
    const Single singles[] = {{"node.id", f.id.has_value(), "--id"},
                              {"http.host", f.host.has_value(), "--host"},
                              {"http.port", f.port.has_value(), "--port"},
                              {"paths.data_dir", f.data_dir.has_value(), "--data-dir"},
                              {"paths.outputs_dir", f.outputs_dir.has_value(), "--outputs-dir"},
                              {"paths.mlflow_dir", f.mlflow_dir.has_value(), "--mlflow-dir"},
                              {"ttp.grid", f.grid.has_value(), "--grid"},
                              {"cpus", f.cpus.has_value(), "--cpus"},
                              {"gpus", f.gpus.has_value(), "--gpus"}};
    for (const Single& s : singles) {
        if (s.given && key == s.key) {
            return s.flag;
        }
    }
    return nullptr;
}

}  // namespace

RuntimeConfig build_config(std::optional<Role> role, const std::optional<std::string>& file,
                           const FlagOverrides& flags) {
    Role effective = role.value_or(Role::Director);
    if (!role && file) {
        effective = peek_config_role(*file).value_or(Role::Director);
    }
    RuntimeConfig config = RuntimeConfig::defaults_for(effective);
    if (file) {
        overlay_yaml_file(config, *file);
    }
    apply_flags(config, flags);
    finalise(config);
    try {
        validate(config);
    } catch (const ConfigError& e) {
        // A flag that set the key owns the error: before, `worker --config w.yaml --queue memory`
        // blamed w.yaml, whose queue was `none`.
        if (e.file().empty() && e.line() == 0) {
            if (const char* flag = flag_that_set(e.key(), flags)) {
                throw ConfigError({}, 0, e.key(), e.detail() + " (set by " + flag + ")");
            }
        }
        // Name the file when the offending value came from it.
        if (e.file().empty() && file && e.line() == 0 && e.key().rfind("--", 0) != 0) {
            throw ConfigError(*file, 0, e.key(), e.detail());
        }
        throw;
    }
    return config;
}

}  // namespace synergos::core
