// SPDX-License-Identifier: Apache-2.0
#include "synergos/core/jobs/job_service.hpp"

#include <algorithm>
#include <optional>

#include "synergos/core/jobs/tensor_files.hpp"

namespace synergos::core::jobs {

using nlohmann::json;
using namespace std::chrono_literals;

namespace {

/// The reason a running job carries once its user asked to cancel it, until it stops.
constexpr const char* kCancelRequested = "cancellation requested; stopping at the next safe point";

/// The next pause of a retry that waits out a store or broker failure: doubled, at most 30 s.
std::chrono::milliseconds longer(std::chrono::milliseconds pause) {
    return std::min<std::chrono::milliseconds>(pause * 2, std::chrono::seconds(30));
}

/// A director-side job has no grid and so no workers to call.
class NoWorkers final : public sdk::WorkerClient {
public:
    sdk::Result<sdk::WorkerReply> call(const sdk::GridNode& node, const sdk::WorkerRequest&) noexcept override {
        return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                          "a job run on the director cannot call workers (asked for '" + node.participant_id + "')"};
    }
    void call_all(const std::vector<sdk::GridNode>& nodes, const std::vector<sdk::WorkerRequest>& requests,
                  sdk::ReplyVisitor& visitor) noexcept override {
        for (std::size_t i = 0; i < nodes.size() && i < requests.size(); ++i) {
            visitor.on_reply(i, call(nodes[i], requests[i]));
        }
    }
};

constexpr const char* kKeyNames[] = {"collab_id", "project_id", "expt_id", "run_id"};

}  // namespace

class JobService::ArchiveCtx final : public sdk::ArchiveContext {
public:
    ArchiveCtx(JobService& s, sdk::StorageBackend& storage) : s_(s), storage_(storage) {}
    sdk::Logger& logger() noexcept override { return s_.logger_; }
    sdk::StorageBackend& storage() noexcept override { return storage_; }
    sdk::Tracker* tracker() noexcept override { return s_.tracker_; }
    std::string outputs_dir() const override { return s_.options_.outputs_dir; }

private:
    JobService& s_;
    sdk::StorageBackend& storage_;
};

/// The store as an archive function sees it while its result is batched with others: reads go
/// to the store and are noted, so an archive that read (or writes) what an earlier, uncommitted
/// archive of the same batch writes is run again after that one committed.
class JobService::ReadLog final : public sdk::StorageBackend {
public:
    explicit ReadLog(sdk::StorageBackend& storage) : storage_(storage) {}
    sdk::Status start() noexcept override { return {}; }  // the host's store is started
    int schema_version() const noexcept override { return storage_.schema_version(); }
    sdk::Result<sdk::Record> get(const std::string& kind, const sdk::Key& key) noexcept override {
        try {
            gets_.emplace_back(kind, key);
        } catch (const std::exception&) {
            listed_all_ = true;  // cannot note it: treat as a read of everything
        }
        return storage_.get(kind, key);
    }
    sdk::Result<std::vector<sdk::Record>> list(const sdk::Query& query) noexcept override {
        try {
            kinds_.push_back(query.kind);
        } catch (const std::exception&) {
            listed_all_ = true;
        }
        return storage_.list(query);
    }
    sdk::Result<std::vector<sdk::Record>> apply(const std::vector<sdk::Mutation>& batch) noexcept override {
        listed_all_ = true;  // outside the contract (writes go in the returned batch): never batch it
        return storage_.apply(batch);
    }
    void stop() noexcept override {}

    /// Whether this archive's reads or `writes` overlap `pending` (earlier, uncommitted writes).
    bool conflicts(const std::vector<sdk::Mutation>& pending,
                   const std::vector<sdk::Mutation>& writes) const {
        const auto same_key = [](const sdk::Key& a, const sdk::Key& b) {
            if (a.size() != b.size()) {
                return false;
            }
            for (std::size_t i = 0; i < a.size(); ++i) {
                if (a[i].name != b[i].name || a[i].value != b[i].value) {
                    return false;
                }
            }
            return true;
        };
        const auto touches = [&](const sdk::Mutation& m, const std::string& kind, const sdk::Key& key) {
            return m.kind == kind && (m.mode == sdk::WriteMode::DeleteWhere || same_key(m.key, key));
        };
        if (pending.empty()) {
            return false;
        }
        if (listed_all_) {
            return true;
        }
        for (const sdk::Mutation& m : pending) {
            for (const auto& [kind, key] : gets_) {
                if (touches(m, kind, key)) {
                    return true;
                }
            }
            for (const std::string& kind : kinds_) {
                if (m.kind == kind) {
                    return true;
                }
            }
            for (const sdk::Mutation& w : writes) {
                if (touches(m, w.kind, w.key) || (w.mode == sdk::WriteMode::DeleteWhere && w.kind == m.kind)) {
                    return true;
                }
            }
        }
        return false;
    }

private:
    sdk::StorageBackend& storage_;
    std::vector<std::pair<std::string, sdk::Key>> gets_;
    std::vector<std::string> kinds_;
    bool listed_all_ = false;
};

/// An event's effect on its job, planned against a batch's view.
struct JobService::EventPlan {
    bool change = false;                ///< `job` is to be written
    JobRecord job;
    std::vector<sdk::Mutation> extra;   ///< the function's archive writes, before the job's
    bool archived = false;              ///< a successful result: after_archive once committed
    /// Failed or cancelled by this result: the function's JobEndObserver is told once committed.
    bool ended_unsuccessfully = false;
    /// A (re)started job whose user asked to cancel it: the TTP that took it may be one that
    /// never got the notice (a restarted one, given the job again): it is sent again.
    bool resend_cancel = false;
};

/// What a director-side job's function sees: follow-up jobs go straight to the service (placed
/// on grids like any submitted job), progress and results go through the same event handling as
/// a TTP's.
class JobService::DirectorCtx final : public sdk::JobContext {
public:
    DirectorCtx(JobService& s, JobRecord job) : s_(s), job_(std::move(job)) {}

    sdk::Logger& logger() noexcept override { return s_.logger_; }
    const std::string& job_id() const noexcept override { return job_.job_id; }
    int grid() const noexcept override { return kDirectorGrid; }
    const std::vector<sdk::GridNode>& nodes() const noexcept override { return nodes_; }
    std::string outputs_dir() const override { return s_.options_.outputs_dir; }
    bool is_cancelled() const noexcept override { return s_.stopping_ || s_.director_job_cancelled(job_.job_id); }
    void report_progress(std::string_view progress_json) noexcept override {
        try {
            ResultMessage e;
            e.type = EventType::Progress;
            e.job_id = job_.job_id;
            e.process = job_.process;
            e.progress = json::parse(progress_json, nullptr, false);
            if (e.progress.is_discarded()) {
                e.progress = json{{"message", std::string(progress_json)}};
            }
            (void)s_.handle_event(e);
        } catch (const std::exception&) {
            // Progress is best effort.
        }
    }
    sdk::WorkerClient& workers() noexcept override { return no_workers_; }
    sdk::Result<sdk::Aggregator*> aggregator(const std::string& name) noexcept override {
        return sdk::Error{sdk::ErrorCode::Unimplemented,
                          "a job run on the director has no aggregator (asked for '" + name + "')"};
    }
    sdk::Result<std::string> submit_job(std::string_view job_json) noexcept override {
        try {
            json j = json::parse(job_json, nullptr, false);
            if (!j.is_object()) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument, "follow-up job is not a JSON object"};
            }
            JobSpec spec;
            if (!j.contains("process") || !j["process"].is_string()) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument, "follow-up job field 'process' must be a string"};
            }
            spec.process = j["process"].get<std::string>();
            if (s_.options_.director_processes.count(spec.process)) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument,
                                  "a director-side job cannot submit another '" + spec.process + "' job"};
            }
            const json keys = j.value("keys", json::array());
            if (!keys.is_array() || keys.size() > 4) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument,
                                  "follow-up job field 'keys' must be a list of at most 4 ids"};
            }
            for (std::size_t i = 0; i < keys.size(); ++i) {
                if (!keys[i].is_string()) {
                    return sdk::Error{sdk::ErrorCode::InvalidArgument, "follow-up job field 'keys' must hold strings"};
                }
                spec.filters.push_back(keys[i].get<std::string>());
                spec.keys[kKeyNames[i]] = keys[i];
            }
            spec.parameters = j.value("parameters", json::object());
            if (!spec.parameters.is_object()) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument, "follow-up job field 'parameters' must be an object"};
            }
            spec.grids = j.contains("grids") ? j["grids"] : job_.message.value("grids", json::array());
            const int grids = spec.grids.is_array() ? static_cast<int>(spec.grids.size()) : 0;
            if (j.contains("grid")) {
                if (!j["grid"].is_number_integer() || j["grid"].get<int>() < 0 || j["grid"].get<int>() >= grids) {
                    return sdk::Error{sdk::ErrorCode::InvalidArgument,
                                      "follow-up job field 'grid' must be one of the job's " + std::to_string(grids) +
                                          " grids"};
                }
                spec.grid = j["grid"].get<int>();
            }
            spec.parent_job = job_.job_id;
            if (!s_.has_function(spec.process)) {
                return sdk::Error{sdk::ErrorCode::Unimplemented,
                                  "process '" + spec.process + "' has no active ttp function on the director"};
            }
            auto jobs = s_.submit({std::move(spec)});
            if (!jobs) {
                return jobs.error();
            }
            follow_ups_.push_back(jobs->front().job_id);
            return jobs->front().job_id;
        } catch (const std::exception& e) {
            return sdk::Error{sdk::ErrorCode::Internal, std::string("follow-up job failed: ") + e.what()};
        }
    }
    sdk::Result<std::string> wait_job(const std::string& job_id, std::chrono::milliseconds timeout) noexcept override {
        try {
            auto job = s_.wait(job_id, timeout);
            if (!job) {
                return job.error();
            }
            return job->to_api().dump();
        } catch (const std::exception& e) {
            return sdk::Error{sdk::ErrorCode::Internal, std::string("waiting for a job failed: ") + e.what()};
        }
    }
    sdk::Status write_tensors(const std::string& path, const sdk::TensorMap& tensors,
                              std::string_view metadata) noexcept override {
        try {
            return write_tensor_file(path, tensors, metadata);
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
    sdk::Status write_file(const std::string& path, std::string_view content) noexcept override {
        try {
            return write_file_atomic(path, content);
        } catch (const std::exception& e) {
            return {sdk::ErrorCode::Internal, std::string("writing '") + path + "' failed: " + e.what()};
        }
    }

    /// The jobs this one submitted (execute runs on one thread, which alone calls submit_job).
    const std::vector<std::string>& follow_ups() const noexcept { return follow_ups_; }

private:
    JobService& s_;
    JobRecord job_;
    std::vector<sdk::GridNode> nodes_;
    NoWorkers no_workers_;
    std::vector<std::string> follow_ups_;
};

/// Publishes in flight. Shared with their callbacks, which run on the backend's thread and may
/// outlive the service's wait for them in stop(): `owner` is null from then on.
struct JobService::PublishLedger {
    std::mutex mutex;
    std::condition_variable idle;
    std::size_t outstanding = 0;
    JobService* owner = nullptr;
};

class JobService::JobPublished final : public sdk::PublishCallback {
public:
    JobPublished(std::shared_ptr<PublishLedger> ledger, std::string job_id, int grid)
        : ledger_(std::move(ledger)), job_id_(std::move(job_id)), grid_(grid) {}
    void on_published(sdk::Status status) noexcept override {
        std::lock_guard<std::mutex> lock(ledger_->mutex);
        if (ledger_->owner != nullptr) {
            ledger_->owner->published(job_id_, grid_, status);
        }
        --ledger_->outstanding;
        ledger_->idle.notify_all();
    }

private:
    std::shared_ptr<PublishLedger> ledger_;
    std::string job_id_;
    int grid_;
};

JobService::JobService(sdk::StorageBackend& storage, sdk::MessageQueue& mq, sdk::Logger& logger,
                       FunctionRegistry functions, sdk::Tracker* tracker, JobServiceOptions options)
    : storage_(storage),
      mq_(mq),
      logger_(logger),
      functions_(std::move(functions)),
      tracker_(tracker),
      options_(std::move(options)),
      store_(storage),
      ledger_(std::make_shared<PublishLedger>()) {}

JobService::~JobService() { stop(); }

std::string JobService::submitted_by(const JobRecord& job) {
    if (!job.parent_job.empty()) {
        return job.parent_job;
    }
    // Recorded before jobs named their parent: a search's trials name it in their parameters.
    const json parameters = job.message.value("parameters", json::object());
    const auto search = parameters.find("optimization");
    return search != parameters.end() && search->is_string() ? search->get<std::string>() : std::string();
}

sdk::Status JobService::start() {
    if (auto st = options_.topology.declare_grid(mq_, 0); !st) {
        return st;
    }
    auto all = store_.list(JobFilter{});
    if (!all) {
        return all.status();
    }
    // Director-side jobs a stop or crash interrupted, and the unfinished follow-ups (a search's
    // trials) of their interrupted run: only that run waited on them, and the next run submits
    // its own, so they are cancelled below instead of running beside those.
    std::set<std::string> interrupted;
    for (const JobRecord& job : *all) {
        if (job.grid == kDirectorGrid && !job.is_terminal()) {
            interrupted.insert(job.job_id);
        }
    }
    std::set<std::string> orphans;
    for (const JobRecord& job : *all) {
        if (!job.is_terminal() && interrupted.count(submitted_by(job)) != 0) {
            orphans.insert(job.job_id);
        }
    }
    // Jobs left in `submitting` were recorded but maybe never published (a crash between the
    // two steps). Publish them again: a duplicate delivery is harmless (archival is idempotent).
    // With a volatile queue (the in-process one) nothing queued survived the restart: every
    // unfinished job is published again (a training resumes at its last checkpoint), except
    // one whose cancel was requested, which ends cancelled instead of running again.
    std::vector<JobRecord> cancel_again;  // on a durable queue: their TTP may have lost the notice
    for (const JobRecord& job : *all) {
        if (job.is_terminal() || job.grid == kDirectorGrid || orphans.count(job.job_id) != 0) {
            continue;  // director-side jobs run again below; orphans are cancelled below
        }
        const bool lost = job.state == "submitting" || options_.volatile_queue;
        if (!lost) {
            if (cancel_pending(job)) {
                cancel_again.push_back(job);
            }
            continue;
        }
        if (cancel_pending(job)) {
            end_cancelled_at_start(job.job_id);
            continue;
        }
        // The attempt it was on (a retry's message was published by its TTP, not stored): its
        // started event then counts, and retries keep their limit.
        JobRecord again = job;
        int attempt = job.attempts;
        if (job.state == "queued" && job.attempts > 0) {
            // Queued after an attempt failed ("retrying"): the next attempt, not that one again
            // (it would get one attempt more than its limit, and its started event would read
            // as stale).
            attempt = std::min(job.attempts + 1, std::max(job.max_attempts, job.attempts));
        }
        if (again.message.is_object() && attempt > again.message.value("attempt", 1)) {
            again.message["attempt"] = attempt;
        }
        if (auto st = publish_job(again); !st) {
            logger_.warn("job could not be republished at start-up",
                         log_fields({{"job_id", job.job_id}, {"error", st.message()}}));
            continue;
        }
        const bool was_running = job.state == "running";
        (void)store_.update(job.job_id, [&](JobRecord& j) {
            if (j.is_terminal() || (j.state != "submitting" && !options_.volatile_queue)) {
                return false;
            }
            j.state = "queued";
            if (was_running) {
                j.reason = "published again at start-up: the in-process queue keeps nothing across a restart";
            }
            return true;
        });
        if (options_.volatile_queue) {
            logger_.info("unfinished job published again at start-up",
                         log_fields({{"job_id", job.job_id}, {"was", job.state}}));
        }
    }
    stopping_ = false;
    {
        std::lock_guard<std::mutex> lock(moves_mutex_);
        writer_stop_ = false;
        writer_running_ = true;
    }
    writer_ = std::thread([this] { writer_loop(); });
    {
        std::lock_guard<std::mutex> lock(ledger_->mutex);
        ledger_->owner = this;
    }
    archival_ = std::thread([this] { archival_loop(); });
    if (options_.volatile_queue) {
        // The in-process queue kept nothing: no TTP has them, and no result will come. A cancel
        // would leave a running one `running` for good, waiting for a safe point never reached.
        for (const std::string& id : orphans) {
            end_cancelled_at_start(id, "cancelled: the job that submitted it was interrupted by a restart, "
                                       "and the in-process queue kept nothing");
        }
    } else {
        cancel_unfinished(std::vector<std::string>(orphans.begin(), orphans.end()));
    }
    // The interrupted director-side jobs run again; their functions are written to pick up where
    // they were (stable follow-up ids, archival by key). One whose function is no longer active
    // on the director (configuration changed) cannot: it fails, saying so, rather than stay
    // unfinished for good.
    // A TTP keeps a cancel notice only in memory: one that restarted meanwhile would run the
    // job it gets again to its end. The notice is sent again (a TTP that has it ignores it).
    for (const JobRecord& job : cancel_again) {
        resend_cancel(job);
    }
    for (const JobRecord& job : *all) {
        if (interrupted.count(job.job_id) == 0) {
            continue;
        }
        if (cancel_pending(job)) {
            end_cancelled_at_start(job.job_id);  // its user cancelled it: it does not run again
            continue;
        }
        if (runs_on_director(job.process)) {
            launch_on_director(job);
            continue;
        }
        const std::string reason = "process '" + job.process +
                                   "' is no longer run by this director (not among its active director-side "
                                   "functions); the interrupted job cannot run again";
        (void)store_.update(job.job_id, [&](JobRecord& j) {
            if (j.is_terminal()) {
                return false;
            }
            j.state = "failed";
            j.reason = reason;
            j.finished_at = now_iso8601();
            return true;
        });
        logger_.error("interrupted director-side job failed", log_fields({{"job_id", job.job_id}, {"reason", reason}}));
        notify_changed();
    }
    return {};
}

void JobService::stop() {
    stopping_ = true;
    notify_changed();
    std::vector<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>> threads;
    {
        std::lock_guard<std::mutex> lock(director_mutex_);
        threads.swap(director_threads_);
    }
    for (auto& [thread, ended] : threads) {
        thread.join();
    }
    if (archival_.joinable()) {
        archival_.join();
    }
    {
        // Publishes in flight end by publish_timeout (the backend completes them then at the
        // latest); their moves and failures are then written by the writer below. Past the
        // bound, a job stays `submitting` and the next start publishes it again.
        std::unique_lock<std::mutex> lock(ledger_->mutex);
        ledger_->idle.wait_for(lock, options_.publish_timeout + std::chrono::seconds(1),
                               [&] { return ledger_->outstanding == 0; });
        ledger_->owner = nullptr;
    }
    {
        std::lock_guard<std::mutex> lock(moves_mutex_);
        writer_stop_ = true;
    }
    moves_cv_.notify_all();
    if (writer_.joinable()) {
        writer_.join();  // it writes the records and moves still pending before it ends
    }
}

/// One submit's records, committed by the writer thread. `done` and `status` are guarded by
/// moves_mutex_.
struct JobService::RecordTask {
    std::vector<JobRecord> jobs;
    bool done = false;
    /// Its submit gave up waiting (and answered an error): once committed, its jobs are marked
    /// failed instead of being left `submitting`, which the next start would publish.
    bool abandoned = false;
    sdk::Status status;
};

/// Deliveries from the results queue, written by the writer thread in its next transaction; the
/// archival thread then settles each as its fate says. `done` is guarded by moves_mutex_.
struct JobService::EventTask {
    enum class Fate { Ack, Alone };  ///< Alone: handled on its own (its error decides)
    std::vector<sdk::Result<ResultMessage>> events;
    std::vector<Fate> fates;
    /// after_archive (or, for a job that failed or was cancelled, after_unsuccessful) due once
    /// settled.
    std::vector<std::optional<JobRecord>> archived;
    std::vector<std::optional<JobRecord>> cancel_again;  ///< cancel notice due once settled
    bool done = false;
};

void JobService::queued_moves_done(const std::vector<std::string>& ids) {
    std::lock_guard<std::mutex> lock(moves_mutex_);
    for (const auto& id : ids) {
        published_.erase(id);
    }
}

void JobService::add_queued_moves(JobStore::Batch& batch, const std::vector<std::string>& ids) {
    for (const auto& id : ids) {
        auto job = batch.get(id);
        if (!job || job->state != "submitting") {
            continue;  // it moved on (started, finished, cancelled) or is gone
        }
        job->state = "queued";
        batch.put(*job);
    }
}

bool JobService::mark_publish_failed(JobRecord& job, const std::string& reason) {
    if (job.state != "submitting") {
        return false;  // it moved on (a redelivery ran it, or it was cancelled)
    }
    job.state = "failed";
    job.reason = reason;
    job.finished_at = now_iso8601();
    return true;
}

void JobService::add_publish_failures(JobStore::Batch& batch,
                                      const std::vector<std::pair<std::string, std::string>>& failures) {
    for (const auto& [id, reason] : failures) {
        auto job = batch.get(id);
        if (job && mark_publish_failed(*job, reason)) {
            logger_.error("job could not be published; marked failed",
                          log_fields({{"job_id", id}, {"reason", reason}}));
            batch.put(*job);
        }
    }
}

void JobService::write(const std::vector<std::shared_ptr<RecordTask>>& tasks, const std::vector<std::string>& moves,
                       const std::vector<std::shared_ptr<EventTask>>& event_tasks,
                       const std::vector<std::pair<std::string, std::string>>& failures) {
    // What one commit carries, in order: moves, new records, then events (which may need the
    // records of this same transaction: the batch's view has them).
    struct Segment {
        bool moves = false;
        std::vector<RecordTask*> records;
        std::vector<std::pair<EventTask*, std::size_t>> events;
    };
    std::vector<Segment> failed;
    std::vector<std::string> failure_ids;
    for (const auto& failure : failures) {
        failure_ids.push_back(failure.first);
    }
    const auto commit = [&](JobStore::Batch& batch, Segment& segment) {
        sdk::Status st;
        try {
            st = batch.commit();
        } catch (const std::exception& e) {
            st = sdk::Status(sdk::ErrorCode::Internal, std::string("commit threw: ") + e.what());
        }
        if (st) {
            for (RecordTask* task : segment.records) {
                task->status = st;
                batch.fill_doc_ids(task->jobs);
            }
            if (segment.moves) {
                queued_moves_done(moves);
                queued_moves_done(failure_ids);
            }
        } else {
            failed.push_back(std::move(segment));
        }
        segment = Segment{};
    };
    {
        JobStore::Batch batch(store_);
        Segment segment;
        segment.moves = !moves.empty() || !failures.empty();
        try {
            add_queued_moves(batch, moves);
            add_publish_failures(batch, failures);
        } catch (const std::exception&) {
            // Moves are best effort: a job left `submitting` is republished at the next start.
        }
        for (const auto& task : tasks) {
            try {
                batch.insert(task->jobs);
                segment.records.push_back(task.get());
            } catch (const std::exception& e) {
                // None of its records is in the batch: its submit fails and publishes nothing.
                task->status = sdk::Status(sdk::ErrorCode::Internal,
                                           std::string("job records could not be encoded: ") + e.what());
            }
        }
        for (const auto& task : event_tasks) {
            for (std::size_t i = 0; i < task->events.size(); ++i) {
                auto& event = task->events[i];
                if (!event) {
                    continue;  // Alone: dead-lettered with its reason
                }
                try {
                    ReadLog reads(storage_);
                    ArchiveCtx ctx(*this, reads);
                    auto plan = plan_event(batch, *event, ctx);
                    if (plan && reads.conflicts(batch.mutations(), plan->extra)) {
                        // It read what this transaction writes: planned again after its commit.
                        commit(batch, segment);
                        ReadLog again(storage_);
                        ArchiveCtx ctx_again(*this, again);
                        plan = plan_event(batch, *event, ctx_again);
                    }
                    if (!plan) {
                        continue;  // Alone: its error decides requeue or dead letter
                    }
                    if (plan->change) {
                        batch.put(plan->job, std::move(plan->extra));
                    }
                    task->fates[i] = EventTask::Fate::Ack;
                    if (plan->resend_cancel) {
                        task->cancel_again[i] = plan->job;
                    }
                    if (plan->archived || plan->ended_unsuccessfully) {
                        task->archived[i] = std::move(plan->job);
                    }
                    segment.events.emplace_back(task.get(), i);
                } catch (const std::exception& e) {
                    logger_.error("archival planning threw", log_fields({{"error", e.what()}}));
                }
            }
        }
        commit(batch, segment);
    }
    // Failed commits wrote nothing: each part again on its own, so one bad record or result
    // cannot hold back the others. A move that still fails is dropped: the job stays
    // `submitting` and is republished at the next start.
    for (Segment& segment : failed) {
        for (RecordTask* task : segment.records) {
            JobStore::Batch batch(store_);
            batch.insert(task->jobs);  // encoded once already: does not throw here
            task->status = batch.commit();
            batch.fill_doc_ids(task->jobs);
        }
        if (segment.moves) {
            for (const auto& id : moves) {
                (void)store_.update(id, [](JobRecord& j) {
                    if (j.state != "submitting") {
                        return false;
                    }
                    j.state = "queued";
                    return true;
                });
            }
            for (const auto& [id, reason] : failures) {
                (void)store_.update(id, [&, r = reason](JobRecord& j) {
                    return mark_publish_failed(j, r);
                });
            }
            queued_moves_done(moves);
            queued_moves_done(failure_ids);
        }
        for (auto& [task, i] : segment.events) {
            task->fates[i] = EventTask::Fate::Alone;
            task->archived[i].reset();
            task->cancel_again[i].reset();
        }
    }
}

void JobService::writer_loop() {
    std::unique_lock<std::mutex> lock(moves_mutex_);
    while (true) {
        // Moves wait queued_flush_delay: by then most jobs have started or finished, and a move
        // of a job that moved on writes nothing (reads show published jobs as queued anyway).
        const auto moves_due = [&] {
            return !moves_pending_.empty() &&
                   (writer_stop_ || std::chrono::steady_clock::now() - moves_since_ >= options_.queued_flush_delay);
        };
        // Results wait up to events_flush_delay for a submit's records, so both share one
        // commit (one fsync) and the submit does not queue behind a commit of results alone.
        const auto events_due = [&] {
            return !event_tasks_.empty() &&
                   (writer_stop_ || !record_tasks_.empty() ||
                    std::chrono::steady_clock::now() - events_since_ >= options_.events_flush_delay);
        };
        const auto work = [&] {
            return writer_stop_ || !record_tasks_.empty() || events_due() || moves_due() ||
                   !publish_failures_.empty();
        };
        auto next = std::chrono::steady_clock::time_point::max();
        const bool moves_waiting = !moves_pending_.empty();
        if (moves_waiting) {
            next = moves_since_ + options_.queued_flush_delay;
        }
        const bool events_waiting = !event_tasks_.empty();
        if (events_waiting) {
            next = std::min(next, events_since_ + options_.events_flush_delay);
        }
        // Also woken when the first moves or results arrive, to take their deadline into account
        // (else a wait with no deadline would sleep past it).
        const auto wake = [&] {
            return work() || (!events_waiting && !event_tasks_.empty()) ||
                   (!moves_waiting && !moves_pending_.empty());
        };
        if (next == std::chrono::steady_clock::time_point::max()) {
            moves_cv_.wait(lock, wake);
        } else {
            moves_cv_.wait_until(lock, next, wake);
        }
        if (!work()) {
            continue;
        }
        std::vector<std::shared_ptr<RecordTask>> tasks(record_tasks_.begin(), record_tasks_.end());
        record_tasks_.clear();
        std::vector<std::shared_ptr<EventTask>> events(event_tasks_.begin(), event_tasks_.end());
        event_tasks_.clear();
        std::vector<std::string> moves;
        if (moves_due()) {
            moves.swap(moves_pending_);
        }
        std::vector<std::pair<std::string, std::string>> failures;
        failures.swap(publish_failures_);
        lock.unlock();
        if (!tasks.empty() || !moves.empty() || !events.empty() || !failures.empty()) {
            const auto began = std::chrono::steady_clock::now();
            std::size_t delivered = 0;
            for (const auto& task : events) {
                delivered += task->events.size();
            }
            events_total_.fetch_add(delivered, std::memory_order_relaxed);
            try {
                write(tasks, moves, events, failures);
            } catch (const std::exception& e) {
                for (const auto& task : tasks) {
                    task->status = sdk::Status(sdk::ErrorCode::Internal, std::string("recording failed: ") + e.what());
                }
            }
            commit_latency_.observe(std::chrono::steady_clock::now() - began);
        }
        lock.lock();
        for (const auto& task : tasks) {
            task->done = true;
            if (task->abandoned && task->status) {
                for (const auto& job : task->jobs) {
                    publish_failures_.emplace_back(job.job_id,
                                                   "its submission timed out waiting for the store (the "
                                                   "request was answered with an error); not run");
                }
            }
        }
        for (const auto& task : events) {
            task->done = true;
        }
        if (!tasks.empty() || !events.empty()) {
            recorded_cv_.notify_all();
        }
        if (!failures.empty()) {
            lock.unlock();
            notify_changed();  // waiters see the failed jobs
            lock.lock();
        }
        if (writer_stop_ && record_tasks_.empty() && event_tasks_.empty() && moves_pending_.empty() &&
            publish_failures_.empty()) {
            writer_running_ = false;
            recorded_cv_.notify_all();
            return;
        }
    }
}

std::shared_ptr<JobService::RecordTask> JobService::record_async(std::vector<JobRecord> jobs) {
    auto task = std::make_shared<RecordTask>();
    task->jobs = std::move(jobs);
    {
        std::lock_guard<std::mutex> lock(moves_mutex_);
        if (writer_running_ && !writer_stop_) {
            record_tasks_.push_back(task);
            moves_cv_.notify_all();
            return task;
        }
    }
    // No writer (not started, or stopping): commit here, before anything is published.
    JobStore::Batch batch(store_);
    try {
        batch.insert(task->jobs);
        task->status = batch.commit();
        batch.fill_doc_ids(task->jobs);
    } catch (const std::exception& e) {
        task->status = sdk::Status(sdk::ErrorCode::Internal,
                                   std::string("job records could not be encoded: ") + e.what());
    }
    task->done = true;
    return task;
}

sdk::Status JobService::await_recorded(const std::shared_ptr<RecordTask>& task) {
    std::unique_lock<std::mutex> lock(moves_mutex_);
    // A commit is bounded by the store's own busy timeout; this bound only guards against a
    // store that hangs.
    if (!recorded_cv_.wait_for(lock, options_.publish_timeout, [&] { return task->done; })) {
        const std::string waited = std::to_string(options_.publish_timeout.count()) + " ms";
        const auto queued = std::find(record_tasks_.begin(), record_tasks_.end(), task);
        if (queued != record_tasks_.end()) {
            record_tasks_.erase(queued);  // not taken by the writer: nothing is written
            return sdk::Status(sdk::ErrorCode::Timeout,
                               "the store did not take the job records within " + waited + "; nothing was submitted");
        }
        task->abandoned = true;
        return sdk::Status(sdk::ErrorCode::Timeout, "the job records were not committed within " + waited +
                                                        "; if they are, the jobs are marked failed, not run");
    }
    return task->status;
}

void JobService::overlay_published(JobRecord& job) {
    if (job.state != "submitting") {
        return;
    }
    std::lock_guard<std::mutex> lock(moves_mutex_);
    if (published_.count(job.job_id) != 0) {
        job.state = "queued";
    }
}

bool JobService::director_job_cancelled(const std::string& job_id) {
    std::lock_guard<std::mutex> lock(director_mutex_);
    return director_cancelled_.count(job_id) != 0;
}

void JobService::launch_on_director(const JobRecord& job) {
    std::lock_guard<std::mutex> lock(director_mutex_);
    if (stopping_) {
        return;  // left queued; the next start runs it
    }
    for (auto it = director_threads_.begin(); it != director_threads_.end();) {
        if (it->second->load()) {
            it->first.join();  // already returned: no wait
            it = director_threads_.erase(it);
        } else {
            ++it;
        }
    }
    auto ended = std::make_shared<std::atomic<bool>>(false);
    director_threads_.emplace_back(std::thread([this, ended, id = job.job_id] {
                                       run_on_director(id);
                                       {
                                           // Its cancel flag served this run only: a
                                           // long-lived director would keep every one.
                                           std::lock_guard<std::mutex> lock(director_mutex_);
                                           director_cancelled_.erase(id);
                                       }
                                       ended->store(true);
                                   }),
                                   ended);
}

void JobService::run_on_director(const std::string& job_id) {
    auto job = store_.get(job_id);
    for (auto pause = 500ms; !job && job.error().code != sdk::ErrorCode::NotFound && !stopping_;
         pause = longer(pause)) {
        // A read the store failed (not a missing job): without this the job stayed queued with
        // no thread to run it until the next start.
        std::unique_lock<std::mutex> lock(changed_mutex_);
        changed_.wait_for(lock, pause, [&] { return stopping_.load(); });
        lock.unlock();
        job = store_.get(job_id);
    }
    if (!job || job->is_terminal()) {
        return;
    }
    auto fn = functions_.find(job->process);
    if (fn == functions_.end()) {
        return;
    }
    ResultMessage started;
    started.type = EventType::Started;
    started.job_id = job_id;
    started.process = job->process;
    started.grid = kDirectorGrid;
    started.attempt = job->attempts + 1;
    started.ttp_id = "director";
    (void)handle_event(started);
    logger_.info("director-side job started", log_fields({{"job_id", job_id}, {"process", job->process}}));

    DirectorCtx ctx(*this, *job);
    sdk::Result<std::string> outputs = fn->second->execute(ctx, job->message.dump());
    if (stopping_ && !director_job_cancelled(job_id) && !outputs) {
        logger_.info("director-side job interrupted by shutdown; it runs again at start",
                     log_fields({{"job_id", job_id}}));
        return;
    }
    ResultMessage result = started;
    result.type = EventType::Result;
    result.final = true;
    if (outputs) {
        result.outcome = Outcome::Succeeded;
        result.outputs = json::parse(*outputs, nullptr, false);
        if (!result.outputs.is_object()) {
            result.outcome = Outcome::Failed;
            result.outputs = json::object();
            result.reason = "ttp function '" + job->process + "' returned outputs that are not a JSON object";
        }
    } else if (outputs.error().code == sdk::ErrorCode::Cancelled || director_job_cancelled(job_id)) {
        result.outcome = Outcome::Cancelled;
        result.reason = "cancelled while running: " + outputs.error().message;
    } else {
        result.outcome = Outcome::Failed;
        result.reason = outputs.error().message;
    }
    // Its follow-ups (an optimization's trials) feed only this result. Unfinished ones are
    // cancelled whatever the outcome: without a result what they would archive has no place,
    // and a search that succeeded at its time limit has given up on them (they held the grids
    // past the limit). Finished ones are left as they are.
    cancel_unfinished(ctx.follow_ups());
    // The result lives only here: it is retried while the store is unavailable (a full disk),
    // not dropped after a few tries (the job then stayed running and ran again in full at the
    // next start). A stop ends the retries: the job runs again at the next start.
    sdk::Status st;
    auto pause = 500ms;
    while (true) {
        try {
            st = handle_event(result);
        } catch (const std::exception& e) {
            st = sdk::Status(sdk::ErrorCode::Internal, std::string("archival threw: ") + e.what());
        }
        if (st || (st.code() != sdk::ErrorCode::Unavailable && st.code() != sdk::ErrorCode::Timeout) || stopping_) {
            break;
        }
        logger_.warn("director-side job result deferred", log_fields({{"job_id", job_id}, {"error", st.message()},
                                                                      {"retry_in_ms", pause.count()}}));
        std::unique_lock<std::mutex> lock(changed_mutex_);
        changed_.wait_for(lock, pause, [&] { return stopping_.load(); });
        pause = longer(pause);
    }
    if (!st) {
        logger_.error("director-side job result not archived", log_fields({{"job_id", job_id}, {"error", st.message()}}));
        if (st.code() != sdk::ErrorCode::Unavailable && st.code() != sdk::ErrorCode::Timeout) {
            // It cannot be archived: the job fails saying why, rather than run again at start.
            (void)store_.update(job_id, [&](JobRecord& j) {
                if (j.is_terminal()) {
                    return false;
                }
                j.state = "failed";
                j.reason = "result not archived: " + st.message();
                j.finished_at = now_iso8601();
                return true;
            });
            notify_changed();
        }
    }
}

void JobService::cancel_unfinished(const std::vector<std::string>& follow_ups) {
    // Queued ones are dropped (their TTP is told, as for any cancel); running ones stop at their
    // next safe point. Finished ones are left as they are (no second cancel notice).
    for (const auto& id : follow_ups) {
        auto follow_up = store_.get(id);
        if (!follow_up || follow_up->is_terminal()) {
            continue;
        }
        if (auto cancelled = cancel(id); !cancelled) {
            logger_.warn("follow-up job not cancelled",
                         log_fields({{"job_id", id}, {"by", follow_up->parent_job}, {"error", cancelled.error().message}}));
        }
    }
}

int JobService::choose_grid(const JobSpec& spec, std::map<int, int>& outstanding) {
    const int n = spec.grids.is_array() ? static_cast<int>(spec.grids.size()) : 0;
    if (n <= 1) {
        return 0;
    }
    // Prefer grids with a TTP attached, then the grid with the fewest unfinished jobs.
    int best = 0;
    std::pair<int, int> best_score{2, 1 << 30};
    for (int g = 0; g < n; ++g) {
        (void)declare_grid(g);  // once per grid and director, not on every submit
        auto consumers = mq_.consumer_count(options_.topology.jobs(g));
        const int has_ttp = consumers && *consumers > 0 ? 0 : 1;
        const std::pair<int, int> score{has_ttp, outstanding[g]};
        if (score < best_score) {
            best_score = score;
            best = g;
        }
    }
    outstanding[best]++;
    return best;
}

sdk::Status JobService::declare_grid(int grid) {
    std::lock_guard<std::mutex> lock(grids_mutex_);
    if (!declared_grids_[grid]) {
        if (auto st = options_.topology.declare_grid(mq_, grid); !st) {
            return st;
        }
        declared_grids_[grid] = true;
    }
    return {};
}

sdk::Message JobService::job_message(const JobRecord& job) {
    return make_message(job.job_id, job.message, priority_of(job.process));
}

sdk::Status JobService::publish_job(const JobRecord& job) {
    if (auto st = declare_grid(job.grid); !st) {
        return st;
    }
    return mq_.publish(options_.topology.jobs(job.grid), job_message(job), options_.publish_timeout);
}

sdk::Result<std::vector<JobRecord>> JobService::submit(std::vector<JobSpec> specs) {
    std::vector<JobRecord> jobs;
    // Unfinished jobs per grid, counting this batch's own jobs as they are placed, so one POST
    // with many combinations spreads across grids.
    // Counted only when a job has grids to choose from: listing every stored job on each
    // submit made submission cost grow with the store (the hot path of one-job POSTs).
    std::map<int, int> outstanding;
    bool counted = false;
    // Placing by load is read-count-then-insert: concurrent submits would all see the same
    // counts and land on one grid, so they are serialised from the count until the insert.
    std::unique_lock<std::mutex> placing(placement_mutex_, std::defer_lock);
    for (const JobSpec& spec : specs) {
        if (spec.grid < 0 && spec.grids.is_array() && spec.grids.size() > 1) {
            placing.lock();
            break;
        }
    }
    const auto choose = [&](const JobSpec& spec) {
        if (!counted && spec.grids.is_array() && spec.grids.size() > 1) {
            counted = true;
            if (auto existing = store_.list(JobFilter{}); existing) {
                for (const auto& j : *existing) {
                    if (!j.is_terminal()) {
                        outstanding[j.grid]++;
                    }
                }
            }
        }
        return choose_grid(spec, outstanding);
    };
    for (JobSpec& spec : specs) {
        JobRecord job;
        job.job_id = new_job_id();
        job.process = spec.process;
        job.filters = spec.filters;
        job.keys = spec.keys;
        const bool on_director = runs_on_director(spec.process);
        job.grid = on_director ? kDirectorGrid : spec.grid >= 0 ? spec.grid : choose(spec);
        job.max_attempts = options_.max_attempts;
        job.created_at = now_iso8601();
        job.parent_job = spec.parent_job;
        JobMessage msg;
        msg.job_id = job.job_id;
        msg.process = job.process;
        msg.keys = job.filters;
        msg.grid = job.grid;
        msg.grids = spec.grids;
        msg.parameters = spec.parameters;
        msg.attempt = 1;
        msg.max_attempts = job.max_attempts;
        job.message = msg.to_json();
        jobs.push_back(std::move(job));
    }
    // The records are committed first (one durable commit, by the writer with whatever else it
    // has); only then are the jobs published, without waiting for their confirms (see post).
    // A crash before a publish leaves the job `submitting`: start() publishes it again.
    auto task = record_async(jobs);
    const sdk::Status recorded = await_recorded(task);
    if (placing.owns_lock()) {
        placing.unlock();
    }
    if (!recorded) {
        return recorded.error();
    }
    for (std::size_t i = 0; i < jobs.size() && i < task->jobs.size(); ++i) {
        jobs[i].doc_id = task->jobs[i].doc_id;  // the answer names the stored record
    }
    submitted_total_.fetch_add(jobs.size(), std::memory_order_relaxed);
    std::vector<JobRecord> outgoing;
    for (JobRecord& job : jobs) {
        if (job.grid != kDirectorGrid) {
            // Reads show it `queued` (the overlay) from now on.
            job.state = "queued";
            outgoing.push_back(job);
        } else {
            auto updated = store_.update(job.job_id, [&](JobRecord& j) {
                if (j.state != "submitting") {
                    return false;
                }
                j.state = "queued";
                return true;
            });
            if (updated) {
                job = *updated;
            }
            launch_on_director(job);
        }
        logger_.info("job submitted", log_fields({{"job_id", job.job_id}, {"process", job.process},
                                               {"grid", job.grid}, {"state", job.state}}));
    }
    if (!outgoing.empty()) {
        post(outgoing);
    }
    notify_changed();
    return jobs;
}

void JobService::append_metrics(std::string& out) const {
    http::append_counter(out, "synergos_jobs_submitted_total", "Jobs recorded and handed to the queue.",
                         submitted_total_.load(std::memory_order_relaxed));
    http::append_counter(out, "synergos_job_events_total",
                         "Started events, progress and results taken from the results queue and written.",
                         events_total_.load(std::memory_order_relaxed));
    commit_latency_.render(out, "synergos_job_store_commit_seconds",
                           "The job writer's transactions (new jobs, events, queued moves) until durable.");
}

void JobService::post(const std::vector<JobRecord>& jobs) {
    {
        std::lock_guard<std::mutex> lock(moves_mutex_);
        for (const auto& job : jobs) {
            published_.insert(job.job_id);
        }
    }
    auto* async = dynamic_cast<sdk::AsyncMessageQueue*>(&mq_);
    std::shared_ptr<PublishLedger> ledger;
    {
        std::lock_guard<std::mutex> lock(ledger_->mutex);
        if (async != nullptr && ledger_->owner != nullptr) {
            ledger = ledger_;
        }
    }
    for (const auto& job : jobs) {
        if (!ledger) {
            // A backend without asynchronous publishing, or no service running: one at a time.
            published(job.job_id, job.grid, publish_job(job));
            continue;
        }
        if (auto st = declare_grid(job.grid); !st) {
            published(job.job_id, job.grid, st);
            continue;
        }
        {
            std::lock_guard<std::mutex> lock(ledger->mutex);
            ++ledger->outstanding;
        }
        auto done = std::make_shared<JobPublished>(ledger, job.job_id, job.grid);
        if (auto st = async->publish_async(options_.topology.jobs(job.grid), job_message(job),
                                           options_.publish_timeout, done);
            !st) {
            done->on_published(st);  // not queued: reported here
        }
    }
}

void JobService::published(const std::string& job_id, int grid, const sdk::Status& st) {
    // Short: it may run on the backend's thread. The writer writes what it means.
    {
        std::lock_guard<std::mutex> lock(moves_mutex_);
        if (st) {
            // `queued` is written with a later commit (see queued_flush_delay).
            if (moves_pending_.empty()) {
                moves_since_ = std::chrono::steady_clock::now();
            }
            moves_pending_.push_back(job_id);
        } else {
            publish_failures_.emplace_back(job_id, "could not publish to " + options_.topology.jobs(grid) +
                                                       ": " + st.message());
        }
    }
    moves_cv_.notify_all();
}

void JobService::end_cancelled_at_start(const std::string& job_id, const std::string& reason) {
    (void)store_.update(job_id, [&](JobRecord& j) {
        if (j.is_terminal()) {
            return false;
        }
        j.state = "cancelled";
        j.reason = reason;
        j.finished_at = now_iso8601();
        return true;
    });
    notify_changed();
}

bool JobService::cancel_pending(const JobRecord& job) {
    return !job.is_terminal() && job.reason.rfind(kCancelRequested, 0) == 0;
}

void JobService::resend_cancel(const JobRecord& job) {
    if (auto st = send_cancel(job); !st) {
        logger_.warn("cancel notice not sent again", log_fields({{"job_id", job.job_id}, {"error", st.message()}}));
    } else {
        logger_.info("cancel notice sent again (a TTP keeps notices only in memory)",
                     log_fields({{"job_id", job.job_id}}));
    }
}

sdk::Status JobService::send_cancel(const JobRecord& job) {
    const json cancel{{"type", "cancel"}, {"job_id", job.job_id}};
    return mq_.publish(options_.topology.control(job.grid), make_message(job.job_id + ".cancel", cancel),
                       options_.publish_timeout);
}

sdk::Result<JobRecord> JobService::cancel(const std::string& job_id) {
    bool was_running = false;
    bool changed = false;
    auto job = store_.update(job_id, [&](JobRecord& j) {
        if (j.is_terminal()) {
            return false;
        }
        changed = true;
        if (j.state == "running") {
            was_running = true;
            j.reason = kCancelRequested;
        } else {
            j.state = "cancelled";
            j.reason = "cancelled while queued";
            j.finished_at = now_iso8601();
        }
        return true;
    });
    if (!job) {
        return job;
    }
    if (job->is_terminal() && job->state != "cancelled") {
        return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                          "Job '" + job_id + "' already " + job->state + "; nothing to cancel"};
    }
    if (job->grid == kDirectorGrid) {
        if (changed) {
            // Also for a queued one: its thread may have read it before the cancel. A job that
            // had already ended has no thread left to clear the flag.
            std::lock_guard<std::mutex> lock(director_mutex_);
            director_cancelled_.insert(job_id);
        }
        notify_changed();
        return job;
    }
    // Tell the grid's TTP either way: a queued job is dropped when it is delivered.
    if (auto st = send_cancel(*job); !st) {
        if (was_running) {
            return sdk::Error{st.code(), "cancellation of running job '" + job_id +
                                             "' could not reach its TTP: " + st.message()};
        }
        logger_.warn("cancel notice not delivered", log_fields({{"job_id", job_id}, {"error", st.message()}}));
    }
    notify_changed();
    return job;
}

void JobService::explain(std::vector<JobRecord>& jobs, bool rank) {
    // One consumer count per grid and one list of the queue per call, however many jobs.
    std::map<int, bool> unserved;
    const auto no_ttp = [&](int grid) {
        auto it = unserved.find(grid);
        if (it == unserved.end()) {
            auto consumers = mq_.consumer_count(options_.topology.jobs(grid));
            it = unserved.emplace(grid, consumers && *consumers == 0).first;
        }
        return it->second;
    };
    const auto join = [](const std::string& stored, const std::string& now) {
        return stored.empty() ? now : stored + "; " + now;
    };
    std::optional<std::vector<JobRecord>> queued;
    for (JobRecord& job : jobs) {
        if (job.state != "queued" && job.state != "running") {
            continue;
        }
        if (job.grid == kDirectorGrid) {
            if (job.state == "queued") {
                job.reason = "starting on the director";
            }
            continue;
        }
        const std::string grid = std::to_string(job.grid);
        if (job.state == "running") {
            // Computed at each read, so it goes away as soon as a TTP consumes the grid again.
            if (no_ttp(job.grid)) {
                job.reason = join(job.reason, "no TTP connected for grid " + grid + "; the job resumes when one connects");
            }
            continue;
        }
        if (no_ttp(job.grid)) {
            job.reason = join(job.reason, "no TTP connected for grid " + grid);
            continue;
        }
        if (!rank) {
            if (job.reason.empty()) {
                job.reason = "waiting on grid " + grid;
            }
            continue;
        }
        if (!queued) {
            auto q = list_jobs(JobFilter{"queued", "", "", ""}, false);
            queued = q ? std::move(*q) : std::vector<JobRecord>{};
        }
        int ahead = 0;
        const int mine = priority_of(job.process);
        for (const auto& other : *queued) {
            if (other.grid == job.grid && other.job_id != job.job_id &&
                (priority_of(other.process) > mine ||
                 (priority_of(other.process) == mine && other.doc_id < job.doc_id))) {
                ++ahead;
            }
        }
        job.reason = join(job.reason, ahead == 0 ? "next in line on grid " + grid
                                                 : "waiting behind " + std::to_string(ahead) +
                                                       (ahead == 1 ? " job" : " jobs") + " on grid " + grid);
    }
}

sdk::Result<JobRecord> JobService::get(const std::string& job_id) {
    auto job = store_.get(job_id);
    if (!job) {
        return job;
    }
    overlay_published(*job);
    std::vector<JobRecord> one{std::move(*job)};
    explain(one, true);
    return std::move(one.front());
}

sdk::Result<std::vector<JobRecord>> JobService::list(const JobFilter& filter, bool explained) {
    return list_jobs(filter, explained);
}

sdk::Result<std::vector<JobRecord>> JobService::list_jobs(const JobFilter& filter, bool explained) {
    // `submitting` and `queued` depend on the published overlay: filter after applying it.
    const bool overlaid = filter.state == "submitting" || filter.state == "queued";
    JobFilter stored = filter;
    if (overlaid) {
        stored.state.clear();
    }
    auto jobs = store_.list(stored);
    if (jobs) {
        for (auto& job : *jobs) {
            overlay_published(job);
        }
        if (overlaid) {
            jobs->erase(std::remove_if(jobs->begin(), jobs->end(),
                                       [&](const JobRecord& j) { return j.state != filter.state; }),
                        jobs->end());
        }
        if (explained) {
            explain(*jobs, false);  // no ranking in a list: it would cost a pass per job
        }
    }
    return jobs;
}

sdk::Result<JobRecord> JobService::wait(const std::string& job_id, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        std::uint64_t seen;
        {
            std::lock_guard<std::mutex> lock(changed_mutex_);
            seen = change_counter_;
        }
        auto job = store_.get(job_id);
        if (!job || job->is_terminal()) {
            return job;
        }
        std::unique_lock<std::mutex> lock(changed_mutex_);
        if (!changed_.wait_until(lock, deadline, [&] { return change_counter_ != seen || stopping_; })) {
            return job;  // timed out: the job as it is now
        }
        if (stopping_) {
            return job;
        }
    }
}

void JobService::notify_changed() {
    {
        std::lock_guard<std::mutex> lock(changed_mutex_);
        ++change_counter_;
    }
    changed_.notify_all();
}

void JobService::archival_loop() {
    std::unique_ptr<sdk::Consumer> consumer;
    auto backoff = 100ms;
    while (!stopping_) {
        if (!consumer) {
            auto c = mq_.consume(options_.topology.results(), options_.results_prefetch);
            if (!c) {
                logger_.error("results consumer could not start; retrying",
                              log_fields({{"queue", options_.topology.results()}, {"error", c.error().message}}));
                std::unique_lock<std::mutex> lock(changed_mutex_);
                changed_.wait_for(lock, backoff, [&] { return stopping_.load(); });
                backoff = std::min<std::chrono::milliseconds>(backoff * 2, 5000ms);
                continue;
            }
            consumer = std::move(*c);
            backoff = 100ms;
        }
        auto d = consumer->receive(options_.receive_timeout);
        if (!d) {
            // The backend keeps reconnecting; do not spin while it is down.
            std::unique_lock<std::mutex> lock(changed_mutex_);
            changed_.wait_for(lock, backoff, [&] { return stopping_.load(); });
            continue;
        }
        if (!d->has_value()) {
            continue;
        }
        // Whatever else is already delivered joins this one's transaction.
        std::vector<sdk::Delivery> deliveries;
        deliveries.push_back(std::move(**d));
        while (deliveries.size() < std::max<std::size_t>(options_.results_prefetch, 1)) {
            auto more = consumer->receive(0ms);
            if (!more || !more->has_value()) {
                break;
            }
            deliveries.push_back(std::move(**more));
        }
        try {
            handle_deliveries(*consumer, deliveries);
        } catch (const std::exception& e) {
            // A bug, not an input: the thread must not end in std::terminate. Closing the
            // consumer returns the unsettled deliveries to the queue; they come back after a
            // pause, so a delivery that keeps throwing does not spin.
            logger_.error("results could not be handled; redelivering them after a pause",
                          log_fields({{"error", e.what()}, {"deliveries", deliveries.size()}}));
            consumer->close();
            consumer.reset();
            std::unique_lock<std::mutex> lock(changed_mutex_);
            changed_.wait_for(lock, 1000ms, [&] { return stopping_.load(); });
        }
    }
    // A volatile queue loses what it holds when the process ends: the results the stopped TTPs
    // (stopped before this service) left in it are archived now, or their jobs would run again.
    while (consumer && options_.volatile_queue) {
        std::vector<sdk::Delivery> deliveries;
        while (deliveries.size() < std::max<std::size_t>(options_.results_prefetch, 1)) {
            auto more = consumer->receive(0ms);
            if (!more || !more->has_value()) {
                break;
            }
            deliveries.push_back(std::move(**more));
        }
        if (deliveries.empty()) {
            break;
        }
        try {
            handle_deliveries(*consumer, deliveries);
        } catch (const std::exception& e) {
            logger_.error("results left at stop could not be archived", log_fields({{"error", e.what()}}));
            break;
        }
    }
    if (consumer) {
        consumer->close();
    }
}

void JobService::handle_deliveries(sdk::Consumer& consumer, const std::vector<sdk::Delivery>& deliveries) {
    auto task = std::make_shared<EventTask>();
    for (const auto& d : deliveries) {
        task->events.push_back(ResultMessage::from_json(d.message.body));
    }
    task->fates.assign(deliveries.size(), EventTask::Fate::Alone);
    task->archived.resize(deliveries.size());
    task->cancel_again.resize(deliveries.size());
    bool queued = false;
    {
        std::lock_guard<std::mutex> lock(moves_mutex_);
        if (writer_running_ && !writer_stop_) {
            if (event_tasks_.empty()) {
                events_since_ = std::chrono::steady_clock::now();
            }
            event_tasks_.push_back(task);
            queued = true;
        }
    }
    if (queued) {
        moves_cv_.notify_all();
        // The writer finishes every task it takes (each commit is bounded by the store's busy
        // timeout); a stop joins this thread before the writer.
        std::unique_lock<std::mutex> lock(moves_mutex_);
        while (!task->done) {
            recorded_cv_.wait_for(lock, 1s, [&] { return task->done; });
        }
    } else {
        write({}, {}, {task}, {});
    }
    // Durable: now the broker may forget them.
    bool acked = false;
    for (std::size_t i = 0; i < deliveries.size(); ++i) {
        if (task->fates[i] == EventTask::Fate::Ack) {
            (void)consumer.ack(deliveries[i].tag);
            acked = true;
        }
    }
    if (acked) {
        notify_changed();
    }
    for (std::size_t i = 0; i < deliveries.size(); ++i) {
        if (task->fates[i] == EventTask::Fate::Ack && task->cancel_again[i]) {
            resend_cancel(*task->cancel_again[i]);
        }
        if (task->fates[i] == EventTask::Fate::Ack && task->archived[i]) {
            after_archived(*task->archived[i], *task->events[i]);
        } else if (task->fates[i] == EventTask::Fate::Alone) {
            handle_delivery(consumer, deliveries[i]);
        }
    }
}

void JobService::handle_delivery(sdk::Consumer& consumer, const sdk::Delivery& delivery) {
    auto event = ResultMessage::from_json(delivery.message.body);
    if (!event) {
        logger_.error("malformed result message dead-lettered",
                      log_fields({{"queue", options_.topology.results()}, {"error", event.error().message},
                              {"message_id", delivery.message.id}}));
        (void)consumer.reject(delivery.tag, false);
        return;
    }
    sdk::Status st;
    try {
        st = handle_event(*event);
    } catch (const std::exception& e) {
        // A bug, not bad input: keep the loop alive and keep the message for inspection.
        st = sdk::Status(sdk::ErrorCode::Internal, std::string("archival threw: ") + e.what());
    }
    if (st) {
        archival_pause_ = std::chrono::milliseconds(500);
        (void)consumer.ack(delivery.tag);
        return;
    }
    if (st.code() == sdk::ErrorCode::Unavailable || st.code() == sdk::ErrorCode::Timeout) {
        // The store is unavailable: requeue after a pause so nothing is lost. The pause grows
        // while it lasts (a full disk), up to 30 s, and starts over once a write succeeds.
        logger_.warn("archival deferred", log_fields({{"job_id", event->job_id}, {"error", st.message()},
                                                      {"retry_in_ms", archival_pause_.count()}}));
        {
            std::unique_lock<std::mutex> lock(changed_mutex_);
            changed_.wait_for(lock, archival_pause_, [&] { return stopping_.load(); });
        }
        archival_pause_ = longer(archival_pause_);
        (void)consumer.reject(delivery.tag, true);
        return;
    }
    logger_.error("result message dead-lettered",
                  log_fields({{"job_id", event->job_id}, {"error", st.message()}}));
    (void)consumer.reject(delivery.tag, false);
}

sdk::Status JobService::handle_event(const ResultMessage& event) {
    sdk::Status st;
    std::optional<JobRecord> archived;
    std::optional<JobRecord> cancel_again;
    bool archive_writes = false;  // the commit carried the function's archive writes
    {
        JobStore::Batch batch(store_);
        ArchiveCtx ctx(*this, storage_);
        auto plan = plan_event(batch, event, ctx);
        if (!plan) {
            st = plan.status();
        } else {
            archive_writes = plan->archived && !plan->extra.empty();
            if (plan->change) {
                batch.put(plan->job, std::move(plan->extra));
            }
            st = batch.commit();
            if (st && plan->resend_cancel) {
                cancel_again = plan->job;
            }
            if (st && (plan->archived || plan->ended_unsuccessfully)) {
                archived = std::move(plan->job);
            }
        }
    }
    if (!st && (st.code() == sdk::ErrorCode::Internal || st.code() == sdk::ErrorCode::ResourceExhausted)) {
        // The store failed to read or write (disk full, I/O error), not the message: it is
        // kept and retried, not dead-lettered (which left its job unfinished for good).
        return sdk::Status(sdk::ErrorCode::Unavailable, "the store could not record it: " + st.message());
    }
    if (cancel_again) {
        resend_cancel(*cancel_again);
    }
    if (archive_writes && !st && sdk::batch_refused(st.code())) {
        // The store refuses the archive's writes for good: they need a record that is gone (a
        // Require: its experiment was deleted while the job ran), or they are not valid (an
        // Insert of a key that exists, a bad key or document from the function). Nothing was
        // written; the job fails with the reason instead of staying `running` behind a
        // dead-lettered result.
        const std::string reason = st.message();
        JobStore::Batch batch(store_);
        ArchiveCtx ctx(*this, storage_);
        auto plan = plan_event(batch, event, ctx, &reason);
        if (plan && plan->change) {
            batch.put(plan->job, {});
            st = batch.commit();
            if (st) {
                logger_.warn("job result not archived", log_fields({{"job_id", event.job_id},
                                                                    {"reason", reason}}));
                if (plan->ended_unsuccessfully) {
                    archived = plan->job;
                }
            }
        }
    }
    notify_changed();
    if (archived) {
        after_archived(*archived, event);
    }
    return st;
}

sdk::Result<JobService::EventPlan> JobService::plan_event(JobStore::Batch& batch, const ResultMessage& event,
                                                          sdk::ArchiveContext& ctx,
                                                          const std::string* archive_refused) {
    auto stored = batch.get(event.job_id);
    if (!stored) {
        return stored.error();
    }
    EventPlan plan;
    plan.job = std::move(*stored);
    JobRecord& j = plan.job;
    if (j.state == "failed" && j.reason.rfind("could not publish", 0) == 0 &&
        (event.type == EventType::Started || event.type == EventType::Result)) {
        // Its publish was given up on (no confirm in time), but the broker had stored it: a
        // TTP ran it. Its events count, rather than being dropped as a finished job's.
        j.state = "queued";
        j.reason.clear();
        j.finished_at.clear();
        plan.change = true;
        logger_.info("job whose publish was unconfirmed reached a TTP after all",
                     log_fields({{"job_id", j.job_id}}));
    }
    if (j.is_terminal()) {
        if (event.type == EventType::Result) {
            logger_.debug("duplicate result ignored", log_fields({{"job_id", event.job_id}, {"state", j.state}}));
        } else if (event.type == EventType::Started && j.state == "cancelled" && j.grid != kDirectorGrid) {
            // A TTP runs a job cancelled while queued: its notice never reached that TTP, or the
            // TTP restarted and forgot it (notices live in its memory). Told again, it stops
            // at the next safe point instead of running the job to its end for nothing.
            plan.resend_cancel = true;
        }
        return plan;  // terminal states are final: late and duplicate events change nothing
    }
    switch (event.type) {
        case EventType::Started:
            // The TTP publishes "started" while the job runs, so it may arrive after the
            // attempt's own failed-and-retrying result: that attempt is over.
            if (j.state == "queued" && event.attempt <= j.attempts) {
                return plan;
            }
            j.state = "running";
            j.attempts = std::max(j.attempts, event.attempt);
            if (j.started_at.empty()) {
                j.started_at = now_iso8601();
            }
            j.ttp_id = event.ttp_id;
            if (cancel_pending(j)) {
                plan.resend_cancel = j.grid != kDirectorGrid;
            } else {
                j.reason.clear();
            }
            plan.change = true;
            return plan;
        case EventType::Progress:
            j.state = "running";
            j.progress = event.progress;
            plan.change = true;
            return plan;
        case EventType::Result:
            break;
    }
    if (event.outcome == Outcome::Failed && !event.final && event.attempt < j.attempts) {
        // An earlier attempt's "failed, retrying" arriving after a later attempt started (a
        // redelivery, or a replayed commit): that attempt is over; the job is not queued again.
        return plan;
    }
    plan.change = true;
    j.attempts = std::max(j.attempts, event.attempt);
    // The started event is best effort and travels beside the result: a short job's result may
    // come first (the started event then changes nothing). The result says who ran it.
    if (j.ttp_id.empty()) {
        j.ttp_id = event.ttp_id;
    }
    if (j.started_at.empty()) {
        j.started_at = now_iso8601();
    }
    const auto finish = [&](const std::string& state, const std::string& reason) {
        j.state = state;
        j.reason = reason;
        plan.ended_unsuccessfully = state != "succeeded";
        j.finished_at = now_iso8601();
        if (j.progress.is_object()) {
            j.progress.erase("eta_s");  // a finished job has no time left
        }
    };
    switch (event.outcome) {
        case Outcome::Failed:
            if (!event.final) {
                j.state = "queued";
                j.reason = "retrying (attempt " + std::to_string(event.attempt + 1) + " of " +
                           std::to_string(j.max_attempts) + ") after: " + bounded_reason(event.reason);
                // Kept in the stored message: a republish at start-up still carries it.
                if (event.attempt == 1 && j.message.is_object() && !j.message.contains("first_failure")) {
                    j.message["first_failure"] = bounded_reason(event.reason);
                }
                return plan;
            }
            logger_.warn("job failed", log_fields({{"job_id", event.job_id}, {"reason", event.reason}}));
            finish("failed", event.reason);
            return plan;
        case Outcome::Cancelled:
            finish("cancelled", event.reason.empty() ? "cancelled" : event.reason);
            return plan;
        case Outcome::Succeeded:
            break;
    }
    auto fn = functions_.find(j.process);
    if (fn == functions_.end()) {
        finish("failed", "result of process '" + j.process +
                             "' cannot be archived: no ttp function for it is active on the director");
        return plan;
    }
    if (archive_refused != nullptr) {
        finish("failed", "archival failed: " + *archive_refused);
        return plan;
    }
    auto mutations = fn->second->archive(ctx, j.message.dump(), event.outputs.dump());
    if (!mutations) {
        finish("failed", "archival failed: " + mutations.error().message);
        return plan;
    }
    finish("succeeded", "");
    j.outputs = event.outputs;
    plan.extra = std::move(*mutations);
    plan.archived = true;
    return plan;
}

void JobService::after_archived(const JobRecord& job, const ResultMessage& event) {
    auto fn = functions_.find(job.process);
    if (fn == functions_.end()) {
        return;
    }
    ArchiveCtx ctx(*this, storage_);
    if (job.state != "succeeded") {
        auto* observer = dynamic_cast<sdk::JobEndObserver*>(fn->second);
        if (observer == nullptr) {
            return;
        }
        if (auto st = observer->after_unsuccessful(ctx, job.message.dump(), job.state, job.reason); !st) {
            logger_.warn("step after an unsuccessful job failed",
                         log_fields({{"job_id", job.job_id}, {"state", job.state}, {"error", st.message()}}));
        }
        return;
    }
    if (auto st = fn->second->after_archive(ctx, job.message.dump(), event.outputs.dump()); !st) {
        logger_.warn("post-archival step failed",
                     log_fields({{"job_id", event.job_id}, {"error", st.message()}}));
    }
    logger_.info("job archived", log_fields({{"job_id", event.job_id}, {"process", job.process}}));
}

}  // namespace synergos::core::jobs
