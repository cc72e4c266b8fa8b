// SPDX-License-Identifier: Apache-2.0
#include "rabbitmq_queue.hpp"

#include <poll.h>

#include <algorithm>
#include <exception>
#include <utility>

#include <nlohmann/json.hpp>

#include "log_fields.hpp"

#include "rabbitmq_consumer.hpp"
#include "mq_validation.hpp"

namespace synergos::plugins::rabbitmq {

namespace {

constexpr amqp_channel_t kPublishChannel = 1;
constexpr amqp_channel_t kAdminChannel = 2;
constexpr auto kMinBackoff = std::chrono::milliseconds(100);

amqp_bytes_t as_bytes(const std::string& text) {
    return amqp_bytes_t{text.size(), const_cast<char*>(text.data())};
}

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

}  // namespace

/// One operation handed to the I/O thread.
struct RabbitMqQueue::Op {
    enum class Kind { Publish, Declare, Inspect };
    Kind kind = Kind::Publish;
    std::string queue;
    sdk::Message message;
    sdk::QueueSpec spec;
    std::chrono::milliseconds timeout{0};
    Clock::time_point deadline;
    // Guarded by mutex_.
    bool done = false;
    bool abandoned = false;  ///< the caller stopped waiting
    bool sent = false;       ///< publish bytes went out at least once
    sdk::Status status;
    QueueInfo info;
    std::condition_variable cv;
    std::shared_ptr<sdk::PublishCallback> callback;  ///< publish_async: called once, when done
    // I/O thread only.
    std::optional<sdk::Status> returned;  ///< the broker returned the message (unroutable)

    std::string what() const {
        switch (kind) {
            case Kind::Publish:
                return "publish of message '" + message.id + "' to queue '" + queue + "'";
            case Kind::Declare:
                return "declare of queue '" + queue + "'";
            case Kind::Inspect:
                return "inspection of queue '" + queue + "'";
        }
        return "operation";
    }
};

RabbitMqQueue::RabbitMqQueue(sdk::HostContext& host, const sdk::Options& options) : host_(host) {
    auto parsed = parse_settings(options);
    if (parsed) {
        settings_ = std::move(*parsed);
        settings_.client_name = "synergos " + host.role() + "/" + host.node_id();
    } else {
        config_error_ = parsed.status();
    }
    context_ = settings_.describe();
}

RabbitMqQueue::~RabbitMqQueue() { stop(); }

// --- caller side ------------------------------------------------------------------------------

sdk::Status RabbitMqQueue::start() noexcept {
    try {
        if (!config_error_) {
            return config_error_;
        }
        std::unique_lock<std::mutex> lock(mutex_);
        if (stopping_) {
            return sdk::Status(sdk::ErrorCode::FailedPrecondition,
                               context_ + ": message queue was stopped and cannot restart");
        }
        if (started_) {
            return sdk::Status::ok();
        }
        if (!wake_) {
            wake_ = std::make_unique<WakeFd>();
        }
        started_ = true;
        first_attempt_done_ = false;
        failed_.reset();
        thread_ = std::thread([this] { run(); });
        const auto limit =
            settings_.connect_timeout + 2 * settings_.rpc_timeout + std::chrono::seconds(1);
        state_cv_.wait_for(lock, limit, [&] { return first_attempt_done_; });
        if (connected_) {
            lock.unlock();
            host_.logger().info(
                "rabbitmq message queue connected",
                log_fields(nlohmann::json{
                    {"broker", settings_.host + ":" + std::to_string(settings_.port)},
                    {"vhost", settings_.vhost},
                    {"tls", settings_.tls},
                    {"heartbeat_s", settings_.heartbeat_s}}));
            return sdk::Status::ok();
        }
        sdk::Status failure =
            first_attempt_done_
                ? last_error_
                : sdk::Status(
                      sdk::ErrorCode::Unavailable,
                      context_ + ": no connection within " +
                          ms_text(std::chrono::duration_cast<std::chrono::milliseconds>(limit)));
        // Leave the object as before start(), so the host may retry.
        stopping_ = true;
        lock.unlock();
        wake_->signal();
        thread_.join();
        lock.lock();
        stopping_ = false;
        started_ = false;
        return failure;
    } catch (const std::exception& e) {
        return sdk::Status(sdk::ErrorCode::Internal, context_ + ": start failed: " + e.what());
    }
}

void RabbitMqQueue::stop() noexcept {
    std::vector<std::weak_ptr<ConsumerCore>> consumers;
    {
        std::unique_lock<std::mutex> lock(mutex_);
        if (stopping_ && !thread_.joinable()) {
            return;
        }
        stopping_ = true;
        consumers.swap(consumers_);
        if (thread_.joinable()) {
            wake_->signal();
            // A send stuck on a blocked or dead socket is broken by shutting the socket down.
            const auto limit = 2 * settings_.rpc_timeout + std::chrono::seconds(1);
            if (!state_cv_.wait_for(lock, limit, [&] { return thread_done_; }) &&
                live_link_ != nullptr) {
                live_link_->interrupt();
            }
        }
    }
    if (thread_.joinable()) {
        thread_.join();
    }
    // The contract says consumers are closed first; close stragglers so no thread outlives us.
    for (auto& weak : consumers) {
        if (auto core = weak.lock()) {
            core->close();
        }
    }
}

sdk::Status RabbitMqQueue::submit(const OpPtr& op) {
    if (auto status = enqueue(op); !status) {
        return status;
    }
    // A publisher that finds the connection idle drives it itself: no thread hand-off on the
    // way out and back, which is most of a confirmed publish's cost besides the broker's.
    if (op->kind != Op::Kind::Publish || !lead(op)) {
        wake_->signal();
    }
    std::unique_lock<std::mutex> lock(mutex_);
    // The I/O thread completes every operation by its deadline; the margin covers a thread busy
    // in a connect attempt, after which the caller's own deadline wins.
    op->cv.wait_until(lock, op->deadline + std::chrono::milliseconds(200),
                      [&] { return op->done; });
    if (op->done) {
        return op->status;
    }
    op->abandoned = true;
    if (op->sent) {
        return sdk::Status(sdk::ErrorCode::Timeout,
                           context_ + ": " + op->what() + " was sent but not confirmed within " +
                               ms_text(op->timeout) +
                               "; it may still be stored (a job's result is archived once, by job id)");
    }
    return outage_status().is_ok()
               ? sdk::Status(
                     sdk::ErrorCode::Timeout,
                     context_ + ": " + op->what() + " did not run within " + ms_text(op->timeout))
               : sdk::Status(sdk::ErrorCode::Unavailable,
                             context_ + ": " + op->what() + " not done within " +
                                 ms_text(op->timeout) +
                                 "; nothing was sent: " + outage_status().message());
}

sdk::Status RabbitMqQueue::outage_status() const {
    if (!connected_) {
        return sdk::Status(
            sdk::ErrorCode::Unavailable,
            "broker unreachable, reconnecting (last error: " +
                (last_error_.is_ok() ? std::string("none yet") : last_error_.message()) + ")");
    }
    if (blocked_) {
        return sdk::Status(sdk::ErrorCode::Unavailable,
                           "broker blocked publishing (resource alarm)");
    }
    return sdk::Status::ok();
}

sdk::Status RabbitMqQueue::declare(const sdk::QueueSpec& spec) noexcept {
    try {
        if (auto status = mq::validate_spec(spec); !status) {
            return status;
        }
        auto op = std::make_shared<Op>();
        op->kind = Op::Kind::Declare;
        op->queue = spec.name;
        op->spec = spec;
        op->timeout = std::max(settings_.connect_timeout, settings_.rpc_timeout);
        op->deadline = Clock::now() + op->timeout;
        return submit(op);
    } catch (const std::exception& e) {
        return sdk::Status(sdk::ErrorCode::Internal, context_ + ": declare failed: " + e.what());
    }
}

sdk::Result<RabbitMqQueue::OpPtr> RabbitMqQueue::make_publish(const std::string& queue,
                                                            const sdk::Message& message,
                                                            std::chrono::milliseconds timeout) {
    if (auto status = mq::validate_queue_name(queue, "queue"); !status) {
        return status;
    }
    if (auto status = mq::validate_message(queue, message); !status) {
        return status;
    }
    if (auto status = mq::validate_timeout(queue, timeout); !status) {
        return status;
    }
    auto op = std::make_shared<Op>();
    op->kind = Op::Kind::Publish;
    op->queue = queue;
    op->message = message;
    op->timeout = timeout;
    op->deadline = Clock::now() + std::min(timeout, mq::kLongestWait);
    return op;
}

sdk::Status RabbitMqQueue::publish(const std::string& queue, const sdk::Message& message,
                                   std::chrono::milliseconds timeout) noexcept {
    try {
        auto op = make_publish(queue, message, timeout);
        if (!op) {
            return op.error();
        }
        return submit(*op);
    } catch (const std::exception& e) {
        return sdk::Status(sdk::ErrorCode::Internal, context_ + ": publish failed: " + e.what());
    }
}

sdk::Status RabbitMqQueue::publish_async(const std::string& queue, const sdk::Message& message,
                                         std::chrono::milliseconds timeout,
                                         std::shared_ptr<sdk::PublishCallback> done) noexcept {
    try {
        if (!done) {
            return sdk::Status(sdk::ErrorCode::InvalidArgument,
                               context_ + ": publish_async to queue '" + queue +
                                   "' needs a callback");
        }
        auto op = make_publish(queue, message, timeout);
        if (!op) {
            return op.error();
        }
        (*op)->callback = std::move(done);
        if (auto status = enqueue(*op); !status) {
            return status;
        }
        // The I/O thread sends it (in order with everything queued before) and completes it by
        // its deadline: expire() or the stop path, so the callback always runs.
        wake_->signal();
        return sdk::Status::ok();
    } catch (const std::exception& e) {
        return sdk::Status(sdk::ErrorCode::Internal, context_ + ": publish failed: " + e.what());
    }
}

sdk::Status RabbitMqQueue::enqueue(const OpPtr& op) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) {
        return sdk::Status(sdk::ErrorCode::FailedPrecondition,
                           context_ + ": message queue is stopped (" + op->what() + ")");
    }
    if (!started_) {
        return sdk::Status(sdk::ErrorCode::FailedPrecondition,
                           context_ + ": message queue is not started (" + op->what() + ")");
    }
    if (failed_) {
        // No I/O thread would ever complete it (nor call a publish_async callback).
        return sdk::Status(failed_->code(), failed_->message() + " (" + op->what() + ")");
    }
    incoming_.push_back(op);
    return sdk::Status::ok();
}

sdk::Result<RabbitMqQueue::QueueInfo> RabbitMqQueue::inspect(const std::string& queue) {
    if (auto status = mq::validate_queue_name(queue, "queue"); !status) {
        return status;
    }
    auto op = std::make_shared<Op>();
    op->kind = Op::Kind::Inspect;
    op->queue = queue;
    op->timeout = std::max(settings_.connect_timeout, settings_.rpc_timeout);
    op->deadline = Clock::now() + op->timeout;
    if (auto status = submit(op); !status) {
        return status;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    return op->info;
}

sdk::Result<std::uint64_t> RabbitMqQueue::depth(const std::string& queue) noexcept {
    try {
        auto info = inspect(queue);
        if (!info) {
            return info.error();
        }
        return info->messages;
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal, context_ + ": depth failed: " + e.what()};
    }
}

sdk::Result<std::uint32_t> RabbitMqQueue::consumer_count(const std::string& queue) noexcept {
    try {
        auto info = inspect(queue);
        if (!info) {
            return info.error();
        }
        return info->consumers;
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          context_ + ": consumer_count failed: " + e.what()};
    }
}

sdk::Result<std::unique_ptr<sdk::Consumer>> RabbitMqQueue::consume(
    const std::string& queue, std::uint16_t prefetch) noexcept {
    try {
        if (auto status = mq::validate_queue_name(queue, "queue"); !status) {
            return status;
        }
        if (auto status = mq::validate_prefetch(queue, prefetch); !status) {
            return status;
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_ || !started_) {
                return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                  context_ + ": message queue is " +
                                      (stopping_ ? "stopped" : "not started") +
                                      " (consume from queue '" + queue + "')"};
            }
        }
        auto core = std::make_shared<ConsumerCore>(settings_, host_.logger(), queue, prefetch);
        if (auto status = core->open(); !status) {
            return status;
        }
        {
            std::unique_lock<std::mutex> lock(mutex_);
            if (stopping_) {
                // stop() ran during open() and could not see this consumer: close it here, so
                // no consumer thread or connection outlives stop().
                lock.unlock();
                core->close();
                return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                  context_ + ": message queue was stopped while subscribing "
                                             "(consume from queue '" +
                                      queue + "')"};
            }
            // Forget consumers that are gone, so the list does not grow without bound.
            consumers_.erase(std::remove_if(consumers_.begin(), consumers_.end(),
                                            [](const auto& weak) { return weak.expired(); }),
                             consumers_.end());
            consumers_.push_back(core);
        }
        return std::unique_ptr<sdk::Consumer>(new RabbitMqConsumer(std::move(core)));
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal, context_ + ": consume failed: " + e.what()};
    }
}

void RabbitMqQueue::complete(const OpPtr& op, sdk::Status status) {
    std::shared_ptr<sdk::PublishCallback> callback;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (op->done) {
            return;
        }
        op->done = true;
        op->status = status;
        op->cv.notify_all();
        callback = std::move(op->callback);
    }
    if (callback) {
        callback->on_published(std::move(status));  // short by contract; mutex_ is not held
    }
}

// --- I/O thread -------------------------------------------------------------------------------

void RabbitMqQueue::watch_sends() noexcept {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!watchdog_stop_) {
        watchdog_cv_.wait_for(lock, std::chrono::milliseconds(50));
        const auto deadline = send_deadline_.load();
        if (deadline == 0 || Clock::now().time_since_epoch().count() <= deadline ||
            live_link_ == nullptr) {
            continue;
        }
        // Shutting the socket down fails the send; the connection is lost and rebuilt, and
        // the publish fails by its deadline ("may still be stored") instead of much later.
        live_link_->interrupt();
        send_deadline_.store(0);
        lock.unlock();
        try {
            host_.logger().warn("rabbitmq publish send stuck past its deadline; reconnecting",
                                log_fields(nlohmann::json{{"broker", context_}}));
        } catch (const std::exception&) {
            // best effort
        }
        lock.lock();
    }
}

void RabbitMqQueue::run() noexcept {
    std::optional<sdk::Status> failure;
    std::thread watchdog;
    try {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            watchdog_stop_ = false;
        }
        watchdog = std::thread([this] { watch_sends(); });
        run_loop();
    } catch (const std::exception& e) {
        // A bug or an allocation failure. Without this thread nothing would ever be sent or
        // completed again: refuse new work (enqueue) and fail everything queued, below.
        failure = sdk::Status(sdk::ErrorCode::Internal,
                              context_ + ": I/O thread failed: " + e.what() +
                                  "; the message queue refuses further operations (stop it and "
                                  "create a new one)");
        std::lock_guard<std::mutex> lock(mutex_);
        last_error_ = *failure;
        failed_ = failure;
        connected_ = false;
        first_attempt_done_ = true;
        state_cv_.notify_all();
    }
    if (failure) {
        try {
            host_.logger().error("rabbitmq publisher I/O thread failed",
                                 log_fields(nlohmann::json{{"error", failure->message()}}));
        } catch (const std::exception&) {
            // Logging is best effort here; completing the operations below is not.
        }
    }
    if (watchdog.joinable()) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            watchdog_stop_ = true;
        }
        watchdog_cv_.notify_all();
        watchdog.join();
    }
    join_connector();
    // Everything still waiting learns that the queue stopped (or failed).
    std::lock_guard<std::timed_mutex> io(io_mutex_);
    std::vector<OpPtr> left(pending_.begin(), pending_.end());
    for (auto& [seq, op] : inflight_) {
        left.push_back(op);
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        left.insert(left.end(), incoming_.begin(), incoming_.end());
        incoming_.clear();
    }
    for (auto& op : left) {
        const std::string sent = op->sent ? " (it was sent and may still be stored)" : "";
        complete(op, failure ? sdk::Status(failure->code(), failure->message() + " (during the " +
                                                                 op->what() + sent + ")")
                             : sdk::Status(sdk::ErrorCode::Cancelled,
                                           context_ + ": message queue stopped before the " +
                                               op->what() + " completed" + sent));
    }
    pending_.clear();
    inflight_.clear();
    if (link_) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            live_link_ = link_.get();
        }
        link_->close(
            std::min<std::chrono::milliseconds>(settings_.rpc_timeout, std::chrono::seconds(2)));
        std::lock_guard<std::mutex> lock(mutex_);
        live_link_ = nullptr;
        link_.reset();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    connected_ = false;
    thread_done_ = true;
    state_cv_.notify_all();
}

bool RabbitMqQueue::take_incoming() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) {
        return false;
    }
    while (!incoming_.empty()) {
        pending_.push_back(std::move(incoming_.front()));
        incoming_.pop_front();
    }
    return true;
}

sdk::Status RabbitMqQueue::service_once() {
    sdk::Status status = execute_pending();
    if (status) {
        status = drain_frames();
    }
    if (status) {
        status = link_->service_heartbeat();
    }
    if (status) {
        expire(Clock::now());
    }
    return status;
}

bool RabbitMqQueue::lead(const OpPtr& op) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!connected_ || blocked_) {
            return false;  // the I/O thread reconnects (or waits for unblocked) and publishes then
        }
    }
    // The I/O thread holds the lock only for short steps while connected (or for one RPC);
    // waiting for it costs no more than handing the operation over.
    // A system_clock deadline (pthread_mutex_timedlock): a clock jump only stretches this wait,
    // the caller's own wait stays on the steady clock; and ThreadSanitizer understands it.
    std::unique_lock<std::timed_mutex> io(io_mutex_, std::defer_lock);
    const auto lock_deadline = std::chrono::system_clock::now() + (op->deadline - Clock::now());
    if (!io.try_lock_until(lock_deadline) || !link_ || broken_) {
        return false;
    }
    while (take_incoming()) {
        sdk::Status status = service_once();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (op->done) {
                break;
            }
        }
        bool woken = false;
        if (status) {
            status = link_->wait(wake_->fd(), next_deadline(), &woken);
        }
        if (!status) {
            // Only the I/O thread tears a link down (it may be polling the socket right now).
            broken_ = status;
            break;
        }
        if (woken) {
            wake_->drain();  // new operations from other callers: sent on the next pass
        }
    }
    // The I/O thread takes over the other confirms, the outage, or operations that came in
    // meanwhile. With nothing left it needs no wake-up: a context switch per publish saved.
    bool hand_over = broken_.has_value() || !pending_.empty() || !inflight_.empty();
    io.unlock();
    if (!hand_over) {
        std::lock_guard<std::mutex> lock(mutex_);
        hand_over = !incoming_.empty() || stopping_;
    }
    if (hand_over) {
        wake_->signal();
    }
    return true;
}

void RabbitMqQueue::run_loop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        thread_done_ = false;
    }
    next_attempt_ = Clock::now();
    backoff_ = kMinBackoff;
    bool socket_event = false;
    while (true) {
        std::unique_lock<std::timed_mutex> io(io_mutex_);
        wake_->drain();
        if (!take_incoming()) {
            return;
        }
        if (socket_event && link_) {
            link_->note_received();
        }
        socket_event = false;
        if (broken_) {
            const sdk::Status why = *broken_;
            broken_.reset();
            lose_connection(why);
        }
        expire(Clock::now());
        if (!link_) {
            // The connection is opened on a connector thread, without io_mutex_: a silent or
            // slow broker must not stop expire() from failing operations by their deadlines.
            std::optional<sdk::Status> opened;
            if (connecting_) {
                std::lock_guard<std::mutex> lock(mutex_);
                opened = connect_result_;
            } else if (Clock::now() >= next_attempt_) {
                start_connect();
            }
            if (opened) {
                sdk::Status status = finish_connect(*opened);
                const bool first = [&] {
                    std::lock_guard<std::mutex> lock(mutex_);
                    return !first_attempt_done_;
                }();
                if (status) {
                    if (failed_attempts_ > 0 || !first) {
                        host_.logger().info("rabbitmq publisher reconnected",
                                            log_fields(nlohmann::json{
                                                {"broker", context_},
                                                {"failed_attempts", failed_attempts_}}));
                    }
                    failed_attempts_ = 0;
                    backoff_ = kMinBackoff;
                } else {
                    if (failed_attempts_ == 0 && !first) {
                        host_.logger().warn(
                            "rabbitmq publisher cannot reconnect yet; retrying",
                            log_fields(nlohmann::json{{"error", status.message()}}));
                    }
                    ++failed_attempts_;
                    next_attempt_ = Clock::now() + backoff_;
                    backoff_ = std::min(backoff_ * 2, settings_.reconnect_max_backoff);
                }
                std::lock_guard<std::mutex> lock(mutex_);
                connected_ = status.is_ok();
                if (!status) {
                    last_error_ = status;
                } else {
                    blocked_ = false;
                }
                first_attempt_done_ = true;
                state_cv_.notify_all();
            }
            if (!link_) {
                // Sleep until the next attempt (or the connector's result, which signals the
                // wake fd), the earliest deadline, or a new operation.
                const auto until =
                    connecting_ ? next_deadline() : std::min(next_attempt_, next_deadline());
                io.unlock();
                pollfd wake{wake_->fd(), POLLIN, 0};
                const auto left =
                    std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
                ::poll(&wake, 1,
                       static_cast<int>(std::clamp<long long>(left.count() + 1, 0, 60000)));
                continue;
            }
        }
        sdk::Status status = service_once();
        if (!status) {
            lose_connection(status);
            continue;
        }
        if (link_->has_buffered()) {
            continue;
        }
        if (!pending_.empty()) {
            // Left queued while blocked; connection.unblocked may just have arrived.
            std::lock_guard<std::mutex> lock(mutex_);
            if (!blocked_) {
                continue;
            }
        }
        // Poll without the link lock, so an idle caller can drive the connection meanwhile
        // (see lead()); this thread only watches the socket and never reads it unlocked.
        const int fd = link_->fd();
        const auto until = link_->wake_by(next_deadline());
        io.unlock();
        pollfd fds[2] = {{fd, POLLIN, 0}, {wake_->fd(), POLLIN, 0}};
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
        ::poll(fds, 2, static_cast<int>(std::clamp<long long>(left.count() + 1, 0, 60000)));
        socket_event = fds[0].revents != 0;
    }
}

sdk::Status RabbitMqQueue::open_link(AmqpLink& link) const {
    if (auto status = link.open(); !status) {
        return status;
    }
    if (auto status = link.open_channel(kPublishChannel, context_ + ": open publish channel");
        !status) {
        return status;
    }
    amqp_confirm_select(link.state(), kPublishChannel);
    if (auto status = reply_status(amqp_get_rpc_reply(link.state()),
                                   context_ + ": enable publisher confirms");
        !status) {
        return status;
    }
    return link.open_channel(kAdminChannel, context_ + ": open declare channel");
}

void RabbitMqQueue::start_connect() {
    connecting_ = true;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        connect_result_.reset();
        opened_link_.reset();
    }
    connector_ = std::thread([this] {
        auto link = std::make_unique<AmqpLink>(settings_, settings_.client_name + " publisher");
        {
            std::lock_guard<std::mutex> lock(mutex_);
            connecting_link_ = link.get();
        }
        sdk::Status status;
        try {
            status = open_link(*link);
        } catch (const std::exception& e) {
            status =
                sdk::Status(sdk::ErrorCode::Internal, context_ + ": connect failed: " + e.what());
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            connecting_link_ = nullptr;
            connect_result_ = status;
            if (status) {
                opened_link_ = std::move(link);
            }
        }
        link.reset();
        wake_->signal();
    });
}

void RabbitMqQueue::join_connector() noexcept {
    if (!connector_.joinable()) {
        return;
    }
    {
        // Stopping: a login still in progress is not worth waiting for.
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ && connecting_link_ != nullptr) {
            connecting_link_->interrupt();
        }
    }
    connector_.join();
    connecting_ = false;
    std::unique_ptr<AmqpLink> unused;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        unused = std::move(opened_link_);
        connect_result_.reset();
    }
    if (unused) {
        unused->close(
            std::min<std::chrono::milliseconds>(settings_.rpc_timeout, std::chrono::seconds(2)));
    }
}

sdk::Status RabbitMqQueue::finish_connect(const sdk::Status& opened) {
    connector_.join();
    connecting_ = false;
    std::unique_ptr<AmqpLink> link;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        link = std::move(opened_link_);
        connect_result_.reset();
    }
    if (!opened) {
        return opened;
    }
    link_ = std::move(link);
    admin_open_ = true;
    next_seq_ = 1;
    assembler_.reset();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        live_link_ = link_.get();
    }
    // The broker may have lost queues (a new node, a wiped mnesia): declare ours again.
    for (const auto& spec : declared_) {
        bool channel_error = false;
        sdk::Status status = declare_on_admin(spec, false, nullptr, &channel_error);
        if (!status && !channel_error) {
            std::lock_guard<std::mutex> lock(mutex_);
            live_link_ = nullptr;
            link_.reset();
            return status;
        }
        if (!status) {
            host_.logger().error(
                "rabbitmq queue could not be declared again after reconnecting",
                log_fields(nlohmann::json{{"queue", spec.name}, {"error", status.message()}}));
        }
    }
    return sdk::Status::ok();
}

void RabbitMqQueue::lose_connection(const sdk::Status& why) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        live_link_ = nullptr;
        connected_ = false;
        last_error_ = why;
    }
    link_.reset();
    admin_open_ = false;
    assembler_.reset();
    // Unconfirmed publishes go out again on the next connection, in their original order.
    // (After a publish-channel error the ones it refused were already failed: see
    // fail_channel_culprits.)
    for (auto it = inflight_.rbegin(); it != inflight_.rend(); ++it) {
        it->second->returned.reset();
        pending_.push_front(it->second);
    }
    inflight_.clear();
    failed_attempts_ = 0;
    backoff_ = kMinBackoff;
    next_attempt_ = Clock::now();
    host_.logger().warn(
        "rabbitmq publisher connection lost; reconnecting",
        log_fields(nlohmann::json{{"error", why.message()},
                                  {"unconfirmed_messages", pending_.size()}}));
}

sdk::Status RabbitMqQueue::execute_pending() {
    bool blocked = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        blocked = blocked_;
    }
    if (blocked) {
        // connection.blocked (resource alarm): a publish would make the broker stop reading
        // this socket, and every later send and RPC would hang. Publishes stay queued until
        // connection.unblocked or their deadline (expire); declares and inspections fail now
        // instead of timing out and tearing the connection down.
        for (auto it = pending_.begin(); it != pending_.end();) {
            if ((*it)->kind == Op::Kind::Publish) {
                ++it;
                continue;
            }
            complete(*it, sdk::Status(sdk::ErrorCode::Unavailable,
                                      context_ + ": " + (*it)->what() +
                                          " not attempted: broker blocked publishing (resource "
                                          "alarm); retry later"));
            it = pending_.erase(it);
        }
        return sdk::Status::ok();
    }
    while (!pending_.empty()) {
        OpPtr op = pending_.front();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (op->abandoned || op->done) {
                pending_.pop_front();
                continue;
            }
            if (op->kind == Op::Kind::Publish) {
                op->sent =
                    true;  // before the bytes leave, so a caller timeout says "may be stored"
            }
        }
        sdk::Status status = op->kind == Op::Kind::Publish ? execute_publish(op) : execute_rpc(op);
        if (!status) {
            return status;  // connection-level: the operation stays queued for the next link
        }
        pending_.pop_front();
    }
    return sdk::Status::ok();
}

sdk::Status RabbitMqQueue::execute_publish(const OpPtr& op) {
    const sdk::Message& message = op->message;
    // validate_message allowed the frame_max asked for; this connection may have been granted
    // less. rabbitmq-c would send the method frame and fail on the header, and every retry would
    // fail alike: fail this publish alone; the connection and the publishes behind it carry on.
    const auto frame_max = static_cast<std::size_t>(amqp_get_frame_max(link_->state()));
    if (auto status = mq::validate_content_header(op->queue, message, frame_max); !status) {
        complete(op, sdk::Status(status.code(), context_ + ": " + status.message()));
        return sdk::Status::ok();
    }
    const std::uint64_t seq = next_seq_;
    std::vector<amqp_table_entry_t> headers;
    const amqp_basic_properties_t props = publish_properties(message, seq, headers);
    // The send has no deadline of its own (a broker that stopped reading, a resource alarm):
    // the watchdog breaks it once this publish's deadline passes, so expire() runs again.
    send_deadline_.store(op->deadline.time_since_epoch().count());
    // mandatory = 1: an unroutable message (no such queue) comes back as basic.return.
    const int sent = amqp_basic_publish(link_->state(), kPublishChannel, amqp_empty_bytes,
                                        as_bytes(op->queue), 1, 0, &props, as_bytes(message.body));
    send_deadline_.store(0);
    link_->note_sent();
    if (sent != AMQP_STATUS_OK) {
        sdk::Status error = library_error(sent, context_ + ": " + op->what());
        if (sent == AMQP_STATUS_TABLE_TOO_BIG) {
            // Should the size check ever miss: no connection could carry it, so it must not
            // be retried. The connection is rebuilt all the same (the method frame is out).
            complete(op, sdk::Status(sdk::ErrorCode::InvalidArgument, error.message()));
        }
        return error;
    }
    ++next_seq_;
    op->returned.reset();
    inflight_[seq] = op;
    return sdk::Status::ok();
}

sdk::Status RabbitMqQueue::ensure_admin_channel() {
    if (admin_open_) {
        return sdk::Status::ok();
    }
    auto status = link_->open_channel(kAdminChannel, context_ + ": reopen declare channel");
    admin_open_ = status.is_ok();
    return status;
}

sdk::Status RabbitMqQueue::declare_on_admin(const sdk::QueueSpec& spec, bool passive,
                                            QueueInfo* info, bool* channel_error) {
    if (!passive && !spec.dead_letter_queue.empty()) {
        if (auto status = ensure_dead_letter_queue(spec.dead_letter_queue, channel_error);
            !status) {
            return status;
        }
    }
    return declare_one(spec, passive, info, channel_error);
}

sdk::Status RabbitMqQueue::ensure_dead_letter_queue(const std::string& name, bool* channel_error) {
    // Declaring it without the arguments it has (x-max-priority...) is refused with 406, and
    // the queue behind it would never be declared. Ours: declared with its own spec again (the
    // broker may have lost it). Someone else's: left as it is, made plain only when missing,
    // as the memory queue does.
    const auto known = std::find_if(declared_.begin(), declared_.end(),
                                    [&](const sdk::QueueSpec& spec) { return spec.name == name; });
    if (known != declared_.end()) {
        // Its own dead-letter queue is not followed: it was made when this one was declared,
        // and a chain of them could loop.
        return declare_one(*known, false, nullptr, channel_error);
    }
    sdk::QueueSpec plain;
    plain.name = name;
    QueueInfo ignored;
    sdk::Status status = declare_one(plain, true, &ignored, channel_error);
    if (status || !*channel_error || status.code() != sdk::ErrorCode::NotFound) {
        return status;
    }
    return declare_one(plain, false, nullptr, channel_error);  // reopens the declare channel
}

sdk::Status RabbitMqQueue::declare_one(const sdk::QueueSpec& spec, bool passive, QueueInfo* info,
                                       bool* channel_error) {
    *channel_error = false;
    if (auto status = ensure_admin_channel(); !status) {
        return status;
    }
    amqp_table_entry_t entries[3];
    int count = 0;
    if (spec.max_priority > 0) {
        entries[count].key = amqp_cstring_bytes("x-max-priority");
        entries[count].value.kind = AMQP_FIELD_KIND_I32;
        entries[count].value.value.i32 = spec.max_priority;
        ++count;
    }
    if (!spec.dead_letter_queue.empty()) {
        entries[count].key = amqp_cstring_bytes("x-dead-letter-exchange");
        entries[count].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[count].value.value.bytes = amqp_empty_bytes;
        ++count;
        entries[count].key = amqp_cstring_bytes("x-dead-letter-routing-key");
        entries[count].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[count].value.value.bytes = as_bytes(spec.dead_letter_queue);
        ++count;
    }
    const amqp_table_t arguments{count, entries};
    const std::string what = passive ? "inspect queue '" + spec.name + "'"
                                     : "declare queue '" + spec.name + "' (max_priority " +
                                           std::to_string(spec.max_priority) +
                                           ", dead_letter_queue '" + spec.dead_letter_queue + "')";
    link_->note_sent();
    auto* ok = amqp_queue_declare(link_->state(), kAdminChannel, as_bytes(spec.name),
                                  passive ? 1 : 0, 1, 0, 0, passive ? amqp_empty_table : arguments);
    const amqp_rpc_reply_t reply = amqp_get_rpc_reply(link_->state());
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
        link_->note_received();
        if (info != nullptr && ok != nullptr) {
            info->messages = ok->message_count;
            info->consumers = ok->consumer_count;
        }
        return sdk::Status::ok();
    }
    if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        // Only the declare channel is gone; confirm the close and reopen it on next use.
        sdk::Status status = close_method_status(reply.reply, context_ + ": " + what);
        link_->send_close_ok(kAdminChannel, false);
        admin_open_ = false;
        *channel_error = true;
        return status;
    }
    return reply_status(reply, context_ + ": " + what);
}

sdk::Status RabbitMqQueue::execute_rpc(const OpPtr& op) {
    bool channel_error = false;
    QueueInfo info;
    sdk::Status status;
    if (op->kind == Op::Kind::Declare) {
        status = declare_on_admin(op->spec, false, nullptr, &channel_error);
        if (status) {
            auto same = [&](const sdk::QueueSpec& known) { return known.name == op->spec.name; };
            declared_.erase(std::remove_if(declared_.begin(), declared_.end(), same),
                            declared_.end());
            declared_.push_back(op->spec);
        }
    } else {
        sdk::QueueSpec probe;
        probe.name = op->queue;
        status = declare_on_admin(probe, true, &info, &channel_error);
    }
    if (!status && !channel_error) {
        return status;  // the connection failed: retry on the next one
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        op->info = info;
    }
    complete(op, status);
    return sdk::Status::ok();
}

sdk::Status RabbitMqQueue::drain_frames() {
    while (true) {
        auto next = link_->next_frame();
        if (!next) {
            return next.status();
        }
        if (!next->has_value()) {
            return sdk::Status::ok();
        }
        sdk::Status status = handle_frame(**next);
        link_->release_buffers();
        if (!status) {
            return status;
        }
    }
}

sdk::Status RabbitMqQueue::handle_frame(const amqp_frame_t& frame) {
    if (frame.frame_type == AMQP_FRAME_HEADER || frame.frame_type == AMQP_FRAME_BODY) {
        auto added = assembler_.add(frame);
        if (!added) {
            return sdk::Status(added.error().code, context_ + ": " + added.error().message);
        }
        if (added->has_value() && (**added).method == AMQP_BASIC_RETURN_METHOD) {
            const ContentMessage& returned = **added;
            if (returned.publish_seq) {
                auto it = inflight_.find(*returned.publish_seq);
                if (it != inflight_.end()) {
                    const std::string reason =
                        std::to_string(returned.reply_code) + " " + returned.reply_text;
                    it->second->returned =
                        returned.reply_code == AMQP_NO_ROUTE
                            ? sdk::Status(sdk::ErrorCode::NotFound,
                                          context_ + ": queue '" + returned.routing_key +
                                              "' does not exist (the broker returned message '" +
                                              returned.message.id + "': " + reason + ")")
                            : sdk::Status(code_for_reply(returned.reply_code),
                                          context_ + ": the broker returned message '" +
                                              returned.message.id + "' for queue '" +
                                              returned.routing_key + "': " + reason);
                }
            }
        }
        return sdk::Status::ok();
    }
    if (frame.frame_type != AMQP_FRAME_METHOD) {
        return sdk::Status::ok();
    }
    const amqp_method_t& method = frame.payload.method;
    switch (method.id) {
        case AMQP_BASIC_ACK_METHOD: {
            const auto* ack = static_cast<const amqp_basic_ack_t*>(method.decoded);
            handle_confirm(ack->delivery_tag, ack->multiple != 0, false);
            return sdk::Status::ok();
        }
        case AMQP_BASIC_NACK_METHOD: {
            const auto* nack = static_cast<const amqp_basic_nack_t*>(method.decoded);
            handle_confirm(nack->delivery_tag, nack->multiple != 0, true);
            return sdk::Status::ok();
        }
        case AMQP_BASIC_RETURN_METHOD:
            assembler_.start(frame);
            return sdk::Status::ok();
        case AMQP_CHANNEL_CLOSE_METHOD: {
            sdk::Status status = close_method_status(
                method, context_ + ": channel " + std::to_string(frame.channel));
            link_->send_close_ok(frame.channel, false);
            if (frame.channel == kAdminChannel) {
                admin_open_ = false;
                return sdk::Status::ok();
            }
            fail_channel_culprits(method, status);
            return status;  // the rest is republished on a new connection
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
            sdk::Status status = close_method_status(method, context_ + ": connection");
            link_->send_close_ok(0, true);
            return status;
        }
        case AMQP_CONNECTION_BLOCKED_METHOD: {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                blocked_ = true;
            }
            host_.logger().warn("rabbitmq broker blocked publishing (resource alarm)",
                                log_fields(nlohmann::json{{"broker", context_}}));
            return sdk::Status::ok();
        }
        case AMQP_CONNECTION_UNBLOCKED_METHOD: {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                blocked_ = false;
            }
            host_.logger().info("rabbitmq broker unblocked publishing",
                                log_fields(nlohmann::json{{"broker", context_}}));
            return sdk::Status::ok();
        }
        default:
            return sdk::Status::ok();
    }
}

void RabbitMqQueue::fail_channel_culprits(const amqp_method_t& method, const sdk::Status& why) {
    const auto* close = static_cast<const amqp_channel_close_t*>(method.decoded);
    const std::string reply_text =
        close->reply_text.len == 0
            ? std::string()
            : std::string(static_cast<const char*>(close->reply_text.bytes), close->reply_text.len);
    std::vector<PublishFacts> facts;
    for (const auto& [seq, op] : inflight_) {
        PublishFacts one;
        one.seq = seq;
        one.body_size = op->message.body.size();
        for (const auto& header : op->message.headers) {
            one.header_names.push_back(header.first);
        }
        facts.push_back(std::move(one));
    }
    const std::vector<std::uint64_t> culprits = channel_error_culprits(facts, reply_text);
    if (!culprits.empty()) {
        // The broker refused these and would again; the others go out on the next connection.
        for (const std::uint64_t seq : culprits) {
            auto it = inflight_.find(seq);
            complete(it->second, sdk::Status(why.code(), why.message() + " (refusing the " +
                                                             it->second->what() + ")"));
            inflight_.erase(it);
        }
        return;
    }
    // The broker named no publish: none of them is known to be refused. Each fails with its own
    // text as retryable; republishing all could loop on the refused one.
    for (auto& [seq, op] : inflight_) {
        complete(op, sdk::Status(sdk::ErrorCode::Unavailable,
                                 context_ + ": the broker closed the publish channel while the " +
                                     op->what() + " awaited its confirm (" + why.message() +
                                     "); it may not have been stored, publish it again"));
    }
    inflight_.clear();
}

void RabbitMqQueue::handle_confirm(std::uint64_t tag, bool multiple, bool nack) {
    auto first = multiple ? inflight_.begin() : inflight_.find(tag);
    auto last = multiple ? inflight_.upper_bound(tag)
                         : (first == inflight_.end() ? first : std::next(first));
    for (auto it = first; it != last; ++it) {
        const OpPtr& op = it->second;
        if (nack) {
            complete(op, sdk::Status(sdk::ErrorCode::Unavailable,
                                     context_ + ": the broker nacked the " + op->what() +
                                         " (it was not stored); publish it again"));
        } else if (op->returned) {
            complete(op, *op->returned);
        } else {
            complete(op, sdk::Status::ok());
        }
    }
    inflight_.erase(first, last);
}

void RabbitMqQueue::expire(Clock::time_point now) {
    sdk::Status outage;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        outage = outage_status();
    }
    for (auto it = pending_.begin(); it != pending_.end();) {
        const OpPtr& op = *it;
        if (now < op->deadline) {
            ++it;
            continue;
        }
        const bool was_sent = [&] {
            std::lock_guard<std::mutex> lock(mutex_);
            return op->sent;
        }();
        if (was_sent) {
            complete(op, sdk::Status(
                             sdk::ErrorCode::Timeout,
                             context_ + ": " + op->what() + " was sent but not confirmed within " +
                                 ms_text(op->timeout) + " (" +
                                 (outage ? std::string("connection open") : outage.message()) +
                                 "); it may still be stored"));
        } else if (!outage) {
            complete(op, sdk::Status(sdk::ErrorCode::Unavailable,
                                     context_ + ": " + op->what() + " not done within " +
                                         ms_text(op->timeout) +
                                         "; nothing was sent: " + outage.message()));
        } else {
            complete(op, sdk::Status(sdk::ErrorCode::Timeout, context_ + ": " + op->what() +
                                                                  " did not run within " +
                                                                  ms_text(op->timeout)));
        }
        it = pending_.erase(it);
    }
    for (auto it = inflight_.begin(); it != inflight_.end();) {
        const OpPtr& op = it->second;
        if (now < op->deadline) {
            ++it;
            continue;
        }
        complete(op, sdk::Status(outage ? sdk::ErrorCode::Timeout : sdk::ErrorCode::Unavailable,
                                 context_ + ": " + op->what() +
                                     " was sent but not confirmed within " + ms_text(op->timeout) +
                                     (outage ? std::string() : " (" + outage.message() + ")") +
                                     "; it may still be stored"));
        it = inflight_.erase(it);
    }
}

Clock::time_point RabbitMqQueue::next_deadline() const {
    auto earliest = Clock::now() + std::chrono::hours(1);
    for (const auto& op : pending_) {
        earliest = std::min(earliest, op->deadline);
    }
    for (const auto& [seq, op] : inflight_) {
        earliest = std::min(earliest, op->deadline);
    }
    return earliest;
}

}  // namespace synergos::plugins::rabbitmq
