// SPDX-License-Identifier: Apache-2.0
#include "synergos/core/jobs/job_service.hpp"

#include <algorithm>

namespace synergos::core::jobs {

using nlohmann::json;
using namespace std::chrono_literals;

class JobService::ArchiveCtx final : public sdk::ArchiveContext {
public:
    explicit ArchiveCtx(JobService& s) : s_(s) {}
    sdk::Logger& logger() noexcept override { return s_.logger_; }
    sdk::StorageBackend& storage() noexcept override { return s_.storage_; }
    sdk::Tracker* tracker() noexcept override { return s_.tracker_; }
    std::string outputs_dir() const override { return s_.options_.outputs_dir; }

private:
    JobService& s_;
};

JobService::JobService(sdk::StorageBackend& storage, sdk::MessageQueue& mq, sdk::Logger& logger,
                       FunctionRegistry functions, sdk::Tracker* tracker, JobServiceOptions options)
    : storage_(storage),
      mq_(mq),
      logger_(logger),
      functions_(std::move(functions)),
      tracker_(tracker),
      options_(std::move(options)),
      store_(storage) {}

JobService::~JobService() { stop(); }

sdk::Status JobService::start() {
    if (auto st = options_.topology.declare_grid(mq_, 0); !st) {
        return st;
    }
    // Jobs left in `submitting` were recorded but maybe never published (a crash between the
    // two steps). Publish them again: a duplicate delivery is harmless (archival is idempotent).
    auto pending = store_.list(JobFilter{"submitting", "", "", ""});
    if (!pending) {
        return pending.status();
    }
    for (const JobRecord& job : *pending) {
        JobSpec spec;
        spec.grid = job.grid;
        if (auto st = publish_job(job, spec); !st) {
            logger_.warn("job could not be republished at start-up",
                         log_fields({{"job_id", job.job_id}, {"error", st.message()}}));
            continue;
        }
        (void)store_.update(job.job_id, [](JobRecord& j) {
            if (j.state != "submitting") {
                return false;
            }
            j.state = "queued";
            return true;
        });
    }
    stopping_ = false;
    archival_ = std::thread([this] { archival_loop(); });
    return {};
}

void JobService::stop() {
    stopping_ = true;
    notify_changed();
    if (archival_.joinable()) {
        archival_.join();
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
        (void)options_.topology.declare_grid(mq_, g);
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

sdk::Status JobService::publish_job(const JobRecord& job, const JobSpec&) {
    {
        std::lock_guard<std::mutex> lock(grids_mutex_);
        if (!declared_grids_[job.grid]) {
            if (auto st = options_.topology.declare_grid(mq_, job.grid); !st) {
                return st;
            }
            declared_grids_[job.grid] = true;
        }
    }
    return mq_.publish(options_.topology.jobs(job.grid),
                       make_message(job.job_id, job.message, priority_of(job.process)),
                       options_.publish_timeout);
}

sdk::Result<std::vector<JobRecord>> JobService::submit(std::vector<JobSpec> specs) {
    std::vector<JobRecord> jobs;
    std::vector<sdk::Mutation> batch;
    // Unfinished jobs per grid, counting this batch's own jobs as they are placed, so one POST
    // with many combinations spreads across grids.
    std::map<int, int> outstanding;
    if (auto existing = store_.list(JobFilter{}); existing) {
        for (const auto& j : *existing) {
            if (!j.is_terminal()) {
                outstanding[j.grid]++;
            }
        }
    }
    for (JobSpec& spec : specs) {
        JobRecord job;
        job.job_id = new_job_id();
        job.process = spec.process;
        job.filters = spec.filters;
        job.keys = spec.keys;
        job.grid = spec.grid >= 0 ? spec.grid : choose_grid(spec, outstanding);
        job.max_attempts = options_.max_attempts;
        job.created_at = now_iso8601();
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
        batch.push_back(store_.insert_mutation(job));
        jobs.push_back(std::move(job));
    }
    if (auto st = storage_.apply(batch); !st) {
        return st.error();
    }
    sdk::Status first_error;
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        JobRecord& job = jobs[i];
        sdk::Status st = publish_job(job, specs[i]);
        auto updated = store_.update(job.job_id, [&](JobRecord& j) {
            if (j.state != "submitting") {
                return false;
            }
            if (st) {
                j.state = "queued";
            } else {
                j.state = "failed";
                j.reason = "could not publish to " + options_.topology.jobs(j.grid) + ": " + st.message();
                j.finished_at = now_iso8601();
            }
            return true;
        });
        if (updated) {
            job = *updated;
        }
        if (!st && first_error) {
            first_error = st;
        }
        logger_.info("job submitted", log_fields({{"job_id", job.job_id}, {"process", job.process},
                                               {"grid", job.grid}, {"state", job.state}}));
    }
    notify_changed();
    if (!first_error) {
        return first_error.error();
    }
    return jobs;
}

sdk::Result<JobRecord> JobService::cancel(const std::string& job_id) {
    bool was_running = false;
    auto job = store_.update(job_id, [&](JobRecord& j) {
        if (j.is_terminal()) {
            return false;
        }
        if (j.state == "running") {
            was_running = true;
            j.reason = "cancellation requested; stopping at the next safe point";
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
    // Tell the grid's TTP either way: a queued job is dropped when it is delivered.
    json cancel{{"type", "cancel"}, {"job_id", job_id}};
    if (auto st = mq_.publish(options_.topology.control(job->grid), make_message(job_id + ".cancel", cancel),
                              options_.publish_timeout);
        !st) {
        if (was_running) {
            return sdk::Error{st.code(), "cancellation of running job '" + job_id +
                                             "' could not reach its TTP: " + st.message()};
        }
        logger_.warn("cancel notice not delivered", log_fields({{"job_id", job_id}, {"error", st.message()}}));
    }
    notify_changed();
    return job;
}

std::string JobService::queued_reason(const JobRecord& job) {
    auto consumers = mq_.consumer_count(options_.topology.jobs(job.grid));
    if (consumers && *consumers == 0) {
        return "no TTP connected for grid " + std::to_string(job.grid);
    }
    auto queued = store_.list(JobFilter{"queued", "", "", ""});
    int ahead = 0;
    if (queued) {
        const int mine = priority_of(job.process);
        for (const auto& other : *queued) {
            if (other.grid == job.grid && other.job_id != job.job_id &&
                (priority_of(other.process) > mine ||
                 (priority_of(other.process) == mine && other.doc_id < job.doc_id))) {
                ++ahead;
            }
        }
    }
    std::string reason = "waiting behind " + std::to_string(ahead) + " jobs on grid " +
                         std::to_string(job.grid);
    if (!job.reason.empty()) {
        reason = job.reason + "; " + reason;
    }
    return reason;
}

sdk::Result<JobRecord> JobService::get(const std::string& job_id) {
    auto job = store_.get(job_id);
    if (job && job->state == "queued") {
        job->reason = queued_reason(*job);
    }
    return job;
}

sdk::Result<std::vector<JobRecord>> JobService::list(const JobFilter& filter) {
    auto jobs = store_.list(filter);
    if (jobs) {
        for (auto& job : *jobs) {
            if (job.state == "queued" && job.reason.empty()) {
                job.reason = "waiting on grid " + std::to_string(job.grid);
            }
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
        handle_delivery(*consumer, **d);
    }
    if (consumer) {
        consumer->close();
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
        (void)consumer.ack(delivery.tag);
        return;
    }
    if (st.code() == sdk::ErrorCode::Unavailable || st.code() == sdk::ErrorCode::Timeout) {
        // The store is briefly unavailable: requeue after a pause so nothing is lost.
        logger_.warn("archival deferred", log_fields({{"job_id", event->job_id}, {"error", st.message()}}));
        std::unique_lock<std::mutex> lock(changed_mutex_);
        changed_.wait_for(lock, 500ms, [&] { return stopping_.load(); });
        (void)consumer.reject(delivery.tag, true);
        return;
    }
    logger_.error("result message dead-lettered",
                  log_fields({{"job_id", event->job_id}, {"error", st.message()}}));
    (void)consumer.reject(delivery.tag, false);
}

sdk::Status JobService::handle_event(const ResultMessage& event) {
    switch (event.type) {
        case EventType::Started: {
            auto r = store_.update(event.job_id, [&](JobRecord& j) {
                if (j.is_terminal()) {
                    return false;
                }
                j.state = "running";
                j.attempts = std::max(j.attempts, event.attempt);
                if (j.started_at.empty()) {
                    j.started_at = now_iso8601();
                }
                j.ttp_id = event.ttp_id;
                if (j.reason.rfind("cancellation requested", 0) != 0) {
                    j.reason.clear();
                }
                return true;
            });
            notify_changed();
            return r.status();
        }
        case EventType::Progress: {
            auto r = store_.update(event.job_id, [&](JobRecord& j) {
                if (j.is_terminal()) {
                    return false;
                }
                j.state = "running";
                j.progress = event.progress;
                return true;
            });
            notify_changed();
            return r.status();
        }
        case EventType::Result: {
            auto st = archive_result(event);
            notify_changed();
            return st;
        }
    }
    return {};
}

sdk::Status JobService::archive_result(const ResultMessage& event) {
    auto job = store_.get(event.job_id);
    if (!job) {
        return job.status();
    }
    if (job->is_terminal()) {
        logger_.debug("duplicate result ignored", log_fields({{"job_id", event.job_id}, {"state", job->state}}));
        return {};
    }
    auto finish = [&](const std::string& state, const std::string& reason,
                      std::vector<sdk::Mutation> extra) {
        return store_
            .update(
                event.job_id,
                [&](JobRecord& j) {
                    if (j.is_terminal()) {
                        return false;
                    }
                    j.state = state;
                    j.reason = reason;
                    j.attempts = std::max(j.attempts, event.attempt);
                    j.finished_at = now_iso8601();
                    if (state == "succeeded") {
                        j.outputs = event.outputs;
                    }
                    return true;
                },
                std::move(extra))
            .status();
    };
    switch (event.outcome) {
        case Outcome::Failed:
            if (!event.final) {
                return store_
                    .update(event.job_id,
                            [&](JobRecord& j) {
                                if (j.is_terminal()) {
                                    return false;
                                }
                                j.state = "queued";
                                j.attempts = std::max(j.attempts, event.attempt);
                                j.reason = "attempt " + std::to_string(event.attempt) + " of " +
                                           std::to_string(j.max_attempts) + " failed: " + event.reason +
                                           "; retrying";
                                return true;
                            })
                    .status();
            }
            logger_.warn("job failed", log_fields({{"job_id", event.job_id}, {"reason", event.reason}}));
            return finish("failed", event.reason, {});
        case Outcome::Cancelled:
            return finish("cancelled", event.reason.empty() ? "cancelled" : event.reason, {});
        case Outcome::Succeeded:
            break;
    }
    auto fn = functions_.find(job->process);
    if (fn == functions_.end()) {
        return finish("failed",
                      "result of process '" + job->process +
                          "' cannot be archived: no ttp function for it is active on the director",
                      {});
    }
    ArchiveCtx ctx(*this);
    const std::string job_json = job->message.dump();
    const std::string outputs_json = event.outputs.dump();
    auto mutations = fn->second->archive(ctx, job_json, outputs_json);
    if (!mutations) {
        return finish("failed", "archival failed: " + mutations.error().message, {});
    }
    if (auto st = finish("succeeded", "", std::move(*mutations)); !st) {
        return st;
    }
    if (auto st = fn->second->after_archive(ctx, job_json, outputs_json); !st) {
        logger_.warn("post-archival step failed",
                     log_fields({{"job_id", event.job_id}, {"error", st.message()}}));
    }
    logger_.info("job archived", log_fields({{"job_id", event.job_id}, {"process", job->process}}));
    return {};
}

}  // namespace synergos::core::jobs
