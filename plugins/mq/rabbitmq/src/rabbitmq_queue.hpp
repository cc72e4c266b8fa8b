// SPDX-License-Identifier: Apache-2.0
#pragma once

/// The `rabbitmq` mq plugin: the MessageQueue backed by a RabbitMQ broker through rabbitmq-c.
///
/// One publisher connection, guarded by a mutex and kept by an I/O thread (reconnects,
/// heartbeats, confirms): callers hand it operations (publish, declare, inspect) and wait, with a
/// deadline, for the result. A publisher that finds the connection up takes the mutex and
/// drives it itself until its confirm arrives, sending other callers' publishes on the way.
/// Channel 1 is in confirm mode for publishes; channel 2 carries declares and passive
/// declares, so a refused declare (channel error) never disturbs publishes in flight. When the
/// connection drops, the thread reconnects with back-off, re-declares every queue it declared,
/// and republishes messages whose confirm did not arrive; a publish that cannot be confirmed
/// before its timeout fails with a clear error. Each consumer has its own connection and thread
/// (rabbitmq_consumer.hpp).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/message_queue.hpp>
#include <synergos/sdk/options.hpp>

#include "amqp_link.hpp"
#include "mq_validation.hpp"
#include "settings.hpp"

namespace synergos::plugins::rabbitmq {

class ConsumerCore;

/// The RabbitMQ message queue. Threading: every method may be called from any thread.
class RabbitMqQueue final : public sdk::AsyncMessageQueue {
public:
    RabbitMqQueue(sdk::HostContext& host, const sdk::Options& options);
    ~RabbitMqQueue() override;

    sdk::Status start() noexcept override;
    sdk::Status declare(const sdk::QueueSpec& spec) noexcept override;
    sdk::Status publish_async(const std::string& queue, const sdk::Message& message,
                              std::chrono::milliseconds timeout,
                              std::shared_ptr<sdk::PublishCallback> done) noexcept override;
    sdk::Status publish(const std::string& queue, const sdk::Message& message,
                        std::chrono::milliseconds timeout) noexcept override;
    sdk::Result<std::unique_ptr<sdk::Consumer>> consume(const std::string& queue,
                                                        std::uint16_t prefetch) noexcept override;
    sdk::Result<std::uint64_t> depth(const std::string& queue) noexcept override;
    sdk::Result<std::uint32_t> consumer_count(const std::string& queue) noexcept override;
    void stop() noexcept override;

private:
    struct Op;
    using OpPtr = std::shared_ptr<Op>;

    struct QueueInfo {
        std::uint64_t messages = 0;
        std::uint32_t consumers = 0;
    };

    sdk::Status submit(const OpPtr& op);
    /// Queues `op` for the I/O thread (refused once stopped or before start); wakes no one.
    sdk::Status enqueue(const OpPtr& op);
    /// A validated publish operation (shared by publish and publish_async).
    sdk::Result<OpPtr> make_publish(const std::string& queue, const sdk::Message& message,
                                    std::chrono::milliseconds timeout);
    sdk::Result<QueueInfo> inspect(const std::string& queue);
    void complete(const OpPtr& op, sdk::Status status);

    // The connection side: the I/O thread, or a caller leading while it holds io_mutex_.
    void run() noexcept;
    /// Breaks a publish send still blocked after the publish's deadline (its own thread).
    void watch_sends() noexcept;
    void run_loop();
    bool take_incoming();
    sdk::Status service_once();
    bool lead(const OpPtr& op);
    /// Connect, login, channels and confirm mode on `link` (the connector thread).
    sdk::Status open_link(AmqpLink& link) const;
    /// Starts the connector thread for the next connection.
    void start_connect();
    /// Installs the connector's link (or takes its error) and declares our queues again.
    sdk::Status finish_connect(const sdk::Status& opened);
    /// Ends a connector thread still running (stop), discarding its link.
    void join_connector() noexcept;
    void lose_connection(const sdk::Status& why);
    sdk::Status execute_pending();
    sdk::Status execute_publish(const OpPtr& op);
    sdk::Status execute_rpc(const OpPtr& op);
    /// Declares `spec` (its dead-letter queue first), or inspects it when `passive`.
    sdk::Status declare_on_admin(const sdk::QueueSpec& spec, bool passive, QueueInfo* info,
                                 bool* channel_error);
    /// Declares or inspects one queue, nothing else.
    sdk::Status declare_one(const sdk::QueueSpec& spec, bool passive, QueueInfo* info,
                            bool* channel_error);
    /// Makes sure a dead-letter queue exists without changing its arguments.
    sdk::Status ensure_dead_letter_queue(const std::string& name, bool* channel_error);
    sdk::Status ensure_admin_channel();
    sdk::Status drain_frames();
    sdk::Status handle_frame(const amqp_frame_t& frame);
    /// A channel.close on the publish channel: fails the publishes it refers to, or every
    /// in-flight one as retryable when it names none.
    void fail_channel_culprits(const amqp_method_t& method, const sdk::Status& why);
    void handle_confirm(std::uint64_t tag, bool multiple, bool nack);
    void expire(Clock::time_point now);
    Clock::time_point next_deadline() const;
    sdk::Status outage_status() const;

    sdk::HostContext& host_;
    sdk::Status config_error_;
    BrokerSettings settings_;
    std::string context_;  ///< settings_.describe()

    // Shared with callers, guarded by mutex_.
    std::mutex mutex_;
    std::condition_variable state_cv_;
    std::deque<OpPtr> incoming_;
    bool started_ = false;
    bool stopping_ = false;
    bool connected_ = false;
    bool first_attempt_done_ = false;
    bool blocked_ = false;  ///< the broker sent connection.blocked (resource alarm)
    bool thread_done_ = false;
    std::optional<sdk::Status> failed_;  ///< the I/O thread died of an exception: refuse work
    sdk::Status last_error_;
    AmqpLink* live_link_ = nullptr;  ///< for stop() to interrupt a blocked send
    // The connector thread's result; it opens a link without io_mutex_ (see run_loop).
    AmqpLink* connecting_link_ = nullptr;  ///< for stop() to interrupt a login
    std::optional<sdk::Status> connect_result_;
    std::unique_ptr<AmqpLink> opened_link_;
    std::vector<std::weak_ptr<ConsumerCore>> consumers_;  ///< closed by stop()

    std::unique_ptr<WakeFd> wake_;
    std::thread thread_;
    std::thread connector_;  ///< started and joined by the I/O thread only
    std::condition_variable watchdog_cv_;
    bool watchdog_stop_ = false;  ///< guarded by mutex_
    /// Deadline (steady clock ticks) of the publish being sent; 0 while none is.
    std::atomic<Clock::rep> send_deadline_{0};
    bool connecting_ = false;  ///< I/O thread only

    // Guarded by io_mutex_: held by the I/O thread except while it polls, or by one caller
    // that leads (drives the connection for its own publish). Lock order: io_mutex_, mutex_.
    // Only the I/O thread creates or destroys link_; a leader that hits an error sets broken_.
    std::timed_mutex io_mutex_;
    std::optional<sdk::Status> broken_;
    std::unique_ptr<AmqpLink> link_;
    std::deque<OpPtr> pending_;
    std::map<std::uint64_t, OpPtr> inflight_;  ///< by confirm sequence number
    std::uint64_t next_seq_ = 1;
    bool admin_open_ = false;
    ContentAssembler assembler_;
    std::vector<sdk::QueueSpec> declared_;
    std::chrono::milliseconds backoff_{100};
    Clock::time_point next_attempt_{};
    std::uint64_t failed_attempts_ = 0;
};

}  // namespace synergos::plugins::rabbitmq
