// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file dp_session.hpp
/// DP-FedAvg with server-side fixed clipping (McMahan et al., "Learning Differentially Private
/// Recurrent Language Models", ICLR 2018), every client in every round.
///
/// Round t with global x and n updates w_k:
///   u_k = w_k - x over all floating tensors, as one vector
///   u_k <- u_k * min(1, dp_clip_norm / ||u_k||_2)                      (clipping)
///   x <- x + (1/n) sum_k u_k + N(0, (dp_noise_multiplier * dp_clip_norm / n)^2) per coordinate
/// The mean is unweighted: weighting by rows would let one client's influence exceed the clip
/// norm. Integer tensors keep the global's values (a counter is not worth leaking). Noised
/// BatchNorm `*.running_var` values are clamped at 0 (post-processing: the DP guarantee
/// holds). Every round is accounted by RdpAccountant (all clients every round, no
/// subsampling), and save_state() carries `metric.dp_epsilon` and `metric.dp_delta` for the
/// run's history.
/// Memory: a copy of the global and one sum in double (about three F32 models' worth): updates
/// are clipped and folded as they arrive.

#include <cstdint>
#include <optional>
#include <set>
#include <string>

#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/log.hpp>
#include <synergos/sdk/status.hpp>
#include <synergos/sdk/tensor.hpp>

#include "aggregator_common/tensor_layout.hpp"
#include "rdp_accountant.hpp"

namespace synergos::plugins::dpfedavg {

struct DpConfig {
    double clip_norm = 1.0;             ///< dp_clip_norm, C
    double noise_multiplier = 1.0;      ///< dp_noise_multiplier, z
    double delta = 1e-5;                ///< dp_delta
    std::optional<std::uint64_t> seed;  ///< dp_seed; absent: the OS's entropy each round
};

/// min(1, clip_norm / norm); 1 for a zero update.
inline double clip_factor(double norm, double clip_norm) noexcept {
    return norm > clip_norm ? clip_norm / norm : 1.0;
}

/// Threading: one thread at a time (the SDK's session contract).
class DpFedAvgSession final : public sdk::AggregationSession {
public:
    /// `logger` (may be null) receives the privacy spent after each round.
    DpFedAvgSession(DpConfig config, sdk::Logger* logger) : config_(config), logger_(logger) {}

    sdk::Status begin_round(const sdk::TensorMap& global, int round) noexcept override;
    sdk::Status accumulate(const std::string& participant, std::int64_t samples,
                           const sdk::TensorMap& weights) noexcept override;
    sdk::Result<sdk::TensorMap> finish_round() noexcept override;
    /// `dpfedavg.orders`, `dpfedavg.rdp` (F64 vectors), `dpfedavg.rounds` (I64), and the
    /// figures `metric.dp_epsilon`, `metric.dp_delta` (F64 scalars).
    sdk::Result<sdk::TensorMap> save_state() noexcept override;
    sdk::Status load_state(const sdk::TensorMap& state) noexcept override;

    /// Epsilon spent so far for the configured delta (0 before the first round).
    double epsilon() const;

private:
    sdk::Status fail(const sdk::Status& status, const std::string& where) const;

    DpConfig config_;
    sdk::Logger* logger_;
    aggregator_common::Layout layout_;
    sdk::TensorMap global_;
    aggregator_common::NamedState sum_;  ///< sum of the clipped updates
    RdpAccountant accountant_;
    std::int64_t rounds_ = 0;
    std::set<std::string> contributors_;
    int round_ = -1;
    bool is_open_ = false;
};

}  // namespace synergos::plugins::dpfedavg
