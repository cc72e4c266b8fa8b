// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file tracker.hpp
/// Plugin kind `tracking`: experiment tracking (MLflow file store, or another tracker).

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::sdk {

/// One metric point.
struct MetricPoint {
    std::string key;
    double value = 0.0;
    std::int64_t step = 0;
    std::int64_t timestamp_ms = 0;
};

/// Name/value pairs (params and tags).
using StringPairs = std::vector<std::pair<std::string, std::string>>;

/// The tracker. Every call is idempotent where the name says "ensure".
/// Threading: calls may come from any thread; the plugin serialises internally.
class BOOST_SYMBOL_VISIBLE Tracker : public PluginObject {
public:
    virtual Status start() noexcept = 0;
    /// Returns the id of the experiment with this name, creating it when missing.
    virtual Result<std::string> ensure_experiment(const std::string& name) noexcept = 0;
    /// Returns the id of the run with this name in the experiment, creating it when missing.
    virtual Result<std::string> ensure_run(const std::string& experiment_id,
                                           const std::string& run_name,
                                           const StringPairs& tags) noexcept = 0;
    virtual Status log_params(const std::string& run_id, const StringPairs& params) noexcept = 0;
    virtual Status log_metrics(const std::string& run_id,
                               const std::vector<MetricPoint>& metrics) noexcept = 0;
    virtual Status set_tags(const std::string& run_id, const StringPairs& tags) noexcept = 0;
    /// Copies a local file or directory into the run's artifacts under `artifact_path`.
    virtual Status log_artifact(const std::string& run_id, const std::string& local_path,
                                const std::string& artifact_path) noexcept = 0;
    /// Marks the run finished ("FINISHED", "FAILED", "KILLED").
    virtual Status end_run(const std::string& run_id, const std::string& status) noexcept = 0;
    virtual void stop() noexcept = 0;
};

}  // namespace synergos::sdk
