// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file job_store.hpp
/// Job records (kind "Job", key {job_id}) in the director's store, and their state machine:
///   submitting -> queued -> running -> succeeded | failed | cancelled
///   running -> queued (a failed attempt that will be retried)
///   queued | submitting -> cancelled
/// Terminal states are final: a late or duplicate event never moves a job out of one, which is
/// what makes archival idempotent by job id.

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/status.hpp>
#include <synergos/sdk/storage_backend.hpp>

namespace synergos::core::jobs {

inline constexpr const char* kJobKind = "Job";

/// One job as stored.
struct JobRecord {
    std::string job_id;
    std::string process;
    std::vector<std::string> filters;          ///< the job's keys as a list
    nlohmann::json keys = nlohmann::json::object();  ///< {collab_id, project_id, expt_id, run_id}
    int grid = 0;
    std::string state = "submitting";
    int attempts = 0;
    int max_attempts = 3;
    std::string created_at;
    std::string started_at;
    std::string finished_at;
    std::string reason;
    std::string ttp_id;
    std::string parent_job;  ///< the director-side job that submitted it (a search's trials)
    nlohmann::json progress = nlohmann::json::object();
    nlohmann::json outputs = nlohmann::json::object();  ///< summary of the result (small)
    nlohmann::json message = nlohmann::json::object();  ///< the job message as published
    std::int64_t doc_id = 0;

    bool is_terminal() const { return state == "succeeded" || state == "failed" || state == "cancelled"; }
    nlohmann::json to_document() const;
    /// The JSON shape served by the job routes.
    nlohmann::json to_api() const;
    static sdk::Result<JobRecord> from_record(const sdk::Record& record);
};

/// Filters for listing jobs; empty strings match everything.
struct JobFilter {
    std::string state;
    std::string process;
    std::string collab_id;
    std::string project_id;
};

/// Reads and writes job records. The director is the only writer; a mutex serialises
/// read-modify-write cycles between the REST threads (cancel) and the archival thread.
class JobStore {
public:
    explicit JobStore(sdk::StorageBackend& storage) : storage_(storage) {}

    sdk::Key key_of(const std::string& job_id) const { return {{"job_id", job_id}}; }
    sdk::Mutation insert_mutation(const JobRecord& job) const;
    sdk::Mutation update_mutation(const JobRecord& job) const;

    sdk::Result<JobRecord> get(const std::string& job_id);
    sdk::Result<std::vector<JobRecord>> list(const JobFilter& filter);

    /// Reads the job, lets `change` edit it (return false to leave it unchanged), and writes it
    /// back together with `extra` mutations in one atomic batch. Returns the job as stored.
    template <typename Change>
    sdk::Result<JobRecord> update(const std::string& job_id, Change&& change,
                                  std::vector<sdk::Mutation> extra = {}) {
        std::lock_guard<std::mutex> lock(mutex_);
        auto job = get(job_id);
        if (!job) {
            return job.error();
        }
        JobRecord updated = *job;
        if (!change(updated)) {
            return updated;
        }
        extra.push_back(update_mutation(updated));
        auto st = storage_.apply(extra);
        if (!st) {
            return st.error();
        }
        return updated;
    }

    /// Read-modify-writes of several jobs (and other mutations) committed as one atomic batch,
    /// in the order they were added, as separate `update` calls would have been: one durable
    /// commit instead of one per change. Holds the store's lock for its whole life, so no other
    /// read-modify-write (a cancel) interleaves. Not thread-safe.
    class Batch {
    public:
        explicit Batch(JobStore& store) : store_(store), lock_(store.mutex_) {}
        Batch(const Batch&) = delete;
        Batch& operator=(const Batch&) = delete;

        /// The job as this batch sees it: as stored, or as changed earlier in the batch.
        sdk::Result<JobRecord> get(const std::string& job_id);
        /// Adds `extra` and then `job`'s new state.
        void put(const JobRecord& job, std::vector<sdk::Mutation> extra = {});
        /// Adds a mutation that is not a job update.
        void add(sdk::Mutation mutation) { mutations_.push_back(std::move(mutation)); }
        /// Adds new jobs' records, all or none (a record that cannot be encoded throws before
        /// any is added); later reads of this batch see them.
        void insert(const std::vector<JobRecord>& jobs);
        const std::vector<sdk::Mutation>& mutations() const { return mutations_; }
        /// Applies what was added since the last commit, atomically and durably. On failure
        /// nothing was written and the batch forgets its changes (the next get reads the store).
        sdk::Status commit();
        /// Sets the store ids of those of `jobs` this batch inserted and committed.
        void fill_doc_ids(std::vector<JobRecord>& jobs) const;

    private:
        JobStore& store_;
        std::unique_lock<std::mutex> lock_;
        std::map<std::string, JobRecord> view_;
        std::vector<sdk::Mutation> mutations_;
        std::map<std::string, std::size_t> updates_;  ///< a job's update in mutations_
        std::map<std::string, std::size_t> inserts_;  ///< a new job's insert in mutations_
        std::map<std::string, std::int64_t> doc_ids_;  ///< committed inserts' store ids
    };

private:
    sdk::StorageBackend& storage_;
    std::mutex mutex_;
};

/// Current UTC time as ISO-8601 with milliseconds ("2026-11-26T04:02:23.123Z").
std::string now_iso8601();

}  // namespace synergos::core::jobs
