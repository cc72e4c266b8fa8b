// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file messages.hpp
/// The queue topology and the JSON messages between the director and the TTPs.
///
/// Jobs go to one durable priority queue per grid (`synergos.jobs.grid.<g>`), so a TTP only ever
/// sees jobs for its grid and "no TTP connected for grid g" is observable (consumer count).
/// Everything a TTP reports (started, progress, result) goes to `synergos.results`, which only the
/// director consumes (the single writer). Cancellations of running jobs go to
/// `synergos.control.grid.<g>`. Rejected messages land in `*.dead` queues.

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/message_queue.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::core::jobs {

inline constexpr std::uint8_t kMaxPriority = 10;
/// The most attempts a job may have (jobs.max_attempts); a message naming an attempt outside
/// 1..kMaxAttempts is malformed.
inline constexpr int kMaxAttempts = 1000;

/// Queue names under a prefix ("synergos" unless configured), so several clusters (or test runs)
/// can share one broker.
struct Topology {
    std::string prefix = "synergos";

    std::string jobs(int grid) const { return prefix + ".jobs.grid." + std::to_string(grid); }
    std::string control(int grid) const { return prefix + ".control.grid." + std::to_string(grid); }
    std::string results() const { return prefix + ".results"; }
    std::string results_dead() const { return prefix + ".results.dead"; }
    std::string jobs_dead() const { return prefix + ".jobs.dead"; }

    /// Declares the queues of one grid plus the shared ones (idempotent).
    sdk::Status declare_grid(sdk::MessageQueue& mq, int grid) const;
};

/// Priority of a process: preprocessing before training before evaluation.
std::uint8_t priority_of(const std::string& process);

/// A job as published to a grid queue.
struct JobMessage {
    std::string job_id;
    std::string process;               ///< preprocess | train | validate | predict | optimize | ...
    std::vector<std::string> keys;     ///< [collab, project] or [collab, project, expt, run]
    int grid = 0;
    nlohmann::json grids = nlohmann::json::array();  ///< every grid's nodes (original field)
    nlohmann::json parameters = nlohmann::json::object();
    int attempt = 1;
    int max_attempts = 3;
    /// The first attempt's failure, carried by retries so the final reason can name it (a
    /// later attempt often fails for a different, derived cause). "" on attempt 1.
    std::string first_failure;

    nlohmann::json to_json() const;
    /// Strict decode; InvalidArgument names the missing or mistyped field.
    static sdk::Result<JobMessage> from_json(const std::string& body);
};

/// What a TTP reports.
enum class EventType { Started, Progress, Result };

/// Terminal outcome of a job attempt.
enum class Outcome { Succeeded, Failed, Cancelled };

const char* to_string(Outcome outcome);

struct ResultMessage {
    EventType type = EventType::Result;
    std::string job_id;
    std::string process;
    std::vector<std::string> filters;  ///< the job's keys (original field)
    int grid = 0;
    int attempt = 1;
    std::string ttp_id;
    Outcome outcome = Outcome::Succeeded;   ///< for results
    std::string reason;                     ///< why it failed / was cancelled
    bool final = true;                      ///< false: a failed attempt that will be retried
    nlohmann::json outputs = nlohmann::json::object();
    nlohmann::json progress = nlohmann::json::object();

    nlohmann::json to_json() const;
    static sdk::Result<ResultMessage> from_json(const std::string& body);
};

/// `reason` cut to at most `max_bytes` (on a UTF-8 boundary, marked with "..."): reasons that
/// quote other reasons stay readable in lists and logs.
std::string bounded_reason(const std::string& reason, std::size_t max_bytes = 400);

/// Builds a queue message for a JSON body.
sdk::Message make_message(const std::string& id, const nlohmann::json& body, std::uint8_t priority = 0);

/// A new job id: "job-" + 24 hex chars, the first 12 the creation time in ms (ids sort by it).
std::string new_job_id();

/// A JSON object of log fields, e.g. `log_fields({{"job_id", id}, {"grid", 1}})`.
std::string log_fields(std::initializer_list<std::pair<const char*, nlohmann::json>> kv);

}  // namespace synergos::core::jobs
