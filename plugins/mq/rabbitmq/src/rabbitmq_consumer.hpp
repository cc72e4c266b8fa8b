// SPDX-License-Identifier: Apache-2.0
#pragma once

/// A RabbitMQ consumer: its own connection, serviced by its own I/O thread, so heartbeats keep
/// flowing while the owner runs a long job between `receive` calls. The thread reads frames,
/// buffers deliveries (never more than `prefetch` are unacknowledged, so the buffer is bounded)
/// and executes the ack/reject commands the owner hands over (before closing, too). After a
/// connection loss it resubscribes with back-off; delivery tags carry the connection epoch, so
/// settling a tag from a lost connection is refused with `FailedPrecondition` (the broker
/// redelivers it).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include <synergos/sdk/log.hpp>
#include <synergos/sdk/message_queue.hpp>

#include "amqp_link.hpp"
#include "settings.hpp"

namespace synergos::plugins::rabbitmq {

/// Tags handed to the owner: (connection epoch << kEpochShift) | broker delivery tag.
inline constexpr unsigned kEpochShift = 44;
/// Epochs fit the 20 bits above kEpochShift: 1..kMaxEpoch (0 means "not connected").
inline constexpr std::uint32_t kMaxEpoch = (std::uint32_t{1} << (64 - kEpochShift)) - 1;

/// The epoch of the next subscription: wraps from kMaxEpoch to 1, so after 2^20 - 1
/// resubscriptions tags do not overflow into epoch 0 and every ack is not refused as stale.
constexpr std::uint32_t next_epoch(std::uint32_t epoch) {
    return epoch >= kMaxEpoch ? 1 : epoch + 1;
}

/// The owner's tag for a broker delivery tag received on a connection of `epoch`.
constexpr std::uint64_t make_tag(std::uint32_t epoch, std::uint64_t broker_tag) {
    return (std::uint64_t{epoch} << kEpochShift) |
           (broker_tag & ((std::uint64_t{1} << kEpochShift) - 1));
}

/// The state and I/O thread of one consumer, shared by the `RabbitMqConsumer` handle and the
/// owning `RabbitMqQueue` (which closes live consumers in `stop`).
class ConsumerCore {
public:
    ConsumerCore(const BrokerSettings& settings, sdk::Logger& logger, std::string queue,
                 std::uint16_t prefetch);
    ~ConsumerCore();
    ConsumerCore(const ConsumerCore&) = delete;
    ConsumerCore& operator=(const ConsumerCore&) = delete;

    /// Starts the I/O thread and waits for the first subscription (qos + basic.consume).
    sdk::Status open();
    sdk::Result<std::optional<sdk::Delivery>> receive(std::chrono::milliseconds timeout);
    /// Checks the tag (stale or unknown tags are refused here) and hands the ack/reject to the
    /// I/O thread without waiting for the send.
    sdk::Status settle(std::uint64_t tag, bool ack, bool requeue);
    /// Hands a new limit to the I/O thread, in order with the settles (see AdjustableConsumer).
    sdk::Status set_prefetch(std::uint16_t prefetch);
    /// Cancels the subscription and closes the connection; unacked deliveries return to the
    /// queue. Idempotent; safe from any thread.
    void close() noexcept;

private:
    struct Command;
    using CommandPtr = std::shared_ptr<Command>;

    void run() noexcept;
    void run_loop();
    sdk::Status subscribe();
    void lose(const sdk::Status& why);
    sdk::Status execute(std::deque<CommandPtr>& commands);
    sdk::Status drain_frames();
    void complete(const CommandPtr& command, sdk::Status status);
    sdk::Status stale_tag(std::uint64_t tag) const;
    void shutdown_link() noexcept;

    const BrokerSettings settings_;
    sdk::Logger& logger_;
    const std::string queue_;
    const std::string context_;  ///< "<broker>: consumer on queue 'q'"

    std::mutex close_mutex_;  ///< serialises close() callers (owner and MessageQueue::stop)

    // Shared with the owner, guarded by mutex_.
    std::mutex mutex_;
    std::condition_variable ready_cv_;  ///< deliveries and state changes
    std::deque<sdk::Delivery> ready_;
    std::set<std::uint64_t> outstanding_;  ///< handed to the owner, not yet settled
    std::deque<CommandPtr> commands_;
    std::uint16_t prefetch_;  ///< the current limit; a resubscription uses it
    std::uint32_t current_epoch_ = 0;  ///< 0 while disconnected
    std::uint32_t highest_epoch_ = 0;  ///< tags above it were never issued (until wrapped)
    bool epoch_wrapped_ = false;       ///< every epoch 1..kMaxEpoch has been issued
    bool connected_ = false;
    bool open_done_ = false;
    bool thread_done_ = false;
    bool closing_ = false;
    bool closed_ = false;
    sdk::Status open_status_;
    sdk::Status last_error_;
    AmqpLink* live_link_ = nullptr;

    WakeFd wake_;
    std::thread thread_;

    // Owned by the I/O thread.
    std::unique_ptr<AmqpLink> link_;
    std::uint32_t epoch_counter_ = 0;
    std::uint32_t link_epoch_ = 0;
    std::string consumer_tag_;
    ContentAssembler assembler_;
    std::chrono::milliseconds backoff_{100};
    Clock::time_point next_attempt_{};
};

/// The SDK handle the caller owns.
class RabbitMqConsumer final : public sdk::AdjustableConsumer {
public:
    explicit RabbitMqConsumer(std::shared_ptr<ConsumerCore> core) : core_(std::move(core)) {}
    ~RabbitMqConsumer() override;

    sdk::Result<std::optional<sdk::Delivery>> receive(
        std::chrono::milliseconds timeout) noexcept override;
    sdk::Status ack(std::uint64_t tag) noexcept override;
    sdk::Status reject(std::uint64_t tag, bool requeue) noexcept override;
    void close() noexcept override;
    sdk::Status set_prefetch(std::uint16_t prefetch) noexcept override;

private:
    std::shared_ptr<ConsumerCore> core_;
};

}  // namespace synergos::plugins::rabbitmq
