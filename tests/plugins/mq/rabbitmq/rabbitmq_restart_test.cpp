// SPDX-License-Identifier: Apache-2.0
// Broker restarts: `rabbitmqctl stop_app; rabbitmqctl start_app` (SYNERGOS_TEST_RABBITMQCTL).
// These tests run serially (RUN_SERIAL) because a restart disturbs every broker client.

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "broker_fixture.hpp"
#include "plugins/mq/memory/mq_scenarios.hpp"

namespace {

using namespace std::chrono_literals;
namespace sdk = synergos::sdk;
namespace mq = synergos::tests::mq;

}  // namespace

TEST_CASE("rabbitmq keeps confirmed messages across a broker restart", "[rabbitmq][mq][restart]") {
    mq::RabbitBackend backend;
    mq::BrokerRestart restart;
    auto queue = backend.make_queue();
    const std::string name = backend.unique_queue("persist");
    mq::require_ok(queue->declare({name, 5, ""}));
    for (int i = 0; i < 20; ++i) {
        const std::string id = "persist-" + std::to_string(i);
        mq::publish_ok(*queue, name, mq::make_message(id, "body of " + id, i % 2 == 0 ? 1 : 4));
    }
    restart.stop_app();
    restart.start_app();

    // The same plugin object reconnects by itself; the queue and its arguments survived.
    auto depth = queue->depth(name);
    mq::require_ok(depth.status());
    CHECK(*depth == 20);
    auto consumer = queue->consume(name, 1);
    mq::require_ok(consumer.status());
    std::vector<std::string> order;
    for (int i = 0; i < 20; ++i) {
        sdk::Delivery delivery = mq::expect_delivery(**consumer, 30s);
        CHECK(delivery.message.body == "body of " + delivery.message.id);
        order.push_back(delivery.message.id);
        mq::require_ok((*consumer)->ack(delivery.tag));
    }
    // Priorities still apply after the restart: the ten priority-4 messages come first.
    for (int i = 0; i < 10; ++i) {
        const int index = std::stoi(order[i].substr(order[i].find('-') + 1));
        CHECK(index % 2 == 1);
    }
    std::set<std::string> unique(order.begin(), order.end());
    CHECK(unique.size() == 20);
    (*consumer)->close();
    queue->stop();
}

TEST_CASE("rabbitmq consumer and publisher keep working across a broker restart",
          "[rabbitmq][mq][restart]") {
    mq::RabbitBackend backend(mq::Extra{{"reconnect_max_backoff_ms", "500"}});
    mq::BrokerRestart restart;
    auto queue = backend.make_queue();
    const std::string name = backend.unique_queue("restart");
    mq::require_ok(queue->declare({name, 0, ""}));
    auto consumer = queue->consume(name, 10);
    mq::require_ok(consumer.status());

    std::set<std::string> confirmed;
    auto publish = [&](const std::string& id, std::chrono::milliseconds timeout) {
        sdk::Status status = queue->publish(name, mq::make_message(id, id), timeout);
        if (status) {
            confirmed.insert(id);
        }
        return status;
    };
    mq::require_ok(publish("before-held", 10s));
    mq::require_ok(publish("before-acked", 10s));
    sdk::Delivery held = mq::expect_delivery(**consumer, 10s);
    sdk::Delivery acked = mq::expect_delivery(**consumer, 10s);
    CHECK(held.message.id == "before-held");
    mq::require_ok((*consumer)->ack(acked.tag));
    confirmed.erase("before-acked");  // consumed for good

    restart.stop_app();

    // During the outage a short publish fails with a clear error instead of vanishing.
    sdk::Status short_publish = publish("short", 300ms);
    REQUIRE_FALSE(short_publish.is_ok());
    CHECK((short_publish.code() == sdk::ErrorCode::Unavailable ||
           short_publish.code() == sdk::ErrorCode::Timeout));
    CHECK_THAT(short_publish.message(), Catch::Contains(backend.url().endpoint()));
    CHECK_THAT(short_publish.message(), Catch::Contains(name));

    // The consumer notices, and a tag from the lost connection is refused as stale.
    const auto begin = std::chrono::steady_clock::now();
    bool unavailable = false;
    while (!unavailable && std::chrono::steady_clock::now() - begin < 20s) {
        auto result = (*consumer)->receive(100ms);
        unavailable = !result && result.error().code == sdk::ErrorCode::Unavailable;
        REQUIRE((unavailable || (result && !result->has_value())));
    }
    REQUIRE(unavailable);
    sdk::Status stale = (*consumer)->ack(held.tag);
    CHECK(stale.code() == sdk::ErrorCode::FailedPrecondition);
    CHECK_THAT(stale.message(), Catch::Contains("redeliver"));

    // Publishes with a long timeout wait for the broker to come back.
    std::vector<sdk::Status> during(5);
    std::thread waiting_publisher([&] {
        for (int i = 0; i < 5; ++i) {
            during[i] = queue->publish(
                name,
                mq::make_message("during-" + std::to_string(i), "during-" + std::to_string(i)),
                90s);
        }
    });
    restart.start_app();
    waiting_publisher.join();
    for (int i = 0; i < 5; ++i) {
        if (during[i]) {
            confirmed.insert("during-" + std::to_string(i));
        } else {
            // Allowed only as a clear error naming the broker; such a message is not counted.
            CHECK_THAT(during[i].message(), Catch::Contains(backend.url().endpoint()));
        }
    }
    for (int i = 0; i < 5; ++i) {
        mq::require_ok(publish("after-" + std::to_string(i), 60s));
    }

    // Every confirmed message arrives; the one held during the restart comes back redelivered.
    std::map<std::string, int> received;
    bool held_redelivered = false;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline &&
           !std::all_of(confirmed.begin(), confirmed.end(),
                        [&](const std::string& id) { return received.count(id) != 0; })) {
        sdk::Delivery delivery = mq::expect_delivery(**consumer, 60s);
        ++received[delivery.message.id];
        if (delivery.message.id == "before-held") {
            held_redelivered = delivery.redelivered;
        }
        mq::require_ok((*consumer)->ack(delivery.tag));
    }
    std::size_t lost = 0;
    for (const auto& id : confirmed) {
        if (received.count(id) == 0) {
            ++lost;
            UNSCOPED_INFO("confirmed but never received: " << id);
        }
    }
    CHECK(lost == 0);
    CHECK(confirmed.size() >= 6);  // before-held and the five "after" messages at least
    CHECK(received.count("before-held") == 1);
    CHECK(held_redelivered);
    CHECK(backend.host().captured().contains("publisher connection lost"));
    CHECK(backend.host().captured().contains("resubscribed"));
    (*consumer)->close();
    queue->stop();
}
