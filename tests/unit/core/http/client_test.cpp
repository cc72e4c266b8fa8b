// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <synergos/core/http/client.hpp>
#include <synergos/core/http/router.hpp>
#include <synergos/core/http/server.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "http_test_util.hpp"
#include "support/process_memory.hpp"

namespace {

using synergos::testing::peak_rss_kib;
using synergos::testing::reset_peak_rss;

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

TEST_CASE("HttpClient sends a default token in plain HTTP only to this machine", "[unit][http]") {
    Fixture f;
    synergos::core::http::ClientOptions options;
    options.default_headers.emplace_back("Authorization", "Bearer worker-token-0123456789");
    HttpClient client(options);
    CHECK(client.request("POST", "127.0.0.1", f.port(), "/echo", "{}")->status == 200);
    // 0.0.0.0 is not a loopback name, though Linux delivers it over loopback: the request stays
    // on this machine either way. Before, the token went out in the clear.
    auto res = client.request("POST", "0.0.0.0", f.port(), "/echo", "{}");
    REQUIRE_FALSE(res.has_value());
    CHECK(res.error().code == ErrorCode::PermissionDenied);
    CHECK_THAT(res.error().message, Catch::Contains("worker_client.tls"));
    HttpClient tokenless;
    CHECK(tokenless.request("POST", "0.0.0.0", f.port(), "/echo", "{}")->status == 200);
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
    void on_body_progress(std::size_t n) noexcept override {
        progressed += n;
    }

    int status = 0;
    std::size_t progressed = 0;  ///< request body bytes reported written
    std::optional<std::uint64_t> declared;
    std::string body;
    bool ended = false;
    bool sent = false;

private:
    std::size_t abort_after_;
    char piece_[7];
};

}  // namespace

namespace {

/// A sink whose caller gives up `after` its creation (a job cancelled then).
class GivingUp final : public synergos::core::http::ResponseSink {
public:
    explicit GivingUp(std::chrono::milliseconds after = std::chrono::hours(1))
        : give_up_at_(std::chrono::steady_clock::now() + after) {}
    synergos::sdk::Status on_head(const Response& head, std::optional<std::uint64_t>) override {
        status = head.status;
        return {};
    }
    std::span<char> next_buffer() override { return {piece_, sizeof piece_}; }
    synergos::sdk::Status wrote(std::size_t n) override {
        body.append(piece_, n);
        return {};
    }
    synergos::sdk::Status on_end() override { return {}; }
    bool abandoned() noexcept override { return std::chrono::steady_clock::now() >= give_up_at_; }

    int status = 0;
    std::string body;

private:
    const std::chrono::steady_clock::time_point give_up_at_;
    char piece_[64];
};

}  // namespace

TEST_CASE("HttpClient gives up a waiting request once its sink is abandoned and stays usable",
          "[unit][http]") {
    Fixture f;  // its /wait answers after 5 s unless released
    HttpClient client;
    GivingUp sink(300ms);
    const auto began = std::chrono::steady_clock::now();
    auto st = client.request_streaming("GET", "127.0.0.1", f.port(), "/wait", {}, "application/json",
                                       30s, sink);
    const auto took = std::chrono::steady_clock::now() - began;
    REQUIRE_FALSE(st.is_ok());
    CHECK(st.code() == ErrorCode::Cancelled);
    CHECK_THAT(st.message(), Catch::Contains("/wait") && Catch::Contains("stopped by its caller"));
    CHECK(took >= 250ms);
    CHECK(took < 3s);  // not the 5 s of the answer, nor the 30 s of the timeout
    CHECK(client.idle_connections() == 0);  // the abandoned connection is not reused
    f.release();
    // The client serves the next request on a fresh connection.
    GivingUp quick;
    const std::string hello = "hello";
    const synergos::core::http::BodyParts parts{{hello.data(), hello.size()}};
    REQUIRE(client.request_streaming("POST", "127.0.0.1", f.port(), "/echo", parts, "text/plain", 10s, quick)
                .is_ok());
    CHECK(quick.status == 200);
    CHECK(quick.body == "hello");
}

TEST_CASE("HttpClient gives up a reply that keeps trickling in once its sink is abandoned", "[unit][http]") {
    // A byte every 20 ms of a 1 MB body: each read ends well within the 0.1 s between checks.
    std::uint16_t port = 0;
    const int listener = synergos::testing::listen_loopback(port, 4);
    REQUIRE(listener >= 0);
    std::atomic<bool> done{false};
    std::thread server([&] {
        const int fd = ::accept(listener, nullptr, nullptr);
        if (fd < 0) {
            return;
        }
        (void)synergos::testing::read_request(fd);
        const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                 "Content-Length: 1000000\r\n\r\n";
        (void)!::write(fd, head.data(), head.size());
        for (int i = 0; i < 1500 && !done; ++i) {  // at most 30 s
            if (::write(fd, "x", 1) != 1) {
                break;  // the client closed the connection
            }
            std::this_thread::sleep_for(20ms);
        }
        ::close(fd);
    });
    HttpClient client;
    GivingUp sink(300ms);
    const auto began = std::chrono::steady_clock::now();
    auto st = client.request_streaming("GET", "127.0.0.1", port, "/slow", {}, "application/json", 60s, sink);
    const auto took = std::chrono::steady_clock::now() - began;
    done = true;
    ::shutdown(listener, SHUT_RDWR);
    server.join();
    ::close(listener);
    REQUIRE_FALSE(st.is_ok());
    CHECK(st.code() == ErrorCode::Cancelled);
    CHECK(took < 5s);
    CHECK_FALSE(sink.body.empty());  // it was receiving when it was given up
}

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
    CHECK(sink.progressed == a.size() + b.size() + c.size());  // the last write counted too
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

namespace {

/// A name lookup for `detail::set_resolve_for_testing` that blocks until released (a DNS
/// server that does not answer), then resolves to 127.0.0.1. Restores getaddrinfo when done.
struct HangingDns {
    struct State {
        std::mutex mutex;
        std::condition_variable cv;
        bool released = false;
        std::atomic<int> entered{0};
        std::atomic<int> left{0};
    };
    HangingDns() {
        synergos::core::http::detail::set_resolve_for_testing(
            [state = state](const std::string&) -> synergos::sdk::Result<std::vector<std::string>> {
                ++state->entered;
                {
                    std::unique_lock<std::mutex> lock(state->mutex);
                    state->cv.wait_for(lock, 5s, [&] { return state->released; });
                }
                ++state->left;
                return std::vector<std::string>{"127.0.0.1"};
            });
    }
    ~HangingDns() {
        release();
        synergos::core::http::detail::set_resolve_for_testing({});
        // Lookup threads outlive their calls: let them end before the next test counts them.
        synergos::testing::wait_until([&] { return state->left == state->entered; });
    }
    void release() {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->released = true;
        state->cv.notify_all();
    }
    std::shared_ptr<State> state = std::make_shared<State>();
};

}  // namespace

TEST_CASE("HttpClient bounds a hanging name lookup by the request timeout", "[unit][http]") {
    Fixture f;
    HangingDns dns;
    HttpClient client;
    const auto began = std::chrono::steady_clock::now();
    auto res =
        client.request("GET", "worker.example", f.port(), "/big", {}, "application/json", 300ms);
    const auto took = std::chrono::steady_clock::now() - began;
    REQUIRE_FALSE(res.has_value());
    CHECK(res.error().code == ErrorCode::Timeout);
    CHECK(res.error().message.find("worker.example") != std::string::npos);
    CHECK(took < 3s);  // the lookup itself hangs until released
    CHECK(dns.state->entered == 1);
    // Numeric addresses never go through the lookup.
    CHECK(client.request("GET", "127.0.0.1", f.port(), "/big")->status == 200);
    (void)client.request("GET", "::1", f.port(), "/big", {}, "", 2s);  // IPv6: any answer
    CHECK(dns.state->entered == 1);
    // Once the lookup answers, a name connects.
    dns.release();
    auto named = client.request("GET", "worker.example", f.port(), "/big", {}, "", 2s);
    REQUIRE(named.has_value());
    // Reached: the token-less loopback server answers a dotted Host name with its DNS-rebinding
    // refusal, which names the host it was asked for.
    CHECK(named->status == 403);
    CHECK(named->body.find("worker.example") != std::string::npos);
}

TEST_CASE("HttpClient caps the name lookups pending at once", "[unit][http]") {
    HangingDns dns;
    HttpClient client;
    std::vector<std::thread> callers;
    std::atomic<int> timed_out{0};
    for (int i = 0; i < 32; ++i) {
        callers.emplace_back([&] {
            auto res = client.request("GET", "hung.example", 9, "/", {}, "", 300ms);
            if (!res && res.error().code == ErrorCode::Timeout) {
                ++timed_out;
            }
        });
    }
    for (auto& t : callers) {
        t.join();
    }
    CHECK(timed_out == 32);
    REQUIRE(dns.state->entered == 32);  // still blocked: 32 lookups pending
    const auto began = std::chrono::steady_clock::now();
    auto refused = client.request("GET", "one-more.example", 9, "/", {}, "", 5s);
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().code == ErrorCode::Unavailable);
    CHECK(refused.error().message.find("pending") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - began < 3s);  // refused, not its 5 s timeout
    CHECK(dns.state->entered == 32);
}

namespace {

/// A raw keep-alive server on loopback: every request it reads (on any connection, one thread
/// each) goes to `script` with its number (from 0), which says what to send back: pieces
/// written 50 ms apart, then whether to close. No pieces: close without answering.
class ScriptedServer {
public:
    struct Answer {
        std::vector<std::string> pieces;
        bool close = false;
    };
    using Script = std::function<Answer(int n, const std::string& request)>;

    explicit ScriptedServer(Script script) : script_(std::move(script)) {
        listener_ = synergos::testing::listen_loopback(port, 8);
        REQUIRE(listener_ >= 0);
        acceptor_ = std::thread([this] { accept_loop(); });
    }
    ~ScriptedServer() {
        ::shutdown(listener_, SHUT_RDWR);
        acceptor_.join();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (int fd : open_) {
                ::shutdown(fd, SHUT_RDWR);
            }
        }
        for (auto& t : connections_) {
            t.join();
        }
        ::close(listener_);
    }
    std::uint16_t port = 0;
    std::atomic<int> requests{0};  ///< requests read in full
    std::atomic<int> closed{0};    ///< connections this server closed

private:
    void accept_loop() {
        for (;;) {
            const int fd = ::accept(listener_, nullptr, nullptr);
            if (fd < 0) {
                return;
            }
            std::lock_guard<std::mutex> lock(mutex_);
            open_.push_back(fd);
            connections_.emplace_back([this, fd] { serve(fd); });
        }
    }
    void serve(int fd) {
        for (;;) {
            const std::string request = synergos::testing::read_request(fd);
            if (request.find("\r\n\r\n") == std::string::npos) {
                break;  // the client closed (or the test ends)
            }
            const Answer answer = script_(requests++, request);
            for (std::size_t i = 0; i < answer.pieces.size(); ++i) {
                if (i > 0) {
                    std::this_thread::sleep_for(50ms);
                }
                (void)!::write(fd, answer.pieces[i].data(), answer.pieces[i].size());
            }
            if (answer.pieces.empty() || answer.close) {
                break;
            }
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            open_.erase(std::find(open_.begin(), open_.end(), fd));
        }
        ::close(fd);
        ++closed;
    }

    Script script_;
    int listener_ = -1;
    std::thread acceptor_;
    std::mutex mutex_;
    std::vector<int> open_;
    std::vector<std::thread> connections_;
};

std::string ok(const std::string& body) {
    return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

}  // namespace

TEST_CASE("HttpClient does not send a POST again when the connection ends after the request",
          "[unit][http]") {
    // The worker answers the first POST then runs the second and dies before answering: the
    // TTP must not run it a second time on a fresh connection.
    ScriptedServer s([](int n, const std::string&) -> ScriptedServer::Answer {
        if (n == 0) {
            return {{ok("first")}};
        }
        return {};
    });
    HttpClient client;
    auto first =
        client.request("POST", "127.0.0.1", s.port, "/train", "{}", "application/json", 5s);
    REQUIRE(first.has_value());
    CHECK(first->body == "first");
    auto second =
        client.request("POST", "127.0.0.1", s.port, "/train", "{}", "application/json", 5s);
    REQUIRE_FALSE(second.has_value());
    CHECK(second.error().code == ErrorCode::Unavailable);
    CHECK(synergos::testing::wait_until([&] { return s.closed == 1; }));
    std::this_thread::sleep_for(100ms);  // a resend, if any, would have arrived by now
    CHECK(s.requests == 2);
    CHECK(client.connections_opened() == 1);
}

TEST_CASE("HttpClient does not reuse a pooled connection the server closed while idle",
          "[unit][http]") {
    ScriptedServer s([](int n, const std::string&) -> ScriptedServer::Answer {
        if (n == 0) {
            return {{ok("first")}, /*close=*/true};  // keep-alive promised, then closed idle
        }
        return {{ok("second")}};
    });
    HttpClient client;
    REQUIRE(client.request("POST", "127.0.0.1", s.port, "/train", "{}")->body == "first");
    REQUIRE(synergos::testing::wait_until([&] { return s.closed == 1; }));
    std::this_thread::sleep_for(100ms);  // the FIN reaches the client's socket
    auto second =
        client.request("POST", "127.0.0.1", s.port, "/train", "{}", "application/json", 5s);
    REQUIRE(second.has_value());
    CHECK(second->body == "second");
    CHECK(s.requests == 2);  // sent once, on a new connection
    CHECK(client.connections_opened() == 2);
}

TEST_CASE("HttpClient does not reuse a connection idle longer than max_idle_time", "[unit][http]") {
    ScriptedServer s(
        [](int, const std::string&) -> ScriptedServer::Answer { return {{ok("hi")}}; });
    ClientOptions options;
    options.max_idle_time = 1s;  // long enough that a loaded machine reuses it between two calls
    HttpClient client(options);
    REQUIRE(client.request("POST", "127.0.0.1", s.port, "/a", "{}")->body == "hi");
    REQUIRE(client.request("POST", "127.0.0.1", s.port, "/a", "{}")->body == "hi");
    CHECK(client.connections_opened() == 1);
    std::this_thread::sleep_for(1500ms);
    REQUIRE(client.request("POST", "127.0.0.1", s.port, "/a", "{}")->body == "hi");
    CHECK(client.connections_opened() == 2);
    CHECK(s.requests == 3);
}

TEST_CASE("HttpClient skips interim 1xx answers and keeps the connection in step", "[unit][http]") {
    ScriptedServer s([](int n, const std::string&) -> ScriptedServer::Answer {
        if (n == 0) {
            return {{"HTTP/1.1 100 Continue\r\n\r\n",
                     "HTTP/1.1 103 Early Hints\r\nLink: </w>; rel=preload\r\n\r\n", ok("first")}};
        }
        return {{ok("second")}};
    });
    HttpClient client;
    auto first = client.request("POST", "127.0.0.1", s.port, "/a", "{}", "application/json", 5s);
    REQUIRE(first.has_value());
    CHECK(first->status == 200);
    CHECK(first->body == "first");
    auto second = client.request("POST", "127.0.0.1", s.port, "/b", "{}", "application/json", 5s);
    REQUIRE(second.has_value());
    CHECK(second->status == 200);
    CHECK(second->body == "second");
    CHECK(client.connections_opened() == 1);
}

TEST_CASE("HttpClient commits memory for a response as its bytes arrive not at its header",
          "[unit][http]") {
    // Declares 512 MiB and sends three bytes of it, then nothing until the test ends.
    constexpr std::size_t declared = std::size_t{512} << 20;
    ScriptedServer s([](int, const std::string&) -> ScriptedServer::Answer {
        return {{"HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(declared) + "\r\n\r\nabc"}};
    });
    HttpClient client;
    reset_peak_rss();
    const long before = peak_rss_kib();
    auto res = client.request("GET", "127.0.0.1", s.port, "/huge", {}, "", 300ms);
    const long grown = peak_rss_kib() - before;
    REQUIRE_FALSE(res.has_value());
    CHECK(res.error().code == ErrorCode::Timeout);
    INFO("peak RSS grew by " << grown << " KiB");
    CHECK(grown < 32 * 1024);
}
