// SPDX-License-Identifier: Apache-2.0
#include "synergos/core/roles/worker_client.hpp"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "synergos/core/tensor/safetensors.hpp"

namespace synergos::core::roles {

namespace {

/// Encodes a request body: safetensors with the JSON in `__metadata__["json"]`, or plain JSON.
sdk::Status encode_body(const sdk::WorkerRequest& request, std::string& body, std::string& content_type) {
    if (request.tensors == nullptr) {
        body = request.json;
        content_type = "application/json";
        return {};
    }
    content_type = std::string(tensor::kSafetensorsContentType);
    return tensor::encode_into(*request.tensors, tensor::Metadata{{"json", request.json}}, body);
}

}  // namespace

sdk::Result<sdk::WorkerReply> HttpWorkerClient::send(const sdk::GridNode& node, const sdk::WorkerRequest& request,
                                                     const std::string& body, const std::string& content_type) noexcept {
    try {
        if (node.port <= 0 || node.port > 65535) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              "worker '" + node.participant_id + "' has no valid port"};
        }
        auto response = http_.request(request.method, node.host, static_cast<std::uint16_t>(node.port), request.path,
                                      body, content_type, request.timeout);
        if (!response) {
            return response.error();
        }
        sdk::WorkerReply reply;
        reply.status = response->status;
        if (response->content_type.rfind(tensor::kSafetensorsContentType, 0) == 0) {
            tensor::Metadata metadata;
            if (auto st = tensor::decode_into(std::string_view(response->body), reply.tensors, &metadata); !st) {
                return sdk::Error{sdk::ErrorCode::Internal, "worker '" + node.participant_id +
                                                                "' sent an invalid safetensors body: " + st.message()};
            }
            reply.json = metadata.count("json") ? metadata["json"] : "{}";
        } else {
            reply.json = std::move(response->body);
        }
        return reply;
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal, std::string("worker call failed: ") + e.what()};
    }
}

sdk::Result<sdk::WorkerReply> HttpWorkerClient::call(const sdk::GridNode& node,
                                                     const sdk::WorkerRequest& request) noexcept {
    std::string body;
    std::string content_type;
    if (auto st = encode_body(request, body, content_type); !st) {
        return st.error();
    }
    return send(node, request, body, content_type);
}

void HttpWorkerClient::call_all(const std::vector<sdk::GridNode>& nodes, const std::vector<sdk::WorkerRequest>& requests,
                                sdk::ReplyVisitor& visitor) noexcept {
    const std::size_t n = std::min(nodes.size(), requests.size());
    // One encoding for a round's identical requests (same weights, same JSON).
    bool shared = n > 1;
    for (std::size_t i = 1; i < n && shared; ++i) {
        shared = requests[i].tensors == requests[0].tensors && requests[i].json == requests[0].json;
    }
    std::vector<std::string> bodies(shared ? 1 : n);
    std::vector<std::string> types(bodies.size());
    std::vector<sdk::Status> encoded(bodies.size());
    for (std::size_t i = 0; i < bodies.size(); ++i) {
        encoded[i] = encode_body(requests[i], bodies[i], types[i]);
    }

    std::mutex mutex;
    std::condition_variable ready;
    std::deque<std::pair<std::size_t, sdk::Result<sdk::WorkerReply>>> done;
    std::vector<std::thread> threads;
    threads.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t b = shared ? 0 : i;
        threads.emplace_back([&, i, b] {
            sdk::Result<sdk::WorkerReply> reply =
                encoded[b] ? send(nodes[i], requests[i], bodies[b], types[b])
                           : sdk::Result<sdk::WorkerReply>(encoded[b].error());
            std::lock_guard<std::mutex> lock(mutex);
            done.emplace_back(i, std::move(reply));
            ready.notify_one();
        });
    }
    // Every request has its own timeout, so this loop ends; visiting on this thread keeps the
    // visitor single-threaded as the SDK promises.
    for (std::size_t visited = 0; visited < n; ++visited) {
        std::unique_lock<std::mutex> lock(mutex);
        ready.wait(lock, [&] { return !done.empty(); });
        auto item = std::move(done.front());
        done.pop_front();
        lock.unlock();
        visitor.on_reply(item.first, std::move(item.second));
    }
    for (auto& t : threads) {
        t.join();
    }
}

}  // namespace synergos::core::roles
