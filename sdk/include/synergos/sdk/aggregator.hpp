// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file aggregator.hpp
/// Plugin kind `aggregator`: a federated strategy, i.e. how client updates become the next
/// global model. Selected by a run's `algorithm` field (case-insensitive plugin name).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/status.hpp>
#include <synergos/sdk/tensor.hpp>

namespace synergos::sdk {

/// The aggregation state of one training job. Updates are folded in as they arrive, so memory
/// stays near one model size whatever the number of clients (ARCHITECTURE.md, Principles).
/// Threading: the host calls a session from one thread at a time.
class BOOST_SYMBOL_VISIBLE AggregationSession : public PluginObject {
public:
    /// Starts round `round` from the current global weights.
    virtual Status begin_round(const TensorMap& global, int round) noexcept = 0;
    /// Folds one client's locally trained weights (trained on `samples` rows) into the round.
    /// `weights` is only borrowed for the call.
    virtual Status accumulate(const std::string& participant, std::int64_t samples,
                              const TensorMap& weights) noexcept = 0;
    /// Ends the round and returns the next global weights. Fails when no update arrived.
    virtual Result<TensorMap> finish_round() noexcept = 0;
    /// Strategy state that must survive a resumed job (momenta, control variates); may be empty.
    virtual Result<TensorMap> save_state() noexcept = 0;
    virtual Status load_state(const TensorMap& state) noexcept = 0;
};

/// A federated strategy.
class BOOST_SYMBOL_VISIBLE Aggregator : public PluginObject {
public:
    /// Checks the strategy's run fields (a JSON object of the run); InvalidArgument names a field.
    virtual Status validate(std::string_view run_json) noexcept = 0;
    /// Opens a session for one training job. Ownership: the caller owns the session.
    virtual Result<std::unique_ptr<AggregationSession>> open(std::string_view run_json) noexcept = 0;
    /// Extra fields (a JSON object) each worker needs for local training, e.g. {"mu": 0.1}.
    virtual std::string worker_arguments(std::string_view run_json) noexcept = 0;
};

}  // namespace synergos::sdk
