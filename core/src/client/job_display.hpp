// SPDX-License-Identifier: Apache-2.0
#pragma once
// Internal to the client: notes the job lines of `synergos submit` and `synergos jobs` show.

#include <cmath>
#include <iomanip>
#include <ostream>
#include <sstream>
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

inline std::string fmt(double v, int precision = 3) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(precision) << v;
    return s.str();
}

inline double mean_of(const nlohmann::json& list) {
    double sum = 0;
    std::size_t n = 0;
    for (const auto& v : list) {
        if (v.is_number()) {
            sum += v.get<double>();
            ++n;
        }
    }
    return n ? sum / static_cast<double>(n) : NAN;
}

/// The metrics table of `synergos submit` for validation or prediction records (`meta`:
/// "evaluate" or "predict") as the director answers them. Fields missing or of another type are
/// shown as "?" or 0, never read out of bounds.
inline void print_metrics(const nlohmann::json& records, const char* meta, std::ostream& out) {
    bool header = false;
    // The director's answer is read defensively: a const json's operator[] on a missing key or
    // index is undefined behaviour (a crash), not an exception.
    const auto object_at = [](const nlohmann::json& j, const char* field) {
        const auto it = j.is_object() ? j.find(field) : j.end();
        return it != j.end() && it->is_object() ? *it : nlohmann::json::object();
    };
    const auto number_at = [](const nlohmann::json& list, std::size_t c) {
        return list.is_array() && c < list.size() && list[c].is_number() ? list[c].get<double>() : 0.0;
    };
    for (const auto& r : records) {
        const nlohmann::json stats = object_at(object_at(r, meta), "statistics");
        const nlohmann::json key = object_at(r, "key");
        const std::string who = key.contains("participant_id") && key["participant_id"].is_string()
                                    ? key["participant_id"].get<std::string>()
                                    : "?";
        if (stats.contains("R2")) {
            if (!header) {
                out << std::left << std::setw(16) << "participant" << std::setw(10) << "split" << std::setw(10) << "R2"
                    << std::setw(12) << "MSE" << "MAE\n";
                header = true;
            }
            out << std::left << std::setw(16) << who << std::setw(10) << meta << std::setw(10)
                << fmt(stats.value("R2", NAN)) << std::setw(12) << fmt(stats.value("MSE", NAN)) << fmt(stats.value("MAE", NAN))
                << "\n";
        } else if (stats.contains("TPs")) {
            if (!header) {
                out << std::left << std::setw(16) << "participant" << std::setw(10) << "split" << std::setw(10)
                    << "accuracy" << std::setw(10) << "f1" << std::setw(10) << "roc_auc" << std::setw(10) << "pr_auc"
                    << "rows\n";
                header = true;
            }
            double tp = 0;
            double rows = 0;
            const nlohmann::json& tps = stats.at("TPs");
            const nlohmann::json fns = stats.value("FNs", nlohmann::json::array());
            for (std::size_t c = 0; tps.is_array() && c < tps.size(); ++c) {
                tp += number_at(tps, c);
                rows += number_at(tps, c) + number_at(fns, c);
            }
            out << std::left << std::setw(16) << who << std::setw(10) << meta << std::setw(10)
                << fmt(rows > 0 ? tp / rows : NAN) << std::setw(10) << fmt(mean_of(stats.value("f_score", nlohmann::json::array())))
                << std::setw(10) << fmt(mean_of(stats.value("roc_auc_score", nlohmann::json::array()))) << std::setw(10)
                << fmt(mean_of(stats.value("pr_auc_score", nlohmann::json::array()))) << static_cast<long long>(rows) << "\n";
        }
    }
}

}  // namespace synergos::core::client
