// SPDX-License-Identifier: Apache-2.0
#include "trials.hpp"

#include <cctype>
#include <cmath>

namespace synergos::plugins::optimize {

namespace {

sdk::Error field_error(const std::string& field, const std::string& what) {
    return sdk::Error{sdk::ErrorCode::InvalidArgument, "field '" + field + "' " + what};
}

}  // namespace

/// A year: beyond it a deadline only risks overflowing the clock.
constexpr std::int64_t kMaxSearchDurationMs = 365LL * 86400000;

sdk::Result<std::int64_t> parse_duration(const std::string& text) {
    std::int64_t total = 0;
    std::size_t i = 0;
    bool any = false;
    while (i < text.size()) {
        if (std::isspace(static_cast<unsigned char>(text[i]))) {
            ++i;
            continue;
        }
        std::size_t j = i;
        while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j]))) {
            ++j;
        }
        if (j == i || j >= text.size() || j - i > 9) {
            return field_error("max_exec_duration", "must look like \"1h\", \"30m\" or \"1h 30m\"");
        }
        const std::int64_t n = std::stoll(text.substr(i, j - i));
        std::int64_t unit = 0;
        switch (text[j]) {
            case 's':
                unit = 1000;
                break;
            case 'm':
                unit = 60000;
                break;
            case 'h':
                unit = 3600000;
                break;
            case 'd':
                unit = 86400000;
                break;
            case 'w':
                unit = 604800000;
                break;
            default:
                return field_error(
                    "max_exec_duration",
                    "has an unknown unit '" + std::string(1, text[j]) + "' (s, m, h, d, w)");
        }
        total += n * unit;  // n has at most 9 digits: one term fits, and the sum is capped below
        if (total > kMaxSearchDurationMs) {
            return field_error("max_exec_duration", "must be at most 365 days");
        }
        any = true;
        i = j + 1;
    }
    if (!any || total <= 0) {
        return field_error("max_exec_duration", "must be a positive duration like \"1h\"");
    }
    return total;
}

sdk::Result<SearchSettings> parse_settings(const json& p) {
    SearchSettings s;
    auto space = parse_search_space(p.value("search_space", json(nullptr)));
    if (!space) {
        return space.error();
    }
    s.space = std::move(*space);
    if (!p.contains("metric") || !p["metric"].is_string() ||
        p["metric"].get<std::string>().empty()) {
        return field_error("metric",
                           "must name a validation statistic (e.g. accuracy, f_score, R2, MSE)");
    }
    s.metric = p["metric"].get<std::string>();
    const json mode = p.value("optimize_mode", json(nullptr));
    if (mode == "max" || mode == "maximize") {
        s.maximize = true;
    } else if (mode == "min" || mode == "minimize") {
        s.maximize = false;
    } else {
        return field_error("optimize_mode", "must be \"max\" or \"min\"");
    }
    // The original's searcher names: BasicVariantGenerator draws at random.
    std::string strategy = p.value("strategy", p.value("searcher", std::string("random")));
    if (strategy == "BasicVariantGenerator") {
        strategy = "random";
    }
    if (strategy != "random" && strategy != "grid") {
        return field_error("strategy", "must be \"random\" or \"grid\", not '" + strategy + "'");
    }
    s.strategy = strategy;
    if (p.contains("max_trial_num")) {
        if (!p["max_trial_num"].is_number_integer() || p["max_trial_num"].get<std::int64_t>() < 1 ||
            p["max_trial_num"].get<std::int64_t>() > 1000) {
            return field_error("max_trial_num", "must be an integer from 1 to 1000");
        }
        s.max_trials = p["max_trial_num"].get<int>();
    }
    if (p.contains("seed")) {
        if (!p["seed"].is_number_integer()) {
            return field_error("seed", "must be an integer");
        }
        s.seed = static_cast<std::uint64_t>(p["seed"].get<std::int64_t>());
    }
    if (p.contains("run")) {
        if (!p["run"].is_object()) {
            return field_error("run", "must be an object of run settings");
        }
        s.base_run = p["run"];
    }
    if (p.contains("max_exec_duration")) {
        if (!p["max_exec_duration"].is_string()) {
            return field_error("max_exec_duration", "must be a string like \"1h 30m\"");
        }
        auto d = parse_duration(p["max_exec_duration"].get<std::string>());
        if (!d) {
            return d.error();
        }
        s.timeout_ms = *d;
    }
    return s;
}

std::vector<json> draw_trials(const SearchSettings& s) {
    return s.strategy == "grid" ? grid_trials(s.space, s.max_trials, s.seed)
                                : random_trials(s.space, s.max_trials, s.seed);
}

std::optional<double> trial_score(const json& outputs, const std::string& metric) {
    if (!outputs.is_object()) {
        return std::nullopt;
    }
    double sum = 0;
    int n = 0;
    for (const auto& [pid, metas] : outputs.items()) {
        if (!metas.is_object() || !metas.contains("evaluate") || !metas["evaluate"].is_object()) {
            continue;
        }
        const json stats = metas["evaluate"].value("statistics", json::object());
        if (!stats.is_object() || !stats.contains(metric)) {
            continue;
        }
        const json& v = stats[metric];
        if (v.is_number()) {
            if (std::isfinite(v.get<double>())) {
                sum += v.get<double>();
                ++n;
            }
        } else if (v.is_array()) {
            double class_sum = 0;
            int classes = 0;
            for (const auto& c : v) {
                if (c.is_number() && std::isfinite(c.get<double>())) {
                    class_sum += c.get<double>();
                    ++classes;
                }
            }
            if (classes > 0) {
                sum += class_sum / classes;
                ++n;
            }
        }
    }
    if (n == 0) {
        return std::nullopt;
    }
    return sum / n;
}

std::optional<std::size_t> best_trial(const std::vector<std::optional<double>>& scores,
                                      bool maximize) {
    std::optional<std::size_t> best;
    for (std::size_t i = 0; i < scores.size(); ++i) {
        if (!scores[i]) {
            continue;
        }
        if (!best || (maximize ? *scores[i] > *scores[*best] : *scores[i] < *scores[*best])) {
            best = i;
        }
    }
    return best;
}

}  // namespace synergos::plugins::optimize
