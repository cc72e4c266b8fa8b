// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file server_optimizer.hpp
/// Server-side optimizers over the round's pseudo-gradient, shared by fedavgm, fedadam, fedyogi
/// and fedadagrad.
///
/// Per round t, with x the global weights and x_k client k's locally trained weights:
///   Delta = sum_k n_k x_k / sum_k n_k - x      (the n-weighted mean, as fedavg, minus x)
/// FedAvgM (Hsu et al. 2019):      m = momentum * m + Delta;            x += server_lr * m
/// FedAdagrad/FedAdam/FedYogi (Reddi et al. 2021, Algorithm 2):
///   m = beta_1 * m + (1 - beta_1) * Delta
///   Adagrad: v = v + Delta^2
///   Adam:    v = beta_2 * v + (1 - beta_2) * Delta^2
///   Yogi:    v = v - (1 - beta_2) * Delta^2 * sign(v - Delta^2)
///   x += server_lr * m / (sqrt(v) + tau)
/// with m_{-1} = 0 and v_{-1} = tau^2 (the paper's v_{-1} >= tau^2), no bias correction, all
/// element-wise over the floating (F32/F64) tensors. Integer tensors (BatchNorm's
/// num_batches_tracked) take the n-weighted mean rounded, as in fedavg. A stepped BatchNorm
/// `*.running_var` is clamped at 0.
///
/// The paper averages uniformly over the sampled clients; like fedavg (and TFF's example-weighted
/// mean used in the paper's experiments) we weight by training rows. With equal rows both agree.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <utility>

#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/status.hpp>
#include <synergos/sdk/tensor.hpp>

#include "aggregator_common/run_fields.hpp"
#include "aggregator_common/tensor_layout.hpp"
#include "weighted_mean.hpp"

namespace synergos::plugins::aggregator_common {

enum class ServerRule : std::uint8_t { Momentum = 1, Adagrad, Adam, Yogi };

struct ServerOptimizerConfig {
    ServerRule rule = ServerRule::Adam;
    double server_lr = 1e-2;
    double server_momentum = 0.9;  ///< FedAvgM only
    double beta_1 = 0.9;           ///< the adaptive rules only
    double beta_2 = 0.99;          ///< Adam and Yogi
    double tau = 1e-3;             ///< the adaptive rules only
};

/// One coordinate of one server step: updates `m` and `v` in place and returns the change of x.
inline double server_step(const ServerOptimizerConfig& c, double delta, double& m,
                          double& v) noexcept {
    if (c.rule == ServerRule::Momentum) {
        m = c.server_momentum * m + delta;
        return c.server_lr * m;
    }
    m = c.beta_1 * m + (1.0 - c.beta_1) * delta;
    const double d2 = delta * delta;
    switch (c.rule) {
        case ServerRule::Adagrad:
            v = v + d2;
            break;
        case ServerRule::Adam:
            v = c.beta_2 * v + (1.0 - c.beta_2) * d2;
            break;
        case ServerRule::Yogi: {
            const double diff = v - d2;
            const double sign = diff > 0.0 ? 1.0 : (diff < 0.0 ? -1.0 : 0.0);
            v = v - (1.0 - c.beta_2) * d2 * sign;
            break;
        }
        case ServerRule::Momentum:
            break;
    }
    return c.server_lr * m / (std::sqrt(v) + c.tau);
}

/// Reads the fields of a server-optimizer strategy from the run: server_lr, and
/// server_momentum (Momentum) or beta_1, beta_2, tau (adaptive). `defaults` carries the rule and
/// the paper's defaults.
inline sdk::Result<ServerOptimizerConfig> read_server_optimizer_config(
    std::string_view run_json, const std::string& strategy, ServerOptimizerConfig defaults) {
    auto run = RunFields::parse(run_json, strategy);
    if (!run) {
        return run.error();
    }
    ServerOptimizerConfig c = defaults;
    auto lr = run->number("server_lr", defaults.server_lr, Range::positive());
    if (!lr) {
        return lr.error();
    }
    c.server_lr = *lr;
    if (defaults.rule == ServerRule::Momentum) {
        auto momentum =
            run->number("server_momentum", defaults.server_momentum, Range::closed_open(0.0, 1.0));
        if (!momentum) {
            return momentum.error();
        }
        c.server_momentum = *momentum;
        return c;
    }
    auto beta_1 = run->number("beta_1", defaults.beta_1, Range::closed_open(0.0, 1.0));
    if (!beta_1) {
        return beta_1.error();
    }
    auto beta_2 = run->number("beta_2", defaults.beta_2, Range::closed_open(0.0, 1.0));
    if (!beta_2) {
        return beta_2.error();
    }
    auto tau = run->number("tau", defaults.tau, Range::positive());
    if (!tau) {
        return tau.error();
    }
    c.beta_1 = *beta_1;
    c.beta_2 = *beta_2;
    c.tau = *tau;
    return c;
}

/// A session applying a server optimizer to the n-weighted mean of the round.
/// State (saved per round): `<strategy>.m.<tensor>` (FedAvgM: the momentum buffer),
/// `<strategy>.v.<tensor>` (adaptive rules), `<strategy>.rounds`, all F64 except the I64 count.
/// Memory: the weighted-mean accumulator (one model), a copy of the global (one model) and
/// one or two moments in double (two or four models' worth of F32).
/// Threading: one thread at a time (the SDK's session contract).
class ServerOptimizerSession final : public sdk::AggregationSession {
public:
    ServerOptimizerSession(std::string strategy, ServerOptimizerConfig config)
        : strategy_(std::move(strategy)), config_(config) {}

    sdk::Status begin_round(const sdk::TensorMap& global, int round) noexcept override {
        return guarded(strategy_, "begin_round", [&]() -> sdk::Status {
            const std::string where = "round " + std::to_string(round);
            Layout layout;
            if (auto status = layout.reset(global); !status) {
                return fail(status, where);
            }
            if (has_state_) {
                if (auto st = check_state_fits(m_, layout, strategy_ + " " + m_label()); !st) {
                    return fail(st, where);
                }
                if (uses_v()) {
                    if (auto st = check_state_fits(v_, layout, strategy_ + " second moment"); !st) {
                        return fail(st, where);
                    }
                }
            }
            if (auto status = mean_.reset(global); !status) {
                return fail(status, where);
            }
            if (!has_state_) {
                m_ = state_like(layout, 0.0);
                v_ = uses_v() ? state_like(layout, config_.tau * config_.tau) : NamedState{};
                has_state_ = true;
            }
            layout_ = std::move(layout);
            global_ = global;
            contributors_.clear();
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
            if (contributors_.count(participant) != 0) {
                return {sdk::ErrorCode::AlreadyExists, strategy_ + ": participant '" + participant +
                                                           "' already sent an update for round " +
                                                           std::to_string(round_)};
            }
            std::vector<const sdk::Tensor*> matched;
            if (auto status = layout_.match(weights, matched); !status) {
                return fail(status, where);
            }
            if (auto status = mean_.add(samples, weights); !status) {
                return fail(status, where);
            }
            contributors_.insert(participant);
            return sdk::Status::ok();
        });
    }

    sdk::Result<sdk::TensorMap> finish_round() noexcept override {
        return guarded(strategy_, "finish_round", [&]() -> sdk::Result<sdk::TensorMap> {
            if (!is_open_) {
                return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                  strategy_ + ": finish_round without an open round"};
            }
            if (mean_.updates() == 0) {
                return sdk::Error{
                    sdk::ErrorCode::FailedPrecondition,
                    strategy_ + ": no update arrived for round " + std::to_string(round_)};
            }
            auto mean = mean_.mean();
            if (!mean) {
                return mean.error();
            }
            // Moments are updated in place: a failure past this point (only bad_alloc) fails the
            // job, which resumes from the last checkpoint's saved state.
            sdk::TensorMap out;
            out.tensors.reserve(layout_.size());
            for (const auto& e : layout_.entries()) {
                const sdk::Tensor* avg = mean->find(e.name);
                const sdk::Tensor* x = global_.find(e.name);
                if (avg == nullptr || x == nullptr) {
                    return sdk::Error{sdk::ErrorCode::Internal,
                                      strategy_ + ": tensor '" + e.name + "' vanished"};
                }
                if (!is_floating(e.dtype)) {
                    out.tensors.push_back(*avg);
                    continue;
                }
                std::vector<double>& mt = m_.at(e.name).values;
                std::vector<double>* vt = uses_v() ? &v_.at(e.name).values : nullptr;
                double unused = 0.0;
                sdk::Tensor next = zeros_like(*x);
                // A step can overshoot a small running variance below 0: clamped, as BatchNorm
                // needs a variance >= 0 (the moments keep the unclamped step).
                const bool variance = is_running_variance(e.name);
                for (std::size_t i = 0; i < e.numel; ++i) {
                    const double xi = element(*x, i);
                    const double delta = element(*avg, i) - xi;
                    const double step =
                        server_step(config_, delta, mt[i], vt != nullptr ? (*vt)[i] : unused);
                    const double value = server_value(variance, xi + step);
                    if (!fits(e.dtype, value)) {
                        // The job fails here rather than hand workers a NaN or inf model.
                        return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                          strategy_ + ": round " + std::to_string(round_) +
                                              ": the server step made tensor '" + e.name +
                                              "' non-finite (is server_lr too large?)"};
                    }
                    set_element(next, i, value);
                }
                out.tensors.push_back(std::move(next));
            }
            ++rounds_;
            is_open_ = false;
            return out;
        });
    }

    sdk::Result<sdk::TensorMap> save_state() noexcept override {
        return guarded(strategy_, "save_state", [&]() -> sdk::Result<sdk::TensorMap> {
            sdk::TensorMap out;
            if (!has_state_) {
                return out;
            }
            append_state(out, m_, m_prefix());
            append_state(out, v_, v_prefix());
            out.tensors.push_back(i64_scalar(strategy_ + ".rounds", rounds_));
            return out;
        });
    }

    sdk::Status load_state(const sdk::TensorMap& state) noexcept override {
        return guarded(strategy_, "load_state", [&]() -> sdk::Status {
            if (is_open_) {
                return {sdk::ErrorCode::FailedPrecondition,
                        strategy_ + ": load_state during round " + std::to_string(round_)};
            }
            NamedState m;
            NamedState v;
            std::int64_t rounds = 0;
            bool has_rounds = false;
            const std::string m_pre = m_prefix();
            const std::string v_pre = v_prefix();
            const std::string rounds_name = strategy_ + ".rounds";
            for (const sdk::Tensor& t : state.tensors) {
                sdk::Status status;
                if (starts_with(t.name, kMetricPrefix)) {
                    continue;
                }
                if (t.name == rounds_name) {
                    auto count = read_count(t);
                    if (!count) {
                        return fail(count.status(), "saved state");
                    }
                    rounds = *count;
                    has_rounds = true;
                } else if (starts_with(t.name, m_pre) && t.name.size() > m_pre.size()) {
                    status = read_state_tensor(t, t.name.substr(m_pre.size()), m);
                } else if (uses_v() && starts_with(t.name, v_pre) && t.name.size() > v_pre.size()) {
                    status = read_state_tensor(t, t.name.substr(v_pre.size()), v);
                } else {
                    return {sdk::ErrorCode::InvalidArgument,
                            strategy_ + ": saved state has tensor '" + t.name +
                                "', which this strategy does not keep"};
                }
                if (!status) {
                    return fail(status, "saved state");
                }
            }
            const bool empty = m.empty() && v.empty() && !has_rounds;
            if (!empty && (!has_rounds || m.empty() || (uses_v() && v.size() != m.size()))) {
                return {sdk::ErrorCode::InvalidArgument,
                        strategy_ + ": saved state is incomplete (needs " + m_pre + "*" +
                            (uses_v() ? ", " + v_pre + "*" : std::string()) + " and " +
                            rounds_name + ")"};
            }
            // Checked against the model's layout at the next begin_round.
            m_ = std::move(m);
            v_ = std::move(v);
            rounds_ = rounds;
            has_state_ = !empty;
            return sdk::Status::ok();
        });
    }

    const ServerOptimizerConfig& config() const noexcept { return config_; }

private:
    bool uses_v() const noexcept { return config_.rule != ServerRule::Momentum; }
    const char* m_label() const noexcept {
        return config_.rule == ServerRule::Momentum ? "momentum" : "first moment";
    }
    std::string m_prefix() const { return strategy_ + ".m."; }
    std::string v_prefix() const { return strategy_ + ".v."; }

    sdk::Status fail(const sdk::Status& status, const std::string& where) const {
        return {status.code(), strategy_ + ": " + where + ": " + status.message()};
    }

    std::string strategy_;
    ServerOptimizerConfig config_;
    fedavg::WeightedMean mean_;
    Layout layout_;
    sdk::TensorMap global_;
    NamedState m_;
    NamedState v_;
    std::int64_t rounds_ = 0;
    bool has_state_ = false;
    std::set<std::string> contributors_;
    int round_ = -1;
    bool is_open_ = false;
};

}  // namespace synergos::plugins::aggregator_common
