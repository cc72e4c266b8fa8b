// SPDX-License-Identifier: Apache-2.0
#include "synergos/core/jobs/ttp_runner.hpp"

#include <algorithm>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "synergos/core/jobs/tensor_files.hpp"
#include "synergos/core/jobs/worker_calls.hpp"

namespace synergos::core::jobs {

using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t kCancelledMemory = 10000;
/// Deliveries remembered as settled (TtpRunner::settled_); the oldest is forgotten first.
constexpr std::size_t kSettledMemory = 10000;
constexpr std::size_t kMaxPendingStarted = 64;
/// Results awaiting their confirm at once; each holds one more prefetch slot.
constexpr std::size_t kResultWindow = 8;
/// Failed deliveries held through their retry pause at once; each holds one more prefetch slot.
constexpr std::size_t kMaxHeldRetries = 32;

/// Used when a TTP has no worker client (tests of the machinery with fixture functions).
class NoWorkers final : public sdk::WorkerClient {
public:
    sdk::Result<sdk::WorkerReply> call(const sdk::GridNode& node, const sdk::WorkerRequest&) noexcept override {
        return sdk::Error{sdk::ErrorCode::Unavailable,
                          "no worker client on this TTP (cannot reach '" + node.participant_id + "')"};
    }
    void call_all(const std::vector<sdk::GridNode>& nodes, const std::vector<sdk::WorkerRequest>& requests,
                  sdk::ReplyVisitor& visitor) noexcept override {
        for (std::size_t i = 0; i < nodes.size() && i < requests.size(); ++i) {
            visitor.on_reply(i, call(nodes[i], requests[i]));
        }
    }
};

bool is_retryable(sdk::ErrorCode code) {
    return code == sdk::ErrorCode::Unavailable || code == sdk::ErrorCode::Timeout ||
           code == sdk::ErrorCode::Internal;
}

/// Reads one grid's nodes from the job's `grids` (registration node blocks as the director
/// builds them: {participant_id, host, port} with the original's `rest`/`keys` blocks accepted).
sdk::Result<std::vector<sdk::GridNode>> grid_nodes(const JobMessage& job) {
    if (!job.grids.is_array() || job.grid >= static_cast<int>(job.grids.size())) {
        return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                          "TTP for grid " + std::to_string(job.grid) +
                              " has no node in this job's registrations (they define " +
                              std::to_string(job.grids.is_array() ? job.grids.size() : 0) + " grids)"};
    }
    const json& grid = job.grids[static_cast<std::size_t>(job.grid)];
    if (!grid.is_array()) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, "job field 'grids[" + std::to_string(job.grid) +
                                                               "]' must be an array of nodes"};
    }
    std::vector<sdk::GridNode> nodes;
    for (const json& n : grid) {
        if (!n.is_object()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, "a node of grid " + std::to_string(job.grid) +
                                                                   " is not an object"};
        }
        sdk::GridNode node;
        if (n.contains("participant_id") && n["participant_id"].is_string()) {
            node.participant_id = n["participant_id"].get<std::string>();
        } else if (n.contains("keys") && n["keys"].is_object()) {
            const json& keys = n["keys"];
            if (keys.contains("participant_id") && keys["participant_id"].is_string()) {
                node.participant_id = keys["participant_id"].get<std::string>();
            }
        }
        const json& rest = n.contains("rest") && n["rest"].is_object() ? n["rest"] : n;
        if (rest.contains("host") && rest["host"].is_string()) {
            node.host = rest["host"].get<std::string>();
        }
        if (rest.contains("port") && rest["port"].is_number_integer()) {
            node.port = rest["port"].get<int>();
        }
        if (node.participant_id.empty() || node.host.empty() || node.port <= 0 || node.port > 65535) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              "a node of grid " + std::to_string(job.grid) +
                                  " lacks participant_id, host or a valid port"};
        }
        nodes.push_back(std::move(node));
    }
    return nodes;
}

/// A job's view of the TTP's worker client: its calls are given up once the job is cancelled,
/// runs past its limit, or the TTP stops. A frozen worker (its connections open, no answer)
/// used to hold the job, its cancel and the TTP's stop until the call's own timeout (a
/// training round's: an hour by default).
class JobWorkers final : public sdk::WorkerClient {
public:
    JobWorkers(StoppableWorkerClient& client, StoppableWorkerClient::StopCheck stop)
        : client_(client), stop_(std::move(stop)) {}
    sdk::Result<sdk::WorkerReply> call(const sdk::GridNode& node, const sdk::WorkerRequest& request) noexcept override {
        return client_.call(node, request, stop_for_call());
    }
    void call_all(const std::vector<sdk::GridNode>& nodes, const std::vector<sdk::WorkerRequest>& requests,
                  sdk::ReplyVisitor& visitor) noexcept override {
        client_.call_all(nodes, requests, visitor, stop_for_call());
    }

private:
    /// Calls made once the job is stopping are its clean-up (asking the workers to drop the
    /// run): they run to their own (short) timeouts instead of being given up at once.
    const StoppableWorkerClient::StopCheck& stop_for_call() const {
        static const StoppableWorkerClient::StopCheck none;
        try {
            return stop_ && stop_() ? none : stop_;
        } catch (const std::exception&) {
            return none;
        }
    }

    StoppableWorkerClient& client_;
    const StoppableWorkerClient::StopCheck stop_;
};

}  // namespace

class TtpRunner::Ctx final : public sdk::JobContext {
public:
    Ctx(TtpRunner& r, const JobMessage& job, std::vector<sdk::GridNode> nodes)
        : r_(r), job_(job), nodes_(std::move(nodes)) {
        if (auto* stoppable = dynamic_cast<StoppableWorkerClient*>(r_.workers_)) {
            stoppable_.emplace(*stoppable, [this] { return is_cancelled(); });
        }
    }

    sdk::Logger& logger() noexcept override { return r_.logger_; }
    const std::string& job_id() const noexcept override { return job_.job_id; }
    int grid() const noexcept override { return job_.grid; }
    const std::vector<sdk::GridNode>& nodes() const noexcept override { return nodes_; }
    std::string outputs_dir() const override { return r_.options_.outputs_dir; }
    bool is_cancelled() const noexcept override { return r_.current_cancelled_ || r_.stopping_; }
    void report_progress(std::string_view progress_json) noexcept override {
        ResultMessage e;
        e.type = EventType::Progress;
        e.job_id = job_.job_id;
        e.process = job_.process;
        e.filters = job_.keys;
        e.grid = job_.grid;
        e.attempt = job_.attempt;
        e.ttp_id = r_.options_.ttp_id;
        e.progress = json::parse(progress_json, nullptr, false);
        if (e.progress.is_discarded()) {
            e.progress = json{{"message", std::string(progress_json)}};
        }
        // Progress is best effort: a lost progress record never fails the job.
        (void)r_.publish_event(e);
    }
    sdk::WorkerClient& workers() noexcept override {
        if (stoppable_) {
            return *stoppable_;
        }
        return r_.workers_ ? *r_.workers_ : no_workers_;
    }
    sdk::Result<sdk::Aggregator*> aggregator(const std::string& name) noexcept override {
        if (!r_.aggregators_) {
            return sdk::Error{sdk::ErrorCode::Unimplemented, "no aggregator plugins are active on this TTP"};
        }
        return r_.aggregators_(name);
    }
    sdk::Result<std::string> submit_job(std::string_view job_json) noexcept override {
        if (!r_.submitter_) {
            return sdk::Error{sdk::ErrorCode::Unimplemented, "this TTP cannot submit follow-up jobs"};
        }
        json j = json::parse(job_json, nullptr, false);
        if (j.is_discarded()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, "follow-up job is not valid JSON"};
        }
        return r_.submitter_->submit(j);
    }
    sdk::Result<std::string> wait_job(const std::string& job_id, std::chrono::milliseconds timeout) noexcept override {
        if (!r_.submitter_) {
            return sdk::Error{sdk::ErrorCode::Unimplemented, "this TTP cannot wait for follow-up jobs"};
        }
        return r_.submitter_->wait(job_id, timeout);
    }
    sdk::Status write_tensors(const std::string& path, const sdk::TensorMap& tensors,
                              std::string_view metadata) noexcept override {
        try {
            return write_tensor_file(path, tensors, metadata);
        } catch (const std::exception& e) {
            return {sdk::ErrorCode::Internal, std::string("writing '") + path + "' failed: " + e.what()};
        }
    }
    sdk::Status write_file(const std::string& path, std::string_view content) noexcept override {
        try {
            return write_file_atomic(path, content);
        } catch (const std::exception& e) {
            return {sdk::ErrorCode::Internal, std::string("writing '") + path + "' failed: " + e.what()};
        }
    }
    sdk::Result<sdk::TensorMap> read_tensors(const std::string& path) noexcept override {
        try {
            return read_tensor_file(path);
        } catch (const std::exception& e) {
            return sdk::Error{sdk::ErrorCode::Internal, std::string("reading '") + path + "' failed: " + e.what()};
        }
    }

private:
    TtpRunner& r_;
    const JobMessage& job_;
    std::vector<sdk::GridNode> nodes_;
    NoWorkers no_workers_;
    std::optional<JobWorkers> stoppable_;
};

void TtpRunner::RecentKeys::add(const std::string& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (keys_.insert(key).second) {
        order_.push_back(key);
        if (order_.size() > capacity_) {
            keys_.erase(order_.front());
            order_.pop_front();
        }
    }
}

bool TtpRunner::RecentKeys::has(const std::string& key) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return keys_.count(key) != 0;
}

std::string TtpRunner::settled_key(const std::string& job_id, int attempt) {
    return job_id + '\n' + std::to_string(attempt);
}

struct TtpRunner::Settlement {
    std::mutex mutex;
    std::condition_variable settled;
    std::size_t in_flight = 0;                    ///< results published, not yet settled
    std::size_t held = 0;                         ///< failed deliveries waiting out a retry pause
    sdk::AdjustableConsumer* consumer = nullptr;  ///< null once the job consumer is closing
    std::shared_ptr<std::atomic<std::uint64_t>> jobs_done;  ///< the runner's, across runs
    std::shared_ptr<RecentKeys> outcomes_out;               ///< the runner's settled_

    /// The job consumer's prefetch: the job being run, plus a slot per result awaiting its
    /// confirm and per failed delivery held through its retry pause. Under `mutex`.
    std::uint16_t window() const { return static_cast<std::uint16_t>(1 + in_flight + held); }
};

/// Settles one job when its result's publish ends: the prefetch drops back first, then the
/// job is acked (confirmed) or requeued (failed). Runs on the backend's thread.
class TtpRunner::ResultSettled final : public sdk::PublishCallback {
public:
    /// `finishes`: the publish ends the job on this TTP (a result), not a retry's republish.
    ResultSettled(std::shared_ptr<Settlement> s, sdk::Logger& logger, std::uint64_t tag,
                  std::string job_id, int attempt, std::string outcome, bool finishes = true)
        : s_(std::move(s)), logger_(logger), tag_(tag), job_id_(std::move(job_id)),
          attempt_(attempt), outcome_(std::move(outcome)), finishes_(finishes) {}

    void on_published(sdk::Status status) noexcept override {
        {
            std::lock_guard<std::mutex> lock(s_->mutex);
            --s_->in_flight;
            if (s_->consumer != nullptr) {
                // Lowered before the ack, in this order on the consumer: the slot the ack frees
                // stays shut, so no job arrives that the job thread would hold unstarted.
                (void)s_->consumer->set_prefetch(s_->window());
                if (status) {
                    s_->outcomes_out->add(settled_key(job_id_, attempt_));
                    (void)s_->consumer->ack(tag_);
                    if (finishes_) {
                        ++*s_->jobs_done;
                    }
                } else {
                    (void)s_->consumer->reject(tag_, true);
                }
            }
            s_->settled.notify_all();
        }
        try {
            if (status && !finishes_) {
                logger_.info("job published again for its retry", log_fields({{"job_id", job_id_}}));
            } else if (status) {
                logger_.info("job finished", log_fields({{"job_id", job_id_}, {"status", outcome_}}));
            } else {
                logger_.error("result not published; job requeued",
                              log_fields({{"job_id", job_id_}, {"error", status.message()}}));
            }
        } catch (const std::exception&) {
            // Logging is best effort here: the job is settled either way.
        }
    }

private:
    std::shared_ptr<Settlement> s_;
    sdk::Logger& logger_;
    std::uint64_t tag_;
    std::string job_id_;
    int attempt_;
    std::string outcome_;
    bool finishes_;
};

struct TtpRunner::PendingRetry {
    std::uint64_t tag = 0;
    JobMessage retry;         ///< what is published when the pause ends
    ResultMessage cancelled;  ///< what is published instead when the job was cancelled meanwhile
};

TtpRunner::TtpRunner(sdk::MessageQueue& mq, sdk::Logger& logger, FunctionRegistry functions,
                     sdk::WorkerClient* workers, AggregatorLookup aggregators, TtpRunnerOptions options,
                     JobSubmitter* submitter)
    : mq_(mq),
      logger_(logger),
      functions_(std::move(functions)),
      workers_(workers),
      aggregators_(std::move(aggregators)),
      options_(std::move(options)),
      submitter_(submitter),
      cancelled_(kCancelledMemory),
      settled_(std::make_shared<RecentKeys>(kSettledMemory)),
      jobs_done_(std::make_shared<std::atomic<std::uint64_t>>(0)),
      settlement_(std::make_shared<Settlement>()) {
    settlement_->jobs_done = jobs_done_;
    settlement_->outcomes_out = settled_;
}

TtpRunner::~TtpRunner() { stop(); }

sdk::Status TtpRunner::start() {
    if (auto st = options_.topology.declare_grid(mq_, options_.grid); !st) {
        return st;
    }
    stopping_ = false;
    // Attach the job consumer before returning, so the director sees this grid served at once
    // (it routes new jobs to grids with a TTP); the loop retries if the broker is not there yet.
    std::unique_ptr<sdk::Consumer> first;
    if (auto c = mq_.consume(options_.topology.jobs(options_.grid), 1); c) {
        first = std::move(*c);
    }
    {
        // A fresh ledger per run: a confirm that outlived the last stop's drain settles nothing
        // on this run's consumer (its tags could name other jobs).
        auto fresh = std::make_shared<Settlement>();
        fresh->jobs_done = jobs_done_;
        fresh->outcomes_out = settled_;
        settlement_ = std::move(fresh);
    }
    control_thread_ = std::thread([this] { control_loop(); });
    events_thread_ = std::thread([this] { events_loop(); });
    retry_thread_ = std::thread([this] { retry_loop(); });
    job_thread_ = std::thread([this, c = std::move(first)]() mutable { job_loop(std::move(c)); });
    logger_.info("ttp consuming jobs", log_fields({{"grid", options_.grid}, {"queue", options_.topology.jobs(options_.grid)}}));
    return {};
}

void TtpRunner::stop() {
    stopping_ = true;
    wake_.notify_all();
    {
        std::lock_guard<std::mutex> lock(events_mutex_);
        events_wake_.notify_all();
        events_done_.notify_all();
    }
    {
        std::lock_guard<std::mutex> lock(retry_mutex_);
        retry_wake_.notify_all();
    }
    {
        // A job thread waiting in hand_off for room in a full result window goes on at once.
        std::lock_guard<std::mutex> lock(settlement_->mutex);
        settlement_->settled.notify_all();
    }
    if (job_thread_.joinable()) {
        job_thread_.join();  // it publishes the held retries at once, then drains
    }
    if (retry_thread_.joinable()) {
        retry_thread_.join();
    }
    if (control_thread_.joinable()) {
        control_thread_.join();
    }
    if (events_thread_.joinable()) {
        events_thread_.join();
    }
}

void TtpRunner::wait_backoff(std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lock(mutex_);
    wake_.wait_for(lock, d, [&] { return stopping_.load(); });
}

sdk::Status TtpRunner::publish_event(const ResultMessage& event) {
    return mq_.publish(options_.topology.results(), make_message(event.job_id, event.to_json()), options_.publish_timeout);
}

void TtpRunner::publish_started(const ResultMessage& event) {
    std::unique_lock<std::mutex> lock(events_mutex_);
    // Bounded backlog: a broker slower than the jobs holds the job thread here, not memory.
    events_done_.wait_for(lock, options_.publish_timeout,
                          [&] { return events_.size() < kMaxPendingStarted || stopping_; });
    if (stopping_) {
        return;
    }
    events_.emplace_back(std::chrono::steady_clock::now() + options_.started_delay, event);
    events_wake_.notify_one();
}

void TtpRunner::withdraw_started(const std::string& job_id) {
    std::lock_guard<std::mutex> lock(events_mutex_);
    const auto pending = std::find_if(events_.begin(), events_.end(),
                                      [&](const auto& e) { return e.second.job_id == job_id; });
    if (pending != events_.end()) {
        events_.erase(pending);
        events_done_.notify_all();
    }
}

void TtpRunner::events_loop() {
    while (true) {
        ResultMessage next;
        {
            std::unique_lock<std::mutex> lock(events_mutex_);
            events_wake_.wait(lock, [&] { return !events_.empty() || stopping_; });
            // Held until due; withdraw_started may take it meanwhile (the wait then ends on
            // the next event's time, or waits for one).
            while (!stopping_ && !events_.empty() && events_.front().first > std::chrono::steady_clock::now()) {
                // A copy: withdraw_started may erase the front while this waits.
                const auto due = events_.front().first;
                events_wake_.wait_until(lock, due);
            }
            if (stopping_) {
                // Started events are best effort: the result (or a redelivery) still follows.
                events_.clear();
                events_done_.notify_all();
                return;
            }
            if (events_.empty()) {
                continue;  // withdrawn while it waited
            }
            next = std::move(events_.front().second);
            events_.pop_front();
            events_done_.notify_all();
        }
        if (auto st = publish_event(next); !st) {
            logger_.warn("started event not published",
                         log_fields({{"job_id", next.job_id}, {"error", st.message()}}));
        }
    }
}

bool TtpRunner::was_cancelled(const std::string& job_id) {
    std::lock_guard<std::mutex> lock(mutex_);
    return cancelled_.has(job_id);
}

void TtpRunner::job_loop(std::unique_ptr<sdk::Consumer> consumer) {
    auto backoff = 100ms;
    while (!stopping_) {
        if (!consumer) {
            auto c = mq_.consume(options_.topology.jobs(options_.grid), 1);
            if (!c) {
                logger_.error("job consumer could not start; retrying",
                              log_fields({{"queue", options_.topology.jobs(options_.grid)}, {"error", c.error().message}}));
                wait_backoff(backoff);
                backoff = std::min<std::chrono::milliseconds>(backoff * 2, 5000ms);
                continue;
            }
            consumer = std::move(*c);
            backoff = 100ms;
        }
        auto d = consumer->receive(options_.receive_timeout);
        if (!d) {
            wait_backoff(backoff);
            continue;
        }
        if (!d->has_value()) {
            continue;
        }
        try {
            run_job(*consumer, **d);
        } catch (const std::exception& e) {
            // A bug, not input (input errors are Results): keep serving; the broker redelivers.
            logger_.error("job handling threw; job requeued", log_fields({{"error", e.what()}}));
            (void)consumer->reject((*d)->tag, true);
        }
    }
    // Held retries are published now, not after their pause: their confirms settle in the
    // drain below, before the consumer closes (no delivery is both republished and requeued).
    release_due(true);
    if (consumer) {
        drain_results();
        consumer->close();  // an unacknowledged job returns to the queue
    }
}

std::chrono::milliseconds TtpRunner::retry_pause_after(int attempt) const {
    if (options_.retry_pause.count() <= 0) {
        return 0ms;
    }
    auto pause = options_.retry_pause;
    for (int i = 1; i < attempt && pause < options_.retry_pause_max; ++i) {
        pause *= 2;
    }
    return std::min(pause, std::max(options_.retry_pause_max, options_.retry_pause));
}

bool TtpRunner::hold_retry(sdk::AdjustableConsumer& consumer, std::uint64_t tag, JobMessage retry,
                           ResultMessage cancelled) {
    const auto pause = retry_pause_after(retry.attempt - 1);
    {
        Settlement& s = *settlement_;
        std::lock_guard<std::mutex> lock(s.mutex);
        if (s.held >= kMaxHeldRetries) {
            return false;
        }
        s.consumer = &consumer;
        ++s.held;
        // The held delivery no longer counts as running: the grid's next job comes meanwhile.
        if (auto st = consumer.set_prefetch(s.window()); !st) {
            logger_.warn("could not raise the job prefetch", log_fields({{"error", st.message()}}));
        }
    }
    {
        std::lock_guard<std::mutex> lock(retry_mutex_);
        retries_.emplace(std::chrono::steady_clock::now() + pause,
                         PendingRetry{tag, std::move(retry), std::move(cancelled)});
    }
    retry_wake_.notify_all();
    return true;
}

std::chrono::steady_clock::time_point TtpRunner::release_due(bool all) {
    std::vector<std::pair<PendingRetry, bool>> ready;
    auto next = std::chrono::steady_clock::now() + options_.receive_timeout;
    {
        std::lock_guard<std::mutex> lock(retry_mutex_);
        const auto now = std::chrono::steady_clock::now();
        for (auto it = retries_.begin(); it != retries_.end();) {
            const bool cancelled = was_cancelled(it->second.retry.job_id);
            if (all || cancelled || it->first <= now) {
                ready.emplace_back(std::move(it->second), cancelled);
                it = retries_.erase(it);
            } else {
                next = std::min(next, it->first);
                ++it;
            }
        }
    }
    for (auto& [pending, cancelled] : ready) {
        release_retry(std::move(pending), cancelled);
    }
    return next;
}

void TtpRunner::release_retry(PendingRetry pending, bool cancelled) {
    auto* async = dynamic_cast<sdk::AsyncMessageQueue*>(&mq_);  // held only with one
    {
        Settlement& s = *settlement_;
        std::lock_guard<std::mutex> lock(s.mutex);
        --s.held;
        ++s.in_flight;  // its slot is kept until the publish below settles
    }
    const std::string id = pending.retry.job_id;
    std::shared_ptr<ResultSettled> done;
    sdk::Status st;
    if (cancelled) {
        done = std::make_shared<ResultSettled>(settlement_, logger_, pending.tag, id,
                                               pending.retry.attempt - 1, "cancelled");
        st = async->publish_async(options_.topology.results(), make_message(id, pending.cancelled.to_json()),
                                  options_.publish_timeout, done);
    } else {
        done = std::make_shared<ResultSettled>(settlement_, logger_, pending.tag, id,
                                               pending.retry.attempt - 1, "retried", false);
        st = async->publish_async(options_.topology.jobs(options_.grid),
                                  make_message(id, pending.retry.to_json(), priority_of(pending.retry.process)),
                                  options_.publish_timeout, done);
    }
    if (!st) {
        done->on_published(st);  // not queued: the failed delivery is requeued, nothing lost
    }
}

void TtpRunner::retry_loop() {
    while (!stopping_) {
        std::uint64_t seen = 0;
        {
            std::lock_guard<std::mutex> lock(retry_mutex_);
            seen = cancels_taken_;  // read before release_due looks at the cancels
        }
        const auto next = release_due(false);
        std::unique_lock<std::mutex> lock(retry_mutex_);
        // Woken by a cancel, an earlier retry or the stop; receive_timeout bounds it anyway.
        retry_wake_.wait_until(lock, next, [&] {
            return stopping_.load() || cancels_taken_ != seen ||
                   (!retries_.empty() && retries_.begin()->first < next);
        });
    }
}

void TtpRunner::hand_off(sdk::AsyncMessageQueue& mq, sdk::AdjustableConsumer& consumer,
                         std::uint64_t tag, ResultMessage result) {
    Settlement& s = *settlement_;
    {
        std::unique_lock<std::mutex> lock(s.mutex);
        // A full window means the broker confirms slower than jobs finish: wait here (bounded;
        // past it, one more is let through rather than the job thread blocking for good).
        s.settled.wait_for(lock, options_.publish_timeout,
                           [&] { return s.in_flight < kResultWindow || stopping_; });
        s.consumer = &consumer;
        ++s.in_flight;
        // This job no longer counts as running: one slot opens, so the broker hands over the
        // most urgent job now instead of after the confirm.
        if (auto st = consumer.set_prefetch(s.window()); !st) {
            logger_.warn("could not raise the job prefetch", log_fields({{"error", st.message()}}));
        }
    }
    auto done = std::make_shared<ResultSettled>(settlement_, logger_, tag, result.job_id,
                                                result.attempt, to_string(result.outcome));
    const std::string id = result.job_id;
    if (auto st = mq.publish_async(options_.topology.results(), make_message(id, result.to_json()),
                                   options_.publish_timeout, done);
        !st) {
        done->on_published(st);  // not queued: settled (requeued) here
    }
}

void TtpRunner::drain_results() {
    Settlement& s = *settlement_;
    std::unique_lock<std::mutex> lock(s.mutex);
    // Each publish ends by publish_timeout (the backend completes it then at the latest).
    // Held retries too: the retry thread may have taken one from retries_ just before the job
    // thread's release_due(true) and not yet published it; closing the consumer first would
    // requeue its delivery while its retry still goes out (two copies would run).
    s.settled.wait_for(lock, options_.publish_timeout + 1s,
                       [&] { return s.in_flight == 0 && s.held == 0; });
    // Past the bound, late confirms must not settle on a consumer that is closing: the broker
    // redelivers those jobs, and their results, if they went out, are archived once anyway.
    s.consumer = nullptr;
}

std::uint64_t TtpRunner::jobs_done() const { return *jobs_done_; }

void TtpRunner::run_job(sdk::Consumer& consumer, const sdk::Delivery& delivery) {
    auto parsed = JobMessage::from_json(delivery.message.body);
    ResultMessage result;
    result.type = EventType::Result;
    result.ttp_id = options_.ttp_id;
    result.grid = options_.grid;

    auto fail_final = [&](const std::string& reason) {
        result.outcome = Outcome::Failed;
        result.final = true;
        result.reason = reason;
        logger_.error("job failed", log_fields({{"job_id", result.job_id}, {"reason", reason}}));
        if (!result.job_id.empty()) {
            if (auto st = publish_event(result); !st) {
                // Without a failure record the director would wait forever: keep the job queued.
                logger_.error("failure result not published; job requeued",
                              log_fields({{"job_id", result.job_id}, {"error", st.message()}}));
                (void)consumer.reject(delivery.tag, true);
                return;
            }
        }
        (void)consumer.reject(delivery.tag, false);  // dead-letter
        ++*jobs_done_;
    };

    if (!parsed) {
        // Recover the id when possible so the director can mark the job failed.
        json raw = json::parse(delivery.message.body, nullptr, false);
        if (raw.is_object()) {
            if (raw.contains("job_id") && raw["job_id"].is_string()) {
                result.job_id = raw["job_id"].get<std::string>();
            }
            if (raw.contains("process") && raw["process"].is_string()) {
                result.process = raw["process"].get<std::string>();
            }
        }
        if (result.job_id.empty()) {
            result.job_id = delivery.message.id;
        }
        if (result.process.empty()) {
            result.process = "unknown";
        }
        fail_final("malformed job message: " + parsed.error().message);
        return;
    }
    const JobMessage& job = *parsed;
    result.job_id = job.job_id;
    result.process = job.process;
    result.filters = job.keys;
    result.attempt = job.attempt;

    if (job.grid != options_.grid) {
        fail_final("job for grid " + std::to_string(job.grid) + " was delivered to the TTP of grid " +
                   std::to_string(options_.grid));
        return;
    }
    auto nodes = grid_nodes(job);
    if (!nodes) {
        fail_final(nodes.error().message);
        return;
    }
    if (settled_->has(settled_key(job.job_id, job.attempt))) {
        // Its outcome went out already (the ack that would have removed it was lost, or the
        // publish was stored twice): running it again would only redo the work.
        logger_.warn("job delivered again after its outcome was published; acknowledged without running",
                     log_fields({{"job_id", job.job_id}, {"attempt", job.attempt},
                                 {"redelivered", delivery.redelivered}}));
        (void)consumer.ack(delivery.tag);
        return;
    }
    if (was_cancelled(job.job_id)) {
        result.outcome = Outcome::Cancelled;
        result.reason = "cancelled while queued";
        if (publish_event(result)) {
            (void)consumer.ack(delivery.tag);
        } else {
            (void)consumer.reject(delivery.tag, true);
        }
        return;
    }
    auto fn = functions_.find(job.process);
    if (fn == functions_.end()) {
        fail_final("process '" + job.process + "' has no active ttp function on this TTP");
        return;
    }

    {
        std::lock_guard<std::mutex> lock(mutex_);
        current_job_ = job.job_id;
        // A cancel taken by the control thread since was_cancelled() above is not lost.
        current_cancelled_ = cancelled_.has(job.job_id);
        current_started_ = std::chrono::steady_clock::now();
        current_timed_out_ = false;
    }
    ResultMessage started = result;
    started.type = EventType::Started;
    // Best effort, as before, but no confirm round trip in series with the job: the events
    // thread publishes it, and the job is acknowledged once its result is confirmed.
    publish_started(started);
    logger_.info("job started", log_fields({{"job_id", job.job_id}, {"process", job.process},
                                        {"attempt", job.attempt}, {"redelivered", delivery.redelivered}}));

    Ctx ctx(*this, job, std::move(*nodes));
    sdk::Result<std::string> outputs = fn->second->execute(ctx, delivery.message.body);
    withdraw_started(job.job_id);  // whatever follows (result, retry, requeue) supersedes it
    const bool cancel_requested = current_cancelled_;
    const bool stopping = stopping_;  // read once: every branch below sees the same answer
    bool timed_out = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        current_job_.clear();
        timed_out = current_timed_out_;
    }

    if (stopping && !outputs && !(cancel_requested && !timed_out)) {
        // Shutting down mid-job: leave it to the broker; it resumes on the next delivery. (A
        // job cancelled by its user is recorded as cancelled instead: the cancel lives only in
        // this process, and a redelivery would run the whole job again.)
        (void)consumer.reject(delivery.tag, true);
        logger_.info("job interrupted by shutdown; requeued", log_fields({{"job_id", job.job_id}}));
        return;
    }
    if (outputs) {
        result.outcome = Outcome::Succeeded;
        result.outputs = json::parse(*outputs, nullptr, false);
        if (result.outputs.is_discarded() || !result.outputs.is_object()) {
            fail_final("ttp function '" + job.process + "' returned outputs that are not a JSON object");
            return;
        }
    } else if (timed_out) {
        // Past its limit: final, not retried, whether it stopped at a safe point (Cancelled)
        // or failed on its own meanwhile (a retry would get a whole new limit). Never read as
        // cancelled by its user.
        const auto ms = options_.job_timeout.count();
        std::ostringstream limit;
        limit << "its time limit (jobs.job_timeout_s: ";
        if (ms % 1000 == 0) {
            limit << ms / 1000;
        } else {
            limit << ms / 1000.0;
        }
        limit << " s)";
        if (outputs.error().code == sdk::ErrorCode::Cancelled) {
            fail_final("stopped after running longer than " + limit.str() + ": " + outputs.error().message);
        } else {
            fail_final(outputs.error().message + " (after running past " + limit.str() + ": not retried)");
        }
        return;
    } else if (outputs.error().code == sdk::ErrorCode::Cancelled || cancel_requested) {
        result.outcome = Outcome::Cancelled;
        result.reason = "cancelled while running: " + outputs.error().message;
    } else if (is_retryable(outputs.error().code) && job.attempt < job.max_attempts) {
        JobMessage retry = job;
        retry.attempt = job.attempt + 1;
        // The first failure travels with the retries: later attempts often fail for a derived
        // cause (a worker that lost its run refuses the next initialisation).
        if (retry.first_failure.empty()) {
            retry.first_failure = bounded_reason(outputs.error().message);
        }
        result.outcome = Outcome::Failed;
        result.final = false;
        result.reason = outputs.error().message;
        auto* adjustable = dynamic_cast<sdk::AdjustableConsumer*>(&consumer);
        const auto pause = retry_pause_after(job.attempt);
        if (adjustable != nullptr && dynamic_cast<sdk::AsyncMessageQueue*>(&mq_) != nullptr &&
            pause.count() > 0 && !stopping) {
            ResultMessage cancelled = result;
            cancelled.outcome = Outcome::Cancelled;
            cancelled.final = true;
            cancelled.reason = "cancelled while waiting to retry (attempt " + std::to_string(retry.attempt) +
                               " of " + std::to_string(job.max_attempts) + ")";
            // The failure goes out first (best effort), so the director shows the job waiting
            // to retry; the delivery stays unacknowledged until the retry is published.
            (void)publish_event(result);
            if (hold_retry(*adjustable, delivery.tag, retry, std::move(cancelled))) {
                logger_.warn("job attempt failed; retrying after a pause",
                             log_fields({{"job_id", job.job_id}, {"attempt", job.attempt},
                                         {"pause_ms", pause.count()}, {"reason", result.reason}}));
                return;
            }
        }
        auto st = mq_.publish(options_.topology.jobs(options_.grid),
                              make_message(job.job_id, retry.to_json(), priority_of(job.process)),
                              options_.publish_timeout);
        if (!st) {
            (void)consumer.reject(delivery.tag, true);  // the broker keeps it; nothing lost
            return;
        }
        (void)publish_event(result);
        settled_->add(settled_key(job.job_id, job.attempt));
        (void)consumer.ack(delivery.tag);
        logger_.warn("job attempt failed; retrying",
                     log_fields({{"job_id", job.job_id}, {"attempt", job.attempt}, {"reason", result.reason}}));
        return;
    } else {
        std::string reason = outputs.error().message;
        if (is_retryable(outputs.error().code) && job.attempt > 1) {
            // The last failure, and the first, which is often the real cause.
            reason = "attempt " + std::to_string(job.attempt) + " of " + std::to_string(job.max_attempts) + ": " +
                     bounded_reason(reason);
            if (!job.first_failure.empty()) {
                reason += "; first failure (attempt 1): " + bounded_reason(job.first_failure);
            }
        } else if (is_retryable(outputs.error().code)) {
            reason += " (after 1 attempt)";
        }
        fail_final(reason);
        return;
    }
    // Publish first, acknowledge second: a crash in between redelivers the job, and the
    // director ignores the duplicate result.
    auto* adjustable = dynamic_cast<sdk::AdjustableConsumer*>(&consumer);
    auto* async = dynamic_cast<sdk::AsyncMessageQueue*>(&mq_);
    if (adjustable != nullptr && async != nullptr) {
        hand_off(*async, *adjustable, delivery.tag, std::move(result));
        return;
    }
    if (auto st = publish_event(result); !st) {
        logger_.error("result not published; job requeued", log_fields({{"job_id", job.job_id}, {"error", st.message()}}));
        (void)consumer.reject(delivery.tag, true);
        return;
    }
    settled_->add(settled_key(job.job_id, job.attempt));
    (void)consumer.ack(delivery.tag);
    ++*jobs_done_;
    logger_.info("job finished", log_fields({{"job_id", job.job_id}, {"status", to_string(result.outcome)}}));
}

void TtpRunner::check_job_deadline() {
    std::lock_guard<std::mutex> lock(mutex_);
    // A job already told to stop (cancelled) ends as cancelled, not as timed out.
    if (current_job_.empty() || current_timed_out_ || current_cancelled_ || options_.job_timeout.count() <= 0 ||
        std::chrono::steady_clock::now() - current_started_ < options_.job_timeout) {
        return;
    }
    current_timed_out_ = true;
    current_cancelled_ = true;  // the function sees it at its next safe point
    logger_.warn("job ran past its time limit; stopping it",
                 log_fields({{"job_id", current_job_}, {"job_timeout_ms", options_.job_timeout.count()}}));
}

void TtpRunner::control_loop() {
    std::unique_ptr<sdk::Consumer> consumer;
    while (!stopping_) {
        // Checked at least every receive_timeout (or back-off) while the control queue is quiet.
        check_job_deadline();
        if (!consumer) {
            auto c = mq_.consume(options_.topology.control(options_.grid), 16);
            if (!c) {
                wait_backoff(1000ms);
                continue;
            }
            consumer = std::move(*c);
        }
        auto d = consumer->receive(options_.receive_timeout);
        if (!d) {
            wait_backoff(500ms);
            continue;
        }
        if (!d->has_value()) {
            continue;
        }
        const sdk::Delivery& delivery = **d;
        const json j = json::parse(delivery.message.body, nullptr, false);
        // Field types checked before use: `value("type", "")` threw on a type that is not a
        // string, out of this thread (std::terminate, again at every restart: never acked).
        const auto is_string = [&](const char* field) {
            return j.is_object() && j.contains(field) && j.at(field).is_string();
        };
        if (is_string("type") && j.at("type").get<std::string>() == "cancel" && is_string("job_id")) {
            const std::string id = j.at("job_id").get<std::string>();
            {
                std::lock_guard<std::mutex> lock(mutex_);
                cancelled_.add(id);
                if (current_job_ == id) {
                    current_cancelled_ = true;
                    logger_.info("cancel taken for the running job; it stops at its next safe point",
                                 log_fields({{"job_id", id}}));
                }
            }
            {
                // After mutex_ is released: release_due takes retry_mutex_, then mutex_.
                std::lock_guard<std::mutex> lock(retry_mutex_);
                ++cancels_taken_;
            }
            retry_wake_.notify_all();  // a held retry of this job ends now
        } else {
            logger_.warn("unknown control message dropped", log_fields({{"message_id", delivery.message.id}}));
        }
        (void)consumer->ack(delivery.tag);
    }
    if (consumer) {
        consumer->close();
    }
}

}  // namespace synergos::core::jobs
