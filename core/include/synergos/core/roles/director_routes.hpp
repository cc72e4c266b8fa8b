// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file director_routes.hpp
/// The director's job-making routes: `/ttp/train` (alignments, models) and `/ttp/evaluate`
/// (validations, predictions) of the Synergos API, and the job routes added by this project
/// (`/v1/jobs`). A POST turns the request into one job per federated combination (as the
/// original) through the job service and answers at once with the envelope, `data: []` and the
/// created jobs under `jobs`; the matching GET returns the archived records (404 until there are
/// any), so the original clients' POST-then-poll pattern keeps working.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <synergos/core/http/router.hpp>
#include <synergos/core/jobs/job_service.hpp>
#include <synergos/core/rest/connect_routes.hpp>
#include <synergos/sdk/log.hpp>
#include <synergos/sdk/model.hpp>
#include <synergos/sdk/storage_backend.hpp>

namespace synergos::core::roles {

struct DirectorRoutesDeps {
    sdk::StorageBackend& storage;
    jobs::JobService& jobs;
    sdk::Logger& logger;
    /// When set, architectures and run arguments are checked at POST time (422 naming the item).
    sdk::ModelBackend* model = nullptr;
    /// The connect routes' merger (register_connect_routes; required): the prediction route's
    /// tag update takes the tags' turns with the PUT routes.
    std::shared_ptr<rest::RecordMerger> merger = nullptr;
};

/// Registers the train, evaluate and job routes. Everything in `deps` must outlive the router;
/// throws std::invalid_argument without `deps.merger`.
void register_director_routes(http::Router& router, DirectorRoutesDeps deps);

/// Parses `a=1&b=x%20y` into a map (later keys win); malformed escapes are kept verbatim.
/// `repeated` (optional) receives the first key given more than once (the last value is kept).
std::map<std::string, std::string> parse_query(std::string_view query, std::string* repeated = nullptr);

/// A job listing's query filters into `out`, or the 400 naming the parameter that is unknown
/// (not in `known`: a misspelt `?status=failed` would list every job), empty (`?state=` did),
/// given twice (`?state=a&state=b` is not "either"), or a `state` that no job has.
std::optional<http::Response> parse_filters(std::string_view query, const std::vector<std::string>& known,
                                            std::map<std::string, std::string>& out);

}  // namespace synergos::core::roles
