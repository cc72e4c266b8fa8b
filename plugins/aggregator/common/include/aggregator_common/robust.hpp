// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file robust.hpp
/// Byzantine-robust aggregation, shared by fedmedian, fedtrimmedavg, krum and multikrum.
///
/// These rules need every update of the round at once, so unlike fedavg the session keeps a copy
/// of each update until finish_round: memory = n models (plus an n x n distance matrix for Krum).
/// All four are unweighted: a faulty client could claim any row count, so sample counts are
/// ignored (they must still be positive). Updates are ordered by participant name before the
/// rule runs, so the result does not depend on arrival order.
///
/// - median (Yin et al. 2018): coordinate-wise median; with an even count, the mean of the two
///   middle values.
/// - trimmed mean (Yin et al. 2018): per coordinate, drop the k = floor(trim_fraction * n)
///   largest and k smallest values and average the rest; k is at most (n - 1) / 2, so at least
///   one value is left. When k is 0 (e.g. the default 0.2 with n <= 4) nothing is trimmed: a
///   warning says so once per session.
/// - Krum (Blanchard et al. 2017): score(i) = sum of the squared L2 distances from update i to
///   its n - f - 2 nearest other updates (f = krum_f, the assumed number of faulty clients);
///   the update with the lowest score becomes the global model. Needs n >= 2f + 3.
/// - Multi-Krum (Blanchard et al. 2017): the uniform mean of the m updates with the lowest
///   scores (m = multikrum_m, default n - f, capped at n - f).
/// Distances use the floating tensors; integer tensors follow the same rule per element
/// (median, trimmed mean, the selected update, the mean of the selected), rounded.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/log.hpp>
#include <synergos/sdk/status.hpp>
#include <synergos/sdk/tensor.hpp>

#include "aggregator_common/run_fields.hpp"
#include "aggregator_common/tensor_layout.hpp"

namespace synergos::plugins::aggregator_common {

enum class RobustRule : std::uint8_t { Median = 1, TrimmedMean, Krum, MultiKrum };

struct RobustConfig {
    RobustRule rule = RobustRule::Median;
    double trim_fraction = 0.2;               ///< trimmed mean: fraction cut at each end
    std::int64_t krum_f = 0;                  ///< Krum / Multi-Krum: assumed faulty clients
    std::optional<std::int64_t> multikrum_m;  ///< Multi-Krum: updates averaged (default n - f)
};

/// The median of `values` (reordered in place); mean of the two middle values when even.
/// Precondition: not empty.
inline double median_of(std::vector<double>& values) {
    const std::size_t n = values.size();
    const std::size_t mid = n / 2;
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(mid),
                     values.end());
    const double upper = values[mid];
    if (n % 2 == 1) {
        return upper;
    }
    const double lower =
        *std::max_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(mid));
    return 0.5 * (lower + upper);
}

/// k = floor(fraction * n); the epsilon keeps 0.29 * 100 at 29 despite rounding. Capped at
/// (n - 1) / 2: a fraction just under 0.5 would otherwise trim every value (a 0 / 0 mean).
inline std::size_t trim_count(double fraction, std::size_t n) noexcept {
    const auto k = static_cast<std::size_t>(std::floor(fraction * static_cast<double>(n) + 1e-9));
    return n == 0 ? 0 : std::min(k, (n - 1) / 2);
}

/// The mean of `values` without their k smallest and k largest (reordered in place).
/// Precondition: 2k < values.size().
inline double trimmed_mean_of(std::vector<double>& values, std::size_t k) {
    std::sort(values.begin(), values.end());
    double sum = 0.0;
    for (std::size_t i = k; i + k < values.size(); ++i) {
        sum += values[i];
    }
    return sum / static_cast<double>(values.size() - 2 * k);
}

/// Krum scores from a symmetric matrix of squared distances: for each i, the sum of the
/// n - f - 2 smallest d2[i][j], j != i. Precondition: n >= f + 3.
inline std::vector<double> krum_scores(const std::vector<std::vector<double>>& d2, std::size_t f) {
    const std::size_t n = d2.size();
    const std::size_t nearest = n - f - 2;
    std::vector<double> scores(n, 0.0);
    std::vector<double> row;
    for (std::size_t i = 0; i < n; ++i) {
        row.clear();
        for (std::size_t j = 0; j < n; ++j) {
            if (j != i) {
                row.push_back(d2[i][j]);
            }
        }
        std::partial_sort(row.begin(), row.begin() + static_cast<std::ptrdiff_t>(nearest),
                          row.end());
        scores[i] =
            std::accumulate(row.begin(), row.begin() + static_cast<std::ptrdiff_t>(nearest), 0.0);
    }
    return scores;
}

/// Reads the fields of a robust strategy: trim_fraction (trimmed mean), krum_f (Krum,
/// Multi-Krum), multikrum_m (Multi-Krum).
inline sdk::Result<RobustConfig> read_robust_config(std::string_view run_json,
                                                    const std::string& strategy,
                                                    RobustConfig defaults) {
    auto run = RunFields::parse(run_json, strategy);
    if (!run) {
        return run.error();
    }
    RobustConfig c = defaults;
    if (c.rule == RobustRule::TrimmedMean) {
        auto fraction =
            run->number("trim_fraction", defaults.trim_fraction, Range::closed_open(0.0, 0.5));
        if (!fraction) {
            return fraction.error();
        }
        c.trim_fraction = *fraction;
    }
    if (c.rule == RobustRule::Krum || c.rule == RobustRule::MultiKrum) {
        auto f = run->integer("krum_f", defaults.krum_f, 0, 1000000);
        if (!f) {
            return f.error();
        }
        c.krum_f = *f;
    }
    if (c.rule == RobustRule::MultiKrum) {
        auto m = run->optional_integer("multikrum_m", 1, 1000000);
        if (!m) {
            return m.error();
        }
        c.multikrum_m = *m;
    }
    return c;
}

/// A session that keeps every update of the round and applies a robust rule at the end.
/// Strategy state: none (save_state is empty). Threading: one thread at a time.
class RobustSession final : public sdk::AggregationSession {
public:
    /// `logger` (may be null) receives which participants Krum / Multi-Krum selected.
    RobustSession(std::string strategy, RobustConfig config, sdk::Logger* logger = nullptr)
        : strategy_(std::move(strategy)), config_(config), logger_(logger) {}

    sdk::Status begin_round(const sdk::TensorMap& global, int round) noexcept override {
        return guarded(strategy_, "begin_round", [&]() -> sdk::Status {
            Layout layout;
            if (auto status = layout.reset(global); !status) {
                return fail(status, "round " + std::to_string(round));
            }
            layout_ = std::move(layout);
            updates_.clear();
            round_ = round;
            is_open_ = true;
            return sdk::Status::ok();
        });
    }

    sdk::Status accumulate(const std::string& participant, std::int64_t samples,
                           const sdk::TensorMap& weights) noexcept override {
        return guarded(strategy_, "accumulate", [&]() -> sdk::Status {
            if (!is_open_) {
                return {sdk::ErrorCode::FailedPrecondition,
                        strategy_ + ": update from participant '" + participant +
                            "' arrived outside a round (call begin_round first)"};
            }
            const std::string where =
                "participant '" + participant + "', round " + std::to_string(round_);
            for (const Update& u : updates_) {
                if (u.participant == participant) {
                    return {sdk::ErrorCode::AlreadyExists,
                            strategy_ + ": participant '" + participant +
                                "' already sent an update for round " + std::to_string(round_)};
                }
            }
            if (samples <= 0) {
                return fail({sdk::ErrorCode::InvalidArgument,
                             "samples must be positive (got " + std::to_string(samples) + ")"},
                            where);
            }
            std::vector<const sdk::Tensor*> matched;
            if (auto status = layout_.match(weights, matched); !status) {
                return fail(status, where);
            }
            Update u;
            u.participant = participant;
            u.tensors.reserve(matched.size());
            for (const sdk::Tensor* t : matched) {
                u.tensors.push_back(*t);  // layout order
            }
            updates_.push_back(std::move(u));
            return sdk::Status::ok();
        });
    }

    sdk::Result<sdk::TensorMap> finish_round() noexcept override {
        return guarded(strategy_, "finish_round", [&]() -> sdk::Result<sdk::TensorMap> {
            if (!is_open_) {
                return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                  strategy_ + ": finish_round without an open round"};
            }
            if (updates_.empty()) {
                return sdk::Error{
                    sdk::ErrorCode::FailedPrecondition,
                    strategy_ + ": no update arrived for round " + std::to_string(round_)};
            }
            std::sort(updates_.begin(), updates_.end(), [](const Update& a, const Update& b) {
                return a.participant < b.participant;
            });
            sdk::Result<sdk::TensorMap> out = sdk::TensorMap{};
            switch (config_.rule) {
                case RobustRule::Median:
                case RobustRule::TrimmedMean:
                    out = coordinate_wise();
                    break;
                case RobustRule::Krum:
                case RobustRule::MultiKrum:
                    out = krum();
                    break;
            }
            if (out) {
                updates_.clear();
                is_open_ = false;
            }
            return out;
        });
    }

    sdk::Result<sdk::TensorMap> save_state() noexcept override { return sdk::TensorMap{}; }

    sdk::Status load_state(const sdk::TensorMap& state) noexcept override {
        for (const sdk::Tensor& t : state.tensors) {
            if (!starts_with(t.name, kMetricPrefix)) {
                return {sdk::ErrorCode::InvalidArgument,
                        strategy_ + ": keeps no strategy state, but the saved state has tensor '" +
                            t.name + "'"};
            }
        }
        return sdk::Status::ok();
    }

private:
    struct Update {
        std::string participant;
        std::vector<sdk::Tensor> tensors;  ///< in layout order
    };

    sdk::Result<sdk::TensorMap> coordinate_wise() {
        const std::size_t n = updates_.size();
        const std::size_t k =
            config_.rule == RobustRule::TrimmedMean ? trim_count(config_.trim_fraction, n) : 0;
        if (config_.rule == RobustRule::TrimmedMean && k == 0 && config_.trim_fraction > 0.0 &&
            !warned_untrimmed_ && logger_ != nullptr) {
            // The round is then the plain mean, with no robustness: the operator should know.
            logger_->warn(strategy_ + ": nothing trimmed",
                          nlohmann::json{{"round", round_},
                                         {"updates", n},
                                         {"trim_fraction", config_.trim_fraction},
                                         {"why", "floor(trim_fraction * updates) is 0: the round "
                                                 "is the plain mean of the updates"}}
                              .dump());
            warned_untrimmed_ = true;
        }
        sdk::TensorMap out;
        std::vector<double> column(n);
        for (std::size_t s = 0; s < layout_.size(); ++s) {
            const auto& e = layout_.entries()[s];
            sdk::Tensor t = zeros_like(updates_.front().tensors[s]);
            for (std::size_t i = 0; i < e.numel; ++i) {
                for (std::size_t u = 0; u < n; ++u) {
                    column[u] = element(updates_[u].tensors[s], i);
                }
                const double v = config_.rule == RobustRule::Median ? median_of(column)
                                                                    : trimmed_mean_of(column, k);
                set_element(t, i, v);
            }
            out.tensors.push_back(std::move(t));
        }
        return out;
    }

    sdk::Result<sdk::TensorMap> krum() const {
        const std::size_t n = updates_.size();
        const auto f = static_cast<std::size_t>(config_.krum_f);
        if (n < 2 * f + 3) {
            return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                              strategy_ + ": round " + std::to_string(round_) + ": " +
                                  std::to_string(n) +
                                  " updates arrived, but krum_f = " + std::to_string(f) +
                                  " needs at least 2 * krum_f + 3 = " + std::to_string(2 * f + 3)};
        }
        std::vector<std::vector<double>> d2(n, std::vector<double>(n, 0.0));
        for (std::size_t s = 0; s < layout_.size(); ++s) {
            if (!is_floating(layout_.entries()[s].dtype)) {
                continue;
            }
            const std::size_t numel = layout_.entries()[s].numel;
            for (std::size_t a = 0; a < n; ++a) {
                for (std::size_t b = a + 1; b < n; ++b) {
                    double sum = 0.0;
                    for (std::size_t i = 0; i < numel; ++i) {
                        const double d =
                            element(updates_[a].tensors[s], i) - element(updates_[b].tensors[s], i);
                        sum += d * d;
                    }
                    d2[a][b] += sum;
                    d2[b][a] += sum;
                }
            }
        }
        const std::vector<double> scores = krum_scores(d2, f);
        std::vector<std::size_t> order(n);
        std::iota(order.begin(), order.end(), std::size_t{0});
        // Stable on the name-sorted updates: equal scores pick the smaller participant name.
        std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
            return scores[a] < scores[b];
        });
        std::size_t m = 1;
        if (config_.rule == RobustRule::MultiKrum) {
            m = n - f;
            if (config_.multikrum_m) {
                m = std::min(m, static_cast<std::size_t>(*config_.multikrum_m));
            }
        }
        log_selection(order, scores, m);
        sdk::TensorMap out;
        for (std::size_t s = 0; s < layout_.size(); ++s) {
            const auto& e = layout_.entries()[s];
            if (m == 1) {
                out.tensors.push_back(updates_[order[0]].tensors[s]);
                continue;
            }
            sdk::Tensor t = zeros_like(updates_.front().tensors[s]);
            for (std::size_t i = 0; i < e.numel; ++i) {
                double sum = 0.0;
                for (std::size_t j = 0; j < m; ++j) {
                    sum += element(updates_[order[j]].tensors[s], i);
                }
                set_element(t, i, sum / static_cast<double>(m));
            }
            out.tensors.push_back(std::move(t));
        }
        return out;
    }

    void log_selection(const std::vector<std::size_t>& order, const std::vector<double>& scores,
                       std::size_t m) const {
        if (logger_ == nullptr || !logger_->enabled(sdk::Level::Info)) {
            return;
        }
        nlohmann::json selected = nlohmann::json::array();
        nlohmann::json all = nlohmann::json::object();
        for (std::size_t j = 0; j < order.size(); ++j) {
            if (j < m) {
                selected.push_back(updates_[order[j]].participant);
            }
            all[updates_[order[j]].participant] = scores[order[j]];
        }
        // replace: a participant name that is not UTF-8 must not fail the round.
        logger_->info(
            strategy_ + ": updates selected",
            nlohmann::json{{"round", round_}, {"selected", selected}, {"scores", all}}.dump(
                -1, ' ', false, nlohmann::json::error_handler_t::replace));
    }

    sdk::Status fail(const sdk::Status& status, const std::string& where) const {
        return {status.code(), strategy_ + ": " + where + ": " + status.message()};
    }

    std::string strategy_;
    RobustConfig config_;
    sdk::Logger* logger_;
    Layout layout_;
    std::vector<Update> updates_;
    int round_ = -1;
    bool is_open_ = false;
    bool warned_untrimmed_ = false;  ///< "nothing trimmed" is logged once per session
};

}  // namespace synergos::plugins::aggregator_common
