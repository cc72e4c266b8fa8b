// SPDX-License-Identifier: Apache-2.0
#include "synergos/core/client/client.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <yaml-cpp/yaml.h>

#include "synergos/core/http/auth.hpp"
#include "synergos/core/http/client.hpp"
#include "synergos/core/http/message.hpp"
#include "synergos/core/rest/schemas.hpp"
#include "job_display.hpp"
#include "model_match.hpp"

namespace synergos::core::client {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Fail {
    int code;
    std::string message;
    bool unreachable = false;  ///< no answer at all (the director is down or restarting)
};

/// How long the job wait rides out a director that does not answer: a restart (its jobs resume)
/// ended the command at once with exit 2.
constexpr auto kUnreachableGrace = std::chrono::seconds(60);

/// Bounds on a job file once read: YAML aliases copy what they name, so a few hundred bytes
/// can stand for billions of values; and deep nesting would overflow the stack.
constexpr std::size_t kMaxJobValues = 1'000'000;
constexpr int kMaxJobDepth = 64;

/// YAML scalars become JSON numbers, booleans or null where they read as such. `where` names the
/// value for errors; `budget` counts the values left.
json to_json(const YAML::Node& node, const std::string& where, std::size_t& budget, int depth = 0) {
    if (budget == 0) {
        throw Fail{2, where + ": the file stands for more than " + std::to_string(kMaxJobValues) +
                          " values (YAML aliases repeat what they name)"};
    }
    --budget;
    if (depth > kMaxJobDepth) {
        throw Fail{2, where + ": nested deeper than " + std::to_string(kMaxJobDepth) + " levels"};
    }
    switch (node.Type()) {
        case YAML::NodeType::Null:
        case YAML::NodeType::Undefined: return nullptr;
        case YAML::NodeType::Sequence: {
            json a = json::array();
            std::size_t i = 0;
            for (const auto& item : node) {
                a.push_back(to_json(item, where + "[" + std::to_string(i++) + "]", budget, depth + 1));
            }
            return a;
        }
        case YAML::NodeType::Map: {
            json o = json::object();
            for (const auto& kv : node) {
                if (!kv.first.IsScalar()) {
                    throw Fail{2, where + ": a key must be a plain name, not a list or mapping"};
                }
                const std::string key = kv.first.Scalar();
                if (key == "<<") {
                    throw Fail{2, where + ": YAML merge keys ('<<') are not supported: write the fields out"};
                }
                if (o.contains(key)) {
                    throw Fail{2, where + ": key '" + key + "' appears twice"};
                }
                o[key] = to_json(kv.second, where + (depth == 0 ? ", " : ".") + key, budget, depth + 1);
            }
            return o;
        }
        case YAML::NodeType::Scalar: {
            const std::string s = node.Scalar();
            if (node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str") {  // quoted or !!str
                return s;
            }
            if (s == "true" || s == "True") {
                return true;
            }
            if (s == "false" || s == "False") {
                return false;
            }
            if (s == "null" || s == "~") {
                return nullptr;
            }
            // Decimal numbers only (no "0x1A", "inf" or "nan": YAML 1.2 core schema reads them
            // as text), and only values that fit: an integer too large for 64 bits stays text,
            // for the field's own check to name it.
            const bool numeric = !s.empty() && s.find_first_not_of("0123456789+-.eE") == std::string::npos &&
                                 s.find_first_of("0123456789") != std::string::npos;
            if (numeric) {
                errno = 0;
                char* end = nullptr;
                const long long i = std::strtoll(s.c_str(), &end, 10);
                if (end == s.c_str() + s.size()) {
                    if (errno != ERANGE) {
                        return i;
                    }
                    return s;
                }
                errno = 0;
                const double d = std::strtod(s.c_str(), &end);
                if (end == s.c_str() + s.size() && errno != ERANGE && std::isfinite(d)) {
                    return d;
                }
            }
            return s;
        }
    }
    return nullptr;
}

std::string required_string(const json& obj, const std::string& field, const std::string& where) {
    if (!obj.is_object() || !obj.contains(field) || obj[field].is_null()) {
        throw Fail{2, where + ": field '" + field + "' is required (a non-empty string)"};
    }
    if (!obj[field].is_string()) {
        throw Fail{2, where + ": field '" + field + "' must be a string (quote it, e.g. \"007\")"};
    }
    if (obj[field].get<std::string>().empty()) {
        throw Fail{2, where + ": field '" + field + "' must not be empty"};
    }
    return obj[field];
}

/// An id as the director accepts it (letters, digits and _ . : -, at most 128 characters): it
/// becomes part of URL paths.
std::string required_id(const json& obj, const std::string& where) {
    const std::string id = required_string(obj, "id", where);
    if (rest::id_problem(id)) {
        throw Fail{2, where + ": id '" + id.substr(0, 64) + (id.size() > 64 ? "..." : "") +
                          "' may contain only letters, digits and _ . : - (at most 128 characters)"};
    }
    return id;
}

struct Server {
    std::string host = "127.0.0.1";
    std::uint16_t port = 5000;
    bool tls = false;
};

Server parse_server(const std::string& url) {
    std::string rest = url;
    Server s;
    if (rest.rfind("http://", 0) == 0) {
        rest = rest.substr(7);
    } else if (rest.rfind("https://", 0) == 0) {
        rest = rest.substr(8);
        s.tls = true;
        s.port = 443;
    } else if (rest.find("://") != std::string::npos) {
        throw Fail{2, "--server '" + url + "': only http:// and https:// are supported"};
    }
    // The director's API is at the root: a path was dropped without a word.
    if (const auto slash = rest.find('/'); slash != std::string::npos) {
        if (rest.substr(slash) != "/") {
            throw Fail{2, "--server '" + url + "': give the director's address only, without a path"};
        }
        rest.resize(slash);
    }
    // An IPv6 address is written in brackets ([::1]:5000): its colons are not the port's.
    std::optional<std::string> port_text;
    if (!rest.empty() && rest.front() == '[') {
        const auto close = rest.find(']');
        if (close == std::string::npos || (close + 1 < rest.size() && rest[close + 1] != ':')) {
            throw Fail{2, "--server '" + url + "': an IPv6 address is written [ADDRESS] or [ADDRESS]:PORT"};
        }
        s.host = rest.substr(1, close - 1);
        if (close + 1 < rest.size()) {
            port_text = rest.substr(close + 2);
        }
    } else {
        const auto colon = rest.rfind(':');
        s.host = rest.substr(0, colon);
        if (colon != std::string::npos) {
            port_text = rest.substr(colon + 1);
        }
    }
    if (port_text) {
        try {
            const std::string& digits = *port_text;
            if (digits.empty() || digits.size() > 5 || digits.find_first_not_of("0123456789") != std::string::npos) {
                throw std::invalid_argument("port");  // stoi read "5000abc" as 5000
            }
            const int p = std::stoi(digits);
            if (p <= 0 || p > 65535) {
                throw std::out_of_range("port");
            }
            s.port = static_cast<std::uint16_t>(p);
        } catch (const std::exception&) {
            throw Fail{2, "--server '" + url + "': the port is not a number between 1 and 65535"};
        }
    }
    if (s.host.empty()) {
        throw Fail{2, "--server '" + url + "': no host"};
    }
    return s;
}

/// A thin JSON-over-HTTP session with the director.
class Api {
public:
    explicit Api(const ClientOptions& o)
        : o_(o),
          deadline_(std::chrono::steady_clock::now() + o.timeout),
          server_(parse_server(o.server)),
          http_(http_options(server_, o)) {
        token_ = o.token;
        if (token_.empty() && !o.token_file.empty()) {
            std::ifstream in(o.token_file, std::ios::binary);
            std::ostringstream text;
            text << in.rdbuf();
            token_ = text.str();
            token_.erase(0, token_.find_first_not_of(" \t\r\n"));
            token_.erase(token_.find_last_not_of(" \t\r\n") + 1);
            if (!in || token_.empty()) {
                throw Fail{2, "--token-file '" + o.token_file + "': cannot read a token from it"};
            }
        }
        if (!token_.empty() && !server_.tls && !http::is_loopback_host(server_.host)) {
            // Anyone on the path could read it and act as this client.
            throw Fail{2, "--server '" + o.server + "': a token is sent over https:// only, or to "
                          "this machine (127.0.0.1, localhost); use https:// and --ca-file"};
        }
    }

    static http::ClientOptions http_options(const Server& server, const ClientOptions& o) {
        http::ClientOptions h;
        h.tls.enabled = server.tls;
        h.tls.ca_file = o.ca_file;
        if (!o.ca_file.empty() && !server.tls) {
            throw Fail{2, "--ca-file needs an https:// --server"};
        }
        return h;
    }

    struct Reply {
        int status;
        json body;
    };

    Reply call(const std::string& method, const std::string& path, const json& body = nullptr) {
        std::vector<std::pair<std::string, std::string>> headers;
        if (!token_.empty()) {
            headers.emplace_back("Authorization", "Bearer " + token_);
        }
        // Each request within --timeout (the whole command's bound), and at most 60 s: before,
        // every request could take 60 s whatever --timeout said.
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            throw Fail{1, method + " " + path + ": the --timeout of " + std::to_string(o_.timeout.count()) +
                              " s ran out"};
        }
        auto r = http_.request(method, server_.host, server_.port, path, body.is_null() ? std::string() : body.dump(),
                               "application/json", std::min<std::chrono::milliseconds>(left, std::chrono::seconds(60)),
                               headers);
        if (!r) {
            throw Fail{2, "director at " + o_.server + " unreachable: " + r.error().message, true};
        }
        json parsed = json::parse(r->body, nullptr, false);
        if (r->status == 401 || r->status == 403) {
            const std::string why = parsed.is_object() ? parsed.value("message", r->body) : r->body;
            throw Fail{2, "director at " + o_.server + " refused " + method + " " + path + " (" +
                              std::to_string(r->status) + "): " + why +
                              (token_.empty() ? " (give a token: --token-file F or $SYNERGOS_TOKEN)"
                                              : "")};
        }
        return {r->status, parsed.is_discarded() ? json{{"message", r->body}} : parsed};
    }

    json expect(const std::string& method, const std::string& path, const json& body, std::initializer_list<int> ok) {
        Reply r = call(method, path, body);
        for (int s : ok) {
            if (r.status == s) {
                return r.body;
            }
        }
        throw Fail{1, method + " " + path + " answered " + std::to_string(r.status) + ": " +
                          r.body.value("message", r.body.dump())};
    }

private:
    const ClientOptions& o_;
    std::chrono::steady_clock::time_point deadline_;
    Server server_;
    http::HttpClient http_;
    std::string token_;
};

/// The request bodies `synergos submit` sends for a job file's sections: built in one place, so
/// the file is checked against the director's schemas (before anything is written) with the
/// very bodies that are then sent.
/// A section as its record's body: its `id` under the record's id field.
json with_id(json section, const char* id_field) {
    section[id_field] = section["id"];
    section.erase("id");
    return section;
}
json collaboration_body(const json& job) { return with_id(job["collaboration"], "collab_id"); }
json project_body(const json& job) {
    json body = with_id(job["project"], "project_id");
    if (!body.contains("incentives")) {
        body["incentives"] = json::object();
    }
    return body;
}
json experiment_body(const json& job) { return with_id(job["experiment"], "expt_id"); }
json run_body(const json& run) { return with_id(run, "run_id"); }
json participant_body(const json& part) {
    json body = part.value("details", json::object());
    body["id"] = part["id"];
    return body;
}

/// Checks every body against the director's record schemas (the same code): a field the
/// director would refuse fails the file at once (exit 2), before any record is written.
void check_bodies(const json& job, const std::string& where) {
    const auto check = [&](std::string_view kind, const json& body, const std::string& at) {
        if (auto problem = rest::validate_document(kind, body)) {
            throw Fail{2, at + ": field '" + problem->field + "' " + problem->problem};
        }
    };
    check("Collaboration", collaboration_body(job), where + ", collaboration");
    check("Project", project_body(job), where + ", project");
    check("Experiment", experiment_body(job), where + ", experiment");
    for (std::size_t i = 0; i < job["runs"].size(); ++i) {
        check("Run", run_body(job["runs"][i]), where + ", runs[" + std::to_string(i) + "]");
    }
    for (std::size_t i = 0; i < job["participants"].size(); ++i) {
        const json& part = job["participants"][i];
        const std::string at = where + ", participants[" + std::to_string(i) + "]";
        check("Participant", participant_body(part), at + " (details)");
        check("Tag", part["tags"], at + ", tags");
    }
}

/// Run fields the director, the torch model and the bundled strategies read. A run stores any
/// other key as given (as the original did), so a misspelt one is silently unused: near
/// misses of these get a warning.
constexpr std::string_view kKnownRunFields[] = {
    "run_id", "algorithm", "rounds", "epochs", "batch_size", "lr", "lr_decay", "weight_decay",
    "seed", "patience", "delta", "cumulative_delta", "mu", "l1_lambda", "l2_lambda", "optimizer",
    "criterion", "lr_scheduler", "reduction", "mode", "scale_mode", "use_CLR", "base_lr", "max_lr",
    "step_size", "step_size_up", "step_size_down", "gamma", "cycle_momentum", "base_momentum",
    "max_momentum", "last_epoch", "dampening", "momentum", "nesterov", "amsgrad", "betas", "eps",
    "alpha", "centered", "initial_accumulator_value", "label_smoothing", "is_condensed",
    "precision_fractional", "input_size", "output_size", "quorum", "server_lr", "beta", "epsilon",
    "trim_fraction", "krum_f", "multikrum_m", "dp_clip_norm", "dp_noise_multiplier", "dp_delta",
    "dp_seed", "rdp_order"};

/// Levenshtein distance, stopping early past `limit` (names are short).
std::size_t edit_distance(std::string_view a, std::string_view b, std::size_t limit) {
    if ((a.size() > b.size() ? a.size() - b.size() : b.size() - a.size()) > limit) {
        return limit + 1;
    }
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) {
        row[j] = j;
    }
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = up;
        }
    }
    return row[b.size()];
}

}  // namespace

std::vector<std::string> run_field_warnings(const json& job) {
    std::vector<std::string> warnings;
    const json runs = job.value("runs", json::array());
    for (std::size_t i = 0; runs.is_array() && i < runs.size(); ++i) {
        if (!runs[i].is_object()) {
            continue;
        }
        for (const auto& [key, value] : runs[i].items()) {
            if (key == "id" || std::find(std::begin(kKnownRunFields), std::end(kKnownRunFields), key) !=
                                   std::end(kKnownRunFields)) {
                continue;
            }
            const std::size_t limit = key.size() <= 4 ? 1 : 2;
            std::string_view best;
            std::size_t best_distance = limit + 1;
            for (const std::string_view known : kKnownRunFields) {
                const std::size_t d = edit_distance(key, known, limit);
                if (d < best_distance) {
                    best_distance = d;
                    best = known;
                }
            }
            if (!best.empty()) {
                warnings.push_back("runs[" + std::to_string(i) + "]: '" + key + "' is not a run field; did you mean '" +
                                   std::string(best) + "'? (it is stored as given, and training does not read it)");
            }
        }
    }
    return warnings;
}

namespace {

/// Creates a record, or updates it when it already exists (so a job file can be re-submitted).
void create_or_update(Api& api, const std::string& collection, const std::string& item, const json& body) {
    Api::Reply r = api.call("POST", collection, body);
    if (r.status == 201) {
        return;
    }
    if (r.status == 409) {
        api.expect("PUT", item, body, {200});
        return;
    }
    throw Fail{1, "POST " + collection + " answered " + std::to_string(r.status) + ": " + r.body.value("message", r.body.dump())};
}

/// The record fields `synergos submit` writes for a registration (besides its node_K blocks) and
/// for tags.
const std::vector<std::string> kRegistrationFields{"role", "n_count"};
const std::vector<std::string> kTagFields{"train", "evaluate", "predict", "model", "hyperparameters"};

/// Whether a stored record's `data` already says what `wanted` says: the same value for each of
/// `fields` (absent and null alike) and, for registrations, the same node_K blocks.
/// A reply's `data` object, or an empty object when it has none (a proxy's or another
/// service's answer). Read with find: a const json's operator[] on a missing key is undefined
/// behaviour, not an exception.
json data_of(const Api::Reply& reply) {
    const auto it = reply.body.is_object() ? reply.body.find("data") : reply.body.end();
    return it != reply.body.end() && it->is_object() ? *it : json::object();
}

bool holds(const json& data, const json& wanted, const std::vector<std::string>& fields) {
    if (!data.is_object() || !wanted.is_object()) {
        return false;
    }
    const auto field = [](const json& o, const std::string& k) {
        auto it = o.find(k);
        return it == o.end() ? json() : *it;
    };
    for (const auto& k : fields) {
        if (field(data, k) != field(wanted, k)) {
            return false;
        }
    }
    for (const auto* side : {&data, &wanted}) {
        for (const auto& [k, v] : side->items()) {
            if (k.rfind("node_", 0) == 0 && field(data, k) != field(wanted, k)) {
                return false;
            }
        }
    }
    return true;
}

/// Whether the job's alignment fits the model to the data (auto_align and auto_fix, both on
/// unless the job file's `alignment` section turns one off).
bool alignment_fits(const json& job) {
    const auto it = job.find("alignment");
    if (it == job.end() || !it->is_object()) {
        return true;
    }
    for (const char* flag : {"auto_align", "auto_fix"}) {
        const auto f = it->find(flag);
        if (f != it->end() && f->is_boolean() && !f->get<bool>()) {
            return false;
        }
    }
    return true;
}

/// A port given as a number or a numeric string; `fallback` when absent.
int port_field(const json& node, const char* field, int fallback, const std::string& where) {
    if (!node.contains(field)) {
        return fallback;
    }
    const json& v = node[field];
    // Compared as 64-bit: 4294972397 must not wrap around to 5101.
    if (v.is_number_integer() && v.get<std::int64_t>() > 0 && v.get<std::int64_t>() <= 65535) {
        return static_cast<int>(v.get<std::int64_t>());
    }
    if (v.is_string()) {
        try {
            std::size_t used = 0;
            const int p = std::stoi(v.get<std::string>(), &used);
            if (used == v.get<std::string>().size() && p > 0 && p <= 65535) {
                return p;
            }
        } catch (const std::exception&) {
        }
    }
    throw Fail{2, where + ": '" + field + "' must be a port number (1-65535)"};
}

/// The largest job or model file read (a job file is a few KB).
constexpr std::uintmax_t kMaxJobFileBytes = 16u << 20;

/// A folder path of tags: a list of strings.
void check_tag_paths(const json& paths, const std::string& at) {
    if (!paths.is_array()) {
        throw Fail{2, at + " must be a list of folder paths (each a list of folder names)"};
    }
    for (std::size_t i = 0; i < paths.size(); ++i) {
        const std::string here = at + "[" + std::to_string(i) + "]";
        if (!paths[i].is_array() || paths[i].empty()) {
            throw Fail{2, here + " must be a folder path: a list of folder names"};
        }
        for (std::size_t k = 0; k < paths[i].size(); ++k) {
            if (!paths[i][k].is_string()) {
                throw Fail{2, here + "[" + std::to_string(k) + "] must be a folder name (quote names that read as numbers, e.g. \"2021\")"};
            }
        }
    }
}

/// A participant's role, details, nodes and tags, before anything is sent to the director.
void check_participant(const json& part, const std::string& at) {
    if (part.contains("role") && !part["role"].is_string()) {
        throw Fail{2, at + ": 'role' must be host or guest (a string)"};
    }
    if (part.contains("details") && !part["details"].is_object()) {
        throw Fail{2, at + ": 'details' must be a mapping"};
    }
    if (!part.contains("nodes") || !part["nodes"].is_array() || part["nodes"].empty()) {
        throw Fail{2, at + ": 'nodes' must list one node per grid"};
    }
    for (std::size_t i = 0; i < part["nodes"].size(); ++i) {
        const json& n = part["nodes"][i];
        const std::string here = at + ", nodes[" + std::to_string(i) + "]";
        if (!n.is_object()) {
            throw Fail{2, here + " must be a mapping (host, f_port)"};
        }
        if (n.contains("host") && (!n["host"].is_string() || n["host"].get<std::string>().empty())) {
            throw Fail{2, here + ": 'host' must be a host name or address (a string)"};
        }
        if (port_field(n, "f_port", port_field(n, "port", 0, here), here) <= 0) {
            throw Fail{2, here + ": 'f_port' (the worker's REST port) is required"};
        }
    }
    if (!part.contains("tags") || !part["tags"].is_object() || !part["tags"].contains("train")) {
        throw Fail{2, at + ": 'tags' needs at least 'train'"};
    }
    for (const auto& [meta, paths] : part["tags"].items()) {
        if (meta == "model" || meta == "hyperparameters") {
            continue;  // the original tag record's other fields, passed as they are
        }
        if (meta != "train" && meta != "evaluate" && meta != "predict") {
            throw Fail{2, at + ": tags." + meta + " is not train, evaluate or predict"};
        }
        check_tag_paths(paths, at + ": tags." + meta);
    }
}

/// Polls jobs until each ends, printing progress as it changes. Returns the final jobs.
std::vector<json> wait_jobs(Api& api, const json& answer, const std::string& step, const ClientOptions& o,
                            std::ostream& out, std::chrono::steady_clock::time_point deadline) {
    std::vector<json> done;
    std::map<std::string, std::string> last_line;
    std::vector<std::string> ids;
    for (const auto& j : answer.value("jobs", json::array())) {
        ids.push_back(j.value("job_id", ""));
    }
    std::vector<bool> finished(ids.size(), false);
    std::size_t remaining = ids.size();
    std::optional<std::chrono::steady_clock::time_point> unreachable_since;
    while (remaining > 0) {
        for (std::size_t i = 0; i < ids.size(); ++i) {
            if (finished[i]) {
                continue;
            }
            json job;
            try {
                job = api.expect("GET", "/v1/jobs/" + ids[i], nullptr, {200})["data"];
            } catch (const Fail& f) {
                // A director restarting resumes its jobs: keep asking for a while.
                const auto now = std::chrono::steady_clock::now();
                if (!f.unreachable || (unreachable_since && now - *unreachable_since > kUnreachableGrace)) {
                    throw;
                }
                if (!unreachable_since) {
                    unreachable_since = now;
                    if (!o.json) {
                        out << step << ": " << f.message << "; asking again for up to "
                            << kUnreachableGrace.count() << " s\n" << std::flush;
                    }
                }
                break;  // wait a poll period, then start over
            }
            unreachable_since.reset();
            const std::string state = job.value("state", "");
            const json p = job.value("progress", json::object());
            std::string line = step + " " + ids[i] + " [grid " + std::to_string(job.value("grid", 0)) + "] " + state;
            if (p.contains("round")) {
                line += ": round " + std::to_string(p.value("round", 0)) + "/" + std::to_string(p.value("rounds", 0));
                if (p.contains("train_loss") && p["train_loss"].is_number()) {
                    line += ", loss " + fmt(p["train_loss"].get<double>(), 4);
                }
                if (p.contains("evaluate_loss") && p["evaluate_loss"].is_number()) {
                    line += ", eval loss " + fmt(p["evaluate_loss"].get<double>(), 4);
                }
                if (p.contains("eta_s") && p["eta_s"].is_number() && state == "running") {
                    // Clamped: a cast of a value past int's range is undefined behaviour.
                    const double eta = std::clamp(std::ceil(p["eta_s"].get<double>()), 0.0, 1e9);
                    line += ", ~" + std::to_string(static_cast<long long>(eta)) + " s left";
                }
            }
            if ((state == "queued" || state == "running") && !job.value("reason", "").empty()) {
                line += " (" + job.value("reason", "") + ")";
            }
            if (const std::string note = early_stop_note(job); !note.empty()) {
                line += " (" + note + ")";
            }
            if (!o.json && line != last_line[ids[i]]) {
                out << line << "\n" << std::flush;
                last_line[ids[i]] = line;
            }
            if (state == "succeeded" || state == "failed" || state == "cancelled") {
                finished[i] = true;
                --remaining;
                if (state != "succeeded") {
                    throw Fail{1, step + " job " + ids[i] + " " + state + ": " + job.value("reason", "")};
                }
                done.push_back(job);
            }
        }
        if (remaining > 0) {
            if (std::chrono::steady_clock::now() > deadline) {
                throw Fail{1, step + ": jobs still running when the submit timeout ran out"};
            }
            std::this_thread::sleep_for(o.poll);  // polling the REST API: the original clients' pattern
        }
    }
    return done;
}

int run_submit(const std::string& job_file, const ClientOptions& o, std::ostream& out, std::ostream& err) {
    auto loaded = load_job_file(job_file);
    if (!loaded) {
        throw Fail{2, loaded.error().message};
    }
    const json job = *loaded;
    for (const auto& warning : run_field_warnings(job)) {
        err << "synergos submit: warning: " << job_file << ": " << warning << "\n";
    }
    const auto deadline = std::chrono::steady_clock::now() + o.timeout;
    Api api(o);
    const std::string c = job["collaboration"]["id"];
    const std::string p = job["project"]["id"];
    const std::string e = job["experiment"]["id"];
    const std::string base = "/ttp/connect/collaborations/" + c;
    auto say = [&](const std::string& s) {
        if (!o.json) {
            out << s << "\n" << std::flush;
        }
    };

    create_or_update(api, "/ttp/connect/collaborations", base, collaboration_body(job));
    create_or_update(api, base + "/projects", base + "/projects/" + p, project_body(job));
    const std::string pbase = base + "/projects/" + p;
    const json expt = experiment_body(job);
    // An experiment that exists is replaced only when its model changed: alignment fits the
    // input and output layers to the data (auto_fix), and writing the file's unfitted model
    // back would undo that for a re-submit that does not align again.
    const std::string eitem = pbase + "/experiments/" + e;
    const Api::Reply held_expt = api.call("GET", eitem);
    if (held_expt.status != 200) {
        create_or_update(api, pbase + "/experiments", eitem, expt);
    } else if (!same_model(data_of(held_expt).value("model", json()), expt.value("model", json()),
                           alignment_fits(job))) {
        api.expect("PUT", eitem, expt, {200});
        const json steps_given = job.value("steps", json::array({"align"}));
        if (std::find(steps_given.begin(), steps_given.end(), "align") == steps_given.end()) {
            say("note: experiment '" + e + "' has a new model; add the align step so its input and output fit the "
                "data again");
        }
    }
    std::vector<std::string> runs;
    for (const auto& run : job["runs"]) {
        const std::string rid = run["id"];
        create_or_update(api, pbase + "/experiments/" + e + "/runs", pbase + "/experiments/" + e + "/runs/" + rid,
                         run_body(run));
        runs.push_back(rid);
    }
    std::vector<std::pair<std::string, json>> predict_tags;
    for (const auto& part : job["participants"]) {
        const std::string pid = part["id"];
        create_or_update(api, "/ttp/connect/participants", "/ttp/connect/participants/" + pid,
                         participant_body(part));
        const std::string reg = pbase + "/participants/" + pid + "/registration";
        json registration{{"role", part.value("role", "guest")}, {"n_count", part["nodes"].size()}};
        for (std::size_t i = 0; i < part["nodes"].size(); ++i) {
            const json& n = part["nodes"][i];
            const std::string where = "participant '" + pid + "', nodes[" + std::to_string(i) + "]";
            const int f_port = port_field(n, "f_port", port_field(n, "port", 0, where), where);
            if (f_port <= 0) {
                throw Fail{2, where + ": 'f_port' (the worker's REST port) is required"};
            }
            registration["node_" + std::to_string(i)] = {{"host", n.value("host", std::string("127.0.0.1"))},
                                                         {"port", port_field(n, "port", 8020, where)},
                                                         {"f_port", f_port},
                                                         {"log_msgs", false},
                                                         {"verbose", false}};
        }
        // A registration or tags the store already holds as written are not written again; a
        // changed one is replaced (POST is create-or-replace), and the director then drops the
        // participant's alignment, which no longer describes its data. Before, an identical
        // registration was deleted and re-created, which deleted the alignment with it, and a
        // re-submit with `steps: [train]` found none.
        json tags = part["tags"];
        const Api::Reply held = api.call("GET", reg);
        if (held.status != 200 || !holds(data_of(held), registration, kRegistrationFields)) {
            api.expect("POST", reg, registration, {201});
        }
        const Api::Reply held_tags = api.call("GET", reg + "/tags");
        if (held_tags.status != 200 || !holds(data_of(held_tags), tags, kTagFields)) {
            api.expect("POST", reg + "/tags", tags, {201});
        }
        if (tags.contains("predict") && tags["predict"].is_array() && !tags["predict"].empty()) {
            predict_tags.emplace_back(pid, tags["predict"]);
        }
    }
    say("registered collaboration '" + c + "', project '" + p + "', experiment '" + e + "', " +
        std::to_string(runs.size()) + " run(s), " + std::to_string(job["participants"].size()) + " participant(s)");

    json summary{{"collaboration", c}, {"project", p}, {"experiment", e}, {"runs", json::object()}};
    const json steps = job.value("steps", json::array({"align", "train", "validate", "predict"}));
    auto has_step = [&](const char* s) { return std::find(steps.begin(), steps.end(), s) != steps.end(); };
    const std::string tbase = "/ttp/train/collaborations/" + c + "/projects/" + p;
    const std::string ebase = "/ttp/evaluate/collaborations/" + c + "/projects/" + p;
    if (has_step("align")) {
        wait_jobs(api, api.expect("POST", tbase + "/alignments", job.value("alignment", json::object()), {201}), "align",
                  o, out, deadline);
        say("alignment done");
    }
    for (const auto& r : runs) {
        if (has_step("train")) {
            auto trained = wait_jobs(api, api.expect("POST", tbase + "/models/" + e + "/" + r, json::object(), {200}),
                                     "train " + r, o, out, deadline);
            json models = api.expect("GET", tbase + "/models/" + e + "/" + r, nullptr, {200})["data"];
            const std::string path = models.empty() ? "" : models[0]["global"].value("path", "");
            summary["runs"][r]["model"] = path;
            summary["runs"][r]["training"] = trained.empty() ? json() : trained[0].value("outputs", json::object()).value("summary", json::object());
            say("run " + r + " trained: " + path);
        }
        if (has_step("validate")) {
            wait_jobs(api, api.expect("POST", ebase + "/validations/" + e + "/" + r, json::object(), {200}),
                      "validate " + r, o, out, deadline);
            json v = api.expect("GET", ebase + "/validations/" + e + "/" + r, nullptr, {200})["data"];
            summary["runs"][r]["validations"] = v;
            if (!o.json) {
                out << "\nvalidation of run " << r << ":\n";
                print_metrics(v, "evaluate", out);
                out << "\n";
            }
        }
        if (has_step("predict")) {
            for (const auto& [pid, tags] : predict_tags) {
                const std::string route = "/ttp/evaluate/participants/" + pid + "/collaborations/" + c + "/predictions/" +
                                          p + "/" + e + "/" + r;
                wait_jobs(api, api.expect("POST", route, json{{"tags", {{p, tags}}}}, {200}), "predict " + r + " " + pid,
                          o, out, deadline);
                json pr = api.expect("GET", route, nullptr, {200})["data"];
                summary["runs"][r]["predictions"][pid] = pr;
                if (!o.json) {
                    out << "prediction of run " << r << " by " << pid << " (files stay on its worker):\n";
                    print_metrics(pr, "predict", out);
                    out << "\n";
                }
            }
        }
    }
    if (o.json) {
        out << summary.dump(2) << "\n";
    } else {
        out << "done\n";
    }
    return 0;
}

}  // namespace

namespace {

/// Replaces `${NAME}` and `${NAME:-default}` with the environment's values, so one job file
/// serves several deployments (ports, hosts). An unset variable without a default is an error.
/// The text is substituted before YAML reads it (a plain `${...}` may stand where YAML would
/// read braces as structure), so a value may hold only characters YAML reads as plain text, and
/// comments are left as they are. `$${` writes a literal `${`.
sdk::Result<std::string> expand_environment(const std::string& text, const std::string& path) {
    const auto error = [&](const std::string& what) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, "job file '" + path + "': " + what};
    };
    std::string out;
    out.reserve(text.size());
    std::size_t line = 1;
    char quote = 0;        // inside a '...' or "..." scalar (which may span lines)
    bool comment = false;  // the rest of the line is a comment
    char last = '\n';      // the last character before this one that is not a blank
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '\n') {
            ++line;
            comment = false;
            last = '\n';
            out += c;
            continue;
        }
        if (comment) {
            out += c;
            continue;
        }
        if (quote == '"' && c == '\\' && i + 1 < text.size() && text[i + 1] != '\n') {
            out += c;  // an escape: the next character does not end the string
            out += text[++i];
            continue;
        }
        if (quote == '\'' && c == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
            out += "''";  // a quote written twice inside '...'
            ++i;
            continue;
        }
        if (quote == 0 && c == '#' && (last == '\n' || text[i - 1] == ' ' || text[i - 1] == '\t')) {
            comment = true;
            out += c;
            continue;
        }
        if (quote != 0 && c == quote) {
            quote = 0;
        } else if (quote == 0 && (c == '\'' || c == '"') &&
                   std::string_view("\n:-[{,?").find(last) != std::string_view::npos) {
            quote = c;  // only where a scalar starts: an apostrophe inside plain text is text
        }
        if (c != ' ' && c != '\t') {
            last = c;
        }
        if (c == '$' && text.compare(i, 3, "$${") == 0) {
            out += "${";
            i += 2;
            continue;
        }
        if (c != '$' || text.compare(i, 2, "${") != 0) {
            out += c;
            continue;
        }
        const std::size_t end = text.find_first_of("}\n", i);
        if (end == std::string::npos || text[end] != '}') {
            return error("line " + std::to_string(line) + ": '${' without its closing '}' on the same line");
        }
        const std::string expr = text.substr(i + 2, end - i - 2);
        const std::size_t dflt = expr.find(":-");
        const std::string name = expr.substr(0, dflt);
        if (name.empty() || name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") !=
                                std::string::npos) {
            return error("line " + std::to_string(line) + ": '${" + expr.substr(0, 40) +
                         "}' does not name an environment variable (letters, digits, _)");
        }
        std::string value;
        if (const char* v = std::getenv(name.c_str()); v != nullptr && *v != '\0') {
            value = v;
        } else if (dflt != std::string::npos) {
            value = expr.substr(dflt + 2);
            if (value.find("${") != std::string::npos) {
                return error("line " + std::to_string(line) + ": a default holding '${' is not supported");
            }
        } else {
            return error("environment variable '" + name + "' is not set (write ${" + name +
                         ":-default} for a default)");
        }
        // Only what YAML reads as plain text: a value must not be able to add fields.
        if (value.find_first_of("\n\r\"'{}[],#&*!|>%@`") != std::string::npos ||
            value.find(": ") != std::string::npos) {
            return error("line " + std::to_string(line) + ": the value of '" + name +
                         "' holds characters YAML would read as structure (quotes, brackets, ',', '#', ': ' ...)");
        }
        out += value;
        i = end;
    }
    return out;
}

/// A regular file's text, at most `limit` bytes; errors name `what` and the path.
sdk::Result<std::string> read_small_text(const fs::path& file, std::uintmax_t limit, const std::string& what) {
    std::error_code ec;
    if (!fs::exists(file, ec)) {
        return sdk::Error{sdk::ErrorCode::NotFound, what + " '" + file.string() + "' does not exist"};
    }
    if (!fs::is_regular_file(file, ec)) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, what + " '" + file.string() + "' is not a regular file"};
    }
    const auto size = fs::file_size(file, ec);
    if (ec || size > limit) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          what + " '" + file.string() + "' is larger than " + std::to_string(limit >> 20) + " MiB"};
    }
    std::ifstream in(file, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) {
        return sdk::Error{sdk::ErrorCode::NotFound, what + " '" + file.string() + "' cannot be read"};
    }
    return text.str();
}

}  // namespace

sdk::Result<json> load_job_file(const std::string& path) {
    const std::string where = "job file '" + path + "'";
    YAML::Node root;
    try {
        auto text = read_small_text(path, kMaxJobFileBytes, "job file");
        if (!text) {
            return text.error();
        }
        auto expanded = expand_environment(*text, path);
        if (!expanded) {
            return expanded.error();
        }
        // One document; an empty one (a trailing '---') does not count.
        std::vector<YAML::Node> documents;
        for (const auto& document : YAML::LoadAll(*expanded)) {
            if (!document.IsNull()) {
                documents.push_back(document);
            }
        }
        if (!documents.empty()) {
            root = documents.front();
        }
        if (documents.size() > 1) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, where + ": holds several YAML documents ('---'); write one"};
        }
    } catch (const YAML::Exception& e) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, where + ": " + e.what()};
    }
    try {
        std::size_t budget = kMaxJobValues;
        json job = to_json(root, where, budget);
        if (!job.is_object()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, where + ": must be a mapping"};
        }
        for (const auto& [key, value] : job.items()) {
            static const std::set<std::string> known{"collaboration", "project", "experiment", "runs",
                                                     "participants",  "steps",   "alignment"};
            if (known.count(key) == 0) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument,
                                  where + ": unknown section '" + key +
                                      "' (collaboration, project, experiment, runs, participants, steps, alignment)"};
            }
        }
        for (const char* section : {"collaboration", "project", "experiment"}) {
            if (!job.contains(section) || !job[section].is_object()) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument, where + ": section '" + section + "' is required"};
            }
            required_id(job[section], where + ", " + section);
        }
        json& expt = job["experiment"];
        if (expt.contains("model_file")) {
            if (!expt["model_file"].is_string() || expt["model_file"].get<std::string>().empty()) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument,
                                  where + ": experiment.model_file must be a file name (a string)"};
            }
            const fs::path named = expt["model_file"].get<std::string>();
            const fs::path file = fs::path(path).parent_path() / named;
            auto text = read_small_text(file, kMaxJobFileBytes, where + ": experiment.model_file");
            if (!text) {
                std::error_code ec;
                if (named.is_relative() && !fs::exists(file, ec)) {
                    // A copied job file breaks here: say where the path was looked up from.
                    const fs::path folder = fs::absolute(fs::path(path), ec).parent_path();
                    return sdk::Error{text.error().code,
                                      text.error().message +
                                          " (relative paths are resolved from the job file's folder: " +
                                          folder.string() + ")"};
                }
                return text.error();
            }
            // Checked before parsing: the parser and copies of the value recurse per level.
            // One level less than the director takes: the model is sent inside the experiment.
            constexpr auto kLimit = static_cast<std::size_t>(kMaxJobDepth - 1);
            json model = http::nesting_depth(*text, kLimit) > kLimit ? json() : json::parse(*text, nullptr, false);
            if (model.is_discarded() || !model.is_array() || model.empty()) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument,
                                  where + ": experiment.model_file '" + file.string() +
                                      "' is not a JSON list of layers (nested at most " +
                                      std::to_string(kMaxJobDepth) + " levels)"};
            }
            expt["model"] = model;
            expt.erase("model_file");
        }
        if (!expt.contains("model") || !expt["model"].is_array() || expt["model"].empty()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, where + ": experiment needs 'model' (a list of layers) or 'model_file'"};
        }
        if (!job.contains("runs") || !job["runs"].is_array() || job["runs"].empty()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, where + ": 'runs' must list at least one run"};
        }
        std::set<std::string> ids;
        for (std::size_t i = 0; i < job["runs"].size(); ++i) {
            const std::string at = where + ", runs[" + std::to_string(i) + "]";
            if (!ids.insert(required_id(job["runs"][i], at)).second) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument, at + ": run id '" + job["runs"][i]["id"].get<std::string>() + "' appears twice"};
            }
        }
        if (!job.contains("participants") || !job["participants"].is_array() || job["participants"].empty()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, where + ": 'participants' must list at least one participant"};
        }
        ids.clear();
        for (std::size_t i = 0; i < job["participants"].size(); ++i) {
            const json& part = job["participants"][i];
            const std::string at = where + ", participants[" + std::to_string(i) + "]";
            const std::string pid = required_id(part, at);
            if (!ids.insert(pid).second) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument, at + ": participant id '" + pid + "' appears twice"};
            }
            check_participant(part, at);
        }
        if (job.contains("steps")) {
            json& steps = job["steps"];
            if (steps.is_string()) {
                steps = json::array({steps});
            }
            if (!steps.is_array()) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument, where + ": 'steps' must be a list of align, train, validate, predict"};
            }
            for (const auto& step : steps) {
                if (!step.is_string() || (step != "align" && step != "train" && step != "validate" && step != "predict")) {
                    return sdk::Error{sdk::ErrorCode::InvalidArgument,
                                      where + ": unknown step " + step.dump() + " (align, train, validate, predict)"};
                }
            }
        }
        if (job.contains("alignment")) {
            const json& a = job["alignment"];
            if (!a.is_object()) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument, where + ": 'alignment' must be a mapping (auto_align, auto_fix)"};
            }
            for (const auto& [key, value] : a.items()) {
                if ((key != "auto_align" && key != "auto_fix") || !value.is_boolean()) {
                    return sdk::Error{sdk::ErrorCode::InvalidArgument,
                                      where + ": alignment." + key + " must be auto_align or auto_fix, true or false"};
                }
            }
        }
        check_bodies(job, where);
        return job;
    } catch (const Fail& f) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, f.message};
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, where + ": " + e.what()};
    }
}

int submit(const std::string& job_file, const ClientOptions& options, std::ostream& out, std::ostream& err) {
    try {
        return run_submit(job_file, options, out, err);
    } catch (const Fail& f) {
        err << "synergos submit: " << f.message << "\n";
        return f.code;
    } catch (const std::exception& e) {
        err << "synergos submit: " << e.what() << "\n";
        return 2;
    }
}

int list_jobs(const ClientOptions& options, const std::string& state, std::ostream& out, std::ostream& err) {
    try {
        Api api(options);
        json data = api.expect("GET", "/v1/jobs" + (state.empty() ? std::string() : "?state=" + state), nullptr, {200})["data"];
        if (options.json) {
            out << data.dump(2) << "\n";
            return 0;
        }
        out << std::left << std::setw(30) << "job" << std::setw(12) << "process" << std::setw(6) << "grid" << std::setw(11)
            << "state" << std::setw(9) << "attempt" << "keys / progress / reason\n";
        for (const auto& j : data) {
            std::string keys;
            for (const auto& k : j.value("filters", json::array())) {
                keys += (keys.empty() ? "" : "/") + k.get<std::string>();
            }
            std::string extra = keys;
            const json p = j.value("progress", json::object());
            if (p.contains("round")) {
                extra += "  round " + std::to_string(p.value("round", 0)) + "/" + std::to_string(p.value("rounds", 0));
            }
            if (!j.value("reason", "").empty()) {
                extra += "  " + j.value("reason", "");
            }
            if (const std::string note = early_stop_note(j); !note.empty()) {
                extra += "  " + note;
            }
            out << std::left << std::setw(30) << j.value("job_id", "") << std::setw(12) << j.value("process", "")
                << std::setw(6) << j.value("grid", 0) << std::setw(11) << j.value("state", "") << std::setw(9)
                << j.value("attempts", 0) << extra << "\n";
        }
        return 0;
    } catch (const Fail& f) {
        err << "synergos jobs: " << f.message << "\n";
        return 2;
    }
}

int status(const ClientOptions& options, std::ostream& out, std::ostream& err) {
    try {
        Api api(options);
        const int ready = api.call("GET", "/readyz").status;
        json jobs = api.expect("GET", "/v1/jobs", nullptr, {200})["data"];
        std::map<std::string, int> by_state;
        for (const auto& j : jobs) {
            by_state[j.value("state", "?")]++;
        }
        json s{{"server", options.server}, {"ready", ready == 200}, {"jobs", by_state}};
        if (options.json) {
            out << s.dump(2) << "\n";
        } else {
            out << "director " << options.server << ": " << (ready == 200 ? "ready" : "not ready") << "\n";
            for (const auto& [state, n] : by_state) {
                out << "  " << std::left << std::setw(11) << state << n << "\n";
            }
        }
        return ready == 200 ? 0 : 1;
    } catch (const Fail& f) {
        err << "synergos status: " << f.message << "\n";
        return 2;
    }
}

}  // namespace synergos::core::client

namespace synergos::core::client {

std::optional<int> main_if_client(int argc, const char* const* argv) {
    if (argc < 2) {
        return std::nullopt;
    }
    const std::string command = argv[1];
    if (command != "submit" && command != "jobs" && command != "status") {
        return std::nullopt;
    }
    ClientOptions o;
    if (const char* s = std::getenv("SYNERGOS_SERVER")) {
        o.server = s;
    }
    if (const char* t = std::getenv("SYNERGOS_TOKEN")) {
        o.token = t;
    }
    if (const char* t = std::getenv("SYNERGOS_TOKEN_FILE")) {
        o.token_file = t;
    }
    bool ca_from_env = false;
    if (const char* t = std::getenv("SYNERGOS_CA_FILE")) {
        o.ca_file = t;
        ca_from_env = true;
    }
    std::string job_file;
    std::string state;
    for (int i = 2; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&](const char* flag) -> std::string {
            if (i + 1 >= argc) {
                throw std::invalid_argument(std::string(flag) + " needs a value");
            }
            return argv[++i];
        };
        try {
            if (a == "--help" || a == "-h") {
                std::cout << "Usage: synergos submit JOB.yaml [--server URL] [--token T] [--json] [--timeout S]\n"
                             "       synergos jobs [--state STATE] [--server URL] [--token T] [--json]\n"
                             "       synergos status [--server URL] [--token T] [--json]\n"
                             "  --token-file F   read the bearer token from F ($SYNERGOS_TOKEN_FILE)\n"
                             "  --ca-file F      with an https:// server: trust this CA ($SYNERGOS_CA_FILE)\n"
                             "The server defaults to $SYNERGOS_SERVER or http://127.0.0.1:5000; the token to "
                             "$SYNERGOS_TOKEN.\n";
                return 0;
            } else if (a == "--server") {
                o.server = value("--server");
            } else if (a == "--token") {
                // A flag beats the environment: a token from $SYNERGOS_TOKEN_FILE is not read.
                o.token = value("--token");
                o.token_file.clear();
            } else if (a == "--token-file") {
                // Before, $SYNERGOS_TOKEN won over this flag and the wrong token was sent.
                o.token_file = value("--token-file");
                o.token.clear();
            } else if (a == "--ca-file") {
                o.ca_file = value("--ca-file");
                ca_from_env = false;
            } else if (a == "--json") {
                o.json = true;
            } else if (a == "--timeout") {
                const std::string t = value("--timeout");
                const bool digits = !t.empty() && t.size() <= 9 && t.find_first_not_of("0123456789") == std::string::npos;
                if (!digits || std::stoll(t) == 0) {
                    throw std::invalid_argument("--timeout must be a whole number of seconds (1-999999999), not '" + t + "'");
                }
                o.timeout = std::chrono::seconds(std::stoll(t));
            } else if (a == "--state" && command == "jobs") {
                state = value("--state");
            } else if (command == "submit" && job_file.empty() && a.rfind("--", 0) != 0) {
                job_file = a;
            } else {
                throw std::invalid_argument("unknown argument '" + a + "'");
            }
        } catch (const std::exception& e) {
            std::cerr << "synergos " << command << ": " << e.what() << " (see synergos " << command << " --help)\n";
            return 2;  // a command-line mistake, as for every other command
        }
    }
    if (ca_from_env && o.server.rfind("https://", 0) != 0) {
        o.ca_file.clear();  // a default for https:// directors, not a mistake on an http:// one
    }
    if (command == "submit") {
        if (job_file.empty()) {
            std::cerr << "synergos submit: missing JOB.yaml (see synergos submit --help)\n";
            return 2;
        }
        return submit(job_file, o, std::cout, std::cerr);
    }
    if (command == "jobs") {
        return list_jobs(o, state, std::cout, std::cerr);
    }
    return status(o, std::cout, std::cerr);
}

}  // namespace synergos::core::client
