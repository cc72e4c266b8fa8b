// SPDX-License-Identifier: Apache-2.0
#include "ttp_common.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <optional>
#include <stdexcept>

namespace synergos::plugins::ttp {

sdk::Result<json> parse_object(std::string_view text, const std::string& what) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, what + " is not a JSON object"};
    }
    return j;
}

sdk::Result<Job> parse_job(std::string_view job_json, std::size_t min_keys) {
    auto j = parse_object(job_json, "job message");
    if (!j) {
        return j.error();
    }
    Job job;
    try {
        job.job_id = j->value("job_id", "");
        job.process = j->value("process", "");
        job.keys = j->at("keys").get<std::vector<std::string>>();
        job.parameters = j->value("parameters", json::object());
        job.grid = j->value("grid", 0);
        job.attempt = j->value("attempt", 1);
    } catch (const json::exception& e) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, std::string("job message: ") + e.what()};
    }
    if (job.keys.size() < min_keys) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, "job field 'keys' needs " + std::to_string(min_keys) +
                                                               " entries, found " + std::to_string(job.keys.size())};
    }
    if (!job.parameters.is_object()) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, "job field 'parameters' must be an object"};
    }
    return job;
}

std::string run_dir(const std::string& outputs_dir, const Job& job) {
    return outputs_dir + "/" + job.collab() + "/" + job.project() + "/" + job.expt() + "/" + job.run();
}

std::string run_route(const Job& job) {
    return "/v1/runs/" + job.collab() + "/" + job.project() + "/" + job.expt() + "/" + job.run();
}

std::string log_fields(std::initializer_list<std::pair<const char*, json>> kv) {
    json j = json::object();
    for (const auto& [k, v] : kv) {
        j[k] = v;
    }
    return j.dump(-1, ' ', false, json::error_handler_t::replace);  // fields may hold a worker's bytes
}

sdk::Result<json> reply_json(const sdk::Result<sdk::WorkerReply>& reply, const sdk::GridNode& node,
                             const std::string& route) {
    const std::string who = "worker '" + node.participant_id + "' (" + node.host + ":" + std::to_string(node.port) + ")";
    if (!reply) {
        return sdk::Error{reply.error().code, who + " on " + route + ": " + reply.error().message};
    }
    json body = json::parse(reply->json.empty() ? std::string("{}") : reply->json, nullptr, false);
    if (reply->status < 200 || reply->status >= 300) {
        // Any JSON may come back: only a string message is taken (value() would throw on another type).
        std::string msg = body.is_object() && body.contains("message") && body["message"].is_string()
                              ? body["message"].get<std::string>()
                              : reply->json;
        sdk::ErrorCode code = sdk::ErrorCode::Internal;
        if (reply->status == 409) {
            code = sdk::ErrorCode::FailedPrecondition;
        } else if (reply->status == 413) {
            code = sdk::ErrorCode::ResourceExhausted;
        } else if (reply->status == 503) {
            code = sdk::ErrorCode::Unavailable;
        } else if (reply->status >= 400 && reply->status < 500) {
            code = sdk::ErrorCode::InvalidArgument;
        }
        return sdk::Error{code, who + " answered " + std::to_string(reply->status) + " on " + route + ": " + msg};
    }
    if (body.is_discarded() || !body.is_object()) {
        return sdk::Error{sdk::ErrorCode::Internal, who + " sent a reply that is not a JSON object on " + route};
    }
    return body;
}

namespace {

class FnVisitor final : public sdk::ReplyVisitor {
public:
    explicit FnVisitor(const std::function<void(std::size_t, sdk::Result<sdk::WorkerReply>&&)>& fn) : fn_(fn) {}
    void on_reply(std::size_t index, sdk::Result<sdk::WorkerReply>&& reply) noexcept override {
        // An exception must not unwind into the host: the first is kept and thrown again by
        // fan_out once every call has ended (replies are handled one at a time).
        try {
            fn_(index, std::move(reply));
        } catch (const std::exception& e) {
            note(index, e.what());
        } catch (...) {
            note(index, "unknown exception");
        }
    }
    std::optional<std::pair<std::size_t, std::string>> failure;

private:
    void note(std::size_t index, const char* what) noexcept {
        if (!failure) {
            try {
                failure.emplace(index, what);
            } catch (...) {
            }
        }
    }
    const std::function<void(std::size_t, sdk::Result<sdk::WorkerReply>&&)>& fn_;
};

}  // namespace

void fan_out(sdk::WorkerClient& client, const std::vector<sdk::GridNode>& nodes,
             const std::vector<sdk::WorkerRequest>& requests,
             const std::function<void(std::size_t, sdk::Result<sdk::WorkerReply>&&)>& on_reply) {
    FnVisitor visitor(on_reply);
    client.call_all(nodes, requests, visitor);
    if (visitor.failure) {
        const auto& [index, what] = *visitor.failure;
        const std::string who = index < nodes.size() ? "worker '" + nodes[index].participant_id + "'" : "a worker";
        const std::string route = index < requests.size() ? requests[index].path : std::string();
        throw std::runtime_error("the reply of " + who + " on " + route + " could not be read: " + what);
    }
}

void terminate_run(sdk::WorkerClient& client, const std::vector<sdk::GridNode>& nodes, const std::string& route) {
    try {
        std::vector<sdk::WorkerRequest> bye(nodes.size());
        for (auto& req : bye) {
            req.path = route + "/terminate";
            req.timeout = std::chrono::milliseconds(10000);
        }
        fan_out(client, nodes, bye, [](std::size_t, sdk::Result<sdk::WorkerReply>&&) {});
    } catch (...) {
        // Best effort: the run stays on a worker until an initialise replaces it.
    }
}

std::int64_t duration_option(const sdk::Options& options, const char* plugin, const char* key,
                             std::int64_t fallback, std::int64_t min_ms, std::int64_t max_ms) {
    const std::int64_t value = options.get_int(key, fallback);
    if (value < min_ms || value > max_ms) {
        throw std::invalid_argument("ttp '" + std::string(plugin) + "': option '" + key + "' must be " +
                                    std::to_string(min_ms) + "-" + std::to_string(max_ms) + " ms (got " +
                                    std::to_string(value) + ")");
    }
    return value;
}

sdk::Result<json> participant_tags(const json& parameters, const std::string& participant) {
    auto tags = parameters.find("tags");
    if (tags == parameters.end() || !tags->is_object() || !tags->contains(participant)) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          "participant '" + participant + "' has no data tags registered for this project"};
    }
    return (*tags)[participant];
}

sdk::Key alignment_key(const std::string& c, const std::string& p, const std::string& pid) {
    return {{"collab_id", c}, {"project_id", p}, {"participant_id", pid}};
}
sdk::Key experiment_key(const std::string& c, const std::string& p, const std::string& e) {
    return {{"collab_id", c}, {"project_id", p}, {"expt_id", e}};
}
sdk::Key model_key(const std::string& c, const std::string& p, const std::string& e, const std::string& r) {
    return {{"collab_id", c}, {"project_id", p}, {"expt_id", e}, {"run_id", r}};
}
sdk::Key evaluation_key(const std::string& pid, const std::string& c, const std::string& p,
                        const std::string& e, const std::string& r) {
    return {{"participant_id", pid}, {"collab_id", c}, {"project_id", p}, {"expt_id", e}, {"run_id", r}};
}

sdk::Mutation owner_requirement(const Job& job) {
    const auto trial = job.parameters.find(kTrialOf);
    if (trial != job.parameters.end() && trial->is_string()) {
        return {sdk::WriteMode::Require, "Experiment", experiment_key(job.collab(), job.project(), job.expt()), {}};
    }
    return {sdk::WriteMode::Require, "Run", model_key(job.collab(), job.project(), job.expt(), job.run()), {}};
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    return s;
}

}  // namespace synergos::plugins::ttp

#include <chrono>

namespace synergos::plugins::ttp {

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

sdk::Result<std::string> tracking_run(sdk::Tracker& tracker, const Job& job, const json& run_settings,
                                      const std::vector<std::string>& participants) {
    auto expt = tracker.ensure_experiment(job.collab() + "_>_" + job.project() + "_>_" + job.expt());
    if (!expt) {
        return expt.error();
    }
    std::string joined;
    for (const auto& p : participants) {
        joined += (joined.empty() ? "" : ",") + p;
    }
    sdk::StringPairs tags{{"synergos.collab_id", job.collab()},
                          {"synergos.project_id", job.project()},
                          {"synergos.expt_id", job.expt()},
                          {"synergos.run_id", job.run()},
                          {"synergos.participants", joined}};
    // A training tags its job id, so a tracker that knows the tag (mlflow) starts a new run of
    // this name when the current one was trained before (its params cannot change, the settings
    // may have, and the rounds would repeat its steps); a redelivered job keeps its own run.
    if (job.process == "train" && !job.job_id.empty()) {
        tags.emplace_back("synergos.training_job", job.job_id);
    }
    auto run = tracker.ensure_run(*expt, job.run(), tags);
    if (!run) {
        return run.error();
    }
    sdk::StringPairs params;
    if (run_settings.is_object()) {
        for (auto& [k, v] : run_settings.items()) {
            if (k == "key" || k == "relations" || k == "created_at" || k == "link") {
                continue;
            }
            params.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
        }
    }
    if (!params.empty()) {
        if (auto st = tracker.log_params(*run, params); !st) {
            // Params never stop the metrics (an evaluation after the settings changed still
            // belongs to the run its model was trained in); the refusal is kept on the run.
            std::string note = st.message();
            if (note.size() > 4000) {  // MLflow's tag limit is 5000: cut on a UTF-8 boundary
                std::size_t cut = 4000;
                while (cut > 0 && (static_cast<unsigned char>(note[cut]) & 0xC0U) == 0x80U) {
                    --cut;
                }
                note = note.substr(0, cut) + "...";
            }
            (void)tracker.set_tags(*run, {{"synergos.params_error", note}});
        }
    }
    return run;
}

}  // namespace synergos::plugins::ttp
