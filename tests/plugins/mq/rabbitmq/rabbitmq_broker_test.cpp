// SPDX-License-Identifier: Apache-2.0
// rabbitmq-only behaviour against a real broker: what is declared on the broker, heartbeats,
// network cuts and silent partitions (through a local proxy), credentials, TLS, and loading the
// plugin module.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/dll/shared_library.hpp>

#include <catch2/catch.hpp>

#include <synergos/sdk/export.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "broker_fixture.hpp"
#include "plugins/mq/memory/mq_scenarios.hpp"
#include "test_proxy.hpp"

namespace {

using namespace std::chrono_literals;
namespace sdk = synergos::sdk;
namespace mq = synergos::tests::mq;

/// Calls receive until it reports Unavailable (the consumer noticed the outage).
std::chrono::milliseconds wait_until_unavailable(sdk::Consumer& consumer,
                                                 std::chrono::milliseconds patience) {
    const auto begin = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - begin < patience) {
        auto result = consumer.receive(100ms);
        if (!result) {
            REQUIRE(result.error().code == sdk::ErrorCode::Unavailable);
            return std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - begin);
        }
        if (result->has_value()) {
            FAIL("unexpected delivery of '" << (*result)->message.id << "' during an outage");
        }
    }
    FAIL("the consumer did not report the outage within " << patience.count() << " ms");
    return patience;
}

std::string log_text(mq::RabbitBackend& backend) {
    std::string text;
    for (const auto& line : backend.host().captured().lines()) {
        text += "\n  [" + std::string(sdk::to_string(line.level)) + "] " + line.event + " " +
                line.fields_json;
    }
    return text;
}

bool log_contains(mq::RabbitBackend& backend, const std::string& text) {
    return backend.host().captured().contains(text);
}

/// Polls `done` every 50 ms for at most `patience`.
template <typename Predicate>
bool eventually_true(Predicate done, std::chrono::milliseconds patience) {
    const auto deadline = std::chrono::steady_clock::now() + patience;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(50ms);
    }
    return true;
}

}  // namespace

TEST_CASE("rabbitmq declares durable queues with priority and dead-letter arguments",
          "[rabbitmq][mq]") {
    mq::RabbitBackend backend;
    auto queue = backend.make_queue();
    const std::string name = backend.unique_queue("args");
    const std::string dlq = backend.unique_queue("args-dead");
    mq::require_ok(queue->declare({name, 7, dlq}));
    // The dead-letter queue was declared too.
    CHECK(backend.admin().exists(dlq));
    // The broker holds exactly these arguments: the same declare is accepted...
    CHECK(backend.admin().declare(name, true, 7, dlq).empty());
    // ...while a different one is refused as inequivalent (so the arguments are really set).
    CHECK_THAT(backend.admin().declare(name, true, 0, dlq), Catch::Contains("x-max-priority"));
    CHECK_THAT(backend.admin().declare(name, true, 7, ""), Catch::Contains("x-dead-letter"));
    CHECK_THAT(backend.admin().declare(name, false, 7, dlq), Catch::Contains("durable"));
    queue->stop();
}

TEST_CASE("rabbitmq keeps a dead-letter queue's arguments and declares both again after a cut",
          "[rabbitmq][mq]") {
    mq::RabbitBackend direct;
    mq::TestProxy proxy(direct.url().host, direct.url().port);
    mq::RabbitBackend backend(mq::Extra{{"port", std::to_string(proxy.port())}});
    auto queue = backend.make_queue();
    const std::string dlq = direct.unique_queue("dlq-args");
    const std::string name = direct.unique_queue("jobs-dlq-args");
    mq::require_ok(queue->declare({dlq, 5, ""}));
    mq::require_ok(queue->declare({name, 0, dlq}));

    // Another client that never declared the dead-letter queue uses it as it is.
    auto other = backend.make_queue();
    const std::string second = direct.unique_queue("jobs-dlq-args-2");
    mq::require_ok(other->declare({second, 0, dlq}));
    other->stop();

    // The broker loses both queues (a wiped node); after the cut the plugin declares them again,
    // each with its own arguments.
    direct.admin().delete_queue(name);
    direct.admin().delete_queue(dlq);
    proxy.cut();
    REQUIRE(eventually_true([&] { return direct.admin().exists(name); }, 20s));
    CHECK(direct.admin().exists(dlq));
    CHECK(direct.admin().declare(dlq, true, 5, "").empty());
    CHECK(direct.admin().declare(name, true, 0, dlq).empty());
    CHECK_FALSE(log_contains(backend, "could not be declared again"));
    queue->stop();
}

TEST_CASE("rabbitmq carries large messages across many frames", "[rabbitmq][mq]") {
    mq::RabbitBackend backend;
    auto queue = backend.make_queue();
    const std::string name = backend.unique_queue("large");
    mq::require_ok(queue->declare({name, 0, ""}));
    std::string body(3 * 1024 * 1024 + 17, '\0');
    for (std::size_t i = 0; i < body.size(); ++i) {
        body[i] = static_cast<char>((i * 131) % 251);
    }
    mq::publish_ok(*queue, name, mq::make_message("big", body));
    auto consumer = queue->consume(name, 1);
    mq::require_ok(consumer.status());
    sdk::Delivery delivery = mq::expect_delivery(**consumer, 20s);
    CHECK(delivery.message.body.size() == body.size());
    CHECK(delivery.message.body == body);
    mq::require_ok((*consumer)->ack(delivery.tag));
    (*consumer)->close();
    queue->stop();
}

TEST_CASE("rabbitmq heartbeats keep an idle consumer connection alive", "[rabbitmq][mq]") {
    // 2 s, not 1: a 2 s pause of the broker (fsync load, garbage collection) would drop a
    // 1 s connection however well the plugin sends its heartbeats.
    mq::RabbitBackend backend(mq::Extra{{"heartbeat_s", "2"}});
    auto queue = backend.make_queue();
    const std::string name = backend.unique_queue("heartbeat");
    mq::require_ok(queue->declare({name, 0, ""}));
    mq::publish_ok(*queue, name, mq::make_message("long-job", "x"));
    mq::publish_ok(*queue, name, mq::make_message("next-job", "y"));
    auto consumer = queue->consume(name, 1);
    mq::require_ok(consumer.status());
    sdk::Delivery job = mq::expect_delivery(**consumer, 10s);
    CHECK(job.message.id == "long-job");

    // The owner runs a "long job" and calls nothing for 3.5 heartbeat intervals. Without
    // heartbeats from the consumer's I/O thread the broker would drop the connection after two.
    std::this_thread::sleep_for(7000ms);

    // Same connection: the tag is still valid and the next job was not redelivered.
    INFO("plugin log: " << log_text(backend));
    mq::require_ok((*consumer)->ack(job.tag));
    sdk::Delivery next = mq::expect_delivery(**consumer, 10s);
    CHECK(next.message.id == "next-job");
    CHECK_FALSE(next.redelivered);
    mq::require_ok((*consumer)->ack(next.tag));
    // The publisher connection idled just as long and still publishes without reconnecting.
    mq::publish_ok(*queue, name, mq::make_message("after-idle", "z"));
    CHECK_FALSE(log_contains(backend, "connection lost"));
    (*consumer)->close();
    queue->stop();
}

TEST_CASE("rabbitmq detects a silent partition by heartbeats and recovers", "[rabbitmq][mq]") {
    mq::RabbitBackend direct;  // for cleanup and broker-side checks
    mq::TestProxy proxy(direct.url().host, direct.url().port);
    mq::RabbitBackend backend(
        mq::Extra{{"port", std::to_string(proxy.port())}, {"heartbeat_s", "1"}});
    auto queue = backend.make_queue();
    const std::string name = direct.unique_queue("partition");
    mq::require_ok(queue->declare({name, 0, ""}));
    auto consumer = queue->consume(name, 5);
    mq::require_ok(consumer.status());
    mq::publish_ok(*queue, name, mq::make_message("in-hand", "x"));
    sdk::Delivery held = mq::expect_delivery(**consumer, 10s);

    proxy.freeze(true);  // bytes stop flowing; no FIN, no RST
    const auto detected = wait_until_unavailable(**consumer, 20s);
    CHECK(detected < 10s);
    sdk::Status stale = (*consumer)->ack(held.tag);
    CHECK(stale.code() == sdk::ErrorCode::FailedPrecondition);
    CHECK_THAT(stale.message(), Catch::Contains("redeliver"));

    sdk::Status during;
    std::thread publisher(
        [&] { during = queue->publish(name, mq::make_message("during", "y"), 60s); });
    proxy.freeze(false);
    publisher.join();
    mq::require_ok(during);

    std::map<std::string, bool> seen;  // id -> redelivered
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (seen.size() < 2 && std::chrono::steady_clock::now() < deadline) {
        sdk::Delivery delivery = mq::expect_delivery(**consumer, 30s);
        seen[delivery.message.id] = delivery.redelivered;
        mq::require_ok((*consumer)->ack(delivery.tag));
    }
    REQUIRE(seen.count("in-hand") == 1);
    CHECK(seen["in-hand"]);  // the broker requeued it when our side went silent
    REQUIRE(seen.count("during") == 1);
    CHECK(log_contains(backend, "connection lost"));
    (*consumer)->close();
    queue->stop();
}

TEST_CASE("rabbitmq reconnects a consumer and a publisher after a network cut", "[rabbitmq][mq]") {
    mq::RabbitBackend direct;
    mq::TestProxy proxy(direct.url().host, direct.url().port);
    mq::RabbitBackend backend(mq::Extra{{"port", std::to_string(proxy.port())}});
    auto queue = backend.make_queue();
    const std::string name = direct.unique_queue("cut");
    mq::require_ok(queue->declare({name, 3, ""}));
    auto consumer = queue->consume(name, 5);
    mq::require_ok(consumer.status());
    const int before = proxy.accepted();

    // Both sides see the connection end; they reconnect at once (the proxy accepts again), so
    // the outage may be too short for a receive to report it: the log and the proxy show it.
    proxy.cut();
    std::vector<std::string> confirmed;
    for (int i = 0; i < 5; ++i) {
        const std::string id = "after-cut-" + std::to_string(i);
        mq::require_ok(queue->publish(name, mq::make_message(id, id, 2), 30s));
        confirmed.push_back(id);
    }
    std::vector<std::string> received;
    while (received.size() < confirmed.size()) {
        sdk::Delivery delivery = mq::expect_delivery(**consumer, 30s);
        received.push_back(delivery.message.id);
        mq::require_ok((*consumer)->ack(delivery.tag));
    }
    CHECK(received == confirmed);
    CHECK(proxy.accepted() >= before + 2);  // both connections were made again
    CHECK(log_contains(backend, "publisher connection lost"));
    CHECK(log_contains(backend, "consumer connection lost"));
    CHECK(log_contains(backend, "resubscribed"));
    // Queues declared before the cut are declared again on the new connection.
    auto depth = queue->depth(name);
    mq::require_ok(depth.status());
    CHECK(*depth == 0);
    (*consumer)->close();
    queue->stop();
}

TEST_CASE("rabbitmq refuses wrong credentials with an error naming the broker", "[rabbitmq][mq]") {
    mq::RabbitBackend backend;
    auto queue = backend.make_unstarted({{"password", "definitely-wrong"}});
    sdk::Status status = queue->start();
    CHECK(status.code() == sdk::ErrorCode::PermissionDenied);
    CHECK_THAT(status.message(), Catch::Contains(backend.url().endpoint()));
    CHECK_THAT(status.message(), Catch::Contains("ACCESS_REFUSED"));
    CHECK_THAT(status.message(), Catch::Contains(backend.url().username));
    CHECK_THAT(status.message(), !Catch::Contains("definitely-wrong"));  // never print secrets
}

TEST_CASE("rabbitmq refuses an unknown vhost with an error naming it", "[rabbitmq][mq]") {
    mq::RabbitBackend backend;
    auto queue = backend.make_unstarted({{"vhost", "synergos-no-such-vhost"}});
    sdk::Status status = queue->start();
    REQUIRE_FALSE(status.is_ok());
    CHECK(status.code() == sdk::ErrorCode::PermissionDenied);
    CHECK_THAT(status.message(), Catch::Contains("synergos-no-such-vhost"));
}

TEST_CASE("rabbitmq reports a consumer whose queue was deleted", "[rabbitmq][mq]") {
    mq::RabbitBackend backend;
    auto queue = backend.make_queue();
    const std::string name = backend.unique_queue("deleted");
    mq::require_ok(queue->declare({name, 0, ""}));
    auto consumer = queue->consume(name, 1);
    mq::require_ok(consumer.status());
    backend.admin().delete_queue(name);
    const auto begin = std::chrono::steady_clock::now();
    std::string message;
    while (std::chrono::steady_clock::now() - begin < 10s) {
        auto result = (*consumer)->receive(100ms);
        if (!result) {
            message = result.error().message;
            CHECK(result.error().code == sdk::ErrorCode::Unavailable);
            break;
        }
    }
    CHECK_THAT(message, Catch::Contains(name));
    CHECK_THAT(message, Catch::Contains("cancelled") || Catch::Contains("NOT_FOUND"));
    (*consumer)->close();
    queue->stop();
}

TEST_CASE("rabbitmq stop closes consumers that are still open", "[rabbitmq][mq]") {
    mq::RabbitBackend backend;
    auto observer = backend.make_queue();
    auto queue = backend.make_queue();
    const std::string name = backend.unique_queue("straggler");
    mq::require_ok(queue->declare({name, 0, ""}));
    auto consumer = queue->consume(name, 1);
    mq::require_ok(consumer.status());
    CHECK(*observer->consumer_count(name) == 1);
    queue->stop();
    CHECK(*observer->consumer_count(name) == 0);
    CHECK((*consumer)->receive(10ms).status().code() == sdk::ErrorCode::FailedPrecondition);
    consumer->reset();
    observer->stop();
}

TEST_CASE("rabbitmq speaks AMQPS with a verified broker certificate", "[rabbitmq][mq][tls]") {
    mq::RabbitBackend direct;
    const mq::TestPki pki = mq::make_test_pki();
    struct Cleanup {
        const mq::TestPki& pki;
        ~Cleanup() { mq::remove_pki(pki); }
    } cleanup{pki};
    const std::string name = direct.unique_queue("tls");

    SECTION("the broker certificate is verified against tls_ca_file") {
        mq::TestProxy proxy(direct.url().host, direct.url().port,
                            mq::TlsServerConfig{pki.server_cert, pki.server_key, ""});
        mq::RabbitBackend backend(mq::Extra{
            {"port", std::to_string(proxy.port())}, {"tls", "true"}, {"tls_ca_file", pki.ca_cert}});
        auto queue = backend.make_queue();
        mq::require_ok(queue->declare({name, 0, ""}));
        mq::publish_ok(*queue, name, mq::make_message("secret-job", "over TLS"));
        auto consumer = queue->consume(name, 1);
        mq::require_ok(consumer.status());
        sdk::Delivery delivery = mq::expect_delivery(**consumer, 10s);
        CHECK(delivery.message.body == "over TLS");
        mq::require_ok((*consumer)->ack(delivery.tag));
        (*consumer)->close();
        queue->stop();
        CHECK(proxy.accepted() == 2);  // publisher and consumer both went through TLS
    }
    SECTION("a certificate from another CA is refused, unless verification is off") {
        mq::TestProxy proxy(direct.url().host, direct.url().port,
                            mq::TlsServerConfig{pki.server_cert, pki.server_key, ""});
        mq::RabbitBackend backend(mq::Extra{{"port", std::to_string(proxy.port())},
                                            {"tls", "true"},
                                            {"tls_ca_file", pki.other_ca_cert}});
        auto refused = backend.make_unstarted();
        sdk::Status status = refused->start();
        REQUIRE_FALSE(status.is_ok());
        CHECK((status.code() == sdk::ErrorCode::PermissionDenied ||
               status.code() == sdk::ErrorCode::Unavailable));
        CHECK_THAT(status.message(), Catch::Contains("127.0.0.1:" + std::to_string(proxy.port())));
        CHECK_THAT(status.message(), Catch::Contains("SSL") || Catch::Contains("certificate") ||
                                         Catch::Contains("verif"));
        auto unverified = backend.make_unstarted({{"tls_verify_peer", "false"}});
        mq::require_ok(unverified->start());
        mq::require_ok(unverified->declare({name, 0, ""}));
        unverified->stop();
    }
    SECTION("mutual TLS: the client certificate is presented when configured") {
        mq::TestProxy proxy(direct.url().host, direct.url().port,
                            mq::TlsServerConfig{pki.server_cert, pki.server_key, pki.ca_cert});
        mq::RabbitBackend backend(mq::Extra{{"port", std::to_string(proxy.port())},
                                            {"tls", "true"},
                                            {"tls_ca_file", pki.ca_cert},
                                            {"connect_timeout_ms", "2000"}});
        auto anonymous = backend.make_unstarted();
        CHECK_FALSE(anonymous->start().is_ok());
        auto with_cert = backend.make_unstarted(
            {{"tls_cert_file", pki.client_cert}, {"tls_key_file", pki.client_key}});
        mq::require_ok(with_cert->start());
        mq::require_ok(with_cert->declare({name, 0, ""}));
        with_cert->stop();
    }
}

TEST_CASE("rabbitmq loads as a plugin module and works through its factory",
          "[rabbitmq][mq][integration]") {
    const mq::BrokerUrl url = mq::require_broker_url();
    mq::AmqpAdmin admin(url);
    const std::string name = "synergos-test-module-" + mq::random_suffix();
    const std::string path = std::string(SYNERGOS_TEST_PLUGIN_DIR) + "/libsynergos-mq-rabbitmq.so";
    boost::dll::shared_library library(
        path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    const auto& abi = library.get_alias<const sdk::AbiInfo>(sdk::kAbiAlias);
    CHECK(abi.abi_major == SYNERGOS_SDK_ABI_MAJOR);
    CHECK(std::string(abi.fingerprint) == SYNERGOS_SDK_FINGERPRINT);
    const auto& descriptor = library.get_alias<const sdk::PluginDescriptor>(sdk::kDescriptorAlias);
    CHECK(std::string(descriptor.name) == "rabbitmq");
    CHECK(descriptor.kind == sdk::PluginKind::MessageQueue);
    auto& create = library.get_alias<sdk::Factory<sdk::MessageQueue>>("synergos_plugin_create_mq");
    sdk::testing::FakeHost host;
    {
        auto created = create(host, mq::broker_options(url));
        mq::require_ok(created.status());
        auto& queue = **created;
        mq::require_ok(queue.start());
        mq::require_ok(queue.declare({name, 2, ""}));
        mq::publish_ok(queue, name, mq::make_message("module", "{}", 1));
        auto consumer = queue.consume(name, 1);
        mq::require_ok(consumer.status());
        sdk::Delivery delivery = mq::expect_delivery(**consumer, 10s);
        CHECK(delivery.message.id == "module");
        mq::require_ok((*consumer)->ack(delivery.tag));
        consumer->reset();
        queue.stop();
    }
    admin.delete_queue(name);
    CHECK(host.captured().contains("rabbitmq message queue connected"));
}
