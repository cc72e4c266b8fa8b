// SPDX-License-Identifier: Apache-2.0
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

#include <synergos/core/http/client.hpp>
#include <synergos/core/http/router.hpp>
#include <synergos/core/http/server.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "http_test_util.hpp"

namespace {

using namespace std::chrono_literals;
using synergos::core::http::ClientOptions;
using synergos::core::http::HttpClient;
using synergos::core::http::HttpServer;
using synergos::core::http::Request;
using synergos::core::http::Response;
using synergos::core::http::Router;
using synergos::core::http::ServerOptions;
using synergos::sdk::ErrorCode;

struct Fixture {
    Fixture(ServerOptions options = {}) {
        options.port = 0;
        options.body_limit_bytes = 64 * 1024 * 1024;
        router.add("POST", "/echo", [](const Request& r) {
            Response res;
            res.content_type = r.header("content-type");
            res.body = r.body;
            res.headers.emplace_back("X-Method", r.method);
            return res;
        });
        router.add("GET", "/big", [](const Request&) {
            Response res;
            res.body = std::string(5000, 'x');
            return res;
        });
        router.add("GET", "/wait", [this](const Request&) {
            std::unique_lock<std::mutex> lock(mutex);
            cv.wait_for(lock, 5s, [this] { return released; });
            return Response::json(200, "late");
        });
        server = std::make_unique<HttpServer>(options, router, logger);
        REQUIRE(server->start().is_ok());
    }
    ~Fixture() {
        release();
        server->stop(2s);
    }
    void release() {
        std::lock_guard<std::mutex> lock(mutex);
        released = true;
        cv.notify_all();
    }
    std::uint16_t port() const {
        return server->bound_port();
    }

    synergos::sdk::testing::CapturingLogger logger;
    Router router;
    std::unique_ptr<HttpServer> server;
    std::mutex mutex;
    std::condition_variable cv;
    bool released = false;
};

}  // namespace

TEST_CASE("HttpClient round-trips a body of several MB on one connection", "[unit][http]") {
    Fixture f;
    HttpClient client;
    std::string payload(6 * 1024 * 1024, '\0');
    for (std::size_t i = 0; i < payload.size(); ++i) {
        payload[i] = static_cast<char>(i * 31 % 251);
    }
    for (int i = 0; i < 2; ++i) {
        auto res = client.request("POST", "127.0.0.1", f.port(), "/echo", payload,
                                  "application/octet-stream", 20s);
        REQUIRE(res.has_value());
        CHECK(res->status == 200);
        CHECK(res->body == payload);
        CHECK(res->content_type == "application/octet-stream");
        CHECK(res->header("x-method") == "POST");
    }
    CHECK(client.connections_opened() == 1);
    CHECK(client.idle_connections() == 1);
}

TEST_CASE("HttpClient reports a timeout when the response does not come in time", "[unit][http]") {
    Fixture f;
    HttpClient client;
    const auto began = std::chrono::steady_clock::now();
    auto res = client.request("GET", "127.0.0.1", f.port(), "/wait", {}, "application/json", 200ms);
    REQUIRE_FALSE(res.has_value());
    CHECK(res.error().code == ErrorCode::Timeout);
    CHECK(res.error().message.find("/wait") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - began < 3s);
    f.release();
    // A fresh request works after the timed-out connection was dropped.
    CHECK(client.request("POST", "127.0.0.1", f.port(), "/echo", "{}")->status == 200);
}

TEST_CASE("HttpClient reports an unreachable peer as Unavailable", "[unit][http]") {
    std::uint16_t port = 0;
    {
        Fixture f;
        port = f.port();
    }
    HttpClient client;
    auto res = client.request("GET", "127.0.0.1", port, "/x", {}, "application/json", 2s);
    REQUIRE_FALSE(res.has_value());
    CHECK(res.error().code == ErrorCode::Unavailable);
    CHECK(res.error().message.find(std::to_string(port)) != std::string::npos);
}

TEST_CASE("HttpClient retries once when the server closed the idle connection", "[unit][http]") {
    ServerOptions options;
    options.keep_alive_timeout = 100ms;
    Fixture f(options);
    HttpClient client;
    REQUIRE(client.request("POST", "127.0.0.1", f.port(), "/echo", "1")->status == 200);
    REQUIRE(synergos::testing::wait_until([&] { return f.server->connection_count() == 0; }));
    auto res = client.request("POST", "127.0.0.1", f.port(), "/echo", "2");
    REQUIRE(res.has_value());
    CHECK(res->body == "2");
    CHECK(client.connections_opened() == 2);
}

TEST_CASE("HttpClient refuses oversized responses and bad requests", "[unit][http]") {
    Fixture f;
    ClientOptions options;
    options.max_response_bytes = 1000;
    HttpClient small(options);
    auto big = small.request("GET", "127.0.0.1", f.port(), "/big");
    INFO("status " << (big ? big->status : 0) << " " << (big ? big->body.substr(0, 100) : ""));
    REQUIRE_FALSE(big.has_value());
    CHECK(big.error().code == ErrorCode::ResourceExhausted);
    auto bad_method = small.request("FETCH", "127.0.0.1", f.port(), "/big");
    REQUIRE_FALSE(bad_method.has_value());
    CHECK(bad_method.error().code == ErrorCode::InvalidArgument);
    auto bad_path = small.request("GET", "127.0.0.1", f.port(), "big");
    REQUIRE_FALSE(bad_path.has_value());
    CHECK(bad_path.error().code == ErrorCode::InvalidArgument);
}

namespace {

/// A one-shot server on loopback that reads one request (headers and a Content-Length body)
/// and answers with `response` verbatim, then closes.
class CannedServer {
public:
    explicit CannedServer(std::string response) : response_(std::move(response)) {
        listener_ = synergos::testing::listen_loopback(port, 4);
        REQUIRE(listener_ >= 0);
        thread_ = std::thread([this] { serve(); });
    }
    ~CannedServer() {
        ::shutdown(listener_, SHUT_RDWR);
        thread_.join();
        ::close(listener_);
    }
    std::uint16_t port = 0;
    std::string request;  ///< what arrived (read after the client's call returned)

private:
    void serve() {
        const int fd = ::accept(listener_, nullptr, nullptr);
        if (fd < 0) {
            return;
        }
        request = synergos::testing::read_request(fd);
        (void)!::write(fd, response_.data(), response_.size());
        ::close(fd);  // the whole request was read: closing sends no reset
    }

    std::string response_;
    int listener_ = -1;
    std::thread thread_;
};

/// Collects a streamed body in pieces of at most 7 bytes; can refuse after `abort_after` bytes.
class SmallPieces final : public synergos::core::http::ResponseSink {
public:
    explicit SmallPieces(std::size_t abort_after = SIZE_MAX) : abort_after_(abort_after) {}
    synergos::sdk::Status on_head(const Response& head,
                                  std::optional<std::uint64_t> length) override {
        status = head.status;
        declared = length;
        return {};
    }
    std::span<char> next_buffer() override {
        return {piece_, sizeof piece_};
    }
    synergos::sdk::Status wrote(std::size_t n) override {
        body.append(piece_, n);
        if (body.size() > abort_after_) {
            return {ErrorCode::InvalidArgument, "sink: enough"};
        }
        return {};
    }
    synergos::sdk::Status on_end() override {
        ended = true;
        return {};
    }
    void on_sent() noexcept override {
        sent = true;
    }

    int status = 0;
    std::optional<std::uint64_t> declared;
    std::string body;
    bool ended = false;
    bool sent = false;

private:
    std::size_t abort_after_;
    char piece_[7];
};

}  // namespace

TEST_CASE("HttpClient reads chunked and unframed bodies and skips the body of HEAD and 204",
          "[unit][http]") {
    HttpClient client;
    {
        CannedServer s(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n");
        auto res = client.request("GET", "127.0.0.1", s.port, "/chunked");
        REQUIRE(res.has_value());
        CHECK(res->status == 200);
        CHECK(res->body == "hello, world");
        CHECK(res->content_type == "text/plain");
    }
    {
        // No length: the body runs until the server closes.
        CannedServer s("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
        auto res = client.request("GET", "127.0.0.1", s.port, "/unframed");
        REQUIRE(res.has_value());
        CHECK(res->body == "until the end");
    }
    {
        CannedServer s("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        auto res = client.request("HEAD", "127.0.0.1", s.port, "/head", {}, "", 2s);
        REQUIRE(res.has_value());
        CHECK(res->status == 200);
        CHECK(res->body.empty());
    }
    {
        // A 204 has no body whatever its Content-Length says: the client must not wait for one.
        CannedServer s("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n");
        auto res = client.request("DELETE", "127.0.0.1", s.port, "/x", {}, "", 2s);
        REQUIRE(res.has_value());
        CHECK(res->status == 204);
        CHECK(res->body.empty());
    }
    {
        ClientOptions options;
        options.max_response_bytes = 8;
        HttpClient small(options);
        CannedServer s(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            "a\r\n0123456789\r\n0\r\n\r\n");
        auto res = small.request("GET", "127.0.0.1", s.port, "/big");
        REQUIRE_FALSE(res.has_value());
        CHECK(res.error().code == ErrorCode::ResourceExhausted);
    }
}

TEST_CASE("HttpClient streams a body sent in pieces and a response into small buffers",
          "[unit][http]") {
    Fixture f;
    HttpClient client;
    std::string a(300000, 'a');
    std::string b = "-middle-";
    std::string c(5000, 'c');
    const synergos::core::http::BodyParts parts{
        {a.data(), a.size()}, {b.data(), b.size()}, {c.data(), 0}, {c.data(), c.size()}};
    SmallPieces sink;
    auto st = client.request_streaming("POST", "127.0.0.1", f.port(), "/echo", parts,
                                       "application/octet-stream", 10s, sink);
    REQUIRE(st.is_ok());
    CHECK(sink.sent);
    CHECK(sink.ended);
    CHECK(sink.status == 200);
    REQUIRE(sink.declared.has_value());
    CHECK(*sink.declared == a.size() + b.size() + c.size());
    CHECK(sink.body == a + b + c);
    CHECK(client.idle_connections() == 1);

    // A sink that refuses mid-body ends the call with its error; the connection is not reused.
    SmallPieces refusing(1000);
    auto refused = client.request_streaming("POST", "127.0.0.1", f.port(), "/echo", parts,
                                            "application/octet-stream", 10s, refusing);
    REQUIRE_FALSE(refused.is_ok());
    CHECK(refused.message() == "sink: enough");
    CHECK_FALSE(refusing.ended);
    CHECK(client.idle_connections() == 0);
    auto again = client.request("POST", "127.0.0.1", f.port(), "/echo", "after");
    REQUIRE(again.has_value());
    CHECK(again->body == "after");
}
