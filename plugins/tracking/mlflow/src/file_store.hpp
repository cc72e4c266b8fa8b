// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file file_store.hpp
/// MLflow's FileStore layout (mlflow/store/tracking/file_store.py), written natively:
///
///   <root>/.trash/                          deleted experiments
///   <root>/<experiment id>/meta.yaml        artifact_location, creation_time, experiment_id,
///                                           last_update_time, lifecycle_stage, name
///   <root>/<experiment id>/<run id>/meta.yaml   run info, `status` as MLflow's int enum
///   .../<run id>/metrics/<key>              lines "<timestamp ms> <value> <step>"
///   .../<run id>/params/<key>               the value, no newline
///   .../<run id>/tags/<key>                 the value, no newline (mlflow.runName, ...)
///   .../<run id>/artifacts/...              copied files
///
/// Keys containing "/" become sub-folders, as in MLflow. Experiment "0" is "Default". New
/// experiment ids are increasing integers; run ids are 32 hex characters (uuid4).
///
/// Crash safety: meta.yaml, params and tags are replaced through a temporary file, fsync and
/// rename; a new run's meta.yaml is written last, so a run interrupted while being created has
/// no meta.yaml and is skipped by MLflow and by this store. Metric lines are appended with one
/// O_APPEND write per key and call and fsynced before the call returns when `sync_metrics` is
/// set; an append that fails is cut back off the file, and a torn last line left by a crash is
/// cut off before the next append to that file.
///
/// Threading: not synchronised; the tracker serialises every call.

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <synergos/sdk/status.hpp>
#include <synergos/sdk/tracker.hpp>

#include "file_ops.hpp"

namespace synergos::plugins::mlflow {

/// MLflow's RunStatus enum as stored in meta.yaml.
enum class RunStatus : std::uint8_t { Running = 1, Scheduled, Finished, Failed, Killed };

/// MLflow's SourceType.LOCAL, what the file store records for every run.
inline constexpr int kSourceTypeLocal = 4;

/// Tags that make runs of one name attempts (see FileStore::ensure_run): the id of the training
/// job a run belongs to, and the run's attempt number (1, 2, ...).
inline constexpr const char* kTrainingJobTag = "synergos.training_job";
inline constexpr const char* kAttemptTag = "synergos.attempt";

/// Parses "RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED".
std::optional<RunStatus> parse_run_status(const std::string& text);

struct StoreConfig {
    std::filesystem::path root;  ///< made absolute by the store
    bool sync_metrics = true;    ///< fsync metric files before log_metrics returns
    std::string user;            ///< user_id of new runs
};

/// The run fields of meta.yaml.
struct RunMeta {
    std::string run_id;
    std::string experiment_id;
    std::string run_name;
    std::string artifact_uri;
    std::string user_id;
    std::string lifecycle_stage = "active";
    std::string source_name;
    std::string entry_point_name;
    std::string source_version;
    int source_type = kSourceTypeLocal;
    int status = static_cast<int>(RunStatus::Running);
    std::optional<std::int64_t> start_time;
    std::optional<std::int64_t> end_time;
    std::optional<std::int64_t> deleted_time;
    /// Other top-level keys of a meta.yaml written by a newer MLflow, kept as rendered YAML.
    std::map<std::string, std::string> extra;
};

/// The experiment fields of meta.yaml.
struct ExperimentMeta {
    std::string experiment_id;
    std::string name;
    std::string artifact_location;
    std::string lifecycle_stage = "active";
    std::int64_t creation_time = 0;
    std::int64_t last_update_time = 0;
};

/// Renders meta.yaml texts (keys sorted, as MLflow's `yaml.safe_dump` writes them).
std::string render_run_meta(const RunMeta& meta);
std::string render_experiment_meta(const ExperimentMeta& meta);

/// Parses meta.yaml texts. Errors: Internal naming `where` when the YAML is malformed or a
/// required field is missing.
sdk::Result<RunMeta> parse_run_meta(const std::string& text, const std::string& where);
sdk::Result<ExperimentMeta> parse_experiment_meta(const std::string& text,
                                                  const std::string& where);

class FileStore {
public:
    explicit FileStore(StoreConfig config);

    /// Creates the root, the Default experiment "0" and ".trash" when missing, and reads the
    /// experiments. Errors name the root.
    sdk::Status open();

    const std::filesystem::path& root() const { return root_; }

    sdk::Result<std::string> ensure_experiment(const std::string& name);

    /// Several runs may share a name; each is an attempt (tag synergos.attempt, 1 when
    /// missing) and the current one is the highest attempt (the earliest started on a tie).
    /// Without a synergos.training_job tag in `tags`: the current run, created when there is
    /// none. With one (a training job's id): the run of that training job if there is one (a
    /// resumed or redelivered job keeps its run); else the current run when it holds no params,
    /// no metrics and no other training job (it is adopted); else a new run of the same name
    /// with the next attempt number, so a new training never mixes its params and metrics with
    /// an earlier one's. The caller's tags are written on the run returned; with a training
    /// job, a run returned that was ended (end_run) is RUNNING again with no end_time. An empty
    /// synergos.training_job is refused (InvalidArgument).
    sdk::Result<std::string> ensure_run(const std::string& experiment_id,
                                        const std::string& run_name, const sdk::StringPairs& tags);

    /// Batch calls write every valid entry; each refused one (bad key or value, a param whose
    /// value would change, a key conflicting with another's folder) is skipped and described in
    /// `refused`, naming it. When entries were refused and nothing was written, the call
    /// returns InvalidArgument with those descriptions (an error means nothing changed).
    /// Filesystem errors return at once.
    sdk::Status log_params(const std::string& run_id, const sdk::StringPairs& params,
                           std::vector<std::string>& refused);
    sdk::Status log_metrics(const std::string& run_id,
                            const std::vector<sdk::MetricPoint>& metrics,
                            std::vector<std::string>& refused);
    sdk::Status set_tags(const std::string& run_id, const sdk::StringPairs& tags);
    sdk::Status log_artifact(const std::string& run_id, const std::string& local_path,
                             const std::string& artifact_path);
    sdk::Status end_run(const std::string& run_id, const std::string& status);

private:
    /// A run known to the store; `meta` is refreshed when meta.yaml changes on disk.
    struct RunEntry {
        std::filesystem::path dir;
        RunMeta meta;
        std::filesystem::file_time_type meta_mtime;
    };

    sdk::Status scan_experiments();
    void remove_abandoned_experiment_dirs();
    sdk::Result<ExperimentMeta> load_experiment(const std::string& experiment_id);
    sdk::Result<RunEntry*> find_run(const std::string& run_id);
    sdk::Result<RunEntry*> find_active_run(const std::string& run_id);

    /// An active run of a given name, with what ensure_run weighs.
    struct NamedRun {
        std::string run_id;
        std::int64_t start_time = 0;
        std::int64_t attempt = 1;
        std::string training_job;
    };
    /// The active runs of this name in the experiment, current first (see ensure_run).
    std::vector<NamedRun> runs_named(const std::string& experiment_id,
                                     const std::string& run_name);
    sdk::Result<std::string> create_run(const std::string& experiment_id,
                                        const ExperimentMeta& experiment,
                                        const std::string& run_name, const sdk::StringPairs& tags);
    sdk::Status write_run_meta(RunEntry& entry);
    sdk::Status create_experiment_dir(const std::string& id, const std::string& name,
                                      std::int64_t now_ms);
    sdk::Status write_tags(RunEntry& entry, const sdk::StringPairs& tags);

    std::filesystem::path root_;
    bool sync_metrics_;
    std::string user_;
    /// `<root>/.synergos-lock`: held from looking a name up to creating it (ensure_experiment,
    /// ensure_run), so processes sharing the root (a director and its TTPs on one volume) never
    /// create the same experiment or run twice. MLflow ignores files in the root.
    FileLock name_lock_;

    std::map<std::string, std::string> experiment_by_name_;  ///< active experiments
    std::set<std::string> deleted_names_;                    ///< experiments in .trash
    std::map<std::pair<std::string, std::string>, std::string> run_by_name_;
    std::map<std::string, RunEntry> runs_;
    std::set<std::string> checked_metric_files_;  ///< torn-tail check done this process
};

}  // namespace synergos::plugins::mlflow
