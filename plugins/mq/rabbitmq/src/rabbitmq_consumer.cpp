// SPDX-License-Identifier: Apache-2.0
#include "rabbitmq_consumer.hpp"

#include "mq_validation.hpp"

#include <poll.h>

#include <algorithm>
#include <exception>
#include <utility>

#include <nlohmann/json.hpp>

#include "log_fields.hpp"

namespace synergos::plugins::rabbitmq {

namespace {

constexpr amqp_channel_t kChannel = 1;
constexpr std::uint64_t kBrokerTagMask = (std::uint64_t{1} << kEpochShift) - 1;

amqp_bytes_t as_bytes(const std::string& text) {
    return amqp_bytes_t{text.size(), const_cast<char*>(text.data())};
}

}  // namespace

struct ConsumerCore::Command {
    std::uint64_t tag = 0;  ///< the owner's tag (epoch + broker tag)
    bool ack = true;
    bool requeue = false;
    std::uint16_t prefetch = 0;  ///< non-zero: a new limit (basic.qos), not a settle
};

ConsumerCore::ConsumerCore(const BrokerSettings& settings, sdk::Logger& logger, std::string queue,
                           std::uint16_t prefetch)
    : settings_(settings),
      logger_(logger),
      queue_(std::move(queue)),
      context_(settings_.describe() + ": consumer on queue '" + queue_ + "'"),
      prefetch_(prefetch) {}

ConsumerCore::~ConsumerCore() { close(); }

sdk::Status ConsumerCore::open() {
    thread_ = std::thread([this] { run(); });
    const auto limit =
        settings_.connect_timeout + 3 * settings_.rpc_timeout + std::chrono::seconds(1);
    std::unique_lock<std::mutex> lock(mutex_);
    ready_cv_.wait_for(lock, limit, [&] { return open_done_; });
    if (!open_done_) {
        lock.unlock();
        close();
        return sdk::Status(sdk::ErrorCode::Timeout, context_ + ": no subscription within " +
                                                        std::to_string(limit.count()) + " ms");
    }
    if (!open_status_) {
        sdk::Status status = open_status_;
        lock.unlock();
        close();
        return status;
    }
    return sdk::Status::ok();
}

sdk::Result<std::optional<sdk::Delivery>> ConsumerCore::receive(std::chrono::milliseconds timeout) {
    // Clamped, so `now + timeout` cannot overflow for "wait forever" values.
    const auto deadline =
        Clock::now() + std::clamp(timeout, std::chrono::milliseconds(0), mq::kLongestWait);
    std::unique_lock<std::mutex> lock(mutex_);
    ready_cv_.wait_until(lock, deadline, [&] { return !ready_.empty() || closing_ || closed_; });
    if (closing_ || closed_) {
        return sdk::Error{sdk::ErrorCode::FailedPrecondition, context_ + " is closed"};
    }
    if (!ready_.empty()) {
        sdk::Delivery delivery = std::move(ready_.front());
        ready_.pop_front();
        outstanding_.insert(delivery.tag);
        return std::optional<sdk::Delivery>(std::move(delivery));
    }
    if (thread_done_) {
        // The I/O thread ended on an exception (run): nothing will ever arrive.
        return sdk::Error{sdk::ErrorCode::Internal, last_error_.message()};
    }
    if (!connected_) {
        return sdk::Error{sdk::ErrorCode::Unavailable,
                          context_ + " is reconnecting; last error: " + last_error_.message()};
    }
    return std::optional<sdk::Delivery>();
}

sdk::Status ConsumerCore::stale_tag(std::uint64_t tag) const {
    return sdk::Status(sdk::ErrorCode::FailedPrecondition,
                       context_ + ": delivery tag " + std::to_string(tag) +
                           " came from a connection that has since been lost; the broker "
                           "will redeliver the message (flagged redelivered)");
}

sdk::Status ConsumerCore::settle(std::uint64_t tag, bool ack, bool requeue) {
    auto command = std::make_shared<Command>();
    command->tag = tag;
    command->ack = ack;
    command->requeue = requeue;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (closing_ || closed_) {
            return sdk::Status(sdk::ErrorCode::FailedPrecondition, context_ + " is closed");
        }
        if ((tag >> kEpochShift) != current_epoch_) {
            if ((tag >> kEpochShift) == 0 ||
                (!epoch_wrapped_ && (tag >> kEpochShift) > highest_epoch_)) {
                return sdk::Status(sdk::ErrorCode::InvalidArgument,
                                   context_ + ": unknown delivery tag " + std::to_string(tag));
            }
            return stale_tag(tag);
        }
        if (outstanding_.erase(tag) == 0) {
            return sdk::Status(sdk::ErrorCode::InvalidArgument,
                               context_ + ": unknown delivery tag " + std::to_string(tag) +
                                   " (not delivered to this consumer, or already settled)");
        }
        commands_.push_back(command);
    }
    // Handed over without waiting: AMQP has no reply to an ack, so waiting for the send would
    // add two thread switches and no guarantee. If the connection drops first, the broker
    // redelivers the message (at-least-once), exactly as if the ack had been lost on the wire.
    wake_.signal();
    return sdk::Status::ok();
}

sdk::Status ConsumerCore::set_prefetch(std::uint16_t prefetch) {
    if (prefetch == 0) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument,
                           context_ + ": prefetch must be 1..65535, got 0");
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (closing_ || closed_) {
            return sdk::Status(sdk::ErrorCode::FailedPrecondition, context_ + " is closed");
        }
        prefetch_ = prefetch;  // a resubscription after a connection loss uses it too
        if (connected_) {
            // Queued with the settles, so the broker sees the limits and acks in call order.
            auto command = std::make_shared<Command>();
            command->prefetch = prefetch;
            commands_.push_back(command);
        }
    }
    wake_.signal();
    return sdk::Status::ok();
}

void ConsumerCore::complete(const CommandPtr& command, sdk::Status status) {
    if (!status) {
        logger_.info("rabbitmq " + std::string(command->ack ? "ack" : "reject") +
                         " not delivered; the broker redelivers the message",
                     log_fields(nlohmann::json{{"queue", queue_}, {"error", status.message()}}));
    }
}

void ConsumerCore::close() noexcept {
    std::lock_guard<std::mutex> serial(close_mutex_);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (closed_) {
            return;
        }
        closing_ = true;
        ready_cv_.notify_all();
    }
    wake_.signal();
    if (thread_.joinable()) {
        {
            // Graceful close is bounded by the RPC timeout; a send stuck on a dead socket is
            // broken by shutting the socket down.
            std::unique_lock<std::mutex> lock(mutex_);
            const auto limit = 3 * settings_.rpc_timeout + std::chrono::seconds(1);
            if (!ready_cv_.wait_for(lock, limit, [&] { return thread_done_; }) &&
                live_link_ != nullptr) {
                live_link_->interrupt();
            }
        }
        thread_.join();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    connected_ = false;
    current_epoch_ = 0;
    ready_.clear();
    outstanding_.clear();
    commands_.clear();
    ready_cv_.notify_all();
}

void ConsumerCore::run() noexcept {
    try {
        run_loop();
    } catch (const std::exception& e) {
        // An allocation failure or a bug: end the thread with a visible error, never terminate.
        std::lock_guard<std::mutex> lock(mutex_);
        last_error_ =
            sdk::Status(sdk::ErrorCode::Internal, context_ + ": I/O thread failed: " + e.what());
        if (!open_done_) {
            open_done_ = true;
            open_status_ = last_error_;
        }
        connected_ = false;
        current_epoch_ = 0;  // its tags can no longer be settled
        ready_cv_.notify_all();
    }
    shutdown_link();
    std::lock_guard<std::mutex> lock(mutex_);
    thread_done_ = true;
    ready_cv_.notify_all();
}

void ConsumerCore::shutdown_link() noexcept {
    if (!link_) {
        return;
    }
    if (!consumer_tag_.empty()) {
        // Cancel first: when basic.cancel-ok arrives the broker no longer counts this consumer.
        amqp_basic_cancel(link_->state(), kChannel, as_bytes(consumer_tag_));
        if (amqp_get_rpc_reply(link_->state()).reply_type == AMQP_RESPONSE_NORMAL) {
            amqp_channel_close(link_->state(), kChannel, AMQP_REPLY_SUCCESS);
        }
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        live_link_ = nullptr;
    }
    link_->close(
        std::min<std::chrono::milliseconds>(settings_.rpc_timeout, std::chrono::seconds(2)));
    link_.reset();
}

sdk::Status ConsumerCore::subscribe() {
    auto link =
        std::make_unique<AmqpLink>(settings_, settings_.client_name + " consumer " + queue_);
    if (auto status = link->open(); !status) {
        return status;
    }
    if (auto status = link->open_channel(kChannel, context_ + ": open channel"); !status) {
        return status;
    }
    std::uint16_t prefetch = 0;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        prefetch = prefetch_;
    }
    // Global (channel-wide) qos: this channel has one consumer, so it limits just as a
    // per-consumer qos would, and unlike one it can be changed while consuming (set_prefetch).
    amqp_basic_qos(link->state(), kChannel, 0, prefetch, 1);
    if (auto status = reply_status(amqp_get_rpc_reply(link->state()),
                                   context_ + ": set prefetch " + std::to_string(prefetch));
        !status) {
        return status;
    }
    auto* ok = amqp_basic_consume(link->state(), kChannel, as_bytes(queue_), amqp_empty_bytes, 0, 0,
                                  0, amqp_empty_table);
    if (auto status = reply_status(amqp_get_rpc_reply(link->state()), context_ + ": subscribe");
        !status) {
        return status;
    }
    consumer_tag_.assign(static_cast<const char*>(ok->consumer_tag.bytes), ok->consumer_tag.len);
    link->note_received();
    link_ = std::move(link);
    epoch_counter_ = next_epoch(epoch_counter_);
    link_epoch_ = epoch_counter_;
    assembler_.reset();
    std::lock_guard<std::mutex> lock(mutex_);
    if (prefetch_ != prefetch) {
        // Changed while subscribing (not connected, so set_prefetch queued nothing): send it now.
        auto command = std::make_shared<Command>();
        command->prefetch = prefetch_;
        commands_.push_front(command);
    }
    live_link_ = link_.get();
    current_epoch_ = link_epoch_;
    epoch_wrapped_ = epoch_wrapped_ || link_epoch_ < highest_epoch_;
    highest_epoch_ = link_epoch_;
    connected_ = true;
    last_error_ = sdk::Status::ok();
    ready_cv_.notify_all();
    return sdk::Status::ok();
}

void ConsumerCore::lose(const sdk::Status& why) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        live_link_ = nullptr;
        connected_ = false;
        current_epoch_ = 0;
        ready_.clear();  // unacked at the broker: it requeues them
        outstanding_.clear();
        last_error_ = why;
        ready_cv_.notify_all();
    }
    link_.reset();  // no close handshake: the connection is already broken
    consumer_tag_.clear();
    assembler_.reset();
    backoff_ = std::chrono::milliseconds(100);
    next_attempt_ = Clock::now();
    logger_.warn("rabbitmq consumer connection lost; reconnecting",
                 log_fields(nlohmann::json{{"queue", queue_}, {"error", why.message()}}));
}

sdk::Status ConsumerCore::execute(std::deque<CommandPtr>& commands) {
    while (!commands.empty()) {
        CommandPtr command = commands.front();
        commands.pop_front();
        if (command->prefetch != 0) {
            // Sent without waiting for qos-ok (drain_frames skips it): the channel keeps the
            // order, so acks sent after it are applied under the new limit.
            amqp_basic_qos_t qos{};
            qos.prefetch_count = command->prefetch;
            qos.global = 1;
            const int sent = amqp_send_method(link_->state(), kChannel, AMQP_BASIC_QOS_METHOD, &qos);
            link_->note_sent();
            if (sent != AMQP_STATUS_OK) {
                for (auto& rest : commands) {
                    complete(rest, stale_tag(rest->tag));
                }
                commands.clear();
                return library_error(sent, context_ + ": set prefetch");
            }
            continue;
        }
        if ((command->tag >> kEpochShift) != link_epoch_) {
            complete(command, stale_tag(command->tag));
            continue;
        }
        const std::uint64_t broker_tag = command->tag & kBrokerTagMask;
        const int sent = command->ack ? amqp_basic_ack(link_->state(), kChannel, broker_tag, 0)
                                      : amqp_basic_reject(link_->state(), kChannel, broker_tag,
                                                          command->requeue ? 1 : 0);
        link_->note_sent();
        if (sent != AMQP_STATUS_OK) {
            complete(command, stale_tag(command->tag));
            for (auto& rest : commands) {
                complete(rest, stale_tag(rest->tag));
            }
            commands.clear();
            return library_error(sent, context_ + ": " + (command->ack ? "ack" : "reject"));
        }
        complete(command, sdk::Status::ok());
    }
    return sdk::Status::ok();
}

sdk::Status ConsumerCore::drain_frames() {
    while (true) {
        auto next = link_->next_frame();
        if (!next) {
            return next.status();
        }
        if (!next->has_value()) {
            return sdk::Status::ok();
        }
        const amqp_frame_t& frame = **next;
        sdk::Status status;
        if (frame.frame_type == AMQP_FRAME_METHOD) {
            switch (frame.payload.method.id) {
                case AMQP_BASIC_DELIVER_METHOD:
                    assembler_.start(frame);
                    break;
                case AMQP_BASIC_CANCEL_METHOD:
                    status = sdk::Status(sdk::ErrorCode::NotFound,
                                         context_ +
                                             ": the broker cancelled the subscription "
                                             "(was the queue deleted?)");
                    break;
                case AMQP_CHANNEL_CLOSE_METHOD:
                    status = close_method_status(frame.payload.method, context_);
                    link_->send_close_ok(frame.channel, false);
                    break;
                case AMQP_CONNECTION_CLOSE_METHOD:
                    status = close_method_status(frame.payload.method, context_);
                    link_->send_close_ok(0, true);
                    break;
                default:
                    break;  // connection.blocked and the like do not concern a consumer
            }
        } else if (frame.frame_type == AMQP_FRAME_HEADER || frame.frame_type == AMQP_FRAME_BODY) {
            auto added = assembler_.add(frame);
            if (!added) {
                status = sdk::Status(added.error().code, context_ + ": " + added.error().message);
            } else if (added->has_value()) {
                ContentMessage& content = **added;
                sdk::Delivery delivery;
                delivery.tag = make_tag(link_epoch_, content.delivery_tag);
                delivery.message = std::move(content.message);
                delivery.redelivered = content.redelivered;
                std::lock_guard<std::mutex> lock(mutex_);
                ready_.push_back(std::move(delivery));
                ready_cv_.notify_all();
            }
        }
        link_->release_buffers();
        if (!status) {
            return status;
        }
    }
}

void ConsumerCore::run_loop() {
    const auto far_future = [] { return Clock::now() + std::chrono::hours(1); };
    while (true) {
        wake_.drain();
        std::deque<CommandPtr> commands;
        bool closing = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            closing = closing_;
            commands.swap(commands_);
        }
        if (closing) {
            if (link_) {
                (void)execute(commands);  // acks the owner issued before close() go out first
            }
            return;
        }
        if (!link_) {
            for (auto& command : commands) {
                complete(command, stale_tag(command->tag));
            }
            commands.clear();
            if (Clock::now() >= next_attempt_) {
                sdk::Status status = subscribe();
                bool first = false;
                {
                    std::lock_guard<std::mutex> lock(mutex_);
                    first = !open_done_;
                    if (first) {
                        open_done_ = true;
                        open_status_ = status;
                        ready_cv_.notify_all();
                    }
                    if (!status) {
                        last_error_ = status;
                    }
                }
                if (!status && first) {
                    return;  // consume() reports the error; nothing to keep alive
                }
                if (status) {
                    backoff_ = std::chrono::milliseconds(100);
                    logger_.info(first ? "rabbitmq consumer subscribed"
                                       : "rabbitmq consumer resubscribed after a connection loss",
                                 log_fields(nlohmann::json{{"queue", queue_}}));
                } else {
                    link_.reset();
                    next_attempt_ = Clock::now() + backoff_;
                    backoff_ = std::min(backoff_ * 2, settings_.reconnect_max_backoff);
                    logger_.debug(
                        "rabbitmq consumer reconnect attempt failed",
                        log_fields(nlohmann::json{{"queue", queue_}, {"error", status.message()}}));
                }
            }
            if (!link_) {
                pollfd wake{wake_.fd(), POLLIN, 0};
                const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    next_attempt_ - Clock::now());
                ::poll(&wake, 1,
                       static_cast<int>(std::clamp<long long>(left.count() + 1, 0, 60000)));
                continue;
            }
        }
        sdk::Status status = execute(commands);
        if (status) {
            status = drain_frames();
        }
        if (status) {
            status = link_->service_heartbeat();
        }
        if (status) {
            bool woken = false;
            status = link_->wait(wake_.fd(), far_future(), &woken);
        }
        if (!status) {
            lose(status);
        }
    }
}

RabbitMqConsumer::~RabbitMqConsumer() { core_->close(); }

sdk::Result<std::optional<sdk::Delivery>> RabbitMqConsumer::receive(
    std::chrono::milliseconds timeout) noexcept {
    try {
        return core_->receive(timeout);
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          std::string("rabbitmq receive failed: ") + e.what()};
    }
}

sdk::Status RabbitMqConsumer::ack(std::uint64_t tag) noexcept {
    try {
        return core_->settle(tag, true, false);
    } catch (const std::exception& e) {
        return sdk::Status(sdk::ErrorCode::Internal,
                           std::string("rabbitmq ack failed: ") + e.what());
    }
}

sdk::Status RabbitMqConsumer::reject(std::uint64_t tag, bool requeue) noexcept {
    try {
        return core_->settle(tag, false, requeue);
    } catch (const std::exception& e) {
        return sdk::Status(sdk::ErrorCode::Internal,
                           std::string("rabbitmq reject failed: ") + e.what());
    }
}

void RabbitMqConsumer::close() noexcept { core_->close(); }

sdk::Status RabbitMqConsumer::set_prefetch(std::uint16_t prefetch) noexcept {
    try {
        return core_->set_prefetch(prefetch);
    } catch (const std::exception& e) {
        return sdk::Status(sdk::ErrorCode::Internal,
                           std::string("rabbitmq set_prefetch failed: ") + e.what());
    }
}

}  // namespace synergos::plugins::rabbitmq
