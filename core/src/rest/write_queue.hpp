// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file write_queue.hpp
/// One writer thread in front of `StorageBackend::apply` for the REST routes: request handlers
/// submit their batch and return at once; the writer takes everything queued, applies it as one
/// batch (one transaction, one durable commit for all of them) and hands each outcome to its
/// callback. When the combined batch fails (one request conflicts), each batch is applied alone,
/// in order, so every request gets exactly the outcome it would have had on its own. A group is
/// never applied twice: if a committed group's records do not line up with its batches (a
/// backend breaking apply's contract), every request of it gets an internal error.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <synergos/core/rest/connect_routes.hpp>
#include <synergos/sdk/status.hpp>
#include <synergos/sdk/storage_backend.hpp>

namespace synergos::core::rest {

/// At most this many requests share one commit (bounds the latency of a group).
inline constexpr std::size_t kMaxWriteGroup = 256;

/// Threading: submit from any thread; callbacks run on the writer thread, after the durable
/// commit (or the failure) of their batch, and must not block.
class WriteQueue {
public:
    using Outcome = sdk::Result<std::vector<sdk::Record>>;
    using Done = std::function<void(Outcome)>;

    /// `metrics` (optional) counts the requests and times each group's commit.
    explicit WriteQueue(sdk::StorageBackend& backend, std::shared_ptr<WriteMetrics> metrics = nullptr);
    /// Finishes the group being applied, fails what is still queued (Unavailable), joins.
    ~WriteQueue();
    /// What the destructor does, earlier: every later submit gets Unavailable. Idempotent.
    void stop() noexcept;
    WriteQueue(const WriteQueue&) = delete;
    WriteQueue& operator=(const WriteQueue&) = delete;

    /// Queues `batch`; `done` receives what `apply(batch)` would have returned.
    void submit(std::vector<sdk::Mutation> batch, Done done);

private:
    struct Item {
        std::vector<sdk::Mutation> batch;
        Done done;
    };

    void run();
    void apply_group(std::vector<Item>& group);
    /// One commit (timed for the metrics).
    Outcome apply(const std::vector<sdk::Mutation>& batch);

    sdk::StorageBackend& backend_;
    std::shared_ptr<WriteMetrics> metrics_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Item> queue_;
    bool waiting_ = false;  // the writer sleeps on cv_: the next submit wakes it (once)
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace synergos::core::rest
