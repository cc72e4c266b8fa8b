// SPDX-License-Identifier: Apache-2.0
#include "scaffold_session.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include "aggregator_common/run_fields.hpp"

namespace synergos::plugins::scaffold {

namespace {

using aggregator_common::element;
using aggregator_common::is_floating;
using aggregator_common::Layout;
using aggregator_common::NamedState;
using aggregator_common::starts_with;

constexpr const char* kName = "scaffold";

}  // namespace

sdk::Status ScaffoldSession::fail(const sdk::Status& status, const std::string& where) const {
    return {status.code(), std::string(kName) + ": " + where + ": " + status.message()};
}

sdk::Status ScaffoldSession::begin_round(const sdk::TensorMap& global, int round) noexcept {
    return aggregator_common::guarded(kName, "begin_round", [&]() -> sdk::Status {
        const std::string where = "round " + std::to_string(round);
        Layout layout;
        if (auto status = layout.reset(global, kScaffoldPrefix); !status) {
            return fail(status, where);
        }
        if (has_state_) {
            if (auto status = aggregator_common::check_state_fits(c_, layout, "server control c");
                !status) {
                return fail(status, where);
            }
        }
        // The model part only: the previous round's scaffold.c.* tensors ride along in the
        // global body, but the authoritative c is the session's (restored by load_state).
        sdk::TensorMap model;
        model.tensors.reserve(layout.size());
        for (const sdk::Tensor& t : global.tensors) {
            if (!starts_with(t.name, kScaffoldPrefix)) {
                model.tensors.push_back(t);
            }
        }
        if (auto status = mean_.reset(model); !status) {
            return fail(status, where);
        }
        if (!has_state_) {
            c_ = aggregator_common::state_like(layout, 0.0);
            has_state_ = true;
        }
        dc_sum_ = aggregator_common::state_like(layout, 0.0);
        layout_ = std::move(layout);
        global_ = std::move(model);
        contributors_.clear();
        round_ = round;
        is_open_ = true;
        return sdk::Status::ok();
    });
}

sdk::Status ScaffoldSession::accumulate(const std::string& participant, std::int64_t samples,
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
        std::vector<const sdk::Tensor*> matched;
        if (auto status = layout_.match(weights, matched, kScaffoldPrefix); !status) {
            return fail(status, where);
        }
        // Delta c_i: one per floating model tensor, same shape, finite; checked before anything
        // is folded so a refused update changes nothing.
        std::vector<const sdk::Tensor*> deltas(layout_.size(), nullptr);
        for (const sdk::Tensor& t : weights.tensors) {
            if (!starts_with(t.name, kScaffoldPrefix) || starts_with(t.name, kControlPrefix)) {
                continue;  // model tensors (matched above) and an echo of c are not Delta c
            }
            if (!starts_with(t.name, kDeltaControlPrefix)) {
                return fail({sdk::ErrorCode::InvalidArgument,
                             "update has tensor '" + t.name + "', which SCAFFOLD does not know"},
                            where);
            }
            const std::string name = t.name.substr(kDeltaControlPrefix.size());
            const std::size_t s = layout_.find(name);
            if (s == layout_.size() || !is_floating(layout_.entries()[s].dtype)) {
                return fail({sdk::ErrorCode::InvalidArgument,
                             "update has tensor '" + t.name +
                                 "', but the model has no floating tensor '" + name + "'"},
                            where);
            }
            if (deltas[s] != nullptr) {
                return fail(
                    {sdk::ErrorCode::InvalidArgument, "update has tensor '" + t.name + "' twice"},
                    where);
            }
            Layout::Entry expected = layout_.entries()[s];
            if (is_floating(t.dtype)) {
                expected.dtype = t.dtype;  // Delta c may come in F32 or F64 whatever the model
            }
            if (auto status = Layout::check_entry(expected, t, "update tensor"); !status) {
                return fail(status, where);
            }
            deltas[s] = &t;
        }
        for (std::size_t s = 0; s < layout_.size(); ++s) {
            const auto& e = layout_.entries()[s];
            if (is_floating(e.dtype) && deltas[s] == nullptr) {
                return fail({sdk::ErrorCode::InvalidArgument,
                             "update lacks tensor '" + std::string(kDeltaControlPrefix) + e.name +
                                 "' (the worker's model plugin must run SCAFFOLD's client side, "
                                 "see scaffold_client.hpp)"},
                            where);
            }
        }
        sdk::TensorMap model;
        model.tensors.reserve(matched.size());
        for (const sdk::Tensor* t : matched) {
            model.tensors.push_back(*t);
        }
        if (auto status = mean_.add(samples, model); !status) {
            return fail(status, where);
        }
        for (std::size_t s = 0; s < layout_.size(); ++s) {
            if (deltas[s] == nullptr) {
                continue;
            }
            std::vector<double>& sum = dc_sum_.at(layout_.entries()[s].name).values;
            for (std::size_t i = 0; i < sum.size(); ++i) {
                sum[i] += element(*deltas[s], i);
            }
        }
        contributors_.insert(participant);
        return sdk::Status::ok();
    });
}

sdk::Result<sdk::TensorMap> ScaffoldSession::finish_round() noexcept {
    return aggregator_common::guarded(kName, "finish_round", [&]() -> sdk::Result<sdk::TensorMap> {
        if (!is_open_) {
            return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                              std::string(kName) + ": finish_round without an open round"};
        }
        if (mean_.updates() == 0) {
            return sdk::Error{
                sdk::ErrorCode::FailedPrecondition,
                std::string(kName) + ": no update arrived for round " + std::to_string(round_)};
        }
        auto mean = mean_.mean();
        if (!mean) {
            return mean.error();
        }
        const std::int64_t n =
            std::max<std::int64_t>(clients_, static_cast<std::int64_t>(contributors_.size()));
        sdk::TensorMap out;
        out.tensors.reserve(2 * layout_.size());
        std::vector<sdk::Tensor> controls;
        // c goes to the workers in the model's dtype: like the model, the new c must fit it (a
        // double beyond the float range becomes inf, and converting it is UB). Checked before c
        // changes, so a failed round leaves it as it was.
        for (const auto& e : layout_.entries()) {
            if (!is_floating(e.dtype)) {
                continue;
            }
            const std::vector<double>& c = c_.at(e.name).values;
            const std::vector<double>& dc = dc_sum_.at(e.name).values;
            for (std::size_t i = 0; i < c.size(); ++i) {
                if (!aggregator_common::fits(e.dtype, c[i] + dc[i] / static_cast<double>(n))) {
                    return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                      std::string(kName) + ": round " + std::to_string(round_) +
                                          ": the server control for tensor '" + e.name +
                                          "' left the " + sdk::to_string(e.dtype) +
                                          " range (the workers' Delta c are too large)"};
                }
            }
        }
        for (const auto& e : layout_.entries()) {
            const sdk::Tensor* avg = mean->find(e.name);
            const sdk::Tensor* x = global_.find(e.name);
            if (avg == nullptr || x == nullptr) {
                return sdk::Error{sdk::ErrorCode::Internal,
                                  std::string(kName) + ": tensor '" + e.name + "' vanished"};
            }
            if (!is_floating(e.dtype)) {
                out.tensors.push_back(*avg);
                continue;
            }
            sdk::Tensor next = aggregator_common::zeros_like(*x);
            // With server_lr > 1 the step can overshoot a running variance below 0 (BatchNorm
            // then takes the square root of a negative).
            const bool variance = aggregator_common::is_running_variance(e.name);
            for (std::size_t i = 0; i < e.numel; ++i) {
                const double xi = element(*x, i);
                const double value = aggregator_common::server_value(
                    variance, xi + config_.server_lr * (element(*avg, i) - xi));
                if (!aggregator_common::fits(e.dtype, value)) {
                    return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                      std::string(kName) + ": round " + std::to_string(round_) +
                                          ": the server step made tensor '" + e.name +
                                          "' non-finite (is server_lr too large?)"};
                }
                aggregator_common::set_element(next, i, value);
            }
            out.tensors.push_back(std::move(next));
            std::vector<double>& c = c_.at(e.name).values;
            const std::vector<double>& dc = dc_sum_.at(e.name).values;
            for (std::size_t i = 0; i < c.size(); ++i) {
                c[i] += dc[i] / static_cast<double>(n);
            }
            controls.push_back(
                aggregator_common::from_doubles(*x, c, std::string(kControlPrefix) + e.name));
        }
        for (sdk::Tensor& t : controls) {
            out.tensors.push_back(std::move(t));
        }
        clients_ = n;
        ++rounds_;
        is_open_ = false;
        return out;
    });
}

sdk::Result<sdk::TensorMap> ScaffoldSession::save_state() noexcept {
    return aggregator_common::guarded(kName, "save_state", [&]() -> sdk::Result<sdk::TensorMap> {
        sdk::TensorMap out;
        if (!has_state_) {
            return out;
        }
        aggregator_common::append_state(out, c_, std::string(kControlPrefix));
        out.tensors.push_back(aggregator_common::i64_scalar("scaffold.clients", clients_));
        out.tensors.push_back(aggregator_common::i64_scalar("scaffold.rounds", rounds_));
        return out;
    });
}

sdk::Status ScaffoldSession::load_state(const sdk::TensorMap& state) noexcept {
    return aggregator_common::guarded(kName, "load_state", [&]() -> sdk::Status {
        if (is_open_) {
            return {sdk::ErrorCode::FailedPrecondition,
                    std::string(kName) + ": load_state during round " + std::to_string(round_)};
        }
        NamedState c;
        std::int64_t clients = 0;
        std::int64_t rounds = 0;
        bool has_clients = false;
        bool has_rounds = false;
        for (const sdk::Tensor& t : state.tensors) {
            if (starts_with(t.name, aggregator_common::kMetricPrefix)) {
                continue;
            }
            if (t.name == "scaffold.clients" || t.name == "scaffold.rounds") {
                auto count = aggregator_common::read_count(t);
                if (!count) {
                    return fail(count.status(), "saved state");
                }
                const bool is_clients = t.name == "scaffold.clients";
                bool& seen = is_clients ? has_clients : has_rounds;
                if (seen) {
                    return {sdk::ErrorCode::InvalidArgument,
                            std::string(kName) + ": saved state has tensor '" + t.name + "' twice"};
                }
                seen = true;
                (is_clients ? clients : rounds) = *count;
                continue;
            }
            if (starts_with(t.name, kControlPrefix) && t.name.size() > kControlPrefix.size()) {
                if (auto status = aggregator_common::read_state_tensor(
                        t, t.name.substr(kControlPrefix.size()), c);
                    !status) {
                    return fail(status, "saved state");
                }
                continue;
            }
            return {sdk::ErrorCode::InvalidArgument, std::string(kName) +
                                                         ": saved state has tensor '" + t.name +
                                                         "', which SCAFFOLD does not keep"};
        }
        const bool empty = c.empty() && !has_clients && !has_rounds;
        if (!empty && (c.empty() || !has_clients || !has_rounds)) {
            return {sdk::ErrorCode::InvalidArgument,
                    std::string(kName) +
                        ": saved state is incomplete (needs scaffold.c.*, scaffold.clients and "
                        "scaffold.rounds)"};
        }
        // Checked against the model's layout at the next begin_round.
        c_ = std::move(c);
        clients_ = clients;
        rounds_ = rounds;
        has_state_ = !empty;
        return sdk::Status::ok();
    });
}

}  // namespace synergos::plugins::scaffold
