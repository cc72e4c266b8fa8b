// SPDX-License-Identifier: Apache-2.0
// rabbitmq fault handling against a real broker, through the test proxy: an I/O thread that must
// survive a bad log line, consume racing stop, publish-channel errors, heartbeats during a long
// upload, connection.blocked, and deadlines kept while a reconnect hangs.

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

#include <synergos/sdk/testing/fake_host.hpp>

#include "broker_fixture.hpp"
#include "plugins/mq/memory/mq_scenarios.hpp"
#include "test_proxy.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace sdk = synergos::sdk;
namespace mq = synergos::tests::mq;

/// One publish_async outcome: counts calls (the contract is exactly one) and when it came.
class Outcome final : public sdk::PublishCallback {
public:
    void on_published(sdk::Status status) noexcept override {
        std::lock_guard<std::mutex> lock(mutex_);
        ++calls_;
        status_ = std::move(status);
        at_ = Clock::now();
        cv_.notify_all();
    }
    /// The status, or nullopt when no call came within `patience`.
    std::optional<sdk::Status> wait(std::chrono::milliseconds patience) {
        std::unique_lock<std::mutex> lock(mutex_);
        if (!cv_.wait_for(lock, patience, [&] { return calls_ > 0; })) {
            return std::nullopt;
        }
        return status_;
    }
    int calls() {
        std::lock_guard<std::mutex> lock(mutex_);
        return calls_;
    }
    Clock::time_point at() {
        std::lock_guard<std::mutex> lock(mutex_);
        return at_;
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    int calls_ = 0;
    sdk::Status status_;
    Clock::time_point at_;
};

sdk::AsyncMessageQueue& async_of(sdk::MessageQueue& queue) {
    auto* async = dynamic_cast<sdk::AsyncMessageQueue*>(&queue);
    REQUIRE(async != nullptr);
    return *async;
}

std::string log_text(mq::RabbitBackend& backend) {
    std::string text;
    for (const auto& line : backend.host().captured().lines()) {
        text += "\n  [" + std::string(sdk::to_string(line.level)) + "] " + line.event + " " +
                line.fields_json;
    }
    return text;
}

/// Polls `done` every 20 ms for at most `patience`.
template <typename Predicate>
bool eventually(Predicate done, std::chrono::milliseconds patience) {
    const auto deadline = Clock::now() + patience;
    while (!done()) {
        if (Clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(20ms);
    }
    return true;
}

std::string patterned_body(std::size_t size) {
    std::string body(size, '\0');
    for (std::size_t i = 0; i < size; ++i) {
        body[i] = static_cast<char>((i * 131) % 251);
    }
    return body;
}

}  // namespace

TEST_CASE("rabbitmq keeps its I/O thread when a send of a non-UTF-8 message id fails",
          "[rabbitmq][mq][fault]") {
    mq::RabbitBackend direct;
    mq::TestProxy proxy(direct.url().host, direct.url().port);
    mq::RabbitBackend backend(mq::Extra{{"port", std::to_string(proxy.port())}});
    auto queue = backend.make_queue();
    const std::string name = direct.unique_queue("bad-utf8");
    mq::require_ok(queue->declare({name, 0, ""}));

    // The proxy stops reading, so a body larger than the socket buffers blocks in the send; the
    // cut then fails that send, and its error (which quotes the id "\xff") reaches the log.
    proxy.freeze(true);
    auto outcome = std::make_shared<Outcome>();
    mq::require_ok(async_of(*queue).publish_async(
        name, mq::make_message("\xff", patterned_body(12 * 1024 * 1024)), 60s, outcome));
    std::this_thread::sleep_for(1s);
    CHECK(outcome->calls() == 0);
    proxy.cut();
    proxy.freeze(false);

    INFO("plugin log: " << log_text(backend));
    auto status = outcome->wait(60s);
    REQUIRE(status.has_value());
    mq::require_ok(*status);  // republished on the new connection
    mq::require_ok(queue->publish(name, mq::make_message("after", "x"), 20s));
    CHECK(*queue->depth(name) == 2);
    CHECK(outcome->calls() == 1);
    queue->stop();
}

TEST_CASE("rabbitmq refuses headers too large for a frame without touching the connection",
          "[rabbitmq][mq][fault]") {
    // rabbitmq-c would send the basic.publish method, fail to encode the content header, and the
    // publish would be retried on new connection after new connection until its deadline, holding
    // back everything queued behind it.
    mq::RabbitBackend direct;
    mq::TestProxy proxy(direct.url().host, direct.url().port);
    mq::RabbitBackend backend(mq::Extra{{"port", std::to_string(proxy.port())}});
    auto queue = backend.make_queue();
    const std::string name = direct.unique_queue("big-headers");
    mq::require_ok(queue->declare({name, 0, ""}));
    const int connections = proxy.accepted();

    auto before = std::make_shared<Outcome>();
    auto after = std::make_shared<Outcome>();
    mq::require_ok(
        async_of(*queue).publish_async(name, mq::make_message("before", "a"), 20s, before));
    sdk::Message big = mq::make_message("big-headers", "b");
    big.headers = {{"trace", std::string(200 * 1024, 't')}};
    const auto begin = Clock::now();
    const sdk::Status refused = async_of(*queue).publish_async(name, big, 20s, after);
    CHECK(Clock::now() - begin < 1s);  // up front, not after retries
    CHECK(refused.code() == sdk::ErrorCode::InvalidArgument);
    CHECK_THAT(refused.message(), Catch::Contains("frame_max 131072"));
    CHECK_THAT(refused.message(), Catch::Contains("'big-headers'"));
    CHECK(queue->publish(name, big, 20s).code() == sdk::ErrorCode::InvalidArgument);
    mq::require_ok(
        async_of(*queue).publish_async(name, mq::make_message("after", "c"), 20s, after));

    INFO("plugin log: " << log_text(backend));
    auto first = before->wait(20s);
    REQUIRE(first.has_value());
    mq::require_ok(*first);
    auto last = after->wait(20s);
    REQUIRE(last.has_value());
    mq::require_ok(*last);
    CHECK(after->calls() == 1);
    CHECK(*queue->depth(name) == 2);
    CHECK(proxy.accepted() == connections);
    CHECK_FALSE(backend.host().captured().contains("connection lost"));
    queue->stop();
}

TEST_CASE("rabbitmq consume racing stop leaves no consumer running", "[rabbitmq][mq][fault]") {
    mq::RabbitBackend direct;
    auto observer = direct.make_queue();
    mq::TestProxy proxy(direct.url().host, direct.url().port);
    mq::RabbitBackend backend(
        mq::Extra{{"port", std::to_string(proxy.port())}, {"connect_timeout_ms", "20000"}});
    auto queue = backend.make_queue();
    const std::string name = direct.unique_queue("consume-stop");
    mq::require_ok(queue->declare({name, 0, ""}));

    // The consumer's connection is held by the proxy, so consume() waits in its login while
    // stop() runs; then the login proceeds.
    proxy.stall_new(true);
    std::optional<sdk::Result<std::unique_ptr<sdk::Consumer>>> consumed;
    std::thread consumer_thread([&] { consumed.emplace(queue->consume(name, 1)); });
    REQUIRE(eventually([&] { return proxy.accepted() >= 2; }, 10s));
    queue->stop();
    proxy.stall_new(false);
    consumer_thread.join();

    REQUIRE(consumed.has_value());
    INFO("consume: " << consumed->status().message());
    CHECK(consumed->status().code() == sdk::ErrorCode::FailedPrecondition);
    CHECK_THAT(consumed->status().message(), Catch::Contains(name));
    CHECK_THAT(consumed->status().message(), Catch::Contains("stopped"));
    // Nothing subscribes behind the caller's back.
    CHECK(*observer->consumer_count(name) == 0);
    consumed.reset();
    observer->stop();
}

TEST_CASE("rabbitmq fails only the publish a publish-channel error refers to",
          "[rabbitmq][mq][fault]") {
    mq::RabbitBackend direct;
    mq::TestProxy proxy(direct.url().host, direct.url().port);
    mq::RabbitBackend backend(mq::Extra{{"port", std::to_string(proxy.port())}});
    auto queue = backend.make_queue();
    const std::string name = direct.unique_queue("channel-error");
    mq::require_ok(queue->declare({name, 0, ""}));

    // A "CC" header sent as a string is refused by the broker (it must be an array of routing
    // keys): 406 closes the publish channel. Both publishes are written before the broker reads
    // either (the proxy is frozen), so the good one is in flight, unconfirmed, at the close.
    proxy.freeze(true);
    sdk::Message bad = mq::make_message("refused", "x");
    bad.headers.emplace_back("CC", "not-a-list");
    auto refused = std::make_shared<Outcome>();
    auto innocent = std::make_shared<Outcome>();
    mq::require_ok(async_of(*queue).publish_async(name, bad, 30s, refused));
    mq::require_ok(
        async_of(*queue).publish_async(name, mq::make_message("innocent", "y"), 30s, innocent));
    std::this_thread::sleep_for(300ms);
    proxy.freeze(false);

    INFO("plugin log: " << log_text(backend));
    auto bad_status = refused->wait(30s);
    REQUIRE(bad_status.has_value());
    CHECK(bad_status->code() == sdk::ErrorCode::FailedPrecondition);
    CHECK_THAT(bad_status->message(), Catch::Contains("refused"));
    CHECK_THAT(bad_status->message(), Catch::Contains("CC"));
    auto good_status = innocent->wait(30s);
    REQUIRE(good_status.has_value());
    mq::require_ok(*good_status);
    CHECK(*queue->depth(name) == 1);
    queue->stop();
}

TEST_CASE("rabbitmq counts heartbeats received during a long upload as traffic",
          "[rabbitmq][mq][fault]") {
    mq::RabbitBackend direct;
    mq::TestProxy proxy(direct.url().host, direct.url().port);
    proxy.limit_upload(1024 * 1024);  // 1 MB/s towards the broker
    // 2 s heartbeats (a 1 s connection can drop on a 2 s pause of the broker alone); the
    // send outlasts three intervals, the plugin's limit for silence from the broker.
    mq::RabbitBackend backend(
        mq::Extra{{"port", std::to_string(proxy.port())}, {"heartbeat_s", "2"}});
    auto queue = backend.make_queue();
    const std::string name = direct.unique_queue("slow-upload");
    mq::require_ok(queue->declare({name, 0, ""}));
    const int connections = proxy.accepted();

    // The send blocks for seconds (more than three heartbeat intervals) while the broker's
    // heartbeats arrive and are swallowed by rabbitmq-c.
    const auto begin = Clock::now();
    mq::require_ok(queue->publish(name, mq::make_message("big", patterned_body(8 * 1024 * 1024)),
                                  60s));
    INFO("plugin log: " << log_text(backend));
    CHECK(Clock::now() - begin > 6s);  // the link really was slow (three intervals)
    CHECK(proxy.accepted() == connections);
    CHECK_FALSE(backend.host().captured().contains("connection lost"));
    CHECK(*direct.make_queue()->depth(name) == 1);  // once, not republished
    queue->stop();
}

TEST_CASE("rabbitmq holds publishes while the broker blocks the connection",
          "[rabbitmq][mq][fault]") {
    mq::RabbitBackend direct;
    mq::TestProxy proxy(direct.url().host, direct.url().port);
    mq::RabbitBackend backend(mq::Extra{{"port", std::to_string(proxy.port())}});
    auto queue = backend.make_queue();
    const std::string name = direct.unique_queue("blocked");
    mq::require_ok(queue->declare({name, 0, ""}));

    // The proxy plays the broker's resource alarm (the real one is a global broker setting).
    proxy.inject_to_client(mq::TestProxy::connection_blocked_frame("low on memory"));
    REQUIRE(eventually([&] { return backend.host().captured().contains("blocked publishing"); },
                       10s));
    INFO("plugin log: " << log_text(backend));

    auto held = std::make_shared<Outcome>();
    const auto begin = Clock::now();
    mq::require_ok(
        async_of(*queue).publish_async(name, mq::make_message("held", "x"), 500ms, held));
    auto status = held->wait(10s);
    REQUIRE(status.has_value());
    CHECK(held->at() - begin < 5s);  // by its 500 ms timeout, not when the block lifts
    CHECK(status->code() == sdk::ErrorCode::Unavailable);
    CHECK_THAT(status->message(), Catch::Contains("blocked publishing"));
    CHECK_THAT(status->message(), Catch::Contains("nothing was sent"));

    // Admin RPCs fail fast instead of timing out and tearing the connection down.
    const auto rpc_begin = Clock::now();
    auto depth = queue->depth(name);
    CHECK(Clock::now() - rpc_begin < 5s);  // at once, not the RPC timeout
    CHECK(depth.status().code() == sdk::ErrorCode::Unavailable);
    CHECK_THAT(depth.status().message(), Catch::Contains("blocked"));

    proxy.inject_to_client(mq::TestProxy::connection_unblocked_frame());
    mq::require_ok(queue->publish(name, mq::make_message("after", "y"), 20s));
    CHECK(*direct.make_queue()->depth(name) == 1);  // "held" was never sent
    CHECK_FALSE(backend.host().captured().contains("connection lost"));
    queue->stop();
}

TEST_CASE("rabbitmq fails an async publish by its timeout while a reconnect hangs",
          "[rabbitmq][mq][fault]") {
    mq::RabbitBackend direct;
    mq::TestProxy proxy(direct.url().host, direct.url().port);
    mq::RabbitBackend backend(
        mq::Extra{{"port", std::to_string(proxy.port())}, {"connect_timeout_ms", "10000"}});
    auto queue = backend.make_queue();
    const std::string name = direct.unique_queue("hung-reconnect");
    mq::require_ok(queue->declare({name, 0, ""}));

    // The next connection is accepted but never answered: the login waits connect_timeout_ms.
    proxy.stall_new(true);
    const int before = proxy.accepted();
    proxy.cut();
    REQUIRE(eventually([&] { return proxy.accepted() > before; }, 10s));

    auto outcome = std::make_shared<Outcome>();
    const auto begin = Clock::now();
    mq::require_ok(
        async_of(*queue).publish_async(name, mq::make_message("late?", "x"), 500ms, outcome));
    auto status = outcome->wait(15s);
    INFO("plugin log: " << log_text(backend));
    REQUIRE(status.has_value());
    CHECK(outcome->at() - begin < 5s);  // by its 500 ms timeout, not the 10 s login
    CHECK(status->code() == sdk::ErrorCode::Unavailable);
    CHECK_THAT(status->message(), Catch::Contains("nothing was sent"));

    proxy.stall_new(false);
    mq::require_ok(queue->publish(name, mq::make_message("after", "y"), 30s));
    CHECK(outcome->calls() == 1);
    queue->stop();
}

TEST_CASE("rabbitmq breaks a publish send stuck past its deadline", "[rabbitmq][mq][fault]") {
    mq::RabbitBackend direct;
    mq::TestProxy proxy(direct.url().host, direct.url().port);
    mq::RabbitBackend backend(mq::Extra{{"port", std::to_string(proxy.port())}});
    auto queue = backend.make_queue();
    const std::string name = direct.unique_queue("stuck-send");
    mq::require_ok(queue->declare({name, 0, ""}));

    // Nobody reads the socket (as a broker in a resource alarm): the body fills the buffers and
    // the send blocks with the link guard held.
    proxy.freeze(true);
    auto outcome = std::make_shared<Outcome>();
    const auto begin = Clock::now();
    mq::require_ok(async_of(*queue).publish_async(
        name, mq::make_message("stuck", patterned_body(12 * 1024 * 1024)), 1s, outcome));
    auto status = outcome->wait(15s);
    const auto took = outcome->at() - begin;
    proxy.freeze(false);  // before any REQUIRE, so a failure does not leave the send stuck

    INFO("plugin log: " << log_text(backend));
    REQUIRE(status.has_value());
    CHECK(took < 5s);  // its 1 s deadline, not the send's end (never, while frozen)
    CHECK_FALSE(status->is_ok());
    CHECK_THAT(status->message(), Catch::Contains("may still be stored"));
    mq::require_ok(queue->publish(name, mq::make_message("after", "y"), 30s));
    CHECK(outcome->calls() == 1);
    queue->stop();
}
