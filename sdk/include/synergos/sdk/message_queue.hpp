// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file message_queue.hpp
/// Plugin kind `mq`: a durable message queue with confirms, manual acknowledgement, priorities
/// and dead letters (RabbitMQ, or in-process memory).

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::sdk {

/// A queue the host asks the backend to declare (idempotently).
struct QueueSpec {
    std::string name;
    std::uint8_t max_priority = 0;    ///< 0: no priorities; otherwise 1..255 (x-max-priority)
    std::string dead_letter_queue;    ///< where rejected (requeue=false) messages go; "" for none
};

/// A message as published. Bodies are opaque bytes (JSON for Synergos jobs and results).
struct Message {
    std::string id;                    ///< message id (the job id for jobs)
    std::string body;
    std::uint8_t priority = 0;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;
};

/// A message as delivered to a consumer. Must be acknowledged or rejected on the consumer that
/// received it.
struct Delivery {
    std::uint64_t tag = 0;
    Message message;
    bool redelivered = false;  ///< true when the broker delivered it before without an ack
};

/// A subscription to one queue, with at most `prefetch` unacknowledged deliveries.
/// Threading: used by one thread at a time. Lifetime: close (or destroy) before the owning
/// `MessageQueue::stop`.
class BOOST_SYMBOL_VISIBLE Consumer : public PluginObject {
public:
    /// Waits up to `timeout` for the next delivery; an empty optional on timeout. Returns
    /// `Unavailable` while the broker is unreachable (the backend keeps reconnecting).
    virtual Result<std::optional<Delivery>> receive(std::chrono::milliseconds timeout) noexcept = 0;
    /// Acknowledges a delivery: it is removed from the queue for good.
    virtual Status ack(std::uint64_t tag) noexcept = 0;
    /// Rejects a delivery: back to the queue when `requeue`, else to the dead-letter queue (or
    /// dropped when the queue has none).
    virtual Status reject(std::uint64_t tag, bool requeue) noexcept = 0;
    /// Stops the subscription; unacknowledged deliveries return to the queue.
    virtual void close() noexcept = 0;
};

/// A consumer whose prefetch can change while it consumes (SDK 1.1; optional: the host finds it
/// with `dynamic_cast` and does without it when a backend's consumers are plain `Consumer`s).
/// A TTP uses it to take its next job the moment a job's work ends, while that job's result
/// still awaits its confirm, without ever holding a job it has not started.
/// Threading: unlike a plain Consumer's, `ack`, `reject` and `set_prefetch` may be called from
/// any thread, also while another thread waits in `receive`; calls keep their order.
class BOOST_SYMBOL_VISIBLE AdjustableConsumer : public Consumer {
public:
    /// Sets how many unacknowledged deliveries this consumer may hold (1..65535). Ordered with
    /// `ack`/`reject`: a limit set before a settle applies before that settle frees a slot, so
    /// lowering the limit and then acking never lets an extra delivery in between.
    virtual Status set_prefetch(std::uint16_t prefetch) noexcept = 0;
};

/// The message-queue backend.
/// Threading: `declare`, `publish` and `consume` may be called from any thread concurrently.
/// Errors: a publish returns only after the broker confirmed the message persisted; during an
/// outage it waits (reconnecting) up to `timeout`, then fails with `Unavailable`/`Timeout`:
/// a message is never silently lost.
class BOOST_SYMBOL_VISIBLE MessageQueue : public PluginObject {
public:
    /// Connects (when remote). Fails when the broker cannot be reached within the configured time.
    virtual Status start() noexcept = 0;
    /// Declares a durable queue (idempotent; conflicting arguments are an error).
    virtual Status declare(const QueueSpec& spec) noexcept = 0;
    /// Publishes a persistent message to `queue` and waits for the confirm.
    virtual Status publish(const std::string& queue, const Message& message,
                           std::chrono::milliseconds timeout) noexcept = 0;
    /// Opens a consumer on `queue`. Ownership: the caller owns the consumer.
    virtual Result<std::unique_ptr<Consumer>> consume(const std::string& queue,
                                                      std::uint16_t prefetch) noexcept = 0;
    /// Number of ready messages in `queue` (for job reasons such as "waiting behind N jobs").
    virtual Result<std::uint64_t> depth(const std::string& queue) noexcept = 0;
    /// Number of consumers attached to `queue` ("no TTP connected for grid N").
    virtual Result<std::uint32_t> consumer_count(const std::string& queue) noexcept = 0;
    /// Closes connections; after return no plugin thread runs.
    virtual void stop() noexcept = 0;
};

/// The outcome of an asynchronous publish (SDK 1.1).
class BOOST_SYMBOL_VISIBLE PublishCallback {
public:
    virtual ~PublishCallback() = default;
    /// Called exactly once: OK when the broker confirmed the message persisted, otherwise the
    /// error `MessageQueue::publish` would have returned. Runs on a backend thread, or on the
    /// caller's thread before `publish_async` returns: it must be short, must not block, and
    /// must not call into the message queue, except to settle deliveries of an
    /// `AdjustableConsumer` of it (`ack`, `reject`, `set_prefetch`), which a backend offering
    /// both interfaces must allow there.
    virtual void on_published(Status status) noexcept = 0;
};

/// A backend that can publish without blocking the caller (SDK 1.1; optional: the host finds it
/// with `dynamic_cast` and publishes one message at a time without it). Many publishes can then
/// await their confirms at once while keeping their order.
class BOOST_SYMBOL_VISIBLE AsyncMessageQueue : public MessageQueue {
public:
    /// Queues a persistent message for `queue` and returns at once. Messages queued here or by
    /// `publish` go out in the order the calls were made (a reconnection resends unconfirmed ones
    /// in that order too). `done` is kept until it is called, by `timeout` at the latest (or by
    /// `stop`). An error return means nothing was queued and `done` is never called.
    virtual Status publish_async(const std::string& queue, const Message& message,
                                 std::chrono::milliseconds timeout,
                                 std::shared_ptr<PublishCallback> done) noexcept = 0;
};

}  // namespace synergos::sdk
