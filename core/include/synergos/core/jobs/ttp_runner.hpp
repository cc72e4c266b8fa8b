// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file ttp_runner.hpp
/// The TTP's side of the job machinery: consumes its grid's job queue (prefetch 1, so the broker's
/// priorities decide what comes next), runs the TTP function the job names, publishes the result
/// and only then acknowledges the job. With a backend that publishes asynchronously and whose
/// consumers can change their prefetch (sdk::AsyncMessageQueue, sdk::AdjustableConsumer), the
/// result's confirm is not waited for on the job thread: when a job's work ends the limit rises
/// by one, so the broker hands over the then most urgent job at once, and when the confirm
/// comes the limit drops back just before the job is acked. Jobs overlap only in their confirm
/// wait, and the TTP never holds a job it has not started (priorities stay exact).
/// The "started" event (best effort) goes out from a helper thread, so its confirm is never waited for in series with a job; the director may see it
/// after the result, and never moves an ended attempt back to running. Failed attempts are
/// retried by republishing the job with its attempt count raised, up to the job's limit, then
/// dead-lettered with a failure result. A retry waits a pause that doubles with each attempt
/// (retry_pause, capped at retry_pause_max) on the retry thread, the failed delivery held
/// unacknowledged meanwhile (a crash redelivers it) with one more prefetch slot, so the job
/// thread goes on with the grid's other jobs; a cancel ends the wait, a stop cuts it short.
/// A second consumer on the grid's control queue delivers cancellations.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <synergos/core/jobs/job_service.hpp>
#include <synergos/core/jobs/messages.hpp>
#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/log.hpp>
#include <synergos/sdk/message_queue.hpp>
#include <synergos/sdk/ttp_function.hpp>

namespace synergos::core::jobs {

/// Looks up an aggregator plugin by (case-insensitive) name.
using AggregatorLookup = std::function<sdk::Result<sdk::Aggregator*>(const std::string&)>;

struct TtpRunnerOptions {
    int grid = 0;
    std::string ttp_id = "ttp";
    std::string outputs_dir;
    std::chrono::milliseconds publish_timeout{30000};
    std::chrono::milliseconds receive_timeout{250};
    /// A job still running this long after it started (this delivery) is stopped at its next
    /// safe point and fails for good, saying so (`jobs.job_timeout_s`). Zero: no limit.
    std::chrono::milliseconds job_timeout{std::chrono::hours(24)};
    /// Pause before the retry of a failed attempt: retry_pause after attempt 1, doubling after
    /// each further attempt, at most retry_pause_max. Zero: retried at once.
    std::chrono::milliseconds retry_pause{1000};
    std::chrono::milliseconds retry_pause_max{30000};
    /// A job's "started" event goes out this long after it starts, and not at all if the job
    /// ends first (its result says it ran): short jobs cost the broker one message less.
    std::chrono::milliseconds started_delay{20};
    Topology topology;
};

/// Submits and awaits follow-up jobs (optimize); optional.
class JobSubmitter {
public:
    virtual ~JobSubmitter() = default;
    virtual sdk::Result<std::string> submit(const nlohmann::json& job) = 0;
    virtual sdk::Result<std::string> wait(const std::string& job_id, std::chrono::milliseconds timeout) = 0;
};

class TtpRunner {
public:
    TtpRunner(sdk::MessageQueue& mq, sdk::Logger& logger, FunctionRegistry functions,
              sdk::WorkerClient* workers, AggregatorLookup aggregators, TtpRunnerOptions options,
              JobSubmitter* submitter = nullptr);
    ~TtpRunner();
    TtpRunner(const TtpRunner&) = delete;
    TtpRunner& operator=(const TtpRunner&) = delete;

    /// Declares the grid's queues and starts the job and control threads.
    sdk::Status start();
    /// Stops: a job in progress is asked to stop at its next safe point and is NOT acknowledged,
    /// so the broker redelivers it (a training job then resumes from its last checkpoint).
    void stop();

    /// Jobs finished by this runner (any outcome), for tests and metrics.
    std::uint64_t jobs_done() const;

private:
    class Ctx;
    void job_loop(std::unique_ptr<sdk::Consumer> consumer);
    void control_loop();
    void run_job(sdk::Consumer& consumer, const sdk::Delivery& delivery);
    /// Publishes a finished job's result without waiting for its confirm (see the file
    /// comment); the job is acked or requeued when the confirm or the failure comes.
    void hand_off(sdk::AsyncMessageQueue& mq, sdk::AdjustableConsumer& consumer,
                  std::uint64_t tag, ResultMessage result);
    /// Waits (bounded) until every handed-off result is settled, then stops settling on the
    /// consumer (it is about to close).
    void drain_results();
    sdk::Status publish_event(const ResultMessage& event);
    /// Hands a started event to the events thread (waits, bounded, while its backlog is full).
    void publish_started(const ResultMessage& event);
    /// Drops the job's started event if it has not gone out yet: the job has ended.
    void withdraw_started(const std::string& job_id);
    void events_loop();
    /// Stops the running job once it has run for options_.job_timeout (control thread).
    void check_job_deadline();
    bool was_cancelled(const std::string& job_id);
    void wait_backoff(std::chrono::milliseconds d);
    /// The pause before the retry that follows attempt `attempt`.
    std::chrono::milliseconds retry_pause_after(int attempt) const;
    struct PendingRetry;
    /// Holds a failed delivery until its retry pause ends (false: no room, retry at once).
    bool hold_retry(sdk::AdjustableConsumer& consumer, std::uint64_t tag, JobMessage retry,
                    ResultMessage cancelled);
    /// Publishes the held retries that are due (`all`: every one), or the cancelled result of
    /// one whose job was cancelled meanwhile; returns when to look again.
    std::chrono::steady_clock::time_point release_due(bool all);
    void release_retry(PendingRetry pending, bool cancelled);
    void retry_loop();

    sdk::MessageQueue& mq_;
    sdk::Logger& logger_;
    FunctionRegistry functions_;
    sdk::WorkerClient* workers_;
    AggregatorLookup aggregators_;
    TtpRunnerOptions options_;
    JobSubmitter* submitter_;

    std::atomic<bool> stopping_{false};
    std::thread job_thread_;
    std::thread control_thread_;
    std::thread events_thread_;
    std::mutex events_mutex_;
    std::condition_variable events_wake_;
    std::condition_variable events_done_;
    /// Started events not yet published, each with the time it is due.
    std::deque<std::pair<std::chrono::steady_clock::time_point, ResultMessage>> events_;
    /// A bounded set of keys, the oldest forgotten first. Thread-safe (a lock of its own).
    class RecentKeys {
    public:
        explicit RecentKeys(std::size_t capacity) : capacity_(capacity) {}
        void add(const std::string& key);
        bool has(const std::string& key) const;

    private:
        const std::size_t capacity_;
        mutable std::mutex mutex_;
        std::set<std::string> keys_;
        std::deque<std::string> order_;  ///< oldest first
    };

    std::mutex mutex_;
    std::condition_variable wake_;
    RecentKeys cancelled_;  ///< job ids whose cancel notice this TTP took
    std::string current_job_;
    std::atomic<bool> current_cancelled_{false};
    std::chrono::steady_clock::time_point current_started_{};  ///< guarded by mutex_
    bool current_timed_out_ = false;                           ///< guarded by mutex_

    /// Results published and not yet settled. Shared with the publish callbacks, which may run
    /// on the backend's thread after this runner is gone (past the drain's bound).
    struct Settlement;
    class ResultSettled;
    /// Deliveries (settled_key: job id and attempt) whose outcome this TTP published: one
    /// delivered again (its ack lost to a reconnect, its publish stored twice by a republish
    /// after a lost confirm) is acknowledged without running the job again. Shared with the
    /// publish callbacks.
    std::shared_ptr<RecentKeys> settled_;
    static std::string settled_key(const std::string& job_id, int attempt);
    std::shared_ptr<std::atomic<std::uint64_t>> jobs_done_;
    std::shared_ptr<Settlement> settlement_;  ///< replaced by start(), before any thread runs

    std::thread retry_thread_;
    std::mutex retry_mutex_;
    std::condition_variable retry_wake_;        ///< a retry held, a cancel taken, or stopping
    std::uint64_t cancels_taken_ = 0;           ///< under retry_mutex_: wakes the retry thread
    std::multimap<std::chrono::steady_clock::time_point, PendingRetry> retries_;  ///< by due time
};

}  // namespace synergos::core::jobs
