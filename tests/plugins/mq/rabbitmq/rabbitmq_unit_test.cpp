// SPDX-License-Identifier: Apache-2.0
// rabbitmq plugin checks that need no broker: options, error mapping, frame assembly, and
// start-up failures against real local sockets that are not brokers.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <synergos/sdk/testing/fake_host.hpp>

#include "amqp_link.hpp"
#include "descriptor.hpp"
#include "log_fields.hpp"
#include "mq_validation.hpp"
#include "rabbitmq_consumer.hpp"
#include "rabbitmq_queue.hpp"
#include "settings.hpp"

namespace {

using namespace std::chrono_literals;
namespace sdk = synergos::sdk;
namespace rmq = synergos::plugins::rabbitmq;

sdk::Options options(std::map<std::string, std::string> values) {
    return sdk::Options(std::move(values));
}

/// A local TCP socket bound to 127.0.0.1:0; `listen` makes it accept (and then stay silent).
class LocalSocket {
public:
    explicit LocalSocket(bool listen) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
        if (listen) {
            REQUIRE(::listen(fd_, 8) == 0);
        }
        socklen_t length = sizeof(address);
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
        port_ = ntohs(address.sin_port);
    }
    ~LocalSocket() { ::close(fd_); }
    int port() const { return port_; }

private:
    int fd_;
    int port_ = 0;
};

}  // namespace

TEST_CASE("rabbitmq options are checked and a bad one names itself", "[unit][mq][rabbitmq-unit]") {
    struct Case {
        std::map<std::string, std::string> values;
        std::string expected;
    };
    const auto [values, expected] = GENERATE(
        Case{{{"port", "0"}}, "port"}, Case{{{"port", "70000"}}, "port"},
        Case{{{"port", "56x"}}, "port"}, Case{{{"host", ""}}, "host"},
        Case{{{"vhost", ""}}, "vhost"}, Case{{{"username", ""}}, "username"},
        Case{{{"heartbeat_s", "-1"}}, "heartbeat_s"},
        Case{{{"heartbeat_s", "thirty"}}, "heartbeat_s"},
        Case{{{"connect_timeout_ms", "5"}}, "connect_timeout_ms"},
        Case{{{"rpc_timeout_ms", "abc"}}, "rpc_timeout_ms"},
        Case{{{"reconnect_max_backoff_ms", "0"}}, "reconnect_max_backoff_ms"},
        Case{{{"tls", "maybe"}}, "tls"}, Case{{{"tls_verify_peer", "2"}}, "tls_verify_peer"},
        Case{{{"tls_ca_file", "/etc/hostname"}}, "tls is false"},
        Case{{{"tls", "true"}, {"tls_cert_file", "/etc/hostname"}}, "tls_key_file"},
        Case{{{"tls", "true"}, {"tls_ca_file", "/nonexistent/ca.pem"}}, "/nonexistent/ca.pem"});
    auto parsed = rmq::parse_settings(options(values));
    REQUIRE_FALSE(parsed.has_value());
    CHECK(parsed.error().code == sdk::ErrorCode::InvalidArgument);
    CHECK_THAT(parsed.error().message, Catch::Contains(expected));

    // The plugin refuses to start with it, before touching the network.
    sdk::testing::FakeHost host;
    rmq::RabbitMqQueue queue(host, options(values));
    sdk::Status status = queue.start();
    CHECK(status.code() == sdk::ErrorCode::InvalidArgument);
    CHECK_THAT(status.message(), Catch::Contains(expected));
}

TEST_CASE("rabbitmq defaults parse to the documented values", "[unit][mq][rabbitmq-unit]") {
    auto parsed = rmq::parse_settings(sdk::Options{});
    REQUIRE(parsed.has_value());
    CHECK(parsed->host == "127.0.0.1");
    CHECK(parsed->port == 5672);
    CHECK(parsed->vhost == "/");
    CHECK(parsed->heartbeat_s == 30);
    CHECK(parsed->connect_timeout == 5000ms);
    CHECK_FALSE(parsed->tls);
    CHECK(parsed->tls_verify_peer);
    CHECK(parsed->describe() == "rabbitmq broker 127.0.0.1:5672 vhost '/'");
}

TEST_CASE("rabbitmq descriptor lists every option once, the password as secret",
          "[unit][mq][rabbitmq-unit]") {
    std::set<std::string> keys;
    for (const auto& spec : rmq::kOptions) {
        CHECK(keys.insert(spec.key).second);
        CHECK(std::strlen(spec.description) > 10);
        CHECK(spec.secret == (std::string(spec.key) == "password"));
    }
    for (const char* required :
         {"host", "port", "vhost", "username", "password", "heartbeat_s", "connect_timeout_ms",
          "tls", "tls_ca_file", "tls_cert_file", "tls_key_file", "tls_verify_peer"}) {
        CHECK(keys.count(required) == 1);
    }
    CHECK(rmq::kDescriptor.kind == sdk::PluginKind::MessageQueue);
    CHECK(rmq::kDescriptor.option_count == keys.size());
}

TEST_CASE("rabbitmq maps broker reply codes and library errors to SDK codes",
          "[unit][mq][rabbitmq-unit]") {
    CHECK(rmq::code_for_reply(404) == sdk::ErrorCode::NotFound);
    CHECK(rmq::code_for_reply(312) == sdk::ErrorCode::NotFound);
    CHECK(rmq::code_for_reply(406) == sdk::ErrorCode::FailedPrecondition);
    CHECK(rmq::code_for_reply(403) == sdk::ErrorCode::PermissionDenied);
    CHECK(rmq::code_for_reply(530) == sdk::ErrorCode::PermissionDenied);
    CHECK(rmq::code_for_reply(320) == sdk::ErrorCode::Unavailable);
    CHECK(rmq::code_for_library_error(AMQP_STATUS_SOCKET_ERROR) == sdk::ErrorCode::Unavailable);
    CHECK(rmq::code_for_library_error(AMQP_STATUS_HEARTBEAT_TIMEOUT) ==
          sdk::ErrorCode::Unavailable);
    CHECK(rmq::code_for_library_error(AMQP_STATUS_TIMEOUT) == sdk::ErrorCode::Timeout);
    CHECK(rmq::code_for_library_error(AMQP_STATUS_SSL_PEER_VERIFY_FAILED) ==
          sdk::ErrorCode::PermissionDenied);

    amqp_channel_close_t close{};
    close.reply_code = 406;
    const char* text = "PRECONDITION_FAILED - inequivalent arg 'x-max-priority'";
    close.reply_text = amqp_cstring_bytes(text);
    amqp_method_t method{AMQP_CHANNEL_CLOSE_METHOD, &close};
    sdk::Status status = rmq::close_method_status(method, "rabbitmq broker h:1 vhost '/': declare");
    CHECK(status.code() == sdk::ErrorCode::FailedPrecondition);
    CHECK_THAT(status.message(), Catch::Contains("rabbitmq broker h:1 vhost '/': declare"));
    CHECK_THAT(status.message(), Catch::Contains("406 PRECONDITION_FAILED"));
    CHECK_THAT(status.message(), Catch::Contains("inequivalent arg"));

    amqp_rpc_reply_t library{};
    library.reply_type = AMQP_RESPONSE_LIBRARY_EXCEPTION;
    library.library_error = AMQP_STATUS_CONNECTION_CLOSED;
    sdk::Status closed = rmq::reply_status(library, "ctx");
    CHECK(closed.code() == sdk::ErrorCode::Unavailable);
    CHECK_THAT(closed.message(), Catch::StartsWith("ctx: "));
}

TEST_CASE("rabbitmq assembles deliveries from method, header and body frames",
          "[unit][mq][rabbitmq-unit]") {
    amqp_basic_deliver_t deliver{};
    deliver.delivery_tag = 42;
    deliver.redelivered = 1;
    deliver.routing_key = amqp_cstring_bytes("jobs");
    amqp_frame_t method{};
    method.frame_type = AMQP_FRAME_METHOD;
    method.channel = 1;
    method.payload.method = {AMQP_BASIC_DELIVER_METHOD, &deliver};

    amqp_table_entry_t headers[3];
    headers[0].key = amqp_cstring_bytes("process");
    headers[0].value.kind = AMQP_FIELD_KIND_UTF8;
    headers[0].value.value.bytes = amqp_cstring_bytes("train");
    headers[1].key = amqp_cstring_bytes(rmq::kSeqHeader);
    headers[1].value.kind = AMQP_FIELD_KIND_I64;
    headers[1].value.value.i64 = 7;
    headers[2].key = amqp_cstring_bytes("attempt");
    headers[2].value.kind = AMQP_FIELD_KIND_I32;
    headers[2].value.value.i32 = 3;
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                   AMQP_BASIC_PRIORITY_FLAG | AMQP_BASIC_HEADERS_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.message_id = amqp_cstring_bytes("job-9");
    props.priority = 4;
    props.headers = {3, headers};
    amqp_frame_t header{};
    header.frame_type = AMQP_FRAME_HEADER;
    header.channel = 1;
    header.payload.properties.body_size = 10;
    header.payload.properties.decoded = &props;

    amqp_frame_t body1{};
    body1.frame_type = AMQP_FRAME_BODY;
    body1.payload.body_fragment = amqp_bytes_t{6, const_cast<char*>("{\"a\":1")};
    amqp_frame_t body2 = body1;
    body2.payload.body_fragment = amqp_bytes_t{4, const_cast<char*>(",\"b\"")};

    rmq::ContentAssembler assembler;
    REQUIRE(rmq::ContentAssembler::starts_content(method));
    assembler.start(method);
    auto after_header = assembler.add(header);
    REQUIRE(after_header.has_value());
    CHECK_FALSE(after_header->has_value());
    auto after_first = assembler.add(body1);
    REQUIRE(after_first.has_value());
    CHECK_FALSE(after_first->has_value());
    auto done = assembler.add(body2);
    REQUIRE(done.has_value());
    REQUIRE(done->has_value());
    const rmq::ContentMessage& message = **done;
    CHECK(message.delivery_tag == 42);
    CHECK(message.redelivered);
    CHECK(message.message.id == "job-9");
    CHECK(message.message.priority == 4);
    CHECK(message.message.content_type == "application/json");
    CHECK(message.message.body == "{\"a\":1,\"b\"");
    REQUIRE(message.publish_seq.has_value());
    CHECK(*message.publish_seq == 7);
    REQUIRE(message.message.headers.size() == 2);  // the sequence header is internal
    CHECK(message.message.headers[0] ==
          std::make_pair(std::string("process"), std::string("train")));
    CHECK(message.message.headers[1] == std::make_pair(std::string("attempt"), std::string("3")));
    CHECK_FALSE(assembler.busy());

    // Content without its method is a protocol error, not a crash.
    auto stray = assembler.add(body1);
    REQUIRE_FALSE(stray.has_value());
    CHECK_THAT(stray.error().message, Catch::Contains("without a deliver/return"));
}

TEST_CASE("rabbitmq refuses calls before start", "[unit][mq][rabbitmq-unit]") {
    sdk::testing::FakeHost host;
    rmq::RabbitMqQueue queue(host, sdk::Options{});
    CHECK(queue.publish("jobs", sdk::Message{}, 1s).code() == sdk::ErrorCode::FailedPrecondition);
    CHECK(queue.declare({"jobs", 0, ""}).code() == sdk::ErrorCode::FailedPrecondition);
    CHECK(queue.consume("jobs", 1).status().code() == sdk::ErrorCode::FailedPrecondition);
    CHECK(queue.depth("jobs").status().code() == sdk::ErrorCode::FailedPrecondition);
}

TEST_CASE("rabbitmq start fails fast and clearly when nothing listens on the port",
          "[unit][mq][rabbitmq-unit]") {
    LocalSocket closed(false);  // bound, not listening: connections are refused
    sdk::testing::FakeHost host;
    rmq::RabbitMqQueue queue(
        host, options({{"port", std::to_string(closed.port())}, {"connect_timeout_ms", "2000"}}));
    const auto begin = std::chrono::steady_clock::now();
    sdk::Status status = queue.start();
    CHECK(std::chrono::steady_clock::now() - begin < 5s);
    CHECK(status.code() == sdk::ErrorCode::Unavailable);
    CHECK_THAT(status.message(), Catch::Contains("127.0.0.1:" + std::to_string(closed.port())));
    CHECK_THAT(status.message(), Catch::Contains("connect failed"));
    // A failed start leaves the object usable for another attempt, which fails the same way.
    CHECK(queue.start().code() == sdk::ErrorCode::Unavailable);
}

TEST_CASE("rabbitmq start gives up after connect_timeout_ms on a silent peer",
          "[unit][mq][rabbitmq-unit]") {
    LocalSocket silent(true);  // accepts TCP but never speaks AMQP
    sdk::testing::FakeHost host;
    rmq::RabbitMqQueue queue(
        host, options({{"port", std::to_string(silent.port())}, {"connect_timeout_ms", "300"}}));
    const auto begin = std::chrono::steady_clock::now();
    sdk::Status status = queue.start();
    const auto elapsed = std::chrono::steady_clock::now() - begin;
    CHECK(elapsed >= 250ms);
    CHECK(elapsed < 5s);
    CHECK_FALSE(status.is_ok());
    CHECK(
        (status.code() == sdk::ErrorCode::Unavailable || status.code() == sdk::ErrorCode::Timeout));
    CHECK_THAT(status.message(), Catch::Contains("127.0.0.1:" + std::to_string(silent.port())));
}

TEST_CASE("rabbitmq consumer epochs wrap within the 20 tag bits", "[unit][mq][rabbitmq-unit]") {
    CHECK(rmq::kMaxEpoch == (1U << 20) - 1);
    CHECK(rmq::next_epoch(0) == 1);
    CHECK(rmq::next_epoch(41) == 42);
    // 2^20 - 1 resubscriptions later the next epoch is 1 again, never 2^20 (which shifted by 44
    // leaves the 64-bit tag: epoch 0, and every ack refused as stale).
    std::uint32_t epoch = rmq::kMaxEpoch - 2;
    for (int i = 0; i < 5; ++i) {
        epoch = rmq::next_epoch(epoch);
        CHECK(epoch >= 1);
        CHECK(epoch <= rmq::kMaxEpoch);
        const std::uint64_t tag = rmq::make_tag(epoch, 12345);
        CHECK((tag >> rmq::kEpochShift) == epoch);
        CHECK((tag & ((std::uint64_t{1} << rmq::kEpochShift) - 1)) == 12345);
    }
    CHECK(rmq::next_epoch(rmq::kMaxEpoch) == 1);
}

TEST_CASE("rabbitmq tells which publish a publish-channel error refers to",
          "[unit][mq][rabbitmq-unit]") {
    using Facts = rmq::PublishFacts;
    const std::vector<Facts> inflight{{1, 10, {}}, {2, 20000000, {"trace"}}, {3, 30, {"CC"}}};
    // The broker's 406 for an oversized body names its size.
    CHECK(rmq::channel_error_culprits(inflight, "PRECONDITION_FAILED - message size 20000000 is "
                                                "larger than configured max size 16777216") ==
          std::vector<std::uint64_t>{2});
    // A string CC/BCC header (routing headers must be arrays) names the header.
    CHECK(rmq::channel_error_culprits(inflight,
                                      "PRECONDITION_FAILED - invalid message: "
                                      "{unacceptable_type_in_header,\"CC\",longstr}") ==
          std::vector<std::uint64_t>{3});
    // A size no publish has, or a text naming nothing: not identifiable.
    CHECK(rmq::channel_error_culprits(inflight, "PRECONDITION_FAILED - message size 7 is larger")
              .empty());
    CHECK(rmq::channel_error_culprits(inflight, "ACCESS_REFUSED - write access refused").empty());
    // With one publish in flight, it is the one the broker refused.
    CHECK(rmq::channel_error_culprits({{9, 5, {}}}, "ACCESS_REFUSED - anything") ==
          std::vector<std::uint64_t>{9});
}

TEST_CASE("rabbitmq log fields survive invalid UTF-8", "[unit][mq][rabbitmq-unit]") {
    std::string text;
    REQUIRE_NOTHROW(text = rmq::log_fields(nlohmann::json{{"error", "message '\xff' failed"}}));
    CHECK_THAT(text, Catch::Contains("failed"));
}

TEST_CASE("rabbitmq sizes a publish's content header as rabbitmq-c encodes it",
          "[unit][mq][rabbitmq-unit]") {
    // The size rule that refuses headers too large for one frame must match the bytes
    // rabbitmq-c writes, or a publish just under the limit would still fail to encode.
    const auto encoded = [](const sdk::Message& message) {
        std::vector<amqp_table_entry_t> headers;
        amqp_basic_properties_t props = rmq::publish_properties(message, 12345, headers);
        std::vector<char> buffer(1024 * 1024);
        const int size = amqp_encode_properties(AMQP_BASIC_CLASS, &props,
                                                amqp_bytes_t{buffer.size(), buffer.data()});
        REQUIRE(size > 0);
        return static_cast<std::size_t>(size) + 12;  // class, weight and body size come first
    };
    sdk::Message message;
    CHECK(synergos::plugins::mq::content_header_bytes(message) == encoded(message));
    message.id = "job-1";
    message.priority = 7;
    message.headers = {{"trace", "abc"}, {"x", ""}};
    CHECK(synergos::plugins::mq::content_header_bytes(message) == encoded(message));
    message.content_type.clear();
    message.id.clear();
    message.headers.emplace_back(std::string(255, 'k'), std::string(100000, 'v'));
    CHECK(synergos::plugins::mq::content_header_bytes(message) == encoded(message));

    // The largest header that fits a frame of 131072 bytes passes; one byte more is refused.
    sdk::Message edge;
    edge.id = "edge";
    edge.headers = {{"trace", ""}};
    const std::size_t room = 131072 - 8 - synergos::plugins::mq::content_header_bytes(edge);
    edge.headers[0].second.assign(room, 't');
    CHECK(synergos::plugins::mq::validate_content_header("q", edge, 131072).is_ok());
    edge.headers[0].second.push_back('t');
    const sdk::Status refused = synergos::plugins::mq::validate_content_header("q", edge, 131072);
    CHECK(refused.code() == sdk::ErrorCode::InvalidArgument);
    CHECK_THAT(refused.message(), Catch::Contains("131065 bytes"));
    CHECK_THAT(refused.message(), Catch::Contains("frame_max 131072"));
    CHECK_THAT(refused.message(), Catch::Contains("'edge'"));
}
