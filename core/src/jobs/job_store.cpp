// SPDX-License-Identifier: Apache-2.0
#include "synergos/core/jobs/job_store.hpp"

#include <chrono>
#include <ctime>

namespace synergos::core::jobs {

using nlohmann::json;

std::string now_iso8601() {
    using namespace std::chrono;
    const auto now = system_clock::now();
    const std::time_t t = system_clock::to_time_t(now);
    const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[40];
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    char out[48];
    std::snprintf(out, sizeof(out), "%s.%03dZ", buf, static_cast<int>(ms));
    return out;
}

json JobRecord::to_document() const {
    return json{{"process", process},         {"filters", filters},     {"keys", keys},
                {"grid", grid},               {"state", state},         {"attempts", attempts},
                {"max_attempts", max_attempts}, {"created_at", created_at}, {"started_at", started_at},
                {"finished_at", finished_at}, {"reason", reason},       {"ttp_id", ttp_id},
                {"parent_job", parent_job},
                {"progress", progress},       {"outputs", outputs},     {"message", message}};
}

json JobRecord::to_api() const {
    json j = to_document();
    j.erase("message");
    j["parameters"] = message.value("parameters", json::object());
    j["job_id"] = job_id;
    j["doc_id"] = std::to_string(doc_id);
    j["kind"] = kJobKind;
    return j;
}

sdk::Result<JobRecord> JobRecord::from_record(const sdk::Record& record) {
    json d = json::parse(record.document, nullptr, false);
    if (d.is_discarded() || !d.is_object()) {
        return sdk::Error{sdk::ErrorCode::Internal, "stored job document is not a JSON object"};
    }
    JobRecord r;
    for (const auto& f : record.key) {
        if (f.name == "job_id") {
            r.job_id = f.value;
        }
    }
    try {
        r.process = d.value("process", "");
        r.filters = d.value("filters", std::vector<std::string>{});
        r.keys = d.value("keys", json::object());
        r.grid = d.value("grid", 0);
        r.state = d.value("state", "queued");
        r.attempts = d.value("attempts", 0);
        r.max_attempts = d.value("max_attempts", 3);
        r.created_at = d.value("created_at", "");
        r.started_at = d.value("started_at", "");
        r.finished_at = d.value("finished_at", "");
        r.reason = d.value("reason", "");
        r.ttp_id = d.value("ttp_id", "");
        r.parent_job = d.value("parent_job", "");
        r.progress = d.value("progress", json::object());
        r.outputs = d.value("outputs", json::object());
        r.message = d.value("message", json::object());
    } catch (const json::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal, std::string("stored job document is malformed: ") + e.what()};
    }
    r.doc_id = record.doc_id;
    return r;
}

sdk::Mutation JobStore::insert_mutation(const JobRecord& job) const {
    return {sdk::WriteMode::Insert, kJobKind, key_of(job.job_id), job.to_document().dump()};
}

sdk::Mutation JobStore::update_mutation(const JobRecord& job) const {
    return {sdk::WriteMode::Update, kJobKind, key_of(job.job_id), job.to_document().dump()};
}

sdk::Result<JobRecord> JobStore::Batch::get(const std::string& job_id) {
    if (auto it = view_.find(job_id); it != view_.end()) {
        return it->second;
    }
    auto job = store_.get(job_id);
    if (job) {
        view_.emplace(job_id, *job);
    }
    return job;
}

void JobStore::Batch::put(const JobRecord& job, std::vector<sdk::Mutation> extra) {
    for (auto& m : extra) {
        mutations_.push_back(std::move(m));
    }
    // A job changed twice in one batch (started, then its result) is written once, as it ends.
    if (auto it = updates_.find(job.job_id); it != updates_.end()) {
        mutations_[it->second].document = job.to_document().dump();
    } else {
        updates_[job.job_id] = mutations_.size();
        mutations_.push_back(store_.update_mutation(job));
    }
    view_[job.job_id] = job;
}

void JobStore::Batch::insert(const std::vector<JobRecord>& jobs) {
    std::vector<sdk::Mutation> rows;
    rows.reserve(jobs.size());
    for (const auto& job : jobs) {
        rows.push_back(store_.insert_mutation(job));  // may throw: nothing is added yet
    }
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        updates_[jobs[i].job_id] = mutations_.size();  // a later change goes into the insert
        inserts_[jobs[i].job_id] = mutations_.size();
        mutations_.push_back(std::move(rows[i]));
        view_[jobs[i].job_id] = jobs[i];
    }
}

sdk::Status JobStore::Batch::commit() {
    if (mutations_.empty()) {
        return {};
    }
    auto applied = store_.storage_.apply(mutations_);
    mutations_.clear();
    updates_.clear();
    auto inserts = std::move(inserts_);
    inserts_.clear();
    if (!applied) {
        view_.clear();
        return applied.status();
    }
    // The store assigns ids on insert: an answer about a new job can name it at once.
    for (const auto& [id, index] : inserts) {
        if (index < applied->size()) {
            doc_ids_[id] = (*applied)[index].doc_id;
        }
    }
    return {};
}

void JobStore::Batch::fill_doc_ids(std::vector<JobRecord>& jobs) const {
    for (auto& job : jobs) {
        if (auto it = doc_ids_.find(job.job_id); it != doc_ids_.end()) {
            job.doc_id = it->second;
        }
    }
}

sdk::Result<JobRecord> JobStore::get(const std::string& job_id) {
    auto rec = storage_.get(kJobKind, key_of(job_id));
    if (!rec) {
        if (rec.error().code == sdk::ErrorCode::NotFound) {
            return sdk::Error{sdk::ErrorCode::NotFound, "Job '" + job_id + "' does not exist"};
        }
        return rec.error();
    }
    return JobRecord::from_record(*rec);
}

sdk::Result<std::vector<JobRecord>> JobStore::list(const JobFilter& filter) {
    auto recs = storage_.list(sdk::Query{kJobKind, {}, 0, 0});
    if (!recs) {
        return recs.error();
    }
    std::vector<JobRecord> out;
    for (const auto& rec : *recs) {
        auto job = JobRecord::from_record(rec);
        if (!job) {
            return job.error();
        }
        const auto key = [&](const char* k) { return job->keys.value(k, std::string()); };
        if ((!filter.state.empty() && job->state != filter.state) ||
            (!filter.process.empty() && job->process != filter.process) ||
            (!filter.collab_id.empty() && key("collab_id") != filter.collab_id) ||
            (!filter.project_id.empty() && key("project_id") != filter.project_id)) {
            continue;
        }
        out.push_back(std::move(*job));
    }
    return out;
}

}  // namespace synergos::core::jobs
