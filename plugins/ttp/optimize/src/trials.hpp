// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file trials.hpp
/// The settings of a search (from the optimize job's parameters), a trial's score from the
/// validation statistics its workers returned, and the choice of the best trial.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/status.hpp>

#include "search_space.hpp"

namespace synergos::plugins::optimize {

/// What the optimize job asks for.
struct SearchSettings {
    std::vector<Dimension> space;
    std::string metric;               ///< a validation statistic, e.g. accuracy, f_score, R2, MSE
    bool maximize = true;             ///< optimize_mode max | min
    std::string strategy = "random";  ///< random | grid
    int max_trials = 10;
    std::uint64_t seed = 42;
    json base_run = json::object();     ///< fixed run settings; sampled values override them
    std::int64_t timeout_ms = 3600000;  ///< the whole search (max_exec_duration)
};

/// Reads the settings from the job parameters; InvalidArgument names the field.
sdk::Result<SearchSettings> parse_settings(const json& parameters);

/// "1h", "30m", "1h 30m", "45s", "2d", "1w" in milliseconds; InvalidArgument otherwise.
sdk::Result<std::int64_t> parse_duration(const std::string& text);

/// The hyper-parameter sets of the search, in trial order.
std::vector<json> draw_trials(const SearchSettings& settings);

/// A trial's score: `metric` from each participant's `evaluate` statistics (a per-class list is
/// averaged over its classes), then averaged over participants. Nothing when no participant
/// reported the metric.
std::optional<double> trial_score(const json& validate_outputs, const std::string& metric);

/// The index of the best scored trial (`scores[i]` empty for a trial that failed); ties go to
/// the earlier trial. Nothing when no trial has a score.
std::optional<std::size_t> best_trial(const std::vector<std::optional<double>>& scores,
                                      bool maximize);

}  // namespace synergos::plugins::optimize
