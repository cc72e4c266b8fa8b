// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file service.hpp
/// The worker protocol service (docs/worker-protocol.md): the routes a TTP calls on a worker,
/// independent of the transport. The HTTP server passes each request to
/// `WorkerService::handle` and sends back the response as it is.
///
/// What leaves the worker: names, dtypes, counts and per-column summaries (poll), model weights
/// and losses (initialise, train), aggregate statistics (evaluate). Rows, labels, predictions and
/// scores never do; predictions and scores are written under the worker's outputs directory.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <synergos/sdk/data_pipeline.hpp>
#include <synergos/sdk/log.hpp>
#include <synergos/sdk/model.hpp>

namespace synergos::core::worker {

/// One request as the transport received it.
struct WorkerHttpRequest {
    std::string method;        ///< "GET", "POST"
    std::string path;          ///< the request target; a query string is ignored
    std::string content_type;  ///< "application/json", "application/vnd.safetensors" or empty
    /// Raw bytes (JSON text or a safetensors body), borrowed for the call: a model-sized body
    /// is decoded from the transport's buffer, not from a copy of it.
    std::string_view body;
};

/// The response to send.
struct WorkerHttpResponse {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
};

/// What the service works with. Pointers are borrowed: the caller keeps the pipelines and the
/// model backend (and so their plugin libraries) alive longer than the service.
struct WorkerServiceConfig {
    std::string participant_id;  ///< reported by /v1/health
    std::string data_dir;        ///< tags resolve under this folder only
    std::string outputs_dir;     ///< evaluation files go to <outputs>/<c>/<p>/<e>/<r>/<meta>/
    std::map<std::string, sdk::DataPipeline*> pipelines;  ///< by datatype ("tabular", "image")
    sdk::ModelBackend* model = nullptr;                   ///< builds, trains and runs models
    sdk::Logger* logger = nullptr;                        ///< optional
    std::size_t max_body_bytes = std::size_t{1} << 30;    ///< larger request bodies get 413
    std::size_t max_cached_splits = 32;                   ///< loaded splits kept for reuse
    std::size_t max_search_entries = 200000;              ///< tag search bound (entries visited)
    /// How long a request waits for another request of the same run to finish before 409.
    std::chrono::milliseconds run_wait{std::chrono::minutes(30)};
    /// Requests that may wait for one busy run at a time; one more gets 409 at once. Each waiter
    /// holds a server thread for up to `run_wait`, so a busy run must not collect them all.
    std::size_t max_run_waiters = 2;
    /// Runs kept initialised. An initialise of a new run beyond it evicts the least recently used
    /// run that no request holds (a TTP that died without terminate leaves its runs behind), or
    /// gets 503 when every run is busy.
    std::size_t max_runs = 32;
    std::size_t max_tags_per_split = 1024;    ///< tags per split in poll/initialise (422 past it)
    std::size_t max_superset_names = 100000;  ///< names in alignment.X / alignment.y (422 past it)
    /// Bytes of aligned feature and label matrices (rows x superset width x 4) of one initialise,
    /// checked before they are allocated (422 past it).
    std::uint64_t max_aligned_bytes = std::uint64_t{4} << 30;
};

/// Serves the worker protocol.
/// Threading: `handle` may be called from many threads at once. Requests for different runs run
/// concurrently; requests for the same run are serialised (a waiting request gives up with 409
/// after `run_wait`; beyond `max_run_waiters` waiters a request gets 409 at once). Loading data
/// runs outside every lock; /v1/health never waits for a run.
/// Errors: every failure is a response `{"message": ...}` with 400, 404, 405, 409, 413, 422,
/// 500 or 503; `handle` never throws.
/// Lifetime: models built through `config.model` are destroyed with the service or on terminate.
class WorkerService {
public:
    explicit WorkerService(WorkerServiceConfig config);
    ~WorkerService();
    WorkerService(const WorkerService&) = delete;
    WorkerService& operator=(const WorkerService&) = delete;

    /// Routes and answers one request.
    WorkerHttpResponse handle(const WorkerHttpRequest& request) noexcept;

    /// Runs currently initialised.
    std::size_t runs_loaded() const;

    /// Requests waiting now for a run another request holds (across all runs).
    std::size_t requests_waiting() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace synergos::core::worker
