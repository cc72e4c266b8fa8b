// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file scaffold_client.hpp
/// SCAFFOLD's client side (Karimireddy et al. 2020, Algorithm 1, control update option II) as
/// pure, header-only functions for the worker's model plugin. The torch plugin calls them when
/// the train arguments carry "scaffold": true; the worker service keeps c_i per run on disk and
/// hands it to the model in the reference map as `scaffold.c_i.<name>` (split_reference).
///
/// One round on worker i, starting from the global body (weights x plus `scaffold.c.<name>`):
///   1. split_server_body(): x and the server control c (absent tensors mean 0).
///   2. load c_i, the worker's own control (kept per run under its outputs directory so it
///      survives restarts; absent in the first round, meaning 0).
///   3. K local SGD steps with learning rate lr, each with the corrected gradient
///         g <- g + c - c_i                      (correct_gradient / corrected_gradients)
///      so y <- y - lr * (g(y) - c_i + c).
///   4. option II:  c_i+ = c_i - c + (x - y) / (K * lr),   Delta c_i = c_i+ - c_i
///      (option_ii_update), then store c_i+ in place of c_i.
///   5. reply with y plus `scaffold.delta_c.<name>` = Delta c_i (append_delta_c).
/// Option II assumes plain SGD steps; with momentum or a learning-rate schedule, pass the
/// mean learning rate of the K steps (an approximation the paper does not cover).
/// Only floating tensors (F32, F64) are corrected; integer buffers pass through.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <synergos/sdk/status.hpp>
#include <synergos/sdk/tensor.hpp>

#include "aggregator_common/tensor_layout.hpp"

namespace synergos::plugins::scaffold::client {

inline constexpr std::string_view kControlPrefix = "scaffold.c.";
inline constexpr std::string_view kDeltaControlPrefix = "scaffold.delta_c.";
/// The worker's own control c_i, added by the worker service to the model's reference map.
inline constexpr std::string_view kClientControlPrefix = "scaffold.c_i.";
/// Every SCAFFOLD tensor name starts with this; model tensors never do.
inline constexpr std::string_view kScaffoldPrefix = "scaffold.";

/// In place, element-wise: grad[i] += c[i] - c_i[i]. Either control may be null (zero).
inline void correct_gradient(float* grad, const float* c, const float* c_i,
                             std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        const float server = c != nullptr ? c[i] : 0.0F;
        const float local = c_i != nullptr ? c_i[i] : 0.0F;
        grad[i] += server - local;
    }
}

/// A global body split into the model weights and the server control c (prefix removed).
struct ServerBody {
    sdk::TensorMap weights;
    sdk::TensorMap c;
};

inline ServerBody split_server_body(sdk::TensorMap body) {
    ServerBody out;
    for (sdk::Tensor& t : body.tensors) {
        if (aggregator_common::starts_with(t.name, kControlPrefix)) {
            t.name.erase(0, kControlPrefix.size());
            out.c.tensors.push_back(std::move(t));
        } else {
            out.weights.tensors.push_back(std::move(t));
        }
    }
    return out;
}

/// A reference map as the worker service builds it: the global weights x, the server control c
/// (`scaffold.c.*`) and the worker's control c_i (`scaffold.c_i.*`), prefixes removed. Other
/// `scaffold.` tensors are dropped.
struct Reference {
    sdk::TensorMap x;
    sdk::TensorMap c;
    sdk::TensorMap c_i;
};

inline Reference split_reference(const sdk::TensorMap& reference) {
    Reference out;
    for (const sdk::Tensor& t : reference.tensors) {
        if (aggregator_common::starts_with(t.name, kControlPrefix)) {
            out.c.tensors.push_back(t);
            out.c.tensors.back().name.erase(0, kControlPrefix.size());
        } else if (aggregator_common::starts_with(t.name, kClientControlPrefix)) {
            out.c_i.tensors.push_back(t);
            out.c_i.tensors.back().name.erase(0, kClientControlPrefix.size());
        } else if (!aggregator_common::starts_with(t.name, kScaffoldPrefix)) {
            out.x.tensors.push_back(t);
        }
    }
    return out;
}

namespace detail {

/// The control tensor named like `like` in `controls`, or null when absent (meaning zero).
/// InvalidArgument when present with another shape or a non-floating dtype.
inline sdk::Result<const sdk::Tensor*> control_for(const sdk::Tensor& like,
                                                   const sdk::TensorMap& controls,
                                                   const char* what) {
    const sdk::Tensor* t = controls.find(like.name);
    if (t == nullptr) {
        return static_cast<const sdk::Tensor*>(nullptr);
    }
    if (!aggregator_common::is_floating(t->dtype) || t->shape != like.shape ||
        !aggregator_common::is_self_consistent(*t)) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          std::string(what) + " tensor '" + t->name +
                              "' does not fit the model tensor (dtype, shape or size)"};
    }
    return t;
}

inline double value_or_zero(const sdk::Tensor* t, std::size_t i) noexcept {
    return t != nullptr ? aggregator_common::element(*t, i) : 0.0;
}

}  // namespace detail

/// g + c - c_i for every floating tensor of `grads` (integer tensors copied unchanged).
/// c and c_i are keyed by the model tensor names; an absent entry is zero.
inline sdk::Result<sdk::TensorMap> corrected_gradients(const sdk::TensorMap& grads,
                                                       const sdk::TensorMap& c,
                                                       const sdk::TensorMap& c_i) {
    sdk::TensorMap out;
    out.tensors.reserve(grads.tensors.size());
    for (const sdk::Tensor& g : grads.tensors) {
        if (!aggregator_common::is_floating(g.dtype)) {
            out.tensors.push_back(g);
            continue;
        }
        auto server = detail::control_for(g, c, "server control");
        if (!server) {
            return server.error();
        }
        auto local = detail::control_for(g, c_i, "client control");
        if (!local) {
            return local.error();
        }
        sdk::Tensor t = g;
        const std::size_t n = static_cast<std::size_t>(g.numel());
        if (g.dtype == sdk::DType::F32 &&
            (*server == nullptr || (*server)->dtype == sdk::DType::F32) &&
            (*local == nullptr || (*local)->dtype == sdk::DType::F32)) {
            correct_gradient(t.f32(), *server != nullptr ? (*server)->f32() : nullptr,
                             *local != nullptr ? (*local)->f32() : nullptr, n);
        } else {
            for (std::size_t i = 0; i < n; ++i) {
                aggregator_common::set_element(t, i,
                                               aggregator_common::element(g, i) +
                                                   detail::value_or_zero(*server, i) -
                                                   detail::value_or_zero(*local, i));
            }
        }
        out.tensors.push_back(std::move(t));
    }
    return out;
}

/// The new client control and its change, keyed by model tensor name, in the model's dtype.
struct ControlUpdate {
    sdk::TensorMap c_i;      ///< c_i+, to store in place of c_i
    sdk::TensorMap delta_c;  ///< c_i+ - c_i, to send (append_delta_c)
};

/// Option II: c_i+ = c_i - c + (x - y) / (local_steps * lr) over the floating tensors of x;
/// `y` must hold the same tensors. InvalidArgument when local_steps < 1, lr <= 0, or a tensor is
/// missing or misshapen.
inline sdk::Result<ControlUpdate> option_ii_update(const sdk::TensorMap& x, const sdk::TensorMap& y,
                                                   const sdk::TensorMap& c,
                                                   const sdk::TensorMap& c_i,
                                                   std::int64_t local_steps, double lr) {
    if (local_steps < 1) {
        return sdk::Error{
            sdk::ErrorCode::InvalidArgument,
            "scaffold: local_steps must be at least 1 (got " + std::to_string(local_steps) + ")"};
    }
    if (!(lr > 0.0)) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          "scaffold: the local learning rate must be > 0"};
    }
    const double scale = 1.0 / (static_cast<double>(local_steps) * lr);
    ControlUpdate out;
    for (const sdk::Tensor& xt : x.tensors) {
        if (!aggregator_common::is_floating(xt.dtype)) {
            continue;
        }
        const sdk::Tensor* yt = y.find(xt.name);
        if (yt == nullptr || yt->shape != xt.shape || yt->dtype != xt.dtype ||
            yt->data.size() != xt.data.size()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              "scaffold: the trained weights lack tensor '" + xt.name +
                                  "' or it does not match the global one"};
        }
        auto server = detail::control_for(xt, c, "server control");
        if (!server) {
            return server.error();
        }
        auto local = detail::control_for(xt, c_i, "client control");
        if (!local) {
            return local.error();
        }
        sdk::Tensor next = aggregator_common::zeros_like(xt);
        sdk::Tensor delta = aggregator_common::zeros_like(xt);
        const std::size_t n = static_cast<std::size_t>(xt.numel());
        for (std::size_t i = 0; i < n; ++i) {
            const double ci = detail::value_or_zero(*local, i);
            const double ci_plus =
                ci - detail::value_or_zero(*server, i) +
                (aggregator_common::element(xt, i) - aggregator_common::element(*yt, i)) * scale;
            aggregator_common::set_element(next, i, ci_plus);
            aggregator_common::set_element(delta, i, ci_plus - ci);
        }
        out.c_i.tensors.push_back(std::move(next));
        out.delta_c.tensors.push_back(std::move(delta));
    }
    return out;
}

/// Appends `delta_c` (keyed by model tensor name) to a reply as `scaffold.delta_c.<name>`.
inline void append_delta_c(sdk::TensorMap& reply, const sdk::TensorMap& delta_c) {
    for (const sdk::Tensor& t : delta_c.tensors) {
        sdk::Tensor copy = t;
        copy.name = std::string(kDeltaControlPrefix) + t.name;
        reply.tensors.push_back(std::move(copy));
    }
}

}  // namespace synergos::plugins::scaffold::client
