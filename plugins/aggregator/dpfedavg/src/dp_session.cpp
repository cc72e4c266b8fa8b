// SPDX-License-Identifier: Apache-2.0
#include "dp_session.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "aggregator_common/run_fields.hpp"
#include "gaussian_noise.hpp"

namespace synergos::plugins::dpfedavg {

namespace {

using aggregator_common::element;
using aggregator_common::is_floating;
using aggregator_common::Layout;
using aggregator_common::starts_with;

constexpr const char* kName = "dpfedavg";

/// Without dp_seed, each round's noise comes from the OS: nobody can replay it.
std::uint64_t entropy_seed() {
    std::random_device device;
    const auto high = static_cast<std::uint64_t>(device());
    const auto low = static_cast<std::uint64_t>(device());
    return (high << 32U) ^ low;
}

}  // namespace

sdk::Status DpFedAvgSession::fail(const sdk::Status& status, const std::string& where) const {
    return {status.code(), std::string(kName) + ": " + where + ": " + status.message()};
}

double DpFedAvgSession::epsilon() const {
    return rounds_ == 0 ? 0.0 : accountant_.epsilon(config_.delta).epsilon;
}

sdk::Status DpFedAvgSession::begin_round(const sdk::TensorMap& global, int round) noexcept {
    return aggregator_common::guarded(kName, "begin_round", [&]() -> sdk::Status {
        Layout layout;
        if (auto status = layout.reset(global); !status) {
            return fail(status, "round " + std::to_string(round));
        }
        sum_ = aggregator_common::state_like(layout, 0.0);
        layout_ = std::move(layout);
        global_ = global;
        contributors_.clear();
        round_ = round;
        is_open_ = true;
        return sdk::Status::ok();
    });
}

sdk::Status DpFedAvgSession::accumulate(const std::string& participant, std::int64_t samples,
                                        const sdk::TensorMap& weights) noexcept {
    return aggregator_common::guarded(kName, "accumulate", [&]() -> sdk::Status {
        if (!is_open_) {
            return {sdk::ErrorCode::FailedPrecondition,
                    std::string(kName) + ": update from participant '" + participant +
                        "' arrived outside a round (call begin_round first)"};
        }
        const std::string where =
            "participant '" + participant + "', round " + std::to_string(round_);
        if (contributors_.count(participant) != 0) {
            return {sdk::ErrorCode::AlreadyExists,
                    std::string(kName) + ": participant '" + participant +
                        "' already sent an update for round " + std::to_string(round_)};
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
        // The update's L2 norm over every floating tensor, as one vector.
        double norm2 = 0.0;
        for (std::size_t s = 0; s < layout_.size(); ++s) {
            const auto& e = layout_.entries()[s];
            if (!is_floating(e.dtype)) {
                continue;
            }
            const sdk::Tensor& x = *global_.find(e.name);
            for (std::size_t i = 0; i < e.numel; ++i) {
                const double u = element(*matched[s], i) - element(x, i);
                norm2 += u * u;
            }
        }
        const double factor = clip_factor(std::sqrt(norm2), config_.clip_norm);
        for (std::size_t s = 0; s < layout_.size(); ++s) {
            const auto& e = layout_.entries()[s];
            if (!is_floating(e.dtype)) {
                continue;
            }
            const sdk::Tensor& x = *global_.find(e.name);
            std::vector<double>& sum = sum_.at(e.name).values;
            for (std::size_t i = 0; i < e.numel; ++i) {
                sum[i] += factor * (element(*matched[s], i) - element(x, i));
            }
        }
        contributors_.insert(participant);
        return sdk::Status::ok();
    });
}

sdk::Result<sdk::TensorMap> DpFedAvgSession::finish_round() noexcept {
    return aggregator_common::guarded(kName, "finish_round", [&]() -> sdk::Result<sdk::TensorMap> {
        if (!is_open_) {
            return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                              std::string(kName) + ": finish_round without an open round"};
        }
        if (contributors_.empty()) {
            return sdk::Error{
                sdk::ErrorCode::FailedPrecondition,
                std::string(kName) + ": no update arrived for round " + std::to_string(round_)};
        }
        const auto n = static_cast<double>(contributors_.size());
        const double stddev = config_.noise_multiplier * config_.clip_norm / n;
        GaussianNoise noise = config_.seed ? GaussianNoise::for_round(*config_.seed, round_)
                                           : GaussianNoise(entropy_seed());
        sdk::TensorMap out;
        out.tensors.reserve(layout_.size());
        for (const auto& e : layout_.entries()) {
            const sdk::Tensor& x = *global_.find(e.name);
            if (!is_floating(e.dtype)) {
                out.tensors.push_back(x);
                continue;
            }
            const std::vector<double>& sum = sum_.at(e.name).values;
            sdk::Tensor next = aggregator_common::zeros_like(x);
            // A noised running variance is clamped at 0: post-processing of the noised value,
            // so the privacy guarantee holds, and BatchNorm never sees a negative variance.
            const bool variance = aggregator_common::is_running_variance(e.name);
            for (std::size_t i = 0; i < e.numel; ++i) {
                const double value = aggregator_common::server_value(
                    variance, element(x, i) + sum[i] / n + stddev * noise.next());
                if (!aggregator_common::fits(e.dtype, value)) {
                    return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                      std::string(kName) + ": round " + std::to_string(round_) +
                                          ": tensor '" + e.name +
                                          "' left the float range (dp_clip_norm or "
                                          "dp_noise_multiplier too large?)"};
                }
                aggregator_common::set_element(next, i, value);
            }
            out.tensors.push_back(std::move(next));
        }
        accountant_.compose_gaussian(config_.noise_multiplier);
        ++rounds_;
        is_open_ = false;
        if (logger_ != nullptr && logger_->enabled(sdk::Level::Info)) {
            const auto spent = accountant_.epsilon(config_.delta);
            logger_->info("dpfedavg: privacy spent",
                          nlohmann::json{{"round", round_},
                                         {"rounds_accounted", rounds_},
                                         {"epsilon", spent.epsilon},
                                         {"delta", config_.delta},
                                         {"rdp_order", spent.order},
                                         {"clients", contributors_.size()}}
                              .dump());
        }
        return out;
    });
}

sdk::Result<sdk::TensorMap> DpFedAvgSession::save_state() noexcept {
    return aggregator_common::guarded(kName, "save_state", [&]() -> sdk::Result<sdk::TensorMap> {
        sdk::TensorMap out;
        const auto k = static_cast<std::int64_t>(accountant_.orders().size());
        out.tensors.push_back(
            aggregator_common::f64_tensor("dpfedavg.orders", {k}, accountant_.orders()));
        out.tensors.push_back(
            aggregator_common::f64_tensor("dpfedavg.rdp", {k}, accountant_.rdp()));
        out.tensors.push_back(aggregator_common::i64_scalar("dpfedavg.rounds", rounds_));
        out.tensors.push_back(aggregator_common::f64_scalar("metric.dp_epsilon", epsilon()));
        out.tensors.push_back(aggregator_common::f64_scalar("metric.dp_delta", config_.delta));
        return out;
    });
}

sdk::Status DpFedAvgSession::load_state(const sdk::TensorMap& state) noexcept {
    return aggregator_common::guarded(kName, "load_state", [&]() -> sdk::Status {
        if (is_open_) {
            return {sdk::ErrorCode::FailedPrecondition,
                    std::string(kName) + ": load_state during round " + std::to_string(round_)};
        }
        const sdk::Tensor* orders = nullptr;
        const sdk::Tensor* rdp = nullptr;
        const sdk::Tensor* rounds = nullptr;
        for (const sdk::Tensor& t : state.tensors) {
            if (starts_with(t.name, aggregator_common::kMetricPrefix)) {
                continue;
            }
            const sdk::Tensor** slot = t.name == "dpfedavg.orders"   ? &orders
                                       : t.name == "dpfedavg.rdp"    ? &rdp
                                       : t.name == "dpfedavg.rounds" ? &rounds
                                                                     : nullptr;
            if (slot == nullptr) {
                return {sdk::ErrorCode::InvalidArgument, std::string(kName) +
                                                             ": saved state has tensor '" + t.name +
                                                             "', which dpfedavg does not keep"};
            }
            if (*slot != nullptr) {
                return {sdk::ErrorCode::InvalidArgument,
                        std::string(kName) + ": saved state has tensor '" + t.name + "' twice"};
            }
            if (!aggregator_common::is_self_consistent(t)) {
                return {sdk::ErrorCode::InvalidArgument, std::string(kName) +
                                                             ": saved state tensor '" + t.name +
                                                             "' does not fit its dtype and shape"};
            }
            *slot = &t;
        }
        if (orders == nullptr && rdp == nullptr && rounds == nullptr) {
            accountant_ = RdpAccountant();
            rounds_ = 0;
            return sdk::Status::ok();
        }
        if (orders == nullptr || rdp == nullptr || rounds == nullptr) {
            return {sdk::ErrorCode::InvalidArgument,
                    std::string(kName) +
                        ": saved state is incomplete (needs dpfedavg.orders, dpfedavg.rdp and "
                        "dpfedavg.rounds)"};
        }
        auto count = aggregator_common::read_count(*rounds);
        if (!count) {
            return fail(count.status(), "saved state");
        }
        RdpAccountant restored;
        if (auto status = restored.restore(aggregator_common::to_doubles(*orders),
                                           aggregator_common::to_doubles(*rdp));
            !status) {
            return fail(status, "saved state");
        }
        accountant_ = std::move(restored);
        rounds_ = *count;
        return sdk::Status::ok();
    });
}

}  // namespace synergos::plugins::dpfedavg
