// SPDX-License-Identifier: Apache-2.0
#include "memory_queue.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <utility>

#include <nlohmann/json.hpp>

#include "descriptor.hpp"
#include "mq_validation.hpp"

namespace synergos::plugins::memory {

struct StoredMessage {
    sdk::Message message;
    bool redelivered = false;
};

/// One queue. Guarded by `Broker::mutex`; `cv` is signalled when a message becomes ready or the
/// broker stops.
struct QueueState {
    sdk::QueueSpec spec;
    /// Ready messages by effective priority, highest first; FIFO within a priority.
    std::map<std::uint8_t, std::deque<StoredMessage>, std::greater<>> ready;
    std::uint64_t ready_count = 0;
    std::uint32_t consumers = 0;
    std::condition_variable cv;

    std::uint8_t effective_priority(std::uint8_t priority) const {
        return spec.max_priority == 0 ? 0 : std::min(priority, spec.max_priority);
    }
    void push_back(StoredMessage stored) {
        const auto priority = effective_priority(stored.message.priority);
        ready[priority].push_back(std::move(stored));
        ++ready_count;
    }
    /// Requeued messages go back to the head of their priority, as RabbitMQ does.
    void push_front(StoredMessage stored) {
        const auto priority = effective_priority(stored.message.priority);
        ready[priority].push_front(std::move(stored));
        ++ready_count;
    }
    StoredMessage pop() {
        auto bucket = ready.begin();
        StoredMessage stored = std::move(bucket->second.front());
        bucket->second.pop_front();
        if (bucket->second.empty()) {
            ready.erase(bucket);
        }
        --ready_count;
        return stored;
    }
};

/// The shared in-process broker. Consumers keep it alive, so a consumer that outlives `stop`
/// (a contract violation) fails cleanly instead of touching freed memory.
struct Broker {
    std::mutex mutex;
    bool started = false;
    bool stopped = false;
    std::uint64_t max_messages = 1000000;
    std::map<std::string, std::shared_ptr<QueueState>> queues;

    sdk::Status check_running_locked() const {
        if (stopped) {
            return sdk::Status(sdk::ErrorCode::FailedPrecondition,
                               "memory message queue is stopped");
        }
        if (!started) {
            return sdk::Status(sdk::ErrorCode::FailedPrecondition,
                               "memory message queue is not started (call start() first)");
        }
        return sdk::Status::ok();
    }

    sdk::Result<std::shared_ptr<QueueState>> find_locked(const std::string& name) const {
        auto it = queues.find(name);
        if (it == queues.end()) {
            return sdk::Error{sdk::ErrorCode::NotFound,
                              "queue '" + name + "' is not declared in the memory message queue"};
        }
        return it->second;
    }

    /// Declares `spec` (idempotent). Conflicting arguments fail like a broker's
    /// PRECONDITION_FAILED and change nothing.
    sdk::Status declare_locked(const sdk::QueueSpec& spec) {
        auto it = queues.find(spec.name);
        if (it != queues.end()) {
            const sdk::QueueSpec& existing = it->second->spec;
            if (existing.max_priority != spec.max_priority) {
                return sdk::Status(sdk::ErrorCode::FailedPrecondition,
                                   "queue '" + spec.name + "' already exists with max_priority " +
                                       std::to_string(existing.max_priority) + ", not " +
                                       std::to_string(spec.max_priority));
            }
            if (existing.dead_letter_queue != spec.dead_letter_queue) {
                return sdk::Status(
                    sdk::ErrorCode::FailedPrecondition,
                    "queue '" + spec.name + "' already exists with dead_letter_queue '" +
                        existing.dead_letter_queue + "', not '" + spec.dead_letter_queue + "'");
            }
            return sdk::Status::ok();
        }
        auto state = std::make_shared<QueueState>();
        state->spec = spec;
        queues.emplace(spec.name, std::move(state));
        return sdk::Status::ok();
    }

    /// Moves a rejected message to the dead-letter queue of `source`, or drops it when there is
    /// none (the documented behaviour of `reject(tag, false)`).
    void dead_letter_locked(const QueueState& source, StoredMessage stored) {
        const std::string& target = source.spec.dead_letter_queue;
        auto it = target.empty() ? queues.end() : queues.find(target);
        if (it == queues.end()) {
            return;
        }
        auto& headers = stored.message.headers;
        const bool has_first_death =
            std::any_of(headers.begin(), headers.end(),
                        [](const auto& header) { return header.first == "x-first-death-queue"; });
        if (!has_first_death) {
            // The same headers a RabbitMQ broker adds, so consumers see one format.
            headers.emplace_back("x-first-death-exchange", "");
            headers.emplace_back("x-first-death-queue", source.spec.name);
            headers.emplace_back("x-first-death-reason", "rejected");
        }
        stored.redelivered = false;
        it->second->push_back(std::move(stored));
        it->second->cv.notify_all();
    }
};

namespace {

sdk::Error internal_error(const char* what, const std::exception& e) {
    return sdk::Error{sdk::ErrorCode::Internal,
                      std::string("memory message queue: ") + what + " failed: " + e.what()};
}

}  // namespace

MemoryQueue::MemoryQueue(sdk::HostContext& host, const sdk::Options& options)
    : host_(host), broker_(std::make_shared<Broker>()) {
    const std::string raw = options.get_string("max_messages_per_queue", kOptions[0].default_value);
    std::int64_t max_messages = -1;
    try {
        std::size_t used = 0;
        max_messages = std::stoll(raw, &used);
        if (used != raw.size()) {
            max_messages = -1;
        }
    } catch (const std::exception&) {
        max_messages = -1;
    }
    if (max_messages <= 0) {
        config_error_ = sdk::Status(sdk::ErrorCode::InvalidArgument,
                                    "option max_messages_per_queue of mq plugin 'memory' must be "
                                    "a positive integer, got '" +
                                        raw + "'");
    } else {
        broker_->max_messages = static_cast<std::uint64_t>(max_messages);
    }
}

MemoryQueue::~MemoryQueue() { stop(); }

sdk::Status MemoryQueue::start() noexcept {
    try {
        if (!config_error_) {
            return config_error_;
        }
        {
            std::lock_guard<std::mutex> lock(broker_->mutex);
            if (broker_->stopped) {
                return sdk::Status(sdk::ErrorCode::FailedPrecondition,
                                   "memory message queue was stopped and cannot restart");
            }
            broker_->started = true;
        }
        host_.logger().info(
            "memory message queue started",
            nlohmann::json{{"max_messages_per_queue", broker_->max_messages}}.dump());
        return sdk::Status::ok();
    } catch (const std::exception& e) {
        return internal_error("start", e);
    }
}

sdk::Status MemoryQueue::declare(const sdk::QueueSpec& spec) noexcept {
    try {
        if (auto status = mq::validate_spec(spec); !status) {
            return status;
        }
        std::lock_guard<std::mutex> lock(broker_->mutex);
        if (auto status = broker_->check_running_locked(); !status) {
            return status;
        }
        // An existing queue is only compared, so a refused declare changes nothing.
        if (broker_->queues.count(spec.name) != 0) {
            return broker_->declare_locked(spec);
        }
        if (!spec.dead_letter_queue.empty() && broker_->queues.count(spec.dead_letter_queue) == 0) {
            sdk::QueueSpec dlq;
            dlq.name = spec.dead_letter_queue;
            if (auto status = broker_->declare_locked(dlq); !status) {
                return status;
            }
        }
        return broker_->declare_locked(spec);
    } catch (const std::exception& e) {
        return internal_error("declare", e);
    }
}

sdk::Status MemoryQueue::publish(const std::string& queue, const sdk::Message& message,
                                 std::chrono::milliseconds timeout) noexcept {
    try {
        if (auto status = mq::validate_queue_name(queue, "queue"); !status) {
            return status;
        }
        if (auto status = mq::validate_message(queue, message); !status) {
            return status;
        }
        if (auto status = mq::validate_timeout(queue, timeout); !status) {
            return status;
        }
        StoredMessage stored{message, false};
        std::lock_guard<std::mutex> lock(broker_->mutex);
        if (auto status = broker_->check_running_locked(); !status) {
            return status;
        }
        auto found = broker_->find_locked(queue);
        if (!found) {
            return found.status();
        }
        QueueState& state = **found;
        if (state.ready_count >= broker_->max_messages) {
            return sdk::Status(sdk::ErrorCode::ResourceExhausted,
                               "queue '" + queue + "' holds " + std::to_string(state.ready_count) +
                                   " ready messages, the max_messages_per_queue limit");
        }
        state.push_back(std::move(stored));
        state.cv.notify_all();
        return sdk::Status::ok();
    } catch (const std::exception& e) {
        return internal_error("publish", e);
    }
}

sdk::Result<std::unique_ptr<sdk::Consumer>> MemoryQueue::consume(const std::string& queue,
                                                                 std::uint16_t prefetch) noexcept {
    try {
        if (auto status = mq::validate_queue_name(queue, "queue"); !status) {
            return status;
        }
        if (auto status = mq::validate_prefetch(queue, prefetch); !status) {
            return status;
        }
        std::shared_ptr<QueueState> state;
        {
            std::lock_guard<std::mutex> lock(broker_->mutex);
            if (auto status = broker_->check_running_locked(); !status) {
                return status;
            }
            auto found = broker_->find_locked(queue);
            if (!found) {
                return found.status();
            }
            state = *found;
            ++state->consumers;
        }
        return std::unique_ptr<sdk::Consumer>(
            new MemoryConsumer(broker_, std::move(state), prefetch));
    } catch (const std::exception& e) {
        return internal_error("consume", e);
    }
}

sdk::Result<std::uint64_t> MemoryQueue::depth(const std::string& queue) noexcept {
    try {
        std::lock_guard<std::mutex> lock(broker_->mutex);
        if (auto status = broker_->check_running_locked(); !status) {
            return status;
        }
        auto found = broker_->find_locked(queue);
        if (!found) {
            return found.status();
        }
        return (*found)->ready_count;
    } catch (const std::exception& e) {
        return internal_error("depth", e);
    }
}

sdk::Result<std::uint32_t> MemoryQueue::consumer_count(const std::string& queue) noexcept {
    try {
        std::lock_guard<std::mutex> lock(broker_->mutex);
        if (auto status = broker_->check_running_locked(); !status) {
            return status;
        }
        auto found = broker_->find_locked(queue);
        if (!found) {
            return found.status();
        }
        return (*found)->consumers;
    } catch (const std::exception& e) {
        return internal_error("consumer_count", e);
    }
}

void MemoryQueue::stop() noexcept {
    std::lock_guard<std::mutex> lock(broker_->mutex);
    if (broker_->stopped) {
        return;
    }
    broker_->stopped = true;
    for (auto& [name, state] : broker_->queues) {
        state->cv.notify_all();
    }
}

sdk::Status MemoryQueue::publish_async(const std::string& queue, const sdk::Message& message,
                                       std::chrono::milliseconds timeout,
                                       std::shared_ptr<sdk::PublishCallback> done) noexcept {
    if (!done) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument,
                           "publish_async to queue '" + queue + "' needs a callback");
    }
    sdk::Status status = publish(queue, message, timeout);
    if (!status && (status.code() == sdk::ErrorCode::InvalidArgument ||
                    status.code() == sdk::ErrorCode::FailedPrecondition)) {
        return status;  // refused before anything was queued: the caller hears it here
    }
    done->on_published(std::move(status));
    return sdk::Status::ok();
}

MemoryConsumer::MemoryConsumer(std::shared_ptr<Broker> broker, std::shared_ptr<QueueState> queue,
                               std::uint16_t prefetch)
    : broker_(std::move(broker)), queue_(std::move(queue)), prefetch_(prefetch) {}

MemoryConsumer::~MemoryConsumer() { close(); }

sdk::Status MemoryConsumer::check_open_locked() const {
    if (closed_) {
        return sdk::Status(sdk::ErrorCode::FailedPrecondition,
                           "consumer on queue '" + queue_->spec.name + "' is closed");
    }
    if (broker_->stopped) {
        return sdk::Status(
            sdk::ErrorCode::FailedPrecondition,
            "memory message queue is stopped (consumer on queue '" + queue_->spec.name + "')");
    }
    return sdk::Status::ok();
}

sdk::Result<std::optional<sdk::Delivery>> MemoryConsumer::receive(
    std::chrono::milliseconds timeout) noexcept {
    try {
        // Clamped, so `now + timeout` cannot overflow for "wait forever" values.
        const auto wait = std::clamp(timeout, std::chrono::milliseconds(0), mq::kLongestWait);
        const auto deadline = std::chrono::steady_clock::now() + wait;
        std::unique_lock<std::mutex> lock(broker_->mutex);
        const auto ready = [&] {
            return closed_ || broker_->stopped ||
                   (queue_->ready_count > 0 && unacked_.size() < prefetch_);
        };
        queue_->cv.wait_until(lock, deadline, ready);
        if (auto status = check_open_locked(); !status) {
            return status;
        }
        if (queue_->ready_count == 0 || unacked_.size() >= prefetch_) {
            return std::optional<sdk::Delivery>();
        }
        auto stored = std::make_unique<StoredMessage>(queue_->pop());
        const std::uint64_t tag = next_tag_++;
        sdk::Delivery delivery{tag, stored->message, stored->redelivered};
        unacked_.emplace(tag, std::move(stored));
        return std::optional<sdk::Delivery>(std::move(delivery));
    } catch (const std::exception& e) {
        return internal_error("receive", e);
    }
}

sdk::Status MemoryConsumer::ack(std::uint64_t tag) noexcept {
    try {
        std::lock_guard<std::mutex> lock(broker_->mutex);
        if (auto status = check_open_locked(); !status) {
            return status;
        }
        if (unacked_.erase(tag) == 0) {
            return sdk::Status(sdk::ErrorCode::InvalidArgument,
                               "unknown delivery tag " + std::to_string(tag) + " on queue '" +
                                   queue_->spec.name +
                                   "' (not delivered to this consumer, or already settled)");
        }
        return sdk::Status::ok();
    } catch (const std::exception& e) {
        return internal_error("ack", e);
    }
}

sdk::Status MemoryConsumer::reject(std::uint64_t tag, bool requeue) noexcept {
    try {
        std::lock_guard<std::mutex> lock(broker_->mutex);
        if (auto status = check_open_locked(); !status) {
            return status;
        }
        auto it = unacked_.find(tag);
        if (it == unacked_.end()) {
            return sdk::Status(sdk::ErrorCode::InvalidArgument,
                               "unknown delivery tag " + std::to_string(tag) + " on queue '" +
                                   queue_->spec.name +
                                   "' (not delivered to this consumer, or already settled)");
        }
        StoredMessage stored = std::move(*it->second);
        unacked_.erase(it);
        if (requeue) {
            stored.redelivered = true;
            queue_->push_front(std::move(stored));
            queue_->cv.notify_all();
        } else {
            broker_->dead_letter_locked(*queue_, std::move(stored));
        }
        return sdk::Status::ok();
    } catch (const std::exception& e) {
        return internal_error("reject", e);
    }
}

sdk::Status MemoryConsumer::set_prefetch(std::uint16_t prefetch) noexcept {
    try {
        if (auto status = mq::validate_prefetch(queue_->spec.name, prefetch); !status) {
            return status;
        }
        std::lock_guard<std::mutex> lock(broker_->mutex);
        if (auto status = check_open_locked(); !status) {
            return status;
        }
        prefetch_ = prefetch;
        queue_->cv.notify_all();  // a raised limit may let a waiting receive take a message
        return sdk::Status::ok();
    } catch (const std::exception& e) {
        return internal_error("set_prefetch", e);
    }
}

void MemoryConsumer::close() noexcept {
    std::lock_guard<std::mutex> lock(broker_->mutex);
    if (closed_) {
        return;
    }
    closed_ = true;
    // Return unsettled deliveries in their original order, flagged as redelivered.
    for (auto it = unacked_.rbegin(); it != unacked_.rend(); ++it) {
        it->second->redelivered = true;
        queue_->push_front(std::move(*it->second));
    }
    unacked_.clear();
    --queue_->consumers;
    queue_->cv.notify_all();
}

}  // namespace synergos::plugins::memory
