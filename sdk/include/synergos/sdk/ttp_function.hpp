// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file ttp_function.hpp
/// Plugin kind `ttp`: a TTP function (align, train, validate, predict, optimize). Each has two
/// halves: `execute` runs on the TTP that took the job and drives that grid's workers; `archive`
/// runs on the director (the single writer of the store) when the job's result arrives.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/log.hpp>
#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/status.hpp>
#include <synergos/sdk/storage_backend.hpp>
#include <synergos/sdk/tensor.hpp>
#include <synergos/sdk/tracker.hpp>

namespace synergos::sdk {

/// One worker of the job's grid (from the participant's registration `node_<grid>`).
struct GridNode {
    std::string participant_id;
    std::string host;
    int port = 0;  ///< the worker protocol port (`f_port` of the registration)
};

/// A call to a worker (see docs/worker-protocol.md for routes and bodies).
struct WorkerRequest {
    std::string method = "POST";
    std::string path;              ///< e.g. "/v1/train"
    std::string json = "{}";       ///< JSON metadata
    const TensorMap* tensors = nullptr;  ///< optional weights, sent as safetensors (borrowed)
    std::chrono::milliseconds timeout{600000};
};

/// A worker's answer.
struct WorkerReply {
    int status = 0;        ///< HTTP status
    std::string json;      ///< JSON metadata (the `__metadata__` of a safetensors body, or the body)
    TensorMap tensors;     ///< weights, when the worker sent any
};

/// Receives replies of a fan-out call as each one completes, one at a time (never concurrently),
/// so a caller can fold weights and drop them at once.
class BOOST_SYMBOL_VISIBLE ReplyVisitor {
public:
    virtual ~ReplyVisitor() = default;
    /// `index` is the node's position in the call; `reply` is an error for a worker that failed
    /// or timed out (its message names the participant).
    virtual void on_reply(std::size_t index, Result<WorkerReply>&& reply) noexcept = 0;
};

/// SDK 1.1: what is known of a weight reply (a safetensors body) before its tensor bytes arrive.
struct ReplyHead {
    int status = 0;                   ///< HTTP status
    std::string json;                 ///< JSON metadata (`__metadata__["json"]`)
    std::vector<TensorSpec> tensors;  ///< every tensor of the body, in data order
};

/// SDK 1.1: a visitor that takes F32 weights piece by piece while they arrive instead of whole
/// replies. Hosts find it with `dynamic_cast`; a host that does not stream calls only
/// `on_reply`, with whole tensors, as for a `ReplyVisitor`.
/// For a weight reply the host calls `on_reply_head` once its header arrived. When that returns
/// true, each F32 tensor's bytes go to `on_weights` in element order and the reply given to
/// `on_reply` holds only the other tensors; when false, the reply comes whole as in SDK 1.0.
/// `on_reply` ends every reply as before (an error when the call failed, possibly after pieces
/// were delivered). Threading: no two calls of one `call_all` overlap, but `on_reply_head` and
/// `on_weights` may come from host threads other than the caller's.
class BOOST_SYMBOL_VISIBLE StreamingReplyVisitor : public ReplyVisitor {
public:
    virtual bool on_reply_head(std::size_t index, const ReplyHead& head) noexcept = 0;
    /// `count` elements of F32 tensor `tensor` (its index in `head.tensors`) starting at element
    /// `offset`; `values` is only borrowed for the call. Returning false stops receiving this
    /// reply: the call then ends with an error.
    virtual bool on_weights(std::size_t index, std::size_t tensor, std::uint64_t offset,
                            const float* values, std::size_t count) noexcept = 0;
};

/// The worker protocol client, implemented by the host.
/// Threading: may be used from any thread.
class BOOST_SYMBOL_VISIBLE WorkerClient {
public:
    virtual ~WorkerClient() = default;
    /// One call. Errors: Unavailable (cannot connect), Timeout, or the worker's error mapped to a code.
    virtual Result<WorkerReply> call(const GridNode& node, const WorkerRequest& request) noexcept = 0;
    /// Calls every node concurrently (request `i` to node `i`) and visits replies as they come.
    virtual void call_all(const std::vector<GridNode>& nodes,
                          const std::vector<WorkerRequest>& requests,
                          ReplyVisitor& visitor) noexcept = 0;
};

/// What a TTP function sees while executing a job on the TTP.
/// Ownership: owned by the host for the duration of `execute`.
class BOOST_SYMBOL_VISIBLE JobContext {
public:
    virtual ~JobContext() = default;
    virtual Logger& logger() noexcept = 0;
    virtual const std::string& job_id() const noexcept = 0;
    /// The grid index this TTP serves.
    virtual int grid() const noexcept = 0;
    /// The nodes of this grid for the job (already resolved from the job's registrations).
    virtual const std::vector<GridNode>& nodes() const noexcept = 0;
    /// Root of the outputs directory; files of a run go under `<collab>/<project>/<expt>/<run>/`.
    virtual std::string outputs_dir() const = 0;
    /// True once cancellation was requested: stop at the next safe point with `Cancelled`.
    virtual bool is_cancelled() const noexcept = 0;
    /// Publishes a progress record (a JSON object, e.g. {"round": 3, "rounds": 10, "loss": 0.4}).
    virtual void report_progress(std::string_view progress_json) noexcept = 0;
    virtual WorkerClient& workers() noexcept = 0;
    /// The aggregator plugin named `name` (case-insensitive), or NotFound/Unimplemented.
    /// Lifetime: valid for the duration of `execute`.
    virtual Result<Aggregator*> aggregator(const std::string& name) noexcept = 0;
    /// Submits a follow-up job (a JSON object with `process`, `keys`, `parameters`) and returns
    /// its id; used by `optimize` to spread trials across grids.
    virtual Result<std::string> submit_job(std::string_view job_json) noexcept = 0;
    /// Waits up to `timeout` for a submitted job to end; returns its result JSON
    /// ({"state": ..., "outputs": ...}).
    virtual Result<std::string> wait_job(const std::string& job_id,
                                         std::chrono::milliseconds timeout) noexcept = 0;
    /// Writes `tensors` as a safetensors file at `path` (atomically: a temporary file renamed into
    /// place, parent folders created), with `metadata` (a JSON object of string values) as its
    /// `__metadata__`. The file loads in PyTorch with `safetensors.torch.load_file`.
    virtual Status write_tensors(const std::string& path, const TensorMap& tensors,
                                 std::string_view metadata) noexcept = 0;
    /// Reads a safetensors file written by `write_tensors` (or any valid safetensors file).
    virtual Result<TensorMap> read_tensors(const std::string& path) noexcept = 0;
    /// Writes `content` to `path` atomically and durably (temporary file, fsync, rename; parent
    /// folders created), so a crash leaves either the old or the new file, never a torn one.
    virtual Status write_file(const std::string& path, std::string_view content) noexcept = 0;
};

/// What a TTP function sees while archiving a result on the director.
class BOOST_SYMBOL_VISIBLE ArchiveContext {
public:
    virtual ~ArchiveContext() = default;
    virtual Logger& logger() noexcept = 0;
    /// Read access to the store; writes go in the returned mutation batch.
    virtual StorageBackend& storage() noexcept = 0;
    /// The tracker, or nullptr when no tracking plugin is active.
    virtual Tracker* tracker() noexcept = 0;
    virtual std::string outputs_dir() const = 0;
};

/// A TTP function.
class BOOST_SYMBOL_VISIBLE TtpFunction : public PluginObject {
public:
    /// The job `process` names this function handles (e.g. {"preprocess"} for align).
    virtual std::vector<std::string> processes() const = 0;
    /// Runs the job (a JSON object: job_id, process, keys, parameters, grid) on this TTP and
    /// returns its outputs (a JSON object). Errors name the worker or field at fault.
    virtual Result<std::string> execute(JobContext& context, std::string_view job_json) noexcept = 0;
    /// Turns a result into store writes. The host applies them atomically together with the
    /// job's state change, so a result delivered twice is archived once.
    virtual Result<std::vector<Mutation>> archive(ArchiveContext& context, std::string_view job_json,
                                                  std::string_view outputs_json) noexcept = 0;
    /// Side effects after the archive committed (experiment tracking). Default: none.
    virtual Status after_archive(ArchiveContext& context, std::string_view job_json,
                                 std::string_view outputs_json) noexcept {
        (void)context;
        (void)job_json;
        (void)outputs_json;
        return Status::ok();
    }
};

/// (SDK 1.3) Optional for a TtpFunction, found with `dynamic_cast`: told on the director when one
/// of its jobs ends without a result, after that state is stored, as `after_archive` is after
/// a success (experiment tracking: a failed training's run ends FAILED).
class BOOST_SYMBOL_VISIBLE JobEndObserver {
public:
    virtual ~JobEndObserver() = default;
    /// `state` is "failed" (retries spent, or a permanent error) or "cancelled"; `reason` says
    /// why. Called once per job, best effort: an error is logged, and changes nothing stored.
    virtual Status after_unsuccessful(ArchiveContext& context, std::string_view job_json,
                                      std::string_view state, std::string_view reason) noexcept = 0;
};

}  // namespace synergos::sdk
