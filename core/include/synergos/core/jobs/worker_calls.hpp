// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file worker_calls.hpp
/// A worker client whose calls its caller can give up on: the TTP stops the calls of a job
/// that was cancelled, ran past its time limit, or whose TTP is stopping, instead of waiting
/// for a worker that may never answer (a frozen process keeps its connections open).

#include <functional>
#include <vector>

#include <synergos/sdk/ttp_function.hpp>

namespace synergos::core::jobs {

class StoppableWorkerClient : public sdk::WorkerClient {
public:
    /// Asked every 100 ms while a call waits; true: the call ends with Cancelled.
    using StopCheck = std::function<bool()>;

    using sdk::WorkerClient::call;
    using sdk::WorkerClient::call_all;
    /// As the SDK's `call` and `call_all`; a call still waiting once `stop` says so ends with
    /// Cancelled (its connection closed), and `call_all` returns once each call has ended.
    virtual sdk::Result<sdk::WorkerReply> call(const sdk::GridNode& node, const sdk::WorkerRequest& request,
                                               const StopCheck& stop) noexcept = 0;
    virtual void call_all(const std::vector<sdk::GridNode>& nodes,
                          const std::vector<sdk::WorkerRequest>& requests, sdk::ReplyVisitor& visitor,
                          const StopCheck& stop) noexcept = 0;
};

}  // namespace synergos::core::jobs
