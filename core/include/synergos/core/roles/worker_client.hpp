// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file worker_client.hpp
/// The worker protocol client the TTP hands to its functions (`sdk::WorkerClient`): JSON
/// requests, or safetensors bodies carrying the JSON in `__metadata__["json"]` when weights
/// travel (docs/worker-protocol.md).

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include <synergos/core/http/client.hpp>
#include <synergos/core/jobs/worker_calls.hpp>
#include <synergos/sdk/ttp_function.hpp>

namespace synergos::core::roles {

class HttpWorkerClient final : public jobs::StoppableWorkerClient {
public:
    /// `replies_in_memory` bounds the weight replies a `call_all` holds at once (being received
    /// or waiting for the visitor): the TTP's memory stays near that many models whatever the
    /// number of workers; the other workers' replies wait in their sockets meanwhile. Their
    /// buffers are kept between calls (fresh model-sized buffers cost page faults every round),
    /// so the client keeps up to that many models resident. One by default: two let a reply be
    /// received while the previous one is folded (~3 ms less per 8-worker round on loopback)
    /// but a round may then hold two replies and the next global model at once. A reply that
    /// stops arriving (no byte for half a second) does not hold the others back: they are then
    /// received beside it. Replies streamed to a `StreamingReplyVisitor` hold one 512 KiB piece
    /// each, not a model: up to 8 of them are received at once (more only past a stall),
    /// beside the whole ones. One whose other tensors (not F32) come to more than a piece
    /// takes a whole reply's slot instead.
    /// `concurrent_sends` bounds the requests `call_all` writes at once: a worker then has its
    /// whole request early and starts training, its reply comes back while later workers still
    /// train, and the workers do not all decode at the same moment. While the requests being
    /// written move under 256 MiB/s (a worker that stops reading, thin links), one more goes
    /// out beside them every 10 ms, so one slow worker does not hold the others back (on a TTP
    /// link slower than that, they end up going out side by side). A request's timeout counts
    /// its wait for a sending slot.
    /// `health_check_interval`: while a call waits with no byte moving, its worker's
    /// `GET /v1/health` is asked this often (5 s timeout); after 3 failures in a row the call
    /// ends Unavailable, saying so (a frozen worker, or one cut off, would hold it to its
    /// timeout). Zero: no checks.
    explicit HttpWorkerClient(http::HttpClient& http, std::size_t replies_in_memory = 1,
                              std::size_t concurrent_sends = 1,
                              std::chrono::milliseconds health_check_interval = std::chrono::seconds(10));
    ~HttpWorkerClient() override;
    HttpWorkerClient(const HttpWorkerClient&) = delete;
    HttpWorkerClient& operator=(const HttpWorkerClient&) = delete;

    /// Weights are sent from the request's tensors (no encoded copy) and received straight into
    /// the reply's tensors (no body string, no decode copy), grown as their bytes arrive. A
    /// reply without weights (JSON) is limited to 16 MiB (ResourceExhausted naming the worker).
    sdk::Result<sdk::WorkerReply> call(const sdk::GridNode& node,
                                       const sdk::WorkerRequest& request) noexcept override;
    /// Calls every node on a thread of its own (threads are kept between calls, and end after
    /// a minute unused); replies are visited on the calling thread, one at a
    /// time, in the order they complete. A round's identical requests share one header; weight
    /// buffers of visited replies are reused by the replies still to come.
    /// With an `sdk::StreamingReplyVisitor` that takes a reply's stream, its F32 tensors pass
    /// through a fixed 512 KiB buffer per reply to `on_weights` on the receiving thread (calls serialised
    /// with `on_reply` by a lock), so no model-sized buffer is allocated, and none is kept.
    void call_all(const std::vector<sdk::GridNode>& nodes,
                  const std::vector<sdk::WorkerRequest>& requests,
                  sdk::ReplyVisitor& visitor) noexcept override;
    /// The same, given up on when `stop` says so (checked every 100 ms while a call waits on
    /// the network): such a call ends with Cancelled and its connection is closed.
    sdk::Result<sdk::WorkerReply> call(const sdk::GridNode& node, const sdk::WorkerRequest& request,
                                       const StopCheck& stop) noexcept override;
    void call_all(const std::vector<sdk::GridNode>& nodes,
                  const std::vector<sdk::WorkerRequest>& requests, sdk::ReplyVisitor& visitor,
                  const StopCheck& stop) noexcept override;

private:
    class CallThreads;
    http::HttpClient& http_;
    std::size_t replies_in_memory_;
    std::size_t concurrent_sends_;
    std::chrono::milliseconds health_check_interval_;
    /// Weight buffers of the last call's replies (at most `replies_in_memory_` models), reused
    /// by the next call's replies; dropped after a call whose replies streamed.
    std::mutex spares_mutex_;
    std::vector<sdk::TensorMap> spares_;
    std::unique_ptr<CallThreads> threads_;
};

}  // namespace synergos::core::roles
