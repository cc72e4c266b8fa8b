// SPDX-License-Identifier: Apache-2.0
#pragma once

/// The `memory` mq plugin: an in-process broker with the semantics of the `rabbitmq` plugin
/// (durable-looking queues, priorities, prefetch, manual ack, reject with or without requeue,
/// dead-letter queues, the redelivered flag, unacked deliveries returned on close). Used by the
/// embedded standalone director and by tests. Nothing survives the process.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/message_queue.hpp>
#include <synergos/sdk/options.hpp>

namespace synergos::plugins::memory {

struct Broker;
struct QueueState;
struct StoredMessage;

/// The in-process message queue. Threading: every method may be called from any thread.
class MemoryQueue final : public sdk::AsyncMessageQueue {
public:
    MemoryQueue(sdk::HostContext& host, const sdk::Options& options);
    ~MemoryQueue() override;

    sdk::Status start() noexcept override;
    sdk::Status declare(const sdk::QueueSpec& spec) noexcept override;
    sdk::Status publish(const std::string& queue, const sdk::Message& message,
                        std::chrono::milliseconds timeout) noexcept override;
    /// Stores the message at once and calls `done` before returning (nothing to wait for).
    sdk::Status publish_async(const std::string& queue, const sdk::Message& message,
                              std::chrono::milliseconds timeout,
                              std::shared_ptr<sdk::PublishCallback> done) noexcept override;
    sdk::Result<std::unique_ptr<sdk::Consumer>> consume(const std::string& queue,
                                                        std::uint16_t prefetch) noexcept override;
    sdk::Result<std::uint64_t> depth(const std::string& queue) noexcept override;
    sdk::Result<std::uint32_t> consumer_count(const std::string& queue) noexcept override;
    void stop() noexcept override;

private:
    sdk::HostContext& host_;
    sdk::Status config_error_;
    std::shared_ptr<Broker> broker_;
};

/// A subscription on one in-process queue. Deliveries are taken from the queue when `receive`
/// runs, so priorities are exact. Threading: one thread at a time (SDK contract).
class MemoryConsumer final : public sdk::AdjustableConsumer {
public:
    MemoryConsumer(std::shared_ptr<Broker> broker, std::shared_ptr<QueueState> queue,
                   std::uint16_t prefetch);
    ~MemoryConsumer() override;

    sdk::Result<std::optional<sdk::Delivery>> receive(
        std::chrono::milliseconds timeout) noexcept override;
    sdk::Status ack(std::uint64_t tag) noexcept override;
    sdk::Status reject(std::uint64_t tag, bool requeue) noexcept override;
    void close() noexcept override;
    sdk::Status set_prefetch(std::uint16_t prefetch) noexcept override;

private:
    sdk::Status check_open_locked() const;

    std::shared_ptr<Broker> broker_;
    std::shared_ptr<QueueState> queue_;
    std::uint16_t prefetch_;
    std::uint64_t next_tag_ = 1;
    bool closed_ = false;
    /// Deliveries handed out and not yet settled, by tag (ordered, so close requeues in order).
    std::map<std::uint64_t, std::unique_ptr<StoredMessage>> unacked_;
};

}  // namespace synergos::plugins::memory
