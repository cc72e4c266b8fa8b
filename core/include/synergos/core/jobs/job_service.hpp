// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file job_service.hpp
/// The director's side of the job machinery: submits jobs (record first, then a confirmed
/// publish to the chosen grid's queue), cancels them, and runs the archival loop that consumes
/// every TTP event and result and writes them as the single writer of the store, exactly once
/// per job id.
///
/// A transactional outbox: a submit returns once its records (state `submitting`) are durable,
/// one commit by the writer thread; the jobs are then published in order without waiting for
/// each confirm (sdk::AsyncMessageQueue: many confirms awaited together), so a submit costs one
/// commit and no broker round trip, and no job reaches a TTP without its record. A recorded job
/// whose publish did not happen (a crash, a stop past its bound) stays `submitting` and is
/// republished at start-up; one whose publish failed is marked failed by the writer.
/// The move to `queued` after the confirm is written by the writer `queued_flush_delay` later,
/// when most jobs have moved on and it writes nothing (a crash before only republishes the job
/// at start-up, a harmless duplicate); reads show such a job as `queued` meanwhile.
/// The archival loop writes every event it has in hand (up to the results prefetch) in one
/// transaction and acknowledges them after that commit.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/core/http/metrics.hpp>
#include <synergos/core/jobs/job_store.hpp>
#include <synergos/core/jobs/messages.hpp>
#include <synergos/sdk/log.hpp>
#include <synergos/sdk/message_queue.hpp>
#include <synergos/sdk/storage_backend.hpp>
#include <synergos/sdk/tracker.hpp>
#include <synergos/sdk/ttp_function.hpp>

namespace synergos::core::jobs {

/// Which TTP function handles a process (both halves); absent = module deactivated.
using FunctionRegistry = std::map<std::string, sdk::TtpFunction*>;

/// A job to submit.
struct JobSpec {
    std::string process;
    std::vector<std::string> filters;                 ///< keys as a list (original `keys`)
    nlohmann::json keys = nlohmann::json::object();   ///< keys as an object
    nlohmann::json grids = nlohmann::json::array();   ///< every grid's nodes
    nlohmann::json parameters = nlohmann::json::object();
    int grid = -1;                                    ///< -1: the service chooses
    std::string parent_job;  ///< the director-side job that submitted it; "" for requests
};

struct JobServiceOptions {
    int max_attempts = 3;
    std::chrono::milliseconds publish_timeout{30000};
    std::chrono::milliseconds receive_timeout{250};   ///< archival loop wake-up bound
    std::string outputs_dir;
    std::uint16_t results_prefetch = 32;  ///< also the most events written in one transaction
    /// How long a published job's `queued` move waits before the writer commits it (jobs that
    /// started or finished by then need no move).
    std::chrono::milliseconds queued_flush_delay{100};
    /// How long results wait for a submit's records before the writer commits them alone:
    /// sharing a commit saves an fsync, and a submit never queues behind a results-only commit.
    std::chrono::milliseconds events_flush_delay{2};
    Topology topology;
    /// Processes the director runs itself instead of publishing them to a grid (their function
    /// only submits and awaits other jobs, so it must not hold a grid's TTP): `optimize`.
    std::set<std::string> director_processes{"optimize"};
    /// The queue keeps nothing across a restart (the in-process `memory` backend of a
    /// standalone director): start() then publishes every unfinished job again, not only those
    /// left `submitting`, and stop() archives the results already queued.
    bool volatile_queue = false;
};

/// The grid recorded for a job the director runs itself.
inline constexpr int kDirectorGrid = -1;

class JobService {
public:
    JobService(sdk::StorageBackend& storage, sdk::MessageQueue& mq, sdk::Logger& logger,
               FunctionRegistry functions, sdk::Tracker* tracker, JobServiceOptions options);
    ~JobService();
    JobService(const JobService&) = delete;
    JobService& operator=(const JobService&) = delete;

    /// Declares the shared queues, republishes jobs left in `submitting` by a crash, and starts
    /// the archival thread.
    sdk::Status start();
    /// Stops the archival thread (finishing the message in hand).
    void stop();

    /// Submits jobs: returns once their records are durable (one commit); they are then
    /// published (see the file comment) and read as queued from the start. A job whose publish fails (after the backend's own reconnecting,
    /// bounded by publish_timeout) is marked failed with the reason.
    sdk::Result<std::vector<JobRecord>> submit(std::vector<JobSpec> specs);

    /// Cancels a job: a queued job is dropped (its TTP discards it on delivery), a running one is
    /// told to stop at its next safe point. Cancelling a finished job is FailedPrecondition.
    sdk::Result<JobRecord> cancel(const std::string& job_id);

    /// A job with its reason brought up to date (why it is still queued: no TTP for its grid,
    /// or its place in line; a running job whose grid has no TTP says so).
    sdk::Result<JobRecord> get(const std::string& job_id);
    /// Jobs with their reasons brought up to date as get() does, without the place in line
    /// (a queued job without a reason reads `waiting on grid <g>`); `explained` false: as
    /// stored, with no broker query (states only).
    sdk::Result<std::vector<JobRecord>> list(const JobFilter& filter, bool explained = true);
    /// Brings `jobs`' reasons up to date for an answer (`rank`: with each queued job's place in
    /// line, as get()), e.g. the jobs a submit returned; one broker query per grid.
    void explain(std::vector<JobRecord>& jobs, bool rank = true);

    /// Waits until the job is terminal or `timeout` passes; returns it as it is then.
    sdk::Result<JobRecord> wait(const std::string& job_id, std::chrono::milliseconds timeout);

    /// Whether a process has an active function on this director.
    bool has_function(const std::string& process) const { return functions_.count(process) != 0; }

    /// Whether jobs of a process run on the director (a director-side job) rather than a TTP.
    bool runs_on_director(const std::string& process) const {
        return options_.director_processes.count(process) != 0 && has_function(process);
    }

    JobStore& store() { return store_; }

    /// Appends the service's metrics (Prometheus text, for `GET /metrics`): jobs submitted,
    /// queue deliveries written (started events, progress, results), and the writer's commits
    /// with their latency. Any thread.
    void append_metrics(std::string& out) const;

private:
    class ArchiveCtx;
    /// The director-side job that submitted `job` ("" for a request's job).
    static std::string submitted_by(const JobRecord& job);
    /// A running job whose user asked to cancel it (its reason says so until it stops).
    static bool cancel_pending(const JobRecord& job);
    /// At start: a job whose cancel was pending when the process stopped ends cancelled.
    void end_cancelled_at_start(const std::string& job_id,
                                const std::string& reason =
                                    "cancelled: the director restarted before the job reached a safe point");
    /// Publishes the cancel notice for `job` to its grid's TTPs.
    sdk::Status send_cancel(const JobRecord& job);
    /// send_cancel, logging the outcome (the archival thread's best effort).
    void resend_cancel(const JobRecord& job);
    /// Cancels those of a director-side job's follow-ups that have not finished.
    void cancel_unfinished(const std::vector<std::string>& follow_ups);
    class DirectorCtx;
    class ReadLog;
    struct EventPlan;
    void archival_loop();
    /// Writes `deliveries` in as few transactions as possible, then acks them.
    void handle_deliveries(sdk::Consumer& consumer, const std::vector<sdk::Delivery>& deliveries);
    /// What `event` does to its job as `batch` sees it (nothing written yet). With
    /// `archive_refused`, a success is not archived: the job fails with that reason.
    sdk::Result<EventPlan> plan_event(JobStore::Batch& batch, const ResultMessage& event,
                                      sdk::ArchiveContext& ctx,
                                      const std::string* archive_refused = nullptr);
    /// The steps after a result's archival committed: the function's after_archive for a
    /// success, its JobEndObserver (if it is one) for a job that failed or was cancelled.
    void after_archived(const JobRecord& job, const ResultMessage& event);
    struct RecordTask;
    struct EventTask;
    /// `queued` moves of published jobs, added to `batch` (jobs that moved on are skipped).
    void add_queued_moves(JobStore::Batch& batch, const std::vector<std::string>& ids);
    /// After these moves were committed, or dropped after a failed commit (the job then stays
    /// `submitting` and is republished at the next start): reads no longer overlay them.
    void queued_moves_done(const std::vector<std::string>& ids);
    /// The writer thread, the store's one writer for the job machinery: submits' records, the
    /// pending `queued` moves and the archival's events, one commit a pass (group commit).
    void writer_loop();
    void write(const std::vector<std::shared_ptr<RecordTask>>& tasks, const std::vector<std::string>& moves,
               const std::vector<std::shared_ptr<EventTask>>& event_tasks,
               const std::vector<std::pair<std::string, std::string>>& failures);
    /// Jobs whose publish failed (still `submitting`) become failed with the reason.
    void add_publish_failures(JobStore::Batch& batch,
                              const std::vector<std::pair<std::string, std::string>>& failures);
    static bool mark_publish_failed(JobRecord& job, const std::string& reason);
    /// Hands `jobs`' records to the writer (or commits them here when it is not running).
    std::shared_ptr<RecordTask> record_async(std::vector<JobRecord> jobs);
    /// Waits, bounded, for the records' commit.
    sdk::Status await_recorded(const std::shared_ptr<RecordTask>& task);
    /// A job published but still recorded as `submitting` reads as `queued`.
    void overlay_published(JobRecord& job);
    /// Runs a director-side job on its own thread: its function's `execute` with a context whose
    /// submit_job/wait_job go straight to this service, then archival as for any result.
    void launch_on_director(const JobRecord& job);
    void run_on_director(const std::string& job_id);
    bool director_job_cancelled(const std::string& job_id);
    void handle_delivery(sdk::Consumer& consumer, const sdk::Delivery& delivery);
    sdk::Status handle_event(const ResultMessage& event);
    int choose_grid(const JobSpec& spec, std::map<int, int>& outstanding);
    sdk::Result<std::vector<JobRecord>> list_jobs(const JobFilter& filter, bool explained);
    static sdk::Message job_message(const JobRecord& job);
    sdk::Status publish_job(const JobRecord& job);
    sdk::Status declare_grid(int grid);
    struct PublishLedger;
    class JobPublished;
    /// Publishes recorded jobs in order, with their confirms awaited together (asynchronous
    /// backends) or one at a time.
    void post(const std::vector<JobRecord>& jobs);
    /// A publish ended: the job's `queued` move is due, or its failure is, for the writer.
    void published(const std::string& job_id, int grid, const sdk::Status& st);
    void notify_changed();

    sdk::StorageBackend& storage_;
    sdk::MessageQueue& mq_;
    sdk::Logger& logger_;
    FunctionRegistry functions_;
    sdk::Tracker* tracker_;
    JobServiceOptions options_;
    JobStore store_;
    std::shared_ptr<PublishLedger> ledger_;  ///< publishes in flight (see post)

    std::atomic<bool> stopping_{false};
    /// The archival thread's pause before a deferred result comes back (its own: one thread).
    std::chrono::milliseconds archival_pause_{500};
    std::atomic<std::uint64_t> submitted_total_{0};
    std::atomic<std::uint64_t> events_total_{0};
    http::LatencyHistogram commit_latency_;  ///< one per writer transaction round
    std::thread archival_;
    std::mutex placement_mutex_;  ///< count-then-insert of submits placed by load
    std::mutex changed_mutex_;
    std::condition_variable changed_;
    std::uint64_t change_counter_ = 0;
    std::mutex grids_mutex_;
    std::map<int, bool> declared_grids_;
    // The writer thread's work, guarded by moves_mutex_. Published jobs whose move to `queued`
    // is not durable yet (moves_pending_: not yet taken by a commit; published_: until a commit
    // wrote it); submits' records and the archival's deliveries to write.
    std::mutex moves_mutex_;
    std::condition_variable moves_cv_;     ///< work for the writer
    std::condition_variable recorded_cv_;  ///< a record task finished
    std::vector<std::string> moves_pending_;
    std::chrono::steady_clock::time_point moves_since_;  ///< when moves_pending_ became non-empty
    std::chrono::steady_clock::time_point events_since_;  ///< when event_tasks_ became non-empty
    std::set<std::string> published_;
    std::vector<std::pair<std::string, std::string>> publish_failures_;  ///< job id, reason
    std::deque<std::shared_ptr<RecordTask>> record_tasks_;
    std::deque<std::shared_ptr<EventTask>> event_tasks_;
    bool writer_running_ = false;
    bool writer_stop_ = false;
    std::thread writer_;
    std::mutex director_mutex_;
    /// Threads of director-side jobs, each with a flag it sets when it ends: finished ones are
    /// joined when the next one starts (a long-lived director runs many searches).
    std::vector<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>> director_threads_;
    std::set<std::string> director_cancelled_;
};

}  // namespace synergos::core::jobs
