// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file ttp_common.hpp
/// What the bundled TTP functions share: job parsing, output paths, worker fan-out with error
/// mapping, and store keys. Linked statically into each ttp plugin (not a plugin itself).

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/options.hpp>
#include <synergos/sdk/status.hpp>
#include <synergos/sdk/storage_backend.hpp>
#include <synergos/sdk/ttp_function.hpp>

namespace synergos::plugins::ttp {

using json = nlohmann::json;

/// The parts of a job message a function needs.
struct Job {
    std::string job_id;
    std::string process;
    std::vector<std::string> keys;  ///< [collab, project] or [collab, project, expt, run]
    json parameters = json::object();
    int grid = 0;
    int attempt = 1;

    const std::string& collab() const { return keys.at(0); }
    const std::string& project() const { return keys.at(1); }
    const std::string& expt() const { return keys.at(2); }
    const std::string& run() const { return keys.at(3); }
};

/// Parses a job message; `min_keys` is 2 for project jobs, 4 for run jobs.
sdk::Result<Job> parse_job(std::string_view job_json, std::size_t min_keys);

/// `<outputs>/<collab>/<project>/<expt>/<run>`.
std::string run_dir(const std::string& outputs_dir, const Job& job);
/// `/v1/runs/<collab>/<project>/<expt>/<run>`: the worker's routes for a run.
std::string run_route(const Job& job);

/// A JSON object of log fields.
std::string log_fields(std::initializer_list<std::pair<const char*, json>> kv);

/// Converts a worker reply into its JSON body, or an error naming the worker, the route and the
/// worker's message. Status mapping: 2xx ok; 409 FailedPrecondition; 413 ResourceExhausted;
/// other 4xx InvalidArgument (permanent); 503 Unavailable; other 5xx Internal (retryable).
sdk::Result<json> reply_json(const sdk::Result<sdk::WorkerReply>& reply, const sdk::GridNode& node,
                             const std::string& route);

/// Calls every node with its request concurrently; `on_reply(i, reply)` runs once per node, one
/// at a time, as replies arrive. An exception from `on_reply` (a reply it could not read) is
/// thrown again, naming the worker, once every call has ended: a reply is never silently lost.
void fan_out(sdk::WorkerClient& client, const std::vector<sdk::GridNode>& nodes,
             const std::vector<sdk::WorkerRequest>& requests,
             const std::function<void(std::size_t, sdk::Result<sdk::WorkerReply>&&)>& on_reply);

/// Asks each node to drop the run it holds under `route` (`<route>/terminate`), freeing the
/// model and data it loaded. Best effort and bounded: 10 s per call, replies ignored (a node
/// that does not answer keeps the run until an initialise replaces it).
void terminate_run(sdk::WorkerClient& client, const std::vector<sdk::GridNode>& nodes, const std::string& route);

/// Terminates a run on its nodes when the scope ends, whichever way a function leaves it
/// (finished, failed or cancelled): workers do not keep a model per run they ever served.
class RunOnWorkers {
public:
    RunOnWorkers(sdk::WorkerClient& client, std::vector<sdk::GridNode> nodes, std::string route)
        : client_(client), nodes_(std::move(nodes)), route_(std::move(route)) {}
    ~RunOnWorkers() { terminate_run(client_, nodes_, route_); }
    RunOnWorkers(const RunOnWorkers&) = delete;
    RunOnWorkers& operator=(const RunOnWorkers&) = delete;

private:
    sdk::WorkerClient& client_;
    std::vector<sdk::GridNode> nodes_;
    std::string route_;
};

/// A duration option in milliseconds; std::invalid_argument naming the plugin and the option
/// when outside [min_ms, max_ms] (0 would fail every worker call at once, a huge value overflows
/// the clock and never times out).
std::int64_t duration_option(const sdk::Options& options, const char* plugin, const char* key,
                             std::int64_t fallback, std::int64_t min_ms, std::int64_t max_ms);

/// The range of the functions' worker-call timeouts: 1 s to 7 days.
inline constexpr std::int64_t kMinCallTimeoutMs = 1000;
inline constexpr std::int64_t kMaxCallTimeoutMs = 7LL * 24 * 3600 * 1000;

/// The participant's tags from the job parameters (`tags.<pid>`), or InvalidArgument.
sdk::Result<json> participant_tags(const json& parameters, const std::string& participant);

/// Store keys of the records the functions write.
sdk::Key alignment_key(const std::string& c, const std::string& p, const std::string& pid);
sdk::Key experiment_key(const std::string& c, const std::string& p, const std::string& e);
sdk::Key model_key(const std::string& c, const std::string& p, const std::string& e, const std::string& r);
sdk::Key evaluation_key(const std::string& pid, const std::string& c, const std::string& p,
                        const std::string& e, const std::string& r);

/// The parameter an optimization sets on the train and validate jobs of its trials (its own
/// job id): their Run records are written only when the whole search is archived.
inline constexpr const char* kTrialOf = "optimization";

/// What a run job's results must be archived under, as a Require mutation: its Run, so results
/// of a run deleted while its job ran are refused (the job fails) instead of left under a dead
/// key; for an optimization's trial, whose Run does not exist yet, its Experiment.
sdk::Mutation owner_requirement(const Job& job);

/// Parses a JSON document or object text; InvalidArgument naming `what` otherwise.
sdk::Result<json> parse_object(std::string_view text, const std::string& what);

/// Lower-cases ASCII.
std::string lower(std::string s);

}  // namespace synergos::plugins::ttp

namespace synergos::plugins::ttp {

/// Finds or creates the tracking run of a Synergos run: experiment `<c>_>_<p>_>_<e>` (the
/// original's naming), run named `<r>`, tagged with the collaboration, project and participants,
/// with the run's settings as params. A `train` job also tags `synergos.training_job` (its id),
/// so a tracker can give each training its own run of that name (see the mlflow plugin). Params
/// the tracker refuses (e.g. settings changed since the run was trained) do not fail the call:
/// the refusal is set as tag `synergos.params_error` and the run id returned, so the caller's
/// metrics are still logged. Returns the tracker's run id.
sdk::Result<std::string> tracking_run(sdk::Tracker& tracker, const Job& job, const json& run_settings,
                                      const std::vector<std::string>& participants);

/// Milliseconds since the epoch (for metric timestamps).
std::int64_t now_ms();

}  // namespace synergos::plugins::ttp
