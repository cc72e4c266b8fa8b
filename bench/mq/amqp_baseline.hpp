// SPDX-License-Identifier: Apache-2.0
#pragma once

/// The baseline for message-queue figures: a bare rabbitmq-c loop with the same durability
/// settings as the `rabbitmq` plugin (durable queue, persistent messages, mandatory publish
/// with publisher confirms waited for one by one, manual acknowledgement with a prefetch),
/// without threads, reconnection or error mapping. Other benchmarks (the end-to-end job
/// benchmark) call it to print their figures next to this floor.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace synergos::bench::mq {

struct BaselineOptions {
    std::size_t body_bytes = 256;
    std::uint16_t prefetch = 1;
};

struct BaselineResult {
    std::size_t messages = 0;
    double publish_msgs_per_s = 0;  ///< publish + wait for basic.ack, one message at a time
    double consume_msgs_per_s = 0;  ///< basic.consume with prefetch, basic.ack per message
    double msgs_per_s = 0;          ///< messages / (publish time + consume time)
};

/// The baseline as steps, for benchmarks that interleave it with the code under test in small
/// blocks so both see the same machine noise. Owns one connection and one durable queue,
/// deleted by the destructor. Not thread-safe. Methods throw std::runtime_error on failure.
class AmqpBaselineClient {
public:
    AmqpBaselineClient(const std::string& url, const std::string& queue,
                       const BaselineOptions& options = {});
    ~AmqpBaselineClient();
    AmqpBaselineClient(const AmqpBaselineClient&) = delete;
    AmqpBaselineClient& operator=(const AmqpBaselineClient&) = delete;

    /// Publishes `count` persistent messages, waiting for each confirm.
    void publish(std::size_t count);
    /// Receives and acks `count` messages (subscribing with the prefetch on first use).
    void consume(std::size_t count);

private:
    struct State;
    State* state_;
};

/// Declares `queue` (durable; it must not exist with other arguments), publishes `messages`
/// persistent messages with confirms, consumes and acks them all, then deletes the queue.
/// `url` is an amqp:// URL (e.g. amqp://guest:guest@127.0.0.1:5672/%2f).
/// Throws std::runtime_error with the broker's or rabbitmq-c's reason on any failure.
BaselineResult run_amqp_baseline(const std::string& url, const std::string& queue,
                                 std::size_t messages, const BaselineOptions& options = {});

/// The `rabbitmq` plugin's options (host, port, vhost, username, password) for `url`, so the
/// plugin under test talks to the same broker as the baseline. Throws on a URL that is not amqp://.
std::map<std::string, std::string> plugin_options(const std::string& url);

/// Deletes `queue` (a missing queue is fine). For benchmarks that create queues through code
/// with no delete operation (the MessageQueue interface has none). Throws on connection failure.
void delete_amqp_queue(const std::string& url, const std::string& queue);

/// The overall figure of `run_amqp_baseline` with default options: messages per second for
/// publishing (confirmed) and then consuming (acked) `messages` messages.
double amqp_baseline_msgs_per_s(const std::string& url, const std::string& queue,
                                std::size_t messages);

}  // namespace synergos::bench::mq
