// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file scaffold_session.hpp
/// SCAFFOLD's server side (Karimireddy et al. 2020, Algorithm 1).
///
/// The server keeps the model x and the server control variate c. Each round:
///   - x and c travel to the workers: the global body holds the weights plus one tensor
///     `scaffold.c.<name>` per floating model tensor (absent in the first round: c = 0);
///   - each worker i returns its trained weights y_i plus `scaffold.delta_c.<name>` tensors,
///     the change of its local control c_i (see scaffold_client.hpp);
///   - x <- x + server_lr * (sum_i n_i y_i / sum_i n_i - x)
///     (the paper's uniform mean of Delta y_i, weighted by rows as fedavg; equal with equal rows)
///   - c <- c + (1 / N) * sum_i Delta c_i, N = the most participants seen in a round (the paper's
///     total client count; Synergos runs every worker every round).
/// Integer tensors take the n-weighted mean, rounded. c, N and the round count are the state
/// saved with each round checkpoint, so a resumed job continues with the same c.
/// Memory: the weighted-mean accumulator, a copy of the global, c and the sum of Delta c in
/// double (about seven F32 models' worth), plus one transient copy of the update being folded.

#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/status.hpp>
#include <synergos/sdk/tensor.hpp>

#include "aggregator_common/tensor_layout.hpp"
#include "weighted_mean.hpp"

namespace synergos::plugins::scaffold {

/// Every tensor SCAFFOLD adds to a weights body starts with this.
inline constexpr std::string_view kScaffoldPrefix = "scaffold.";
/// The server control variate c, sent with the global weights.
inline constexpr std::string_view kControlPrefix = "scaffold.c.";
/// The change of a worker's control variate, returned with its weights.
inline constexpr std::string_view kDeltaControlPrefix = "scaffold.delta_c.";

struct ScaffoldConfig {
    double server_lr = 1.0;  ///< eta_g, the paper's global step size
};

/// Threading: one thread at a time (the SDK's session contract).
class ScaffoldSession final : public sdk::AggregationSession {
public:
    explicit ScaffoldSession(ScaffoldConfig config) : config_(config) {}

    sdk::Status begin_round(const sdk::TensorMap& global, int round) noexcept override;
    sdk::Status accumulate(const std::string& participant, std::int64_t samples,
                           const sdk::TensorMap& weights) noexcept override;
    sdk::Result<sdk::TensorMap> finish_round() noexcept override;
    /// `scaffold.c.<name>` (F64), `scaffold.clients` and `scaffold.rounds` (I64).
    sdk::Result<sdk::TensorMap> save_state() noexcept override;
    sdk::Status load_state(const sdk::TensorMap& state) noexcept override;

private:
    sdk::Status fail(const sdk::Status& status, const std::string& where) const;

    ScaffoldConfig config_;
    fedavg::WeightedMean mean_;
    aggregator_common::Layout layout_;
    sdk::TensorMap global_;                 ///< the model part of the round's global
    aggregator_common::NamedState c_;       ///< server control variate
    aggregator_common::NamedState dc_sum_;  ///< sum of the round's Delta c_i
    std::int64_t clients_ = 0;
    std::int64_t rounds_ = 0;
    bool has_state_ = false;
    std::set<std::string> contributors_;
    int round_ = -1;
    bool is_open_ = false;
};

}  // namespace synergos::plugins::scaffold
