// SPDX-License-Identifier: Apache-2.0
#pragma once

/// The behaviour every `mq` backend must show, written once and run against each backend
/// (`memory` in-process, `rabbitmq` against a real broker). A backend test file provides a
/// `Backend` and expands `SYNERGOS_MQ_SCENARIOS(label, tags, factory)`.
///
/// Catch2 assertions are not thread-safe: threads only record results, the test thread checks.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <synergos/sdk/message_queue.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::tests::mq {

using namespace std::chrono_literals;

/// What a scenario needs from a backend.
class Backend {
public:
    virtual ~Backend() = default;
    /// A started queue backend (the test fails when `start` fails). Several may share a broker.
    virtual std::unique_ptr<sdk::MessageQueue> make_queue() = 0;
    /// A queue name unique to this run; the backend deletes the queue when it is destroyed.
    virtual std::string unique_queue(const std::string& base) = 0;
    /// How long to watch for something that must NOT happen (a delivery beyond prefetch).
    virtual std::chrono::milliseconds quiet_period() const { return 300ms; }
    /// How long to wait for something that must happen.
    virtual std::chrono::milliseconds patience() const { return 10s; }
    /// Whether a requeued message always goes back to the head of its queue. RabbitMQ puts it
    /// back "in its original position if possible": rarely, with prefetch 1, the next message
    /// is delivered first (seen once in a CI run).
    virtual bool requeue_keeps_position() const { return true; }
};

/// A random hex suffix for queue names.
inline std::string random_suffix() {
    std::random_device device;
    std::mt19937_64 engine(device());
    std::ostringstream out;
    out << std::hex << engine();
    return out.str();
}

inline sdk::Message make_message(const std::string& id, const std::string& body,
                                 std::uint8_t priority = 0) {
    sdk::Message message;
    message.id = id;
    message.body = body;
    message.priority = priority;
    return message;
}

inline std::string header_value(const sdk::Delivery& delivery, const std::string& key) {
    for (const auto& [name, value] : delivery.message.headers) {
        if (name == key) {
            return value;
        }
    }
    return "<missing>";
}

inline void require_ok(const sdk::Status& status) {
    INFO(sdk::to_string(status.code()) << ": " << status.message());
    REQUIRE(status.is_ok());
}

inline void publish_ok(sdk::MessageQueue& queue, const std::string& name,
                       const sdk::Message& message) {
    require_ok(queue.publish(name, message, 10s));
}

/// Waits for the next delivery; fails the test if none comes within `patience`. Unavailable
/// answers (a backend reconnecting) are retried until the deadline.
inline sdk::Delivery expect_delivery(sdk::Consumer& consumer, std::chrono::milliseconds patience) {
    const auto deadline = std::chrono::steady_clock::now() + patience;
    std::string last_error;
    while (std::chrono::steady_clock::now() < deadline) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        auto result = consumer.receive(std::max(left, 1ms));
        if (!result) {
            last_error = result.error().message;
            REQUIRE(result.error().code == sdk::ErrorCode::Unavailable);
            continue;
        }
        if (result->has_value()) {
            return std::move(**result);
        }
    }
    FAIL("no delivery within " << patience.count() << " ms; last error: " << last_error);
    return {};
}

/// Checks that nothing is delivered within `quiet`.
inline void expect_no_delivery(sdk::Consumer& consumer, std::chrono::milliseconds quiet) {
    auto result = consumer.receive(quiet);
    INFO((result ? std::string("ok") : result.error().message));
    REQUIRE(result.has_value());
    if (result->has_value()) {
        FAIL("unexpected delivery of message '" << (*result)->message.id << "'");
    }
}

// ---------------------------------------------------------------------------------------------

inline void publish_consume_ack(Backend& backend) {
    auto mq = backend.make_queue();
    const std::string name = backend.unique_queue("basic");
    require_ok(mq->declare({name, 0, ""}));
    require_ok(mq->declare({name, 0, ""}));  // idempotent

    sdk::Message first = make_message("job-1", R"({"process":"train","keys":[1,2]})");
    first.headers = {{"process", "train"}, {"grid", "0"}};
    sdk::Message second = make_message("job-2", std::string("binary\0body", 11));
    second.content_type = "application/octet-stream";
    publish_ok(*mq, name, first);
    publish_ok(*mq, name, second);
    {
        auto consumer = mq->consume(name, 10);
        require_ok(consumer.status());
        sdk::Delivery a = expect_delivery(**consumer, backend.patience());
        sdk::Delivery b = expect_delivery(**consumer, backend.patience());
        CHECK(a.message.id == "job-1");
        CHECK(a.message.body == first.body);
        CHECK(a.message.content_type == "application/json");
        CHECK(header_value(a, "process") == "train");
        CHECK(header_value(a, "grid") == "0");
        CHECK_FALSE(a.redelivered);
        CHECK(b.message.id == "job-2");
        CHECK(b.message.body == second.body);
        CHECK(b.message.body.size() == 11);
        CHECK(b.message.content_type == "application/octet-stream");
        CHECK(b.message.headers.empty());
        CHECK(a.tag != b.tag);
        require_ok((*consumer)->ack(a.tag));
        require_ok((*consumer)->ack(b.tag));
        expect_no_delivery(**consumer, backend.quiet_period());
        (*consumer)->close();
    }
    // Acknowledged messages are gone for good: a new consumer gets nothing.
    auto again = mq->consume(name, 10);
    require_ok(again.status());
    expect_no_delivery(**again, backend.quiet_period());
    auto depth = mq->depth(name);
    require_ok(depth.status());
    CHECK(*depth == 0);
    (*again)->close();
    mq->stop();
}

inline void publish_is_confirmed(Backend& backend) {
    auto mq = backend.make_queue();
    const std::string name = backend.unique_queue("confirm");
    require_ok(mq->declare({name, 0, ""}));
    for (int i = 0; i < 5; ++i) {
        publish_ok(*mq, name, make_message("m" + std::to_string(i), "body"));
        // A confirmed publish is in the queue when publish returns.
        auto depth = mq->depth(name);
        require_ok(depth.status());
        CHECK(*depth == static_cast<std::uint64_t>(i + 1));
    }
    // A queue nobody declared: the message cannot be routed, which is an error, not a drop.
    const std::string missing = backend.unique_queue("never-declared");
    sdk::Status status = mq->publish(missing, make_message("lost?", "x"), 5s);
    REQUIRE_FALSE(status.is_ok());
    CHECK(status.code() == sdk::ErrorCode::NotFound);
    CHECK_THAT(status.message(), Catch::Contains(missing));
    // The backend is still healthy after the refusal.
    publish_ok(*mq, name, make_message("after", "body"));
    auto depth = mq->depth(name);
    require_ok(depth.status());
    CHECK(*depth == 6);
    mq->stop();
}

/// Records asynchronous publish outcomes; waits (bounded) for a number of them.
class Outcomes {
public:
    class Callback final : public sdk::PublishCallback {
    public:
        Callback(Outcomes& owner, std::string id) : owner_(owner), id_(std::move(id)) {}
        void on_published(sdk::Status status) noexcept override {
            std::lock_guard<std::mutex> lock(owner_.mutex_);
            owner_.seen_.emplace_back(id_, std::move(status));
            owner_.cv_.notify_all();
        }

    private:
        Outcomes& owner_;
        std::string id_;
    };
    std::shared_ptr<sdk::PublishCallback> callback(const std::string& id) {
        return std::make_shared<Callback>(*this, id);
    }
    std::vector<std::pair<std::string, sdk::Status>> wait_for(std::size_t count,
                                                              std::chrono::milliseconds patience) {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait_for(lock, patience, [&] { return seen_.size() >= count; });
        return seen_;
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<std::pair<std::string, sdk::Status>> seen_;
};

/// Many publishes await their confirms at once and still arrive in call order; each callback
/// runs once; an unroutable message is reported through its callback, a bad one at the call.
inline void publish_async_keeps_order(Backend& backend) {
    auto mq = backend.make_queue();
    auto* async = dynamic_cast<sdk::AsyncMessageQueue*>(mq.get());
    REQUIRE(async != nullptr);
    const std::string name = backend.unique_queue("async");
    require_ok(mq->declare({name, 10, ""}));
    Outcomes outcomes;
    constexpr int kCount = 200;
    for (int i = 0; i < kCount; ++i) {
        const std::string id = "m" + std::to_string(i);
        require_ok(async->publish_async(name, make_message(id, "body", 3), 10s,
                                        outcomes.callback(id)));
    }
    const std::string missing = backend.unique_queue("never-declared");
    require_ok(async->publish_async(missing, make_message("lost?", "x"), 5s,
                                    outcomes.callback("lost?")));
    CHECK(async->publish_async("", make_message("bad", "x"), 5s, outcomes.callback("bad"))
              .code() == sdk::ErrorCode::InvalidArgument);
    CHECK(async->publish_async(name, make_message("x", "x"), 5s, nullptr).code() ==
          sdk::ErrorCode::InvalidArgument);

    auto seen = outcomes.wait_for(kCount + 1, backend.patience());
    REQUIRE(seen.size() == kCount + 1);
    std::set<std::string> confirmed;
    for (const auto& [id, status] : seen) {
        if (id == "lost?") {
            CHECK(status.code() == sdk::ErrorCode::NotFound);
        } else {
            INFO(id << ": " << status.message());
            CHECK(status.is_ok());
            confirmed.insert(id);
        }
    }
    CHECK(confirmed.size() == kCount);
    auto consumer = mq->consume(name, 50);
    require_ok(consumer.status());
    for (int i = 0; i < kCount; ++i) {
        sdk::Delivery d = expect_delivery(**consumer, backend.patience());
        REQUIRE(d.message.id == "m" + std::to_string(i));  // call order, one priority
        require_ok((*consumer)->ack(d.tag));
    }
    (*consumer)->close();
    mq->stop();
}

inline void prefetch_bounds_unacked(Backend& backend) {
    auto mq = backend.make_queue();
    const std::string name = backend.unique_queue("prefetch");
    require_ok(mq->declare({name, 0, ""}));
    for (int i = 0; i < 5; ++i) {
        publish_ok(*mq, name, make_message("m" + std::to_string(i), "body"));
    }
    auto consumer = mq->consume(name, 2);
    require_ok(consumer.status());
    sdk::Delivery a = expect_delivery(**consumer, backend.patience());
    sdk::Delivery b = expect_delivery(**consumer, backend.patience());
    CHECK(a.message.id == "m0");
    CHECK(b.message.id == "m1");
    // Two unacknowledged: the third is withheld until one is settled.
    expect_no_delivery(**consumer, backend.quiet_period());
    require_ok((*consumer)->ack(a.tag));
    sdk::Delivery c = expect_delivery(**consumer, backend.patience());
    CHECK(c.message.id == "m2");
    expect_no_delivery(**consumer, backend.quiet_period());
    require_ok((*consumer)->reject(b.tag, false));
    sdk::Delivery d = expect_delivery(**consumer, backend.patience());
    CHECK(d.message.id == "m3");
    (*consumer)->close();
    mq->stop();
}

/// The TTP's pattern: take a job at prefetch 1; when its work ends (result not yet confirmed)
/// raise the limit so exactly one more comes; lower it again before acking the first.
inline void prefetch_changes_while_consuming(Backend& backend) {
    auto mq = backend.make_queue();
    const std::string name = backend.unique_queue("adjust");
    require_ok(mq->declare({name, 10, ""}));
    for (int i = 0; i < 4; ++i) {
        publish_ok(*mq, name, make_message("low-" + std::to_string(i), "b", 1));
    }
    auto consumer = mq->consume(name, 1);
    require_ok(consumer.status());
    auto* adjustable = dynamic_cast<sdk::AdjustableConsumer*>(consumer->get());
    REQUIRE(adjustable != nullptr);
    CHECK(adjustable->set_prefetch(0).code() == sdk::ErrorCode::InvalidArgument);

    sdk::Delivery first = expect_delivery(**consumer, backend.patience());
    CHECK(first.message.id == "low-0");
    expect_no_delivery(**consumer, backend.quiet_period());  // prefetch 1 holds the rest back
    // Published while the first is held: a raised limit lets the highest priority in next.
    publish_ok(*mq, name, make_message("urgent", "b", 9));
    require_ok(adjustable->set_prefetch(2));
    sdk::Delivery second = expect_delivery(**consumer, backend.patience());
    CHECK(second.message.id == "urgent");
    expect_no_delivery(**consumer, backend.quiet_period());  // two held: the limit
    // Lowered before the ack: the freed slot stays shut while `second` is held.
    require_ok(adjustable->set_prefetch(1));
    require_ok((*consumer)->ack(first.tag));
    expect_no_delivery(**consumer, backend.quiet_period());
    require_ok((*consumer)->ack(second.tag));
    sdk::Delivery third = expect_delivery(**consumer, backend.patience());
    CHECK(third.message.id == "low-1");
    require_ok((*consumer)->ack(third.tag));
    (*consumer)->close();
    CHECK(adjustable->set_prefetch(3).code() == sdk::ErrorCode::FailedPrecondition);
    mq->stop();
}

inline void priority_order(Backend& backend) {
    auto mq = backend.make_queue();
    const std::string name = backend.unique_queue("priority");
    require_ok(mq->declare({name, 10, ""}));
    SECTION("a backlog waiting before the consumer starts is served highest first") {
        publish_ok(*mq, name, make_message("low-0", "b", 1));
        publish_ok(*mq, name, make_message("low-1", "b", 1));
        publish_ok(*mq, name, make_message("mid", "b", 5));
        publish_ok(*mq, name, make_message("high", "b", 9));
        publish_ok(*mq, name, make_message("none", "b", 0));
        publish_ok(*mq, name, make_message("above-max", "b", 200));  // clamped to 10
        auto consumer = mq->consume(name, 1);
        require_ok(consumer.status());
        std::vector<std::string> order;
        for (int i = 0; i < 6; ++i) {
            sdk::Delivery delivery = expect_delivery(**consumer, backend.patience());
            order.push_back(delivery.message.id);
            require_ok((*consumer)->ack(delivery.tag));
        }
        CHECK(order ==
              std::vector<std::string>{"above-max", "high", "mid", "low-0", "low-1", "none"});
        (*consumer)->close();
    }
    SECTION("with a backlog of low-priority jobs, a new high-priority one is taken next") {
        for (int i = 0; i < 5; ++i) {
            publish_ok(*mq, name, make_message("low-" + std::to_string(i), "b", 1));
        }
        auto consumer = mq->consume(name, 1);
        require_ok(consumer.status());
        sdk::Delivery running = expect_delivery(**consumer, backend.patience());
        CHECK(running.message.id == "low-0");
        publish_ok(*mq, name, make_message("urgent", "b", 9));
        require_ok((*consumer)->ack(running.tag));
        sdk::Delivery next = expect_delivery(**consumer, backend.patience());
        CHECK(next.message.id == "urgent");
        CHECK(next.message.priority == 9);
        require_ok((*consumer)->ack(next.tag));
        sdk::Delivery after = expect_delivery(**consumer, backend.patience());
        CHECK(after.message.id == "low-1");
        require_ok((*consumer)->ack(after.tag));
        (*consumer)->close();
    }
    mq->stop();
}

inline void reject_requeue_sets_redelivered(Backend& backend) {
    auto mq = backend.make_queue();
    const std::string name = backend.unique_queue("requeue");
    require_ok(mq->declare({name, 0, ""}));
    publish_ok(*mq, name, make_message("job", "body"));
    publish_ok(*mq, name, make_message("behind", "body"));
    auto consumer = mq->consume(name, 1);
    require_ok(consumer.status());
    sdk::Delivery first = expect_delivery(**consumer, backend.patience());
    CHECK(first.message.id == "job");
    CHECK_FALSE(first.redelivered);
    require_ok((*consumer)->reject(first.tag, true));
    // Back in the queue, flagged: at its head where the backend promises that.
    sdk::Delivery again = expect_delivery(**consumer, backend.patience());
    bool behind_seen = false;
    if (again.message.id == "behind" && !backend.requeue_keeps_position()) {
        CHECK_FALSE(again.redelivered);
        require_ok((*consumer)->ack(again.tag));
        behind_seen = true;
        again = expect_delivery(**consumer, backend.patience());
    }
    CHECK(again.message.id == "job");
    CHECK(again.message.body == "body");
    CHECK(again.redelivered);
    // The old tag is settled: using it again is refused and the consumer keeps working.
    sdk::Status stale = (*consumer)->ack(first.tag);
    CHECK_FALSE(stale.is_ok());
    require_ok((*consumer)->ack(again.tag));
    if (!behind_seen) {
        sdk::Delivery behind = expect_delivery(**consumer, backend.patience());
        CHECK(behind.message.id == "behind");
        CHECK_FALSE(behind.redelivered);
        require_ok((*consumer)->ack(behind.tag));
    }
    (*consumer)->close();
    mq->stop();
}

inline void reject_dead_letters(Backend& backend) {
    auto mq = backend.make_queue();
    const std::string name = backend.unique_queue("jobs");
    const std::string dlq = backend.unique_queue("jobs-dead");
    require_ok(mq->declare({name, 5, dlq}));
    publish_ok(*mq, name, make_message("poison", R"({"bad":true})", 3));
    {
        auto consumer = mq->consume(name, 1);
        require_ok(consumer.status());
        sdk::Delivery delivery = expect_delivery(**consumer, backend.patience());
        require_ok((*consumer)->reject(delivery.tag, false));
        // Not requeued on the source queue.
        expect_no_delivery(**consumer, backend.quiet_period());
        (*consumer)->close();
    }
    auto dead = mq->consume(dlq, 1);
    require_ok(dead.status());
    sdk::Delivery delivery = expect_delivery(**dead, backend.patience());
    CHECK(delivery.message.id == "poison");
    CHECK(delivery.message.body == R"({"bad":true})");
    CHECK_FALSE(delivery.redelivered);
    CHECK(header_value(delivery, "x-first-death-reason") == "rejected");
    CHECK(header_value(delivery, "x-first-death-queue") == name);
    require_ok((*dead)->ack(delivery.tag));
    (*dead)->close();

    // Without a dead-letter queue the message is dropped, as documented.
    const std::string plain = backend.unique_queue("plain");
    require_ok(mq->declare({plain, 0, ""}));
    publish_ok(*mq, plain, make_message("dropped", "x"));
    {
        auto consumer = mq->consume(plain, 1);
        require_ok(consumer.status());
        sdk::Delivery dropped = expect_delivery(**consumer, backend.patience());
        require_ok((*consumer)->reject(dropped.tag, false));
        (*consumer)->close();
    }
    auto after = mq->consume(plain, 1);
    require_ok(after.status());
    expect_no_delivery(**after, backend.quiet_period());
    (*after)->close();
    mq->stop();
}

inline void close_returns_unacked(Backend& backend) {
    auto mq = backend.make_queue();
    const std::string name = backend.unique_queue("close");
    require_ok(mq->declare({name, 0, ""}));
    publish_ok(*mq, name, make_message("a", "1"));
    publish_ok(*mq, name, make_message("b", "2"));
    publish_ok(*mq, name, make_message("c", "3"));
    auto first = mq->consume(name, 10);
    require_ok(first.status());
    sdk::Delivery a = expect_delivery(**first, backend.patience());
    sdk::Delivery b = expect_delivery(**first, backend.patience());
    sdk::Delivery c = expect_delivery(**first, backend.patience());
    require_ok((*first)->ack(b.tag));
    (*first)->close();
    // Settling on a closed consumer is refused.
    sdk::Status late = (*first)->ack(a.tag);
    CHECK(late.code() == sdk::ErrorCode::FailedPrecondition);
    auto second = mq->consume(name, 10);
    require_ok(second.status());
    sdk::Delivery a2 = expect_delivery(**second, backend.patience());
    sdk::Delivery c2 = expect_delivery(**second, backend.patience());
    CHECK(a2.message.id == "a");
    CHECK(a2.redelivered);
    CHECK(c2.message.id == "c");
    CHECK(c2.redelivered);
    require_ok((*second)->ack(a2.tag));
    require_ok((*second)->ack(c2.tag));
    expect_no_delivery(**second, backend.quiet_period());
    (*second)->close();
    (void)c;
    mq->stop();
}

inline void receive_times_out(Backend& backend) {
    auto mq = backend.make_queue();
    const std::string name = backend.unique_queue("empty");
    require_ok(mq->declare({name, 0, ""}));
    auto consumer = mq->consume(name, 1);
    require_ok(consumer.status());
    const auto begin = std::chrono::steady_clock::now();
    auto result = (*consumer)->receive(400ms);
    const auto elapsed = std::chrono::steady_clock::now() - begin;
    require_ok(result.status());
    CHECK_FALSE(result->has_value());
    CHECK(elapsed >= 350ms);
    CHECK(elapsed < 5s);
    // A zero timeout returns at once.
    const auto zero_begin = std::chrono::steady_clock::now();
    auto zero = (*consumer)->receive(0ms);
    require_ok(zero.status());
    CHECK_FALSE(zero->has_value());
    CHECK(std::chrono::steady_clock::now() - zero_begin < 1s);
    // A message published by another thread while a receive waits wakes it up (well before
    // the receive's own timeout).
    sdk::Status published;
    std::thread publisher([&] { published = mq->publish(name, make_message("late", "x"), 10s); });
    const auto wait_begin = std::chrono::steady_clock::now();
    auto woken = (*consumer)->receive(60s);
    const auto waited = std::chrono::steady_clock::now() - wait_begin;
    publisher.join();
    require_ok(published);
    require_ok(woken.status());
    REQUIRE(woken->has_value());
    CHECK(waited < 20s);
    CHECK((*woken)->message.id == "late");
    require_ok((*consumer)->ack((*woken)->tag));
    // "Wait forever" timeouts are accepted (no overflow of now + timeout).
    require_ok(mq->publish(name, make_message("forever", "x"), std::chrono::milliseconds::max()));
    auto forever = (*consumer)->receive(std::chrono::milliseconds::max());
    require_ok(forever.status());
    REQUIRE(forever->has_value());
    CHECK((*forever)->message.id == "forever");
    require_ok((*consumer)->ack((*forever)->tag));
    (*consumer)->close();
    mq->stop();
}

inline void concurrent_publishers(Backend& backend) {
    auto mq = backend.make_queue();
    const std::string name = backend.unique_queue("concurrent");
    require_ok(mq->declare({name, 0, ""}));
    constexpr int kThreads = 4;
    constexpr int kPerThread = 50;
    std::vector<std::vector<sdk::Status>> results(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) {
                const std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
                results[t].push_back(mq->publish(name, make_message(id, id), 30s));
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    for (const auto& per_thread : results) {
        for (const auto& status : per_thread) {
            require_ok(status);
        }
    }
    auto depth = mq->depth(name);
    require_ok(depth.status());
    CHECK(*depth == kThreads * kPerThread);
    auto consumer = mq->consume(name, 20);
    require_ok(consumer.status());
    std::set<std::string> seen;
    std::vector<int> next_per_thread(kThreads, 0);
    bool in_order = true;
    for (int i = 0; i < kThreads * kPerThread; ++i) {
        sdk::Delivery delivery = expect_delivery(**consumer, backend.patience());
        CHECK(delivery.message.body == delivery.message.id);
        seen.insert(delivery.message.id);
        const int thread = delivery.message.id[1] - '0';
        const int index = std::stoi(delivery.message.id.substr(delivery.message.id.find('-') + 1));
        in_order = in_order && index == next_per_thread[thread];
        next_per_thread[thread] = index + 1;
        require_ok((*consumer)->ack(delivery.tag));
    }
    CHECK(seen.size() == static_cast<std::size_t>(kThreads * kPerThread));
    CHECK(in_order);  // each publisher's own messages keep their order
    expect_no_delivery(**consumer, backend.quiet_period());
    (*consumer)->close();
    mq->stop();
}

inline void consumer_count_tracks_consumers(Backend& backend) {
    auto mq = backend.make_queue();
    const std::string name = backend.unique_queue("count");
    require_ok(mq->declare({name, 0, ""}));
    auto count = [&] {
        auto result = mq->consumer_count(name);
        require_ok(result.status());
        return *result;
    };
    CHECK(count() == 0);
    auto one = mq->consume(name, 1);
    auto two = mq->consume(name, 1);
    require_ok(one.status());
    require_ok(two.status());
    CHECK(count() == 2);
    (*one)->close();
    CHECK(count() == 1);
    two->reset();  // destroying a consumer closes it
    CHECK(count() == 0);
    mq->stop();
}

inline void bad_input_is_refused(Backend& backend) {
    auto mq = backend.make_queue();
    const std::string name = backend.unique_queue("input");
    const std::string missing = backend.unique_queue("missing");
    require_ok(mq->declare({name, 4, ""}));

    CHECK(mq->declare({"", 0, ""}).code() == sdk::ErrorCode::InvalidArgument);
    CHECK(mq->declare({"amq.reserved", 0, ""}).code() == sdk::ErrorCode::InvalidArgument);
    CHECK(mq->declare({"has space", 0, ""}).code() == sdk::ErrorCode::InvalidArgument);
    CHECK(mq->declare({std::string(256, 'q'), 0, ""}).code() == sdk::ErrorCode::InvalidArgument);
    CHECK(mq->declare({name, 4, name}).code() == sdk::ErrorCode::InvalidArgument);

    // Conflicting arguments on an existing queue: refused, the queue is unchanged.
    sdk::Status conflict = mq->declare({name, 7, ""});
    CHECK(conflict.code() == sdk::ErrorCode::FailedPrecondition);
    CHECK_THAT(conflict.message(), Catch::Contains(name));
    require_ok(mq->declare({name, 4, ""}));

    sdk::Message bad_header = make_message("h", "x");
    bad_header.headers = {{"x-synergos-publish-seq", "1"}};
    CHECK(mq->publish(name, bad_header, 5s).code() == sdk::ErrorCode::InvalidArgument);
    CHECK(mq->publish(name, make_message(std::string(300, 'i'), "x"), 5s).code() ==
          sdk::ErrorCode::InvalidArgument);
    CHECK(mq->publish(name, make_message("t", "x"), 0ms).code() == sdk::ErrorCode::InvalidArgument);
    // A body larger than a broker takes (128 MiB): refused by every backend alike, naming it.
    const sdk::Status too_big =
        mq->publish(name, make_message("big", std::string(128U * 1024U * 1024U + 1U, 'b')), 5s);
    CHECK(too_big.code() == sdk::ErrorCode::InvalidArgument);
    CHECK_THAT(too_big.message(), Catch::Contains("body of message 'big'"));

    CHECK(mq->consume(name, 0).status().code() == sdk::ErrorCode::InvalidArgument);
    auto no_queue = mq->consume(missing, 1);
    REQUIRE_FALSE(no_queue.has_value());
    CHECK(no_queue.error().code == sdk::ErrorCode::NotFound);
    CHECK_THAT(no_queue.error().message, Catch::Contains(missing));
    auto no_depth = mq->depth(missing);
    REQUIRE_FALSE(no_depth.has_value());
    CHECK(no_depth.error().code == sdk::ErrorCode::NotFound);
    CHECK(mq->consumer_count(missing).status().code() == sdk::ErrorCode::NotFound);

    // Unknown tags are refused without disturbing the consumer.
    auto consumer = mq->consume(name, 1);
    require_ok(consumer.status());
    CHECK((*consumer)->ack(987654321).code() == sdk::ErrorCode::InvalidArgument);
    CHECK((*consumer)->reject(987654321, true).code() == sdk::ErrorCode::InvalidArgument);
    publish_ok(*mq, name, make_message("still-works", "x"));
    sdk::Delivery delivery = expect_delivery(**consumer, backend.patience());
    CHECK(delivery.message.id == "still-works");
    require_ok((*consumer)->ack(delivery.tag));
    CHECK((*consumer)->ack(delivery.tag).code() == sdk::ErrorCode::InvalidArgument);
    (*consumer)->close();
    mq->stop();

    // After stop every call fails cleanly.
    CHECK(mq->publish(name, make_message("late", "x"), 1s).code() ==
          sdk::ErrorCode::FailedPrecondition);
}

inline void oversized_headers_are_refused(Backend& backend) {
    // AMQP never splits a content header: headers that do not fit one frame (131072 bytes) are
    // refused up front by every backend alike, and the queue carries on.
    auto mq = backend.make_queue();
    const std::string name = backend.unique_queue("headers");
    require_ok(mq->declare({name, 0, ""}));

    sdk::Message big = make_message("big-headers", "x");
    big.headers = {{"trace", std::string(140 * 1024, 't')}};
    const sdk::Status refused = mq->publish(name, big, 5s);
    CHECK(refused.code() == sdk::ErrorCode::InvalidArgument);
    CHECK_THAT(refused.message(), Catch::Contains("'big-headers'"));
    CHECK_THAT(refused.message(), Catch::Contains("frame_max 131072"));
    CHECK_THAT(refused.message(), Catch::Contains("content header of"));

    // Many small headers add up the same way.
    sdk::Message many = make_message("many-headers", "x");
    for (int i = 0; i < 3000; ++i) {
        many.headers.emplace_back("h" + std::to_string(i), std::string(40, 'v'));
    }
    CHECK(mq->publish(name, many, 5s).code() == sdk::ErrorCode::InvalidArgument);
    auto* async = dynamic_cast<sdk::AsyncMessageQueue*>(mq.get());
    if (async != nullptr) {
        Outcomes outcomes;
        CHECK(async->publish_async(name, big, 5s, outcomes.callback("big")).code() ==
              sdk::ErrorCode::InvalidArgument);
    }

    // Headers that fit are carried, and so is what comes after.
    sdk::Message fits = make_message("fits", "y");
    fits.headers = {{"trace", std::string(100 * 1024, 't')}};
    publish_ok(*mq, name, fits);
    publish_ok(*mq, name, make_message("after", "z"));
    auto consumer = mq->consume(name, 5);
    require_ok(consumer.status());
    sdk::Delivery first = expect_delivery(**consumer, backend.patience());
    CHECK(first.message.id == "fits");
    CHECK(header_value(first, "trace") == std::string(100 * 1024, 't'));
    sdk::Delivery second = expect_delivery(**consumer, backend.patience());
    CHECK(second.message.id == "after");
    require_ok((*consumer)->ack(first.tag));
    require_ok((*consumer)->ack(second.tag));
    (*consumer)->close();
    mq->stop();
}

inline void dead_letter_queue_keeps_its_arguments(Backend& backend) {
    // A dead-letter queue declared on its own first (with priorities) is used as it is when a
    // queue names it, never declared again without its arguments.
    auto mq = backend.make_queue();
    const std::string dlq = backend.unique_queue("dead-prio");
    const std::string name = backend.unique_queue("jobs-to-prio");
    require_ok(mq->declare({dlq, 5, ""}));
    require_ok(mq->declare({name, 0, dlq}));
    require_ok(mq->declare({name, 0, dlq}));  // idempotent
    require_ok(mq->declare({dlq, 5, ""}));    // unchanged
    publish_ok(*mq, name, make_message("poison", "x"));
    {
        auto consumer = mq->consume(name, 1);
        require_ok(consumer.status());
        sdk::Delivery delivery = expect_delivery(**consumer, backend.patience());
        require_ok((*consumer)->reject(delivery.tag, false));
        (*consumer)->close();
    }
    auto dead = mq->consume(dlq, 1);
    require_ok(dead.status());
    sdk::Delivery delivery = expect_delivery(**dead, backend.patience());
    CHECK(delivery.message.id == "poison");
    require_ok((*dead)->ack(delivery.tag));
    (*dead)->close();
    mq->stop();
}

}  // namespace synergos::tests::mq

/// Expands the shared scenarios as Catch2 test cases. `label` is a string literal naming the
/// backend, `tags` a tag string literal, `factory` an expression returning
/// `std::unique_ptr<Backend>`.
#define SYNERGOS_MQ_SCENARIO(label, tags, factory, title, scenario) \
    TEST_CASE(label " " title, tags) {                              \
        auto backend = (factory)();                                 \
        ::synergos::tests::mq::scenario(*backend);                  \
    }

#define SYNERGOS_MQ_SCENARIOS(label, tags, factory)                                                \
    SYNERGOS_MQ_SCENARIO(label, tags, factory, "delivers a published message until it is acked",   \
                         publish_consume_ack)                                                      \
    SYNERGOS_MQ_SCENARIO(label, tags, factory,                                                     \
                         "confirms each publish and refuses an unroutable one",                    \
                         publish_is_confirmed)                                                     \
    SYNERGOS_MQ_SCENARIO(label, tags, factory,                                                     \
                         "publishes asynchronously in call order, one callback each",             \
                         publish_async_keeps_order)                                                \
    SYNERGOS_MQ_SCENARIO(label, tags, factory, "never has more than prefetch deliveries unacked",  \
                         prefetch_bounds_unacked)                                                  \
    SYNERGOS_MQ_SCENARIO(label, tags, factory, "delivers higher priorities first", priority_order) \
    SYNERGOS_MQ_SCENARIO(label, tags, factory,                                                     \
                         "changes its prefetch while consuming, in order with acks",              \
                         prefetch_changes_while_consuming)                                         \
    SYNERGOS_MQ_SCENARIO(label, tags, factory,                                                     \
                         "redelivers a requeued message flagged redelivered",                      \
                         reject_requeue_sets_redelivered)                                          \
    SYNERGOS_MQ_SCENARIO(label, tags, factory, "dead-letters a message rejected without requeue",  \
                         reject_dead_letters)                                                      \
    SYNERGOS_MQ_SCENARIO(label, tags, factory,                                                     \
                         "returns unacked deliveries when a consumer closes",                      \
                         close_returns_unacked)                                                    \
    SYNERGOS_MQ_SCENARIO(label, tags, factory, "times out a receive on an empty queue",            \
                         receive_times_out)                                                        \
    SYNERGOS_MQ_SCENARIO(label, tags, factory, "keeps every message of concurrent publishers",     \
                         concurrent_publishers)                                                    \
    SYNERGOS_MQ_SCENARIO(label, tags, factory, "counts the consumers of a queue",                  \
                         consumer_count_tracks_consumers)                                          \
    SYNERGOS_MQ_SCENARIO(label, tags, factory, "refuses bad input with a clear error",             \
                         bad_input_is_refused)                                                     \
    SYNERGOS_MQ_SCENARIO(label, tags, factory, "refuses headers that do not fit one frame",        \
                         oversized_headers_are_refused)                                            \
    SYNERGOS_MQ_SCENARIO(label, tags, factory,                                                     \
                         "uses a dead-letter queue declared with arguments as it is",              \
                         dead_letter_queue_keeps_its_arguments)
