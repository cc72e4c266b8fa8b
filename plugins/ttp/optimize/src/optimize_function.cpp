// SPDX-License-Identifier: Apache-2.0
#include "optimize_function.hpp"

#include <chrono>
#include <optional>
#include <thread>

#include "trials.hpp"
#include "ttp_common.hpp"

namespace synergos::plugins::optimize {

namespace {

using Clock = std::chrono::steady_clock;

/// One trial as the search follows it.
struct Trial {
    std::string run_id;
    json hyperparameters;
    json run;
    std::string phase = "train";  ///< train | validate | done
    std::string train_job;
    std::string validate_job;
    int grid = -1;
    std::string state = "queued";  ///< queued | training | validating | succeeded | failed |
                                   ///< unfinished (still running at max_exec_duration)
    bool trained = false;          ///< its train job succeeded: its model is archived under run_id
    std::string reason;
    std::optional<double> score;
    std::string started_at;
    std::string finished_at;

    json to_json() const {
        return {{"run_id", run_id},
                {"hyperparameters", hyperparameters},
                {"state", state},
                {"reason", reason},
                {"score", score ? json(*score) : json(nullptr)},
                {"grid", grid},
                {"train_job", train_job},
                {"validate_job", validate_job},
                {"started_at", started_at},
                {"finished_at", finished_at}};
    }
};

bool terminal(const std::string& state) {
    return state == "succeeded" || state == "failed" || state == "cancelled";
}

/// `optim_run_<job hex>_<n>`: unique per search and stable when the search job is run again,
/// so a restarted search reuses its runs instead of multiplying them.
std::string trial_run_id(const std::string& job_id, std::size_t i) {
    std::string id = job_id.rfind("job-", 0) == 0 ? job_id.substr(4) : job_id;
    return "optim_run_" + id + "_" + std::to_string(i + 1);
}

json summary(const SearchSettings& s, const std::vector<Trial>& trials) {
    json list = json::array();
    std::vector<std::optional<double>> scores;
    int finished = 0;
    int failed = 0;
    for (const auto& t : trials) {
        list.push_back(t.to_json());
        scores.push_back(t.score);
        // An unfinished trial (stopped at the time limit) is done for the search, not finished.
        finished += t.phase == "done" && t.state != "unfinished" ? 1 : 0;
        failed += t.state == "failed" ? 1 : 0;
    }
    json best = nullptr;
    if (auto b = best_trial(scores, s.maximize)) {
        best = trials[*b].to_json();
    }
    return {{"metric", s.metric},     {"optimize_mode", s.maximize ? "max" : "min"},
            {"strategy", s.strategy}, {"trials", list},
            {"finished", finished},   {"failed", failed},
            {"total", trials.size()}, {"best", best}};
}

}  // namespace

OptimizeFunction::OptimizeFunction(sdk::HostContext&, const sdk::Options& options, Now now)
    // At least 1 ms: 0 would re-read every trial's job record without pause.
    : poll_ms_(ttp::duration_option(options, "optimize", "poll_ms", 1000, 1, 60000)),
      now_(now ? std::move(now) : Now(&Clock::now)) {}

sdk::Result<std::string> OptimizeFunction::execute(sdk::JobContext& ctx,
                                                   std::string_view job_json) noexcept {
    try {
        auto job = ttp::parse_job(job_json, 3);
        if (!job) {
            return job.error();
        }
        auto settings = parse_settings(job->parameters);
        if (!settings) {
            return settings.error();
        }
        const json& params = job->parameters;
        // What every trial's train and validate jobs share (a train job's parameters).
        json common = json::object();
        for (const char* k : {"action", "experiment", "alignment", "tags", "auto_align"}) {
            if (params.contains(k)) {
                common[k] = params[k];
            }
        }
        // Marks them as trials: their results are archived before their Run records exist.
        common[ttp::kTrialOf] = job->job_id;
        json participants = json::array();
        const json tags_by_participant = params.value("tags", json::object());
        for (auto& [pid, tags] : tags_by_participant.items()) {
            participants.push_back(pid);
        }
        const auto deadline = now_() + std::chrono::milliseconds(settings->timeout_ms);

        std::vector<Trial> trials;
        const std::vector<json> points = draw_trials(*settings);
        for (std::size_t i = 0; i < points.size(); ++i) {
            Trial t;
            t.run_id = trial_run_id(job->job_id, i);
            t.hyperparameters = points[i];
            t.run = settings->base_run;
            for (auto& [k, v] : points[i].items()) {
                t.run[k] = v;
            }
            trials.push_back(std::move(t));
        }
        auto keys_of = [&](const Trial& t) {
            return json::array({job->collab(), job->project(), job->expt(), t.run_id});
        };
        auto fail_trial = [](Trial& t, const std::string& reason) {
            t.phase = "done";
            t.state = "failed";
            t.reason = reason;
        };
        auto report = [&] { ctx.report_progress(summary(*settings, trials).dump()); };

        // Every train job at once: the director places each on the grid with the fewest
        // unfinished jobs, so the trials run side by side on all grids.
        for (auto& t : trials) {
            if (ctx.is_cancelled()) {
                // The host cancels the trials already submitted (this job's follow-ups).
                return sdk::Error{sdk::ErrorCode::Cancelled, "optimization cancelled while submitting its trials"};
            }
            json p = common;
            p["run"] = t.run;
            auto id = ctx.submit_job(
                json{{"process", "train"}, {"keys", keys_of(t)}, {"parameters", p}}.dump());
            if (!id) {
                fail_trial(t, "train job not submitted: " + id.error().message);
                continue;
            }
            t.train_job = *id;
            t.state = "training";
        }
        report();
        ctx.logger().info("optimization trials submitted",
                          ttp::log_fields({{"job_id", job->job_id}, {"trials", trials.size()}}));

        auto poll = [&](const std::string& id,
                        std::chrono::milliseconds timeout) -> sdk::Result<json> {
            auto r = ctx.wait_job(id, timeout);
            if (!r) {
                return r.error();
            }
            return ttp::parse_object(*r, "state of job '" + id + "'");
        };
        bool stopped = false;  // reached max_exec_duration with trials still running
        while (true) {
            bool changed = false;
            bool unreadable = false;  // a job's state could not be read this time
            std::string pending;
            for (auto& t : trials) {
                if (t.phase == "done") {
                    continue;
                }
                const std::string& id = t.phase == "train" ? t.train_job : t.validate_job;
                auto r = poll(id, std::chrono::milliseconds(0));
                if (!r) {
                    const auto code = r.error().code;
                    if (code == sdk::ErrorCode::Unavailable || code == sdk::ErrorCode::Timeout) {
                        // The store is busy: read again at the next turn. Failing the trial
                        // here ignored its job, which runs on (its score lost, its model kept).
                        unreadable = true;
                        if (pending.empty()) {
                            pending = id;
                        }
                        continue;
                    }
                    fail_trial(t, r.error().message);
                    changed = true;
                    continue;
                }
                const std::string state = r->value("state", "");
                if (!terminal(state)) {
                    if (pending.empty()) {
                        pending = id;
                    }
                    continue;
                }
                changed = true;
                if (state != "succeeded") {
                    fail_trial(
                        t, t.phase + " job " + id + " " + state + ": " + r->value("reason", ""));
                    continue;
                }
                if (t.phase == "train") {
                    t.trained = true;
                    // Validate where the model was trained: that TTP holds the global model.
                    t.grid = r->value("grid", 0);
                    t.started_at = r->value("started_at", "");
                    json p = common;
                    p["run"] = t.run;
                    p["participants"] = participants;
                    p["metas"] = json::array({"evaluate"});
                    auto vid = ctx.submit_job(json{
                        {"process", "validate"},
                        {"keys", keys_of(t)},
                        {"grid", t.grid},
                        {"parameters", p}}.dump());
                    if (!vid) {
                        fail_trial(t, "validate job not submitted: " + vid.error().message);
                        continue;
                    }
                    t.validate_job = *vid;
                    t.phase = "validate";
                    t.state = "validating";
                    if (pending.empty()) {
                        pending = *vid;
                    }
                } else {
                    t.finished_at = r->value("finished_at", "");
                    t.score = trial_score(r->value("outputs", json::object()), settings->metric);
                    t.phase = "done";
                    if (t.score) {
                        t.state = "succeeded";
                    } else {
                        t.state = "failed";
                        t.reason = "validation statistics have no '" + settings->metric + "'";
                    }
                }
            }
            if (changed) {
                report();
            }
            if (pending.empty()) {
                break;
            }
            if (ctx.is_cancelled()) {
                return sdk::Error{sdk::ErrorCode::Cancelled,
                                  "optimization cancelled"};
            }
            if (now_() > deadline) {
                stopped = true;
                break;
            }
            if (unreadable) {
                // wait_job would fail at once too: a pause instead of a busy loop.
                std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms_));
            } else if (!changed) {
                // Sleeps on the director's job-change signal, not a clock: wakes when a job moves.
                (void)ctx.wait_job(pending, std::chrono::milliseconds(poll_ms_));
            }
        }
        const std::string limit =
            "max_exec_duration (" + std::to_string(settings->timeout_ms / 1000) + " s)";
        if (stopped) {
            for (auto& t : trials) {
                if (t.phase != "done") {
                    t.phase = "done";
                    t.reason = "still " + t.state + " when the search reached its " + limit +
                               "; not scored";
                    t.state = "unfinished";
                }
            }
            report();
        }
        json out = summary(*settings, trials);
        std::string first_failure = trials.empty() ? "no trials" : "";
        bool any_trained = false;
        for (const auto& t : trials) {
            any_trained = any_trained || t.trained;
            if (first_failure.empty() && t.state == "failed") {
                first_failure = t.reason;
            }
        }
        if (out["best"].is_null() && !any_trained) {
            // Nothing of the search was archived, so nothing can be orphaned: the job fails (and
            // the director cancels its unfinished trials), as a search without a result should.
            if (stopped) {
                return sdk::Error{sdk::ErrorCode::Timeout, "optimization exceeded " + limit +
                                                               " before any trial was trained"};
            }
            return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                              "no trial of the optimization produced a score; first failure: " +
                                  first_failure};
        }
        // Otherwise it succeeds even without a best: only a succeeded job is archived, and the
        // trained trials' models and validations need their Run records and the Optimization
        // record (else they sit under run ids nothing knows about). The note says how it ended.
        std::string note;
        if (stopped) {
            note = "the search stopped at its " + limit + " after " +
                   std::to_string(out["finished"].get<int>()) + " of " +
                   std::to_string(trials.size()) + " trials";
        }
        if (out["best"].is_null()) {
            note += std::string(note.empty() ? "" : "; ") + "no trial produced a score" +
                    (first_failure.empty() ? "" : "; first failure: " + first_failure);
        }
        out["stopped_at_limit"] = stopped;
        out["note"] = note;
        return out.dump();
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal, std::string("optimize failed: ") + e.what()};
    }
}

sdk::Result<std::vector<sdk::Mutation>> OptimizeFunction::archive(
    sdk::ArchiveContext&, std::string_view job_json, std::string_view outputs_json) noexcept {
    try {
        auto job = ttp::parse_job(job_json, 3);
        if (!job) {
            return job.error();
        }
        auto out = ttp::parse_object(outputs_json, "optimize outputs");
        if (!out) {
            return out.error();
        }
        auto settings = parse_settings(job->parameters);
        const json base = settings ? settings->base_run : json::object();
        std::vector<sdk::Mutation> batch;
        // Under their experiment only: one deleted while the search ran gets no orphans.
        batch.push_back({sdk::WriteMode::Require, "Experiment",
                         ttp::experiment_key(job->collab(), job->project(), job->expt()), {}});
        // Each trial becomes a Run like any other, so its model, validations and MLflow run
        // are found under its run id.
        for (const auto& t : out->value("trials", json::array())) {
            json run = base;
            // A named copy: items() of a temporary would outlive it.
            const json sampled = t.value("hyperparameters", json::object());
            for (auto& [k, v] : sampled.items()) {
                run[k] = v;
            }
            run["optimization"] = job->job_id;
            batch.push_back({sdk::WriteMode::Upsert,
                             "Run",
                             {{"collab_id", job->collab()},
                              {"project_id", job->project()},
                              {"expt_id", job->expt()},
                              {"run_id", t.value("run_id", "")}},
                             run.dump()});
        }
        json doc = *out;
        doc["job_id"] = job->job_id;
        batch.push_back({sdk::WriteMode::Upsert,
                         "Optimization",
                         {{"collab_id", job->collab()},
                          {"project_id", job->project()},
                          {"expt_id", job->expt()},
                          {"optim_id", job->job_id}},
                         doc.dump()});
        return batch;
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          std::string("optimize archival failed: ") + e.what()};
    }
}

sdk::Status OptimizeFunction::after_archive(sdk::ArchiveContext& ctx, std::string_view job_json,
                                            std::string_view outputs_json) noexcept {
    try {
        sdk::Tracker* tracker = ctx.tracker();
        if (!tracker) {
            return {};
        }
        auto job = ttp::parse_job(job_json, 3);
        auto out = ttp::parse_object(outputs_json, "optimize outputs");
        if (!job || !out) {
            return {sdk::ErrorCode::InvalidArgument, "optimize outputs cannot be tracked"};
        }
        // Each trial's MLflow run gets its search score, so the MLflow UI can sort trials by it.
        const std::string metric = "optimization." + out->value("metric", std::string("score"));
        for (const auto& t : out->value("trials", json::array())) {
            if (!t.contains("score") || !t["score"].is_number()) {
                continue;
            }
            // The trial's run already exists (train and validate tracked it); its params and
            // participants tag stay as they logged them.
            auto expt = tracker->ensure_experiment(job->collab() + "_>_" + job->project() + "_>_" +
                                                   job->expt());
            if (!expt) {
                return expt.status();
            }
            const std::string run_id = t.value("run_id", "");
            auto run = tracker->ensure_run(*expt, run_id,
                                           {{"synergos.collab_id", job->collab()},
                                            {"synergos.project_id", job->project()},
                                            {"synergos.expt_id", job->expt()},
                                            {"synergos.run_id", run_id},
                                            {"synergos.optimization", job->job_id}});
            if (!run) {
                return run.status();
            }
            if (auto st = tracker->log_metrics(
                    *run, {{metric, t["score"].get<double>(), 0, ttp::now_ms()}});
                !st) {
                return st;
            }
        }
        return {};
    } catch (const std::exception& e) {
        return {sdk::ErrorCode::Internal, std::string("optimize tracking failed: ") + e.what()};
    }
}

}  // namespace synergos::plugins::optimize
