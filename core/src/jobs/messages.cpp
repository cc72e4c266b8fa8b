// SPDX-License-Identifier: Apache-2.0
#include "synergos/core/jobs/messages.hpp"

#include <chrono>
#include <cstdint>
#include <limits>
#include <random>

namespace synergos::core::jobs {
namespace {

using nlohmann::json;

sdk::Status require(const json& j, const char* field, json::value_t type, const char* type_name) {
    auto it = j.find(field);
    if (it == j.end()) {
        return {sdk::ErrorCode::InvalidArgument, std::string("message field '") + field + "' is missing"};
    }
    bool ok = it->type() == type ||
              (type == json::value_t::number_integer && it->is_number_unsigned());
    if (!ok) {
        return {sdk::ErrorCode::InvalidArgument,
                std::string("message field '") + field + "' must be " + type_name};
    }
    return {};
}

sdk::Result<std::vector<std::string>> string_list(const json& j, const char* field) {
    std::vector<std::string> out;
    for (const auto& v : j.at(field)) {
        if (!v.is_string()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              std::string("message field '") + field + "' must hold strings"};
        }
        out.push_back(v.get<std::string>());
    }
    return out;
}

/// An integer field that fits an int; `fallback` when absent. Floats and out-of-range numbers are
/// refused: converting them to int would be undefined behaviour (UBSan under fuzz/messages).
sdk::Result<int> int_field(const json& j, const char* field, int fallback) {
    auto it = j.find(field);
    if (it == j.end()) {
        return fallback;
    }
    const bool fits =
        (it->is_number_integer() && !it->is_number_unsigned() &&
         it->get<std::int64_t>() >= std::numeric_limits<int>::min() &&
         it->get<std::int64_t>() <= std::numeric_limits<int>::max()) ||
        (it->is_number_unsigned() && it->get<std::uint64_t>() <= std::numeric_limits<int>::max());
    if (!fits) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          std::string("message field '") + field + "' must be a 32-bit integer"};
    }
    return it->get<int>();
}

/// An attempt count: 1..kMaxAttempts.
sdk::Result<int> attempt_field(const json& j, const char* field, int fallback) {
    auto value = int_field(j, field, fallback);
    if (value && (*value < 1 || *value > kMaxAttempts)) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, std::string("message field '") + field +
                                                               "' must be 1.." + std::to_string(kMaxAttempts)};
    }
    return value;
}

sdk::Result<json> parse(const std::string& body) {
    json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, "message body is not valid JSON"};
    }
    if (!j.is_object()) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, "message body must be a JSON object"};
    }
    return j;
}

}  // namespace

sdk::Status Topology::declare_grid(sdk::MessageQueue& mq, int grid) const {
    for (const sdk::QueueSpec& spec :
         {sdk::QueueSpec{jobs_dead(), 0, ""}, sdk::QueueSpec{results_dead(), 0, ""},
          sdk::QueueSpec{results(), 0, results_dead()}, sdk::QueueSpec{jobs(grid), kMaxPriority, jobs_dead()},
          sdk::QueueSpec{control(grid), 0, ""}}) {
        if (auto st = mq.declare(spec); !st) {
            return st;
        }
    }
    return {};
}

std::uint8_t priority_of(const std::string& process) {
    if (process == "preprocess") {
        return 9;
    }
    if (process == "train" || process == "optimize") {
        return 5;
    }
    return 2;  // validate, predict, anything else
}

const char* to_string(Outcome outcome) {
    switch (outcome) {
        case Outcome::Succeeded: return "succeeded";
        case Outcome::Failed: return "failed";
        case Outcome::Cancelled: return "cancelled";
    }
    return "failed";
}

json JobMessage::to_json() const {
    json j{{"job_id", job_id},       {"process", process},         {"keys", keys},
           {"grid", grid},           {"grids", grids},             {"parameters", parameters},
           {"attempt", attempt},     {"max_attempts", max_attempts}};
    if (!first_failure.empty()) {
        j["first_failure"] = first_failure;
    }
    return j;
}

std::string bounded_reason(const std::string& reason, std::size_t max_bytes) {
    if (reason.size() <= max_bytes || max_bytes < 4) {
        return reason;
    }
    std::size_t cut = max_bytes - 3;
    // Not inside a multi-byte character: back off over continuation bytes.
    while (cut > 0 && (static_cast<unsigned char>(reason[cut]) & 0xC0) == 0x80) {
        --cut;
    }
    return reason.substr(0, cut) + "...";
}

namespace {
sdk::Result<JobMessage> decode_job(const std::string& body) {
    auto parsed = parse(body);
    if (!parsed) {
        return parsed.error();
    }
    const json& j = *parsed;
    using vt = json::value_t;
    for (auto [field, type, name] :
         {std::tuple{"job_id", vt::string, "a string"}, std::tuple{"process", vt::string, "a string"},
          std::tuple{"keys", vt::array, "an array"}, std::tuple{"grid", vt::number_integer, "an integer"},
          std::tuple{"parameters", vt::object, "an object"}}) {
        if (auto st = require(j, field, type, name); !st) {
            return st.error();
        }
    }
    JobMessage m;
    m.job_id = j["job_id"].get<std::string>();
    m.process = j["process"].get<std::string>();
    auto keys = string_list(j, "keys");
    if (!keys) {
        return keys.error();
    }
    m.keys = std::move(*keys);
    auto grid = int_field(j, "grid", 0);
    if (!grid) {
        return grid.error();
    }
    m.grid = *grid;
    if (m.grid < 0) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, "message field 'grid' must be >= 0"};
    }
    if (auto it = j.find("grids"); it != j.end()) {
        if (!it->is_array()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, "message field 'grids' must be an array"};
        }
        m.grids = *it;
    }
    m.parameters = j["parameters"];
    for (auto [field, out, fallback] : {std::tuple{"attempt", &m.attempt, 1},
                                        std::tuple{"max_attempts", &m.max_attempts, 3}}) {
        auto value = attempt_field(j, field, fallback);
        if (!value) {
            return value.error();
        }
        *out = *value;
    }
    if (auto it = j.find("first_failure"); it != j.end() && it->is_string()) {
        m.first_failure = it->get<std::string>();  // informative only: a bad type is ignored
    }
    if (m.job_id.empty() || m.process.empty()) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, "message fields 'job_id' and 'process' must not be empty"};
    }
    return m;
}

}  // namespace

json ResultMessage::to_json() const {
    const char* t = type == EventType::Started ? "started" : type == EventType::Progress ? "progress" : "result";
    json j{{"type", t},          {"job_id", job_id}, {"process", process}, {"filters", filters},
           {"grid", grid},       {"attempt", attempt}, {"ttp_id", ttp_id}};
    if (type == EventType::Result) {
        j["status"] = to_string(outcome);
        j["reason"] = reason;
        j["final"] = final;
        j["outputs"] = outputs;
    }
    if (type == EventType::Progress) {
        j["progress"] = progress;
    }
    return j;
}

namespace {
sdk::Result<ResultMessage> decode_result(const std::string& body) {
    auto parsed = parse(body);
    if (!parsed) {
        return parsed.error();
    }
    const json& j = *parsed;
    using vt = json::value_t;
    for (auto [field, type, name] :
         {std::tuple{"type", vt::string, "a string"}, std::tuple{"job_id", vt::string, "a string"},
          std::tuple{"process", vt::string, "a string"}}) {
        if (auto st = require(j, field, type, name); !st) {
            return st.error();
        }
    }
    ResultMessage m;
    const std::string t = j["type"].get<std::string>();
    if (t == "started") {
        m.type = EventType::Started;
    } else if (t == "progress") {
        m.type = EventType::Progress;
    } else if (t == "result") {
        m.type = EventType::Result;
    } else {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, "message field 'type' is unknown: '" + t + "'"};
    }
    m.job_id = j["job_id"].get<std::string>();
    m.process = j["process"].get<std::string>();
    if (auto it = j.find("filters"); it != j.end() && it->is_array()) {
        auto f = string_list(j, "filters");
        if (!f) {
            return f.error();
        }
        m.filters = std::move(*f);
    }
    auto grid = int_field(j, "grid", 0);
    if (!grid) {
        return grid.error();
    }
    m.grid = *grid;
    // Bounded: attempt + 1 is computed for a retry, and a forged huge attempt would make the
    // job's genuine started and retry events read as stale.
    auto attempt = attempt_field(j, "attempt", 1);
    if (!attempt) {
        return attempt.error();
    }
    m.attempt = *attempt;
    m.ttp_id = j.value("ttp_id", std::string());
    if (m.type == EventType::Result) {
        if (auto st = require(j, "status", vt::string, "a string"); !st) {
            return st.error();
        }
        const std::string s = j["status"].get<std::string>();
        if (s == "succeeded") {
            m.outcome = Outcome::Succeeded;
        } else if (s == "failed") {
            m.outcome = Outcome::Failed;
        } else if (s == "cancelled") {
            m.outcome = Outcome::Cancelled;
        } else {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, "message field 'status' is unknown: '" + s + "'"};
        }
        m.reason = j.value("reason", std::string());
        m.final = j.value("final", true);
        m.outputs = j.value("outputs", json::object());
        if (!m.outputs.is_object()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, "message field 'outputs' must be an object"};
        }
    }
    if (m.type == EventType::Progress) {
        m.progress = j.value("progress", json::object());
    }
    return m;
}

}  // namespace

sdk::Result<JobMessage> JobMessage::from_json(const std::string& body) {
    try {
        return decode_job(body);
    } catch (const json::exception& e) {
        // A field of the wrong type deeper than the explicit checks (e.g. "attempt": "2").
        return sdk::Error{sdk::ErrorCode::InvalidArgument, std::string("malformed job message: ") + e.what()};
    }
}

sdk::Result<ResultMessage> ResultMessage::from_json(const std::string& body) {
    try {
        return decode_result(body);
    } catch (const json::exception& e) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, std::string("malformed result message: ") + e.what()};
    }
}

sdk::Message make_message(const std::string& id, const json& body, std::uint8_t priority) {
    sdk::Message m;
    m.id = id;
    // Replace, not throw: a string that came in as raw bytes (a broker's message id) may not
    // be UTF-8, and a strict dump would throw out of the archival thread.
    m.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
    m.priority = priority;
    return m;
}

std::string log_fields(std::initializer_list<std::pair<const char*, json>> kv) {
    json j = json::object();
    for (const auto& [k, v] : kv) {
        j[k] = v;
    }
    return j.dump(-1, ' ', false, json::error_handler_t::replace);  // fields may hold raw bytes
}

std::string new_job_id() {
    // Not security-sensitive: ids only need to be unique. The first 12 hex digits are the
    // milliseconds since the epoch, so ids sort by creation: the store's key B-trees take each
    // new job (and its result records) on their rightmost pages, which the updates of recent
    // jobs share, instead of a random page apiece (fewer WAL frames per commit).
    // The other 12 are random: random_device seeds the generator once per thread.
    thread_local std::mt19937_64 rng{std::random_device{}()};
    static const char* hex = "0123456789abcdef";
    const auto ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                   std::chrono::system_clock::now().time_since_epoch())
                                                   .count());
    std::string id = "job-";
    for (int shift = 44; shift >= 0; shift -= 4) {
        id.push_back(hex[(ms >> shift) & 0xF]);
    }
    const std::uint64_t random = rng();
    for (int shift = 44; shift >= 0; shift -= 4) {
        id.push_back(hex[(random >> shift) & 0xF]);
    }
    return id;
}

}  // namespace synergos::core::jobs
