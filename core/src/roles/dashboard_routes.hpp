// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file dashboard_routes.hpp
/// The director's web dashboard: the built front end (dashboard/, `npm run build`) served as
/// static files at `/` and `/assets/{file}`, and read-only JSON routes the pages need that the
/// Synergos API lacks (`/v1/dashboard/cluster`, `/v1/dashboard/jobs`, `/v1/dashboard/jobs/{id}`,
/// `/v1/dashboard/tree`). Nothing here writes to the store; cancelling uses `/v1/jobs`.

#include <string>
#include <vector>

#include <synergos/core/http/client.hpp>
#include <synergos/core/http/router.hpp>
#include <synergos/core/jobs/job_service.hpp>
#include <synergos/core/jobs/messages.hpp>
#include <synergos/sdk/log.hpp>
#include <synergos/sdk/message_queue.hpp>
#include <synergos/sdk/storage_backend.hpp>

namespace synergos::core::roles {

struct DashboardRoutesDeps {
    sdk::StorageBackend& storage;
    jobs::JobService& jobs;
    sdk::Logger& logger;
    /// Folder holding index.html and assets/; empty or missing: `/` answers 404 saying where
    /// the dashboard was looked for.
    std::string static_dir;
    /// The node's outputs folder: in a standalone director it is the embedded TTP's too, so a
    /// running job's per-round checkpoints (every participant's loss) are read from it.
    std::string outputs_dir;
    /// The node's MLflow file store (to name the MLflow run of a job); may be empty.
    std::string mlflow_dir;
    /// Base URL of an MLflow UI over that store (links); empty: $SYNERGOS_MLFLOW_UI_URL, else
    /// ids only, no link.
    std::string mlflow_ui_url;
    /// The job queue, when set: the cluster page counts the TTPs consuming each grid's queue
    /// (only for grids that have had jobs, so no queue is probed before it exists).
    sdk::MessageQueue* mq = nullptr;
    jobs::Topology topology{};
    /// How the TTP reaches workers (TLS, token); the health checks use the same, so secured
    /// workers answer them. Null: plain HTTP without a token.
    const http::ClientOptions* worker_client = nullptr;
};

/// The folders searched for the built dashboard, in order: $SYNERGOS_DASHBOARD_DIR, then
/// `<executable>/../share/synergos/dashboard` (a relocated install), the configured install
/// prefix, and the build tree. `find_dashboard_dir` returns the first holding index.html, or "".
std::vector<std::string> dashboard_dir_candidates();
std::string find_dashboard_dir();

/// Registers the static files and the `/v1/dashboard/...` routes. `deps` must outlive the router.
void register_dashboard_routes(http::Router& router, DashboardRoutesDeps deps);

/// Content type for a file name by extension (`application/octet-stream` when unknown).
std::string content_type_for(const std::string& file_name);

/// True when `name` is a plain file name under assets/: 1-255 of [A-Za-z0-9._-], not starting
/// with '.' (so never `.`, `..` or a hidden file, and never a path).
bool is_safe_asset_name(const std::string& name);

}  // namespace synergos::core::roles
