// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file connect_routes.hpp
/// The `/ttp/connect` tree of the Synergos REST API (connection phase): collaborations, projects,
/// experiments, runs, participants, registrations (five listing shapes) and tags, with the
/// original success envelope and record shapes, and 4xx answers where the original failed with
/// 500 or silently did the wrong thing (see docs/api.md).

#include <string>

#include <nlohmann/json.hpp>

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

/// Registers every connect route on `router`. `storage` and `logger` must outlive the router.
/// Reads run inline on the server's I/O threads; writes (POST/PUT/DELETE) are asynchronous
/// routes: checked on the I/O thread, then committed by one writer thread owned by the routes
/// (every write queued meanwhile shares the commit) and answered once durable.
void register_connect_routes(http::Router& router, sdk::StorageBackend& storage,
                             sdk::Logger& logger);

}  // namespace synergos::core::rest
