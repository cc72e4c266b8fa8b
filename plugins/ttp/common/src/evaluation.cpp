// SPDX-License-Identifier: Apache-2.0
#include "evaluation.hpp"

#include <optional>
#include <set>

#include "ttp_common.hpp"

namespace synergos::plugins::ttp {

EvaluationFunction::EvaluationFunction(EvaluationKind kind, sdk::HostContext&, const sdk::Options& options)
    : kind_(kind),
      timeout_ms_(duration_option(options, kind.process, "timeout_ms", 600000, kMinCallTimeoutMs, kMaxCallTimeoutMs)) {}

sdk::Result<std::string> EvaluationFunction::execute(sdk::JobContext& ctx, std::string_view job_json) noexcept {
    try {
        auto job = parse_job(job_json, 4);
        if (!job) {
            return job.error();
        }
        const json& params = job->parameters;
        const json experiment = params.value("experiment", json::object());
        std::set<std::string> wanted;
        for (const auto& p : params.value("participants", json::array())) {
            if (p.is_string()) {
                wanted.insert(p.get<std::string>());
            }
        }
        std::vector<sdk::GridNode> nodes;
        std::set<std::string> missing = wanted;
        for (const auto& node : ctx.nodes()) {
            if (wanted.empty() || wanted.count(node.participant_id)) {
                nodes.push_back(node);
                missing.erase(node.participant_id);
            }
        }
        if (!nodes.empty() && !missing.empty()) {
            // Scored on fewer participants than asked, a result (an optimization trial's) would
            // read as if it covered them all.
            std::string names;
            for (const auto& m : missing) {
                names += (names.empty() ? "'" : ", '") + m + "'";
            }
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              "requested participant" + std::string(missing.size() == 1 ? " " : "s ") + names +
                                  (missing.size() == 1 ? " has" : " have") + " no node on grid " +
                                  std::to_string(ctx.grid())};
        }
        if (nodes.empty()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              "none of the requested participants has a node on grid " + std::to_string(ctx.grid())};
        }
        const std::string dir = run_dir(ctx.outputs_dir(), *job);
        auto global = ctx.read_tensors(dir + "/global_model.safetensors");
        if (!global) {
            return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                              "run '" + job->run() + "' has no trained global model yet (" + global.error().message + ")"};
        }
        if (ctx.is_cancelled()) {
            return sdk::Error{sdk::ErrorCode::Cancelled, std::string("stopped before the ") + kind_.process + " began"};
        }
        const std::string route = run_route(*job);
        // Whatever happens from here, the workers drop the run they load for this job.
        const RunOnWorkers loaded(ctx.workers(), nodes, route);
        std::vector<sdk::WorkerRequest> init;
        for (const auto& node : nodes) {
            auto tags = participant_tags(params, node.participant_id);
            if (!tags) {
                return tags.error();
            }
            sdk::WorkerRequest req;
            req.path = route + "/initialise";
            req.json = json{{"action", params.value("action", "classify")}, {"tags", *tags},
                            {"alignment", params.value("alignment", json(nullptr))},
                            {"architecture", experiment.value("model", json::array())},
                            {"run", params.value("run", json::object())}, {"return_weights", false}}
                           .dump();
            req.timeout = std::chrono::milliseconds(timeout_ms_);
            init.push_back(std::move(req));
        }
        // Every worker's failure is reported. The code is a permanent one's when there is one
        // (another attempt would meet it again); else the first transient one's, so it retries.
        std::vector<std::string> failures;
        std::optional<sdk::ErrorCode> permanent;
        std::optional<sdk::ErrorCode> transient;
        auto note = [&](const sdk::Error& e) {
            failures.push_back(e.message);
            if (e.code == sdk::ErrorCode::Unavailable || e.code == sdk::ErrorCode::Timeout ||
                e.code == sdk::ErrorCode::Internal) {
                transient = transient.value_or(e.code);
            } else if (e.code == sdk::ErrorCode::FailedPrecondition) {
                // 409: the worker lost the run (restarted between initialise and evaluate) or
                // is busy with it: another attempt can succeed, as train treats it.
                transient = transient.value_or(sdk::ErrorCode::Unavailable);
            } else {
                permanent = permanent.value_or(sdk::ErrorCode::InvalidArgument);
            }
        };
        auto failed = [&] {
            std::string message;
            for (const auto& f : failures) {
                message += (message.empty() ? "" : "; ") + f;
            }
            return sdk::Error{permanent ? *permanent : transient.value_or(sdk::ErrorCode::InvalidArgument),
                              message};
        };
        fan_out(ctx.workers(), nodes, init, [&](std::size_t i, sdk::Result<sdk::WorkerReply>&& reply) {
            auto body = reply_json(reply, nodes[i], init[i].path);
            if (!body) {
                note(body.error());
            }
        });
        if (!failures.empty()) {
            return failed();
        }
        if (ctx.is_cancelled()) {
            return sdk::Error{sdk::ErrorCode::Cancelled, std::string("stopped before the ") + kind_.process +
                                                             " requests (the workers' runs are dropped)"};
        }
        std::vector<sdk::WorkerRequest> evals(nodes.size());
        for (auto& req : evals) {
            req.path = route + "/evaluate";
            req.json = json{{"meta", kind_.meta}, {"write_outputs", true}}.dump();
            req.tensors = &*global;
            req.timeout = std::chrono::milliseconds(timeout_ms_);
        }
        json outputs = json::object();
        fan_out(ctx.workers(), nodes, evals, [&](std::size_t i, sdk::Result<sdk::WorkerReply>&& reply) {
            auto body = reply_json(reply, nodes[i], evals[i].path);
            if (!body) {
                note(body.error());
                return;
            }
            // A `rows` that is not a whole number fails the job for good: value<int>() of 1e20
            // was undefined, and of "12" threw an Internal error, retried for the same reply.
            const json rows = body->value("rows", json(0));
            if (!rows.is_number_integer()) {
                note(sdk::Error{sdk::ErrorCode::InvalidArgument,
                                "the reply of worker '" + nodes[i].participant_id + "' on " + evals[i].path +
                                    " has 'rows' that is not a whole number: " + rows.dump().substr(0, 64)});
                return;
            }
            outputs[nodes[i].participant_id][kind_.meta] = {
                {"statistics", body->value("statistics", json::object())},
                {"res_path", body->value("res_path", json(nullptr))},
                {"loss", body->value("loss", json(nullptr))},
                {"rows", rows}};
        });
        if (!failures.empty()) {
            return failed();
        }
        return outputs.dump();
    } catch (const json::type_error& e) {
        // A parameter of the wrong type: the same again on every attempt, so not retried.
        return sdk::Error{sdk::ErrorCode::InvalidArgument, std::string(kind_.process) + " failed: " + e.what()};
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal, std::string(kind_.process) + " failed: " + e.what()};
    }
}

sdk::Result<std::vector<sdk::Mutation>> EvaluationFunction::archive(sdk::ArchiveContext&, std::string_view job_json,
                                                                     std::string_view outputs_json) noexcept {
    try {
        auto job = parse_job(job_json, 4);
        if (!job) {
            return job.error();
        }
        auto out = parse_object(outputs_json, std::string(kind_.process) + " outputs");
        if (!out) {
            return out.error();
        }
        // Under their run (an optimization's trial: its experiment) and participants only: one
        // deleted while the job ran gets no orphan results; the job fails instead. Requires
        // first, then the writes.
        std::vector<sdk::Mutation> batch;
        batch.push_back(owner_requirement(*job));
        for (auto& [pid, metas] : out->items()) {
            batch.push_back({sdk::WriteMode::Require, "Participant", {{"participant_id", pid}}, {}});
        }
        for (auto& [pid, metas] : out->items()) {
            json doc = json::object();
            for (auto& [meta, result] : metas.items()) {
                doc[meta] = {{"statistics", result.value("statistics", json::object())},
                             {"res_path", result.value("res_path", json(nullptr))}};
            }
            batch.push_back({sdk::WriteMode::Upsert, kind_.record_kind,
                             evaluation_key(pid, job->collab(), job->project(), job->expt(), job->run()), doc.dump()});
        }
        return batch;
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal, std::string(kind_.process) + " archival failed: " + e.what()};
    }
}

sdk::Status EvaluationFunction::after_archive(sdk::ArchiveContext& ctx, std::string_view job_json,
                                              std::string_view outputs_json) noexcept {
    try {
        sdk::Tracker* tracker = ctx.tracker();
        if (!kind_.track || !tracker) {
            return {};
        }
        auto job = parse_job(job_json, 4);
        auto out = parse_object(outputs_json, "outputs");
        if (!job || !out) {
            return {sdk::ErrorCode::InvalidArgument, "outputs cannot be tracked"};
        }
        std::vector<std::string> participants;
        for (auto& [pid, v] : out->items()) {
            participants.push_back(pid);
        }
        auto run = tracking_run(*tracker, *job, job->parameters.value("run", json::object()), participants);
        if (!run) {
            return run.status();
        }
        std::vector<sdk::MetricPoint> points;
        const auto ts = now_ms();
        for (auto& [pid, metas] : out->items()) {
            for (auto& [meta, result] : metas.items()) {
                const json statistics = result.value("statistics", json::object());
                for (auto& [stat, value] : statistics.items()) {
                    const std::string base = pid + "." + meta + "." + stat;
                    if (value.is_number()) {
                        points.push_back({base, value.get<double>(), 0, ts});
                    } else if (value.is_array()) {
                        for (std::size_t i = 0; i < value.size(); ++i) {
                            if (value[i].is_number()) {
                                points.push_back({base + "_class_" + std::to_string(i), value[i].get<double>(),
                                                  static_cast<std::int64_t>(i + 1), ts});
                            }
                        }
                    }
                }
            }
        }
        return tracker->log_metrics(*run, points);
    } catch (const std::exception& e) {
        return {sdk::ErrorCode::Internal, std::string("tracking failed: ") + e.what()};
    }
}

}  // namespace synergos::plugins::ttp
