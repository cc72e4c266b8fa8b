// SPDX-License-Identifier: Apache-2.0
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include <boost/dll/shared_library.hpp>

#include <catch2/catch.hpp>

#include <synergos/sdk/export.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "memory_queue.hpp"
#include "plugins/mq/memory/mq_scenarios.hpp"

namespace {

using namespace std::chrono_literals;
using synergos::plugins::memory::MemoryQueue;
namespace sdk = synergos::sdk;
namespace mq = synergos::tests::mq;

class MemoryBackend final : public mq::Backend {
public:
    std::unique_ptr<sdk::MessageQueue> make_queue() override {
        auto queue = std::make_unique<MemoryQueue>(host_, sdk::Options{});
        mq::require_ok(queue->start());
        return queue;
    }
    std::string unique_queue(const std::string& base) override {
        return "test-" + base + "-" + mq::random_suffix();
    }
    std::chrono::milliseconds quiet_period() const override { return 50ms; }

private:
    sdk::testing::FakeHost host_;
};

std::unique_ptr<mq::Backend> make_memory_backend() { return std::make_unique<MemoryBackend>(); }

}  // namespace

SYNERGOS_MQ_SCENARIOS("memory mq", "[unit][mq][memory]", make_memory_backend)

TEST_CASE("memory mq refuses calls before start and after stop", "[unit][mq][memory]") {
    sdk::testing::FakeHost host;
    MemoryQueue queue(host, sdk::Options{});
    sdk::Status early = queue.declare({"jobs", 0, ""});
    CHECK(early.code() == sdk::ErrorCode::FailedPrecondition);
    CHECK_THAT(early.message(), Catch::Contains("start"));
    mq::require_ok(queue.start());
    mq::require_ok(queue.declare({"jobs", 0, ""}));
    queue.stop();
    CHECK(queue.declare({"jobs", 0, ""}).code() == sdk::ErrorCode::FailedPrecondition);
    CHECK(queue.depth("jobs").status().code() == sdk::ErrorCode::FailedPrecondition);
    CHECK(queue.start().code() == sdk::ErrorCode::FailedPrecondition);
}

TEST_CASE("memory mq stop wakes a blocked receive", "[unit][mq][memory]") {
    sdk::testing::FakeHost host;
    MemoryQueue queue(host, sdk::Options{});
    mq::require_ok(queue.start());
    mq::require_ok(queue.declare({"jobs", 0, ""}));
    auto consumer = queue.consume("jobs", 1);
    mq::require_ok(consumer.status());
    sdk::ErrorCode code = sdk::ErrorCode::Internal;
    auto waited = 0ms;
    std::thread waiter([&] {
        const auto begin = std::chrono::steady_clock::now();
        auto result = (*consumer)->receive(60s);
        waited = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - begin);
        code = result ? sdk::ErrorCode::Internal : result.error().code;
    });
    queue.stop();
    waiter.join();
    CHECK(code == sdk::ErrorCode::FailedPrecondition);
    CHECK(waited < 10s);
    // A consumer that outlives stop fails cleanly.
    CHECK((*consumer)->ack(1).code() == sdk::ErrorCode::FailedPrecondition);
    consumer->reset();
}

TEST_CASE("memory mq bounds each queue by max_messages_per_queue", "[unit][mq][memory]") {
    sdk::testing::FakeHost host;
    MemoryQueue queue(
        host, sdk::Options(std::map<std::string, std::string>{{"max_messages_per_queue", "2"}}));
    mq::require_ok(queue.start());
    mq::require_ok(queue.declare({"jobs", 0, ""}));
    mq::publish_ok(queue, "jobs", mq::make_message("1", "x"));
    mq::publish_ok(queue, "jobs", mq::make_message("2", "x"));
    sdk::Status full = queue.publish("jobs", mq::make_message("3", "x"), 1s);
    CHECK(full.code() == sdk::ErrorCode::ResourceExhausted);
    CHECK_THAT(full.message(), Catch::Contains("jobs"));
    auto depth = queue.depth("jobs");
    mq::require_ok(depth.status());
    CHECK(*depth == 2);
    queue.stop();
}

TEST_CASE("memory mq refuses a bad max_messages_per_queue option", "[unit][mq][memory]") {
    const std::string value =
        GENERATE(std::string("abc"), std::string("0"), std::string("-3"), std::string("12x"));
    sdk::testing::FakeHost host;
    MemoryQueue queue(
        host, sdk::Options(std::map<std::string, std::string>{{"max_messages_per_queue", value}}));
    sdk::Status status = queue.start();
    CHECK(status.code() == sdk::ErrorCode::InvalidArgument);
    CHECK_THAT(status.message(), Catch::Contains("max_messages_per_queue"));
    CHECK_THAT(status.message(), Catch::Contains(value));
}

TEST_CASE("memory mq dead letters keep the first death headers once", "[unit][mq][memory]") {
    sdk::testing::FakeHost host;
    MemoryQueue queue(host, sdk::Options{});
    mq::require_ok(queue.start());
    // a -> b -> c: the message dies twice; the first death stays recorded as queue a.
    mq::require_ok(queue.declare({"b", 0, "c"}));
    mq::require_ok(queue.declare({"a", 0, "b"}));
    mq::publish_ok(queue, "a", mq::make_message("m", "x"));
    for (const char* name : {"a", "b"}) {
        auto consumer = queue.consume(name, 1);
        mq::require_ok(consumer.status());
        sdk::Delivery delivery = mq::expect_delivery(**consumer, 1s);
        mq::require_ok((*consumer)->reject(delivery.tag, false));
    }
    auto last = queue.consume("c", 1);
    mq::require_ok(last.status());
    sdk::Delivery delivery = mq::expect_delivery(**last, 1s);
    CHECK(mq::header_value(delivery, "x-first-death-queue") == "a");
    int count = 0;
    for (const auto& header : delivery.message.headers) {
        count += header.first == "x-first-death-queue" ? 1 : 0;
    }
    CHECK(count == 1);
    (*last)->close();
    queue.stop();
}

TEST_CASE("memory mq loads as a plugin module and works through its factory",
          "[integration][mq][memory]") {
    const std::string path = std::string(SYNERGOS_TEST_PLUGIN_DIR) + "/libsynergos-mq-memory.so";
    boost::dll::shared_library library(
        path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    const auto& abi = library.get_alias<const sdk::AbiInfo>(sdk::kAbiAlias);
    CHECK(abi.abi_major == SYNERGOS_SDK_ABI_MAJOR);
    CHECK(std::string(abi.fingerprint) == SYNERGOS_SDK_FINGERPRINT);
    const auto& descriptor = library.get_alias<const sdk::PluginDescriptor>(sdk::kDescriptorAlias);
    CHECK(std::string(descriptor.name) == "memory");
    CHECK(descriptor.kind == sdk::PluginKind::MessageQueue);
    REQUIRE(descriptor.option_count == 1);
    CHECK(std::string(descriptor.options[0].key) == "max_messages_per_queue");
    auto& create = library.get_alias<sdk::Factory<sdk::MessageQueue>>("synergos_plugin_create_mq");
    sdk::testing::FakeHost host;
    {
        auto created = create(
            host,
            sdk::Options(std::map<std::string, std::string>{{"max_messages_per_queue", "10"}}));
        mq::require_ok(created.status());
        auto& queue = **created;
        mq::require_ok(queue.start());
        mq::require_ok(queue.declare({"jobs", 3, "jobs-dead"}));
        mq::publish_ok(queue, "jobs", mq::make_message("j1", "{}", 2));
        auto consumer = queue.consume("jobs", 1);
        mq::require_ok(consumer.status());
        sdk::Delivery delivery = mq::expect_delivery(**consumer, 1s);
        CHECK(delivery.message.id == "j1");
        mq::require_ok((*consumer)->ack(delivery.tag));
        consumer->reset();
        queue.stop();
    }
    CHECK(host.captured().contains("memory message queue started"));
}
