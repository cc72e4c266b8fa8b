// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file mlflow_tracker.hpp
/// The `mlflow` tracking backend: writes MLflow's file-store layout (see file_store.hpp) under
/// the node's MLflow directory, so `mlflow ui --backend-store-uri <dir>` and MLflow's own
/// readers show Synergos experiments, runs, params, per-round metrics, tags and artifacts.

#include <mutex>
#include <string>
#include <vector>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/tracker.hpp>

#include "file_store.hpp"

namespace synergos::plugins::mlflow {

/// The plugin's descriptor (exported by src/plugin.cpp).
extern const sdk::PluginDescriptor kMlflowDescriptor;

/// Reads the options: `root` (default: the host's MLflow directory), `sync_metrics`, `user`
/// (default: the OS user). Throws std::invalid_argument naming the option when unusable.
StoreConfig parse_config(sdk::HostContext& host, const sdk::Options& options);

/// The tracker. Threading: every method may be called from any thread; one lock serialises
/// them (the director is the single writer of the store, so there is nothing to overlap).
/// log_params and log_metrics write every valid entry of a batch: refused ones (a key or value
/// MLflow would refuse, a param whose value would change) are named in a warning and the call
/// succeeds; when nothing could be written it fails with InvalidArgument naming them. ensure_run
/// gives each training job (tag synergos.training_job) a run of its own (FileStore::ensure_run).
/// Errors: InvalidArgument naming the key or value MLflow would refuse; NotFound for unknown
/// experiments and runs; FailedPrecondition before start() or for deleted ones; Internal with
/// the path and errno text for filesystem failures.
class MlflowTracker final : public sdk::Tracker {
public:
    MlflowTracker(sdk::HostContext& host, const sdk::Options& options);
    MlflowTracker(sdk::HostContext& host, StoreConfig config);

    sdk::Status start() noexcept override;
    sdk::Result<std::string> ensure_experiment(const std::string& name) noexcept override;
    sdk::Result<std::string> ensure_run(const std::string& experiment_id,
                                        const std::string& run_name,
                                        const sdk::StringPairs& tags) noexcept override;
    sdk::Status log_params(const std::string& run_id,
                           const sdk::StringPairs& params) noexcept override;
    sdk::Status log_metrics(const std::string& run_id,
                            const std::vector<sdk::MetricPoint>& metrics) noexcept override;
    sdk::Status set_tags(const std::string& run_id, const sdk::StringPairs& tags) noexcept override;
    sdk::Status log_artifact(const std::string& run_id, const std::string& local_path,
                             const std::string& artifact_path) noexcept override;
    sdk::Status end_run(const std::string& run_id, const std::string& status) noexcept override;
    void stop() noexcept override;

    /// The absolute store root.
    std::string root() const;

private:
    /// Runs `body` under the lock once started, turning an escaped exception into Internal.
    template <typename T, typename Body>
    T guarded(const char* operation, Body&& body) noexcept;
    /// Logs a warning naming the `refused` entries of a batch that succeeded otherwise.
    void warn_refused(const char* event, const std::string& run_id, const sdk::Status& status,
                      const std::vector<std::string>& refused);

    sdk::HostContext& host_;
    mutable std::mutex mutex_;
    FileStore store_;
    bool is_started_ = false;
};

}  // namespace synergos::plugins::mlflow
