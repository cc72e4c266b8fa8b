// SPDX-License-Identifier: Apache-2.0
#pragma once
// Internal to the client: notes the job lines of `synergos submit` and `synergos jobs` show.

#include <string>

#include <nlohmann/json.hpp>

namespace synergos::core::client {

/// "stopped early at round 60 of 200 (patience)" for a training its patience ended, else "".
/// `job` is a job as GET /v1/jobs/{id} answers it (outputs.summary from the train function).
/// Fields of another type than the train function writes give "" (never an exception).
inline std::string early_stop_note(const nlohmann::json& job) {
    if (!job.is_object() || !job.contains("outputs") || !job["outputs"].is_object()) {
        return "";
    }
    const nlohmann::json& outputs = job["outputs"];
    if (!outputs.contains("summary") || !outputs["summary"].is_object()) {
        return "";
    }
    const nlohmann::json& summary = outputs["summary"];
    const auto stopped = summary.find("stopped_early");
    const auto rounds_run = summary.find("rounds_run");
    if (stopped == summary.end() || !stopped->is_boolean() || !stopped->get<bool>() ||
        rounds_run == summary.end() || !rounds_run->is_number_integer()) {
        return "";
    }
    std::string note = "stopped early at round " + std::to_string(rounds_run->get<long long>());
    if (const auto p = job.find("progress"); p != job.end() && p->is_object()) {
        if (const auto rounds = p->find("rounds"); rounds != p->end() && rounds->is_number_integer()) {
            note += " of " + std::to_string(rounds->get<long long>());
        }
    }
    return note + " (patience)";
}

}  // namespace synergos::core::client
