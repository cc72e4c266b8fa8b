// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file aggregator.hpp
/// Plugin kind `aggregator`: a federated strategy, i.e. how client updates become the next
/// global model. Selected by a run's `algorithm` field (case-insensitive plugin name).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

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

/// Name, element type and shape of a tensor whose bytes have not arrived yet (SDK 1.1).
struct TensorSpec {
    std::string name;
    DType dtype = DType::F32;
    std::vector<std::int64_t> shape;
};

/// SDK 1.1: a session that folds an update piece by piece while its bytes arrive, so the host
/// never holds a whole update (peak memory: the global model and the session's sums). Hosts find
/// it with `dynamic_cast` on the session `open` returned; a session that is not one gets whole
/// updates through `accumulate`, as in SDK 1.0.
///
/// One update: `begin_update`, then its tensors' data (`fold` for F32 pieces, each tensor's
/// pieces in element order; `fold_tensor` for a whole tensor of any dtype), then `end_update`,
/// or `abandon_update` when the update will not complete. Several updates may be open at once
/// and their pieces may interleave; the calls still come one at a time (as every session call).
/// A piece folded cannot be taken back: once an update that folded anything fails or is
/// abandoned, the round is spoilt and `finish_round` fails until `begin_round` starts it again.
class BOOST_SYMBOL_VISIBLE StreamingAggregationSession : public AggregationSession {
public:
    using UpdateId = std::uint64_t;

    /// Opens the update of `participant` (trained on `samples` rows) whose tensors will be
    /// `layout` (in that order; `tensor` below indexes it). Checks the layout against the round;
    /// on error nothing changes.
    virtual Result<UpdateId> begin_update(const std::string& participant, std::int64_t samples,
                                          const std::vector<TensorSpec>& layout) noexcept = 0;
    /// Folds `count` elements of F32 tensor `tensor` starting at element `offset` (the next
    /// element of that tensor not yet folded). `values` is only borrowed for the call.
    virtual Status fold(UpdateId update, std::size_t tensor, std::uint64_t offset,
                        const float* values, std::size_t count) noexcept = 0;
    /// Folds a whole tensor of the layout, of any dtype (e.g. BatchNorm's I64 counters).
    virtual Status fold_tensor(UpdateId update, const Tensor& tensor) noexcept = 0;
    /// Completes the update; fails (and spoils the round) when some of its data never came.
    virtual Status end_update(UpdateId update) noexcept = 0;
    /// Drops an open update. Returns true when it had folded data, i.e. the round is spoilt.
    virtual bool abandon_update(UpdateId update) noexcept = 0;
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
