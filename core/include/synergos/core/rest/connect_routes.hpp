// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file connect_routes.hpp
/// The `/ttp/connect` tree of the Synergos REST API (connection phase): collaborations, projects,
/// experiments, runs, participants, registrations (five listing shapes) and tags, with the
/// original success envelope and record shapes, and 4xx answers where the original failed with
/// 500 or silently did the wrong thing (see docs/api.md).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/core/http/metrics.hpp>
#include <synergos/core/http/router.hpp>
#include <synergos/sdk/log.hpp>
#include <synergos/sdk/storage_backend.hpp>

namespace synergos::core::rest {

/// The API version reported in every envelope.
inline constexpr const char* kApiVersion = "0.1.0";

/// The success envelope: {apiVersion, success: 1, status, method, params, data}.
nlohmann::json envelope(int status, const std::string& method, nlohmann::json params,
                        nlohmann::json data);

/// The envelope's `params`: the request's path parameters limited to the original's names
/// (collab_id, project_id, expt_id, run_id, participant_id, tag_id, alignment_id).
nlohmann::json envelope_params(const http::Request& request);

/// Fields to set in one record (a shallow merge, as a PUT does).
struct RecordPatch {
    std::string kind;
    sdk::Key key;
    nlohmann::json fields;  ///< a JSON object
};

/// Read-merge-write of connect records in the same per-record turns as the PUT routes, for
/// routes elsewhere that change a connect record (the prediction route's `predict` tags): such
/// a merge and a PUT of the same record never drop each other's fields.
class RecordMerger {
public:
    virtual ~RecordMerger() = default;
    /// Sets each patch's fields in its record and writes them all in one batch (all or
    /// nothing), holding each record's turn from its read until the commit. NotFound names the
    /// first missing record; Timeout after `timeout` (the merge may then still be applied).
    /// Call from a thread that may block, never from a turn or a write callback.
    virtual sdk::Status merge(std::vector<RecordPatch> patches, std::chrono::milliseconds timeout) = 0;
    /// Stops the routes' store writer: the group being committed ends, what is still queued
    /// and every later write get Unavailable, and its thread is joined. Call once no request is
    /// served any more and before the storage plugin stops: the writer must not outlive it.
    virtual void stop_writes() noexcept = 0;
};

/// The connect routes' store writer, for `GET /metrics`: the writes it took, and its commits
/// (a group of every write queued meanwhile, or, after a group failed, each write alone).
/// Updated by the writer thread, before it answers; read anywhere.
struct WriteMetrics {
    std::atomic<std::uint64_t> requests{0};
    http::LatencyHistogram commit_latency;

    /// Appends `synergos_rest_writes_total` and `synergos_rest_write_commit_seconds`.
    void append(std::string& out) const {
        http::append_counter(out, "synergos_rest_writes_total",
                             "Connect-route writes (POST, PUT, DELETE, merges) taken by the writer.",
                             requests.load(std::memory_order_relaxed));
        commit_latency.render(out, "synergos_rest_write_commit_seconds",
                              "One commit of the connect routes' writer, from its start until durable.");
    }
};

/// Registers every connect route on `router`. `storage` and `logger` must outlive the router.
/// Reads run inline on the server's I/O threads; writes (POST/PUT/DELETE) are asynchronous
/// routes: checked on the I/O thread, then committed by one writer thread owned by the routes
/// (every write queued meanwhile shares the commit) and answered once durable. Returns the
/// routes' merger for other routes' changes of connect records. `metrics`, when given, is kept
/// and updated by the writer.
std::shared_ptr<RecordMerger> register_connect_routes(http::Router& router,
                                                      sdk::StorageBackend& storage,
                                                      sdk::Logger& logger,
                                                      std::shared_ptr<WriteMetrics> metrics = nullptr);

}  // namespace synergos::core::rest
