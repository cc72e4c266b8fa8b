// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file worker_client.hpp
/// The worker protocol client the TTP hands to its functions (`sdk::WorkerClient`): JSON
/// requests, or safetensors bodies carrying the JSON in `__metadata__["json"]` when weights
/// travel (docs/worker-protocol.md).

#include <cstddef>

#include <synergos/core/http/client.hpp>
#include <synergos/sdk/ttp_function.hpp>

namespace synergos::core::roles {

class HttpWorkerClient final : public sdk::WorkerClient {
public:
    explicit HttpWorkerClient(http::HttpClient& http) : http_(http) {}

    sdk::Result<sdk::WorkerReply> call(const sdk::GridNode& node, const sdk::WorkerRequest& request) noexcept override;
    /// Calls every node on its own thread; replies are visited on the calling thread, one at a
    /// time, in the order they complete. The weights body is encoded once when every request
    /// carries the same tensors and JSON (a training round).
    void call_all(const std::vector<sdk::GridNode>& nodes, const std::vector<sdk::WorkerRequest>& requests,
                  sdk::ReplyVisitor& visitor) noexcept override;

private:
    sdk::Result<sdk::WorkerReply> send(const sdk::GridNode& node, const sdk::WorkerRequest& request,
                                       const std::string& body, const std::string& content_type) noexcept;

    http::HttpClient& http_;
};

}  // namespace synergos::core::roles
