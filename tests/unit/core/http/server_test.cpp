// SPDX-License-Identifier: Apache-2.0
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/core/http/client.hpp>
#include <synergos/core/http/router.hpp>
#include <synergos/core/http/server.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "../../../security/certs.hpp"
#include "http_test_util.hpp"
#include "support/process_memory.hpp"

namespace {

using namespace std::chrono_literals;
using synergos::core::http::HttpClient;
using synergos::core::http::HttpServer;
using synergos::core::http::Request;
using synergos::core::http::Response;
using synergos::core::http::Router;
using synergos::core::http::ServerOptions;
using synergos::testing::RawConnection;
using synergos::testing::status_kib;
using synergos::testing::wait_until;

ServerOptions test_options() {
    ServerOptions o;
    o.port = 0;
    o.threads = 2;
    o.body_limit_bytes = 4096;
    return o;
}

Router echo_router() {
    Router router;
    router.add("POST", "/echo", [](const Request& r) {
        Response res;
        res.content_type = "application/octet-stream";
        res.body = r.body;
        return res;
    });
    router.add("GET", "/hello", [](const Request&) {
        return Response::json(200, {{"hello", "world"}});
    });
    return router;
}

/// Blocks a handler until released (or 5 s), and tells when it has been entered.
struct Gate {
    std::mutex mutex;
    std::condition_variable cv;
    bool entered = false;
    bool open = false;

    void enter_and_wait(std::chrono::milliseconds limit = 5s) {
        std::unique_lock<std::mutex> lock(mutex);
        entered = true;
        cv.notify_all();
        cv.wait_for(lock, limit, [&] { return open; });
    }
    bool wait_entered() {
        std::unique_lock<std::mutex> lock(mutex);
        return cv.wait_for(lock, 5s, [&] { return entered; });
    }
    void release() {
        std::lock_guard<std::mutex> lock(mutex);
        open = true;
        cv.notify_all();
    }
};

}  // namespace

TEST_CASE("HttpServer binds an ephemeral port and keeps connections alive", "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    HttpServer server(test_options(), router, logger);
    REQUIRE(server.start().is_ok());
    REQUIRE(server.bound_port() != 0);
    HttpClient client;
    for (int i = 0; i < 3; ++i) {
        auto res = client.request("GET", "127.0.0.1", server.bound_port(), "/hello");
        REQUIRE(res.has_value());
        CHECK(res->status == 200);
        CHECK(nlohmann::json::parse(res->body)["hello"] == "world");
        CHECK(res->header("Server") == "synergos");
    }
    CHECK(client.connections_opened() == 1);
    CHECK(server.connection_count() == 1);
    CHECK(logger.contains("http request"));
    bool saw_fields = false;
    for (const auto& line : logger.lines()) {
        if (line.event == "http request") {
            auto fields = nlohmann::json::parse(line.fields_json);
            saw_fields = fields["status"] == 200 && fields["path"] == "/hello" &&
                         fields.contains("duration_ms");
        }
    }
    CHECK(saw_fields);
    CHECK(server.stop(2s));
}

TEST_CASE("HttpServer answers health probes and readiness", "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router;
    HttpServer server(test_options(), router, logger);
    REQUIRE(server.start().is_ok());
    HttpClient client;
    CHECK(client.request("GET", "127.0.0.1", server.bound_port(), "/healthz")->status == 200);
    CHECK(client.request("GET", "127.0.0.1", server.bound_port(), "/readyz")->status == 200);
    server.set_ready(false);
    auto res = client.request("GET", "127.0.0.1", server.bound_port(), "/readyz");
    CHECK(res->status == 503);
    CHECK(nlohmann::json::parse(res->body)["message"] == "server is not ready");
}

TEST_CASE("HttpServer refuses bodies over the limit with 413", "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    HttpServer server(test_options(), router, logger);
    REQUIRE(server.start().is_ok());
    HttpClient client;
    auto small =
        client.request("POST", "127.0.0.1", server.bound_port(), "/echo", std::string(4096, 'a'));
    REQUIRE(small.has_value());
    CHECK(small->status == 200);
    CHECK(small->body.size() == 4096);

    SECTION("declared by Content-Length") {
        auto big = client.request("POST", "127.0.0.1", server.bound_port(), "/echo",
                                  std::string(4097, 'a'));
        REQUIRE(big.has_value());
        CHECK(big->status == 413);
        CHECK(nlohmann::json::parse(big->body)["message"].get<std::string>().find("4096") !=
              std::string::npos);
    }
    SECTION("sent chunked") {
        RawConnection raw(server.bound_port());
        REQUIRE(raw.connected());
        raw.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1400\r\n" +
                 std::string(0x1400, 'b') + "\r\n0\r\n\r\n");
        bool closed = false;
        const std::string reply = raw.read_all(&closed);
        CHECK(reply.rfind("HTTP/1.1 413", 0) == 0);
        CHECK(closed);
    }
    // The server keeps serving.
    CHECK(client.request("GET", "127.0.0.1", server.bound_port(), "/hello")->status == 200);
}

TEST_CASE("HttpServer enforces header and body read timeouts", "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    ServerOptions options = test_options();
    options.header_timeout = 300ms;
    options.body_timeout = 300ms;
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());

    SECTION("partial headers: the connection closes at the header timeout") {
        // Before the connect: the server's timer starts after it, so `>= 300 ms` holds however
        // long this thread is held up in between.
        const auto began = std::chrono::steady_clock::now();
        RawConnection raw(server.bound_port());
        raw.send("GET /hello HTTP/1.1\r\nHost: x\r\n");
        bool closed = false;
        CHECK(raw.read_all(&closed).empty());
        CHECK(closed);  // read_all's own timeout is 5 s: closed means the server closed it
        CHECK(std::chrono::steady_clock::now() - began >= 300ms);
        CHECK(std::chrono::steady_clock::now() - began < 4s);
    }
    SECTION("a silent connection is closed") {
        RawConnection raw(server.bound_port());
        bool closed = false;
        CHECK(raw.read_all(&closed).empty());
        CHECK(closed);
    }
    SECTION("a body that stops arriving: the connection closes at the body timeout") {
        RawConnection raw(server.bound_port());
        raw.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789");
        bool closed = false;
        CHECK(raw.read_all(&closed).empty());
        CHECK(closed);
    }
    CHECK(wait_until([&] { return server.connection_count() == 0; }));
}

TEST_CASE("HttpServer answers 503 past the connection limit", "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    ServerOptions options = test_options();
    options.max_connections = 2;
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());
    RawConnection a(server.bound_port());
    RawConnection b(server.bound_port());
    REQUIRE(wait_until([&] { return server.connection_count() == 2; }));
    RawConnection c(server.bound_port());
    bool closed = false;
    const std::string reply = c.read_all(&closed);
    CHECK(reply.rfind("HTTP/1.1 503", 0) == 0);
    CHECK(reply.find("too many connections") != std::string::npos);
    CHECK(closed);
    CHECK(logger.contains("limit reached"));
}

TEST_CASE("HttpServer answers 503 past the connection limit of one address and serves others",
          "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    ServerOptions options = test_options();
    options.max_connections = 10;
    options.max_connections_per_peer = 2;
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());
    auto a = std::make_unique<RawConnection>(server.bound_port());
    RawConnection b(server.bound_port());
    REQUIRE(wait_until([&] { return server.connection_count() == 2; }));
    {
        RawConnection c(server.bound_port());
        bool closed = false;
        const std::string reply = c.read_all(&closed);
        CHECK(reply.rfind("HTTP/1.1 503", 0) == 0);
        CHECK(reply.find("too many connections from this address (limit 2)") != std::string::npos);
        CHECK(closed);
        CHECK(logger.contains("limit per address reached"));
    }
    const auto served = [&](const char* from) {
        RawConnection other(server.bound_port(), std::chrono::seconds(5), from);
        REQUIRE(other.connected());
        other.send("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        const std::string reply = other.read_all();
        INFO(reply);
        return reply.rfind("HTTP/1.1 200", 0) == 0;
    };
    // Another address has its own count.
    CHECK(served("127.0.0.2"));
    // A place of the first address frees when one of its connections closes.
    a.reset();
    REQUIRE(wait_until([&] { return server.connection_count() == 1; }));
    CHECK(served("127.0.0.1"));
}

TEST_CASE("HttpServer answers malformed requests with 400 and keeps serving", "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    HttpServer server(test_options(), router, logger);
    REQUIRE(server.start().is_ok());
    for (const std::string& junk :
         {std::string("NOT HTTP AT ALL\r\n\r\n"), std::string("GET / HTTP/9.9\r\n\r\n"),
          std::string("GET /hello HTTP/1.1\r\nBad Header\r\n\r\n"),
          std::string("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")}) {
        RawConnection raw(server.bound_port());
        raw.send(junk);
        const std::string reply = raw.read_all();
        INFO(junk);
        CHECK(reply.rfind("HTTP/1.1 400", 0) == 0);
        CHECK(reply.find("\"message\"") != std::string::npos);
    }
    HttpClient client;
    CHECK(client.request("GET", "127.0.0.1", server.bound_port(), "/hello")->status == 200);
}

TEST_CASE("HttpServer refuses framing that would smuggle a request or make it hold memory",
          "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    ServerOptions options = test_options();
    options.body_limit_bytes = 1024 * 1024;  // above the GET bound
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());
    const auto answers = [](const std::string& reply) {
        std::size_t n = 0;
        for (auto at = reply.find("HTTP/1.1 "); at != std::string::npos;
             at = reply.find("HTTP/1.1 ", at + 1)) {
            ++n;
        }
        return n;
    };
    SECTION("a Transfer-Encoding other than chunked: its body is not run as a second request") {
        for (const std::string& coding : {std::string("gzip"), std::string("chunked, identity")}) {
            RawConnection raw(server.bound_port());
            raw.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + coding +
                     "\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
            bool closed = false;
            const std::string reply = raw.read_all(&closed);
            INFO(coding);
            CHECK(reply.rfind("HTTP/1.1 400", 0) == 0);
            CHECK(reply.find("only 'chunked'") != std::string::npos);
            CHECK(answers(reply) == 1);
            CHECK(closed);
        }
    }
    SECTION("a GET with a body over 64 KiB, declared or chunked; a small one is served") {
        RawConnection raw(server.bound_port());
        raw.send("GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n");
        const std::string reply = raw.read_all();
        INFO(reply);
        CHECK(reply.rfind("HTTP/1.1 413", 0) == 0);
        CHECK(reply.find("GET or HEAD request's body exceeds the 65536-byte limit") !=
              std::string::npos);
        RawConnection chunked(server.bound_port());
        chunked.send("GET /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n11170\r\n" +
                     std::string(0x11170, 'g') + "\r\n0\r\n\r\n");
        CHECK(chunked.read_all().rfind("HTTP/1.1 413", 0) == 0);
        RawConnection small(server.bound_port());
        small.send("GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        CHECK(small.read_all().rfind("HTTP/1.1 200", 0) == 0);
    }
    SECTION("a chunk extension that never ends is cut at a bound, not buffered") {
        RawConnection raw(server.bound_port());
        (void)raw.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;" +
                       std::string(1024 * 1024, 'a'));
        bool closed = false;
        const std::string reply = raw.read_all(&closed);
        CHECK(reply.rfind("HTTP/1.1 400", 0) == 0);
        CHECK(closed);
    }
    HttpClient client;
    CHECK(client.request("GET", "127.0.0.1", server.bound_port(), "/hello")->status == 200);
}

TEST_CASE("HttpServer without tokens refuses changes and reads from another site's page",
          "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    HttpServer server(test_options(), router, logger);
    REQUIRE(server.start().is_ok());
    const auto post = [&](const std::string& headers) {
        RawConnection raw(server.bound_port());
        raw.send("POST /echo HTTP/1.1\r\nHost: 127.0.0.1:5000\r\n" + headers +
                 "Content-Length: 2\r\nConnection: close\r\n\r\n{}");
        return raw.read_all();
    };
    const std::string foreign = post("Origin: http://evil.example\r\n");
    CHECK(foreign.rfind("HTTP/1.1 403", 0) == 0);
    CHECK(foreign.find("evil.example") != std::string::npos);
    CHECK(post("Origin: null\r\n").rfind("HTTP/1.1 403", 0) == 0);
    // Its own page (the dashboard), and clients that send no Origin (CLI, TTP, curl).
    CHECK(post("Origin: http://127.0.0.1:5000\r\n").rfind("HTTP/1.1 200", 0) == 0);
    CHECK(post("").rfind("HTTP/1.1 200", 0) == 0);
    // DNS rebinding: a page on a name made to resolve to 127.0.0.1 is its own origin.
    const auto get = [&](const std::string& host) {
        RawConnection raw(server.bound_port());
        raw.send("GET /hello HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
        return raw.read_all();
    };
    const std::string rebound = get("rebind.evil.example:5000");
    CHECK(rebound.rfind("HTTP/1.1 403", 0) == 0);
    CHECK(rebound.find("rebind.evil.example") != std::string::npos);
    for (const char* fine : {"127.0.0.1:5000", "[::1]:5000", "localhost:5000", "director:5000",
                             "app.localhost"}) {
        INFO(fine);
        CHECK(get(fine).rfind("HTTP/1.1 200", 0) == 0);
    }
}

TEST_CASE("HttpServer stop lets an in-flight request finish", "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Gate gate;
    Router router = echo_router();
    router.add("GET", "/slow", [&](const Request&) {
        gate.enter_and_wait();
        return Response::json(200, {{"finished", true}});
    });
    HttpServer server(test_options(), router, logger);
    REQUIRE(server.start().is_ok());
    const auto port = server.bound_port();
    RawConnection idle(port);  // an idle keep-alive connection is closed at once by stop
    REQUIRE(wait_until([&] { return server.connection_count() == 1; }));

    auto in_flight = std::async(std::launch::async, [port] {
        HttpClient client;
        return client.request("GET", "127.0.0.1", port, "/slow", {}, "application/json", 10s);
    });
    REQUIRE(gate.wait_entered());
    auto stopped = std::async(std::launch::async, [&] { return server.stop(5s); });
    bool idle_closed = false;
    CHECK(idle.read_all(&idle_closed).empty());
    CHECK(idle_closed);
    gate.release();
    auto res = in_flight.get();
    REQUIRE(res.has_value());
    CHECK(res->status == 200);
    CHECK(res->header("Connection") == "close");
    CHECK(stopped.get());
    HttpClient late;
    auto refused = late.request("GET", "127.0.0.1", port, "/hello", {}, "application/json", 2s);
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().code == synergos::sdk::ErrorCode::Unavailable);
}

TEST_CASE("HttpServer stop reports requests cut off at the deadline", "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Gate gate;
    Router router;
    router.add("GET", "/stuck", [&](const Request&) {
        gate.enter_and_wait(1s);
        return Response::json(200, {});
    });
    HttpServer server(test_options(), router, logger);
    REQUIRE(server.start().is_ok());
    const auto port = server.bound_port();
    auto in_flight = std::async(std::launch::async, [port] {
        HttpClient client;
        return client.request("GET", "127.0.0.1", port, "/stuck", {}, "application/json", 10s);
    });
    REQUIRE(gate.wait_entered());
    CHECK_FALSE(server.stop(100ms));
    (void)in_flight.get();
}

TEST_CASE("HttpServer refuses bad options and busy ports with a clear message", "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router;
    ServerOptions bad = test_options();
    bad.threads = 0;
    auto st = HttpServer(bad, router, logger).start();
    REQUIRE_FALSE(st.is_ok());
    CHECK(st.message().find("threads") != std::string::npos);
    bad = test_options();
    bad.host = "not-an-ip";
    st = HttpServer(bad, router, logger).start();
    REQUIRE_FALSE(st.is_ok());
    CHECK(st.message().find("host") != std::string::npos);

    HttpServer first(test_options(), router, logger);
    REQUIRE(first.start().is_ok());
    ServerOptions same = test_options();
    same.port = first.bound_port();
    st = HttpServer(same, router, logger).start();
    REQUIRE_FALSE(st.is_ok());
    CHECK(st.message().find(std::to_string(first.bound_port())) != std::string::npos);
}

TEST_CASE("HttpServer runs blocking handlers on the pool while the I/O thread keeps serving",
          "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Gate gate;
    Router router;
    router.add("POST", "/block", [&](const Request&) {
        gate.enter_and_wait();
        return Response::json(201, {{"done", true}});
    });  // Execution::Pool, the default
    router.add(
        "GET", "/quick",
        [](const Request&) {
            return Response::json(200, {{"quick", true}});
        },
        synergos::core::http::Execution::Inline);
    ServerOptions options = test_options();
    options.threads = 1;
    options.handler_threads = 2;
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());
    const auto port = server.bound_port();
    auto blocked = std::async(std::launch::async, [port] {
        HttpClient client;
        return client.request("POST", "127.0.0.1", port, "/block", "{}", "application/json", 10s);
    });
    REQUIRE(gate.wait_entered());
    HttpClient client;
    for (int i = 0; i < 3; ++i) {
        auto quick = client.request("GET", "127.0.0.1", port, "/quick", {}, "application/json", 2s);
        REQUIRE(quick.has_value());
        CHECK(quick->status == 200);
    }
    gate.release();
    auto res = blocked.get();
    REQUIRE(res.has_value());
    CHECK(res->status == 201);
    CHECK(server.stop(2s));
}

TEST_CASE("HttpServer answers asynchronous handlers from another thread, and nothing waits for them",
          "[unit][http]") {
    using synergos::core::http::Responder;
    synergos::sdk::testing::CapturingLogger logger;
    std::mutex mutex;
    std::vector<Responder> parked;
    Router router;
    router.add_async("POST", "/park/{id}", [&](const Request& r, Responder responder) {
        const std::string id = r.param("id");
        std::lock_guard<std::mutex> lock(mutex);
        parked.push_back(std::move(responder));
    });
    router.add(
        "GET", "/quick", [](const Request&) { return Response::json(200, {{"quick", true}}); },
        synergos::core::http::Execution::Inline);
    ServerOptions options = test_options();
    options.threads = 1;
    options.handler_threads = 1;  // more parked requests than pool threads: none may use one
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());
    const auto port = server.bound_port();
    std::vector<std::future<synergos::sdk::Result<Response>>> posts;
    for (int i = 0; i < 3; ++i) {
        posts.push_back(std::async(std::launch::async, [port, i] {
            HttpClient client;
            return client.request("POST", "127.0.0.1", port, "/park/" + std::to_string(i), "{}",
                                  "application/json", 10s);
        }));
    }
    REQUIRE(wait_until([&] {
        std::lock_guard<std::mutex> lock(mutex);
        return parked.size() == 3;
    }, 5s));
    HttpClient client;
    auto quick = client.request("GET", "127.0.0.1", port, "/quick", {}, "application/json", 2s);
    REQUIRE(quick.has_value());
    CHECK(quick->status == 200);
    // Answer from a thread of our own, in reverse order; each answer reaches its own request.
    std::thread answer([&] {
        std::lock_guard<std::mutex> lock(mutex);
        for (std::size_t i = parked.size(); i-- > 0;) {
            parked[i].respond_with([i] { return Response::json(201, {{"n", i}}); });
        }
    });
    answer.join();
    std::set<int> seen;
    for (auto& post : posts) {
        auto res = post.get();
        REQUIRE(res.has_value());
        CHECK(res->status == 201);
        seen.insert(nlohmann::json::parse(res->body)["n"].get<int>());
    }
    CHECK(seen == std::set<int>{0, 1, 2});
    CHECK(server.stop(2s));
}

namespace {

/// An asynchronous route (POST /park) that keeps its Responder unanswered until the test
/// answers it.
struct ParkedAnswer {
    std::mutex mutex;
    std::optional<synergos::core::http::Responder> parked;

    void install(Router& router) {
        router.add_async("POST", "/park",
                         [this](const Request&, synergos::core::http::Responder responder) {
                             std::lock_guard<std::mutex> lock(mutex);
                             parked.emplace(std::move(responder));
                         });
    }
    bool waiting() {
        std::lock_guard<std::mutex> lock(mutex);
        return parked.has_value();
    }
    void respond(Response response) {
        std::lock_guard<std::mutex> lock(mutex);
        parked->respond(std::move(response));
    }
};

}  // namespace

TEST_CASE("HttpServer: stop lets a pending asynchronous answer arrive before it ends",
          "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    ParkedAnswer park;
    Router router;
    park.install(router);
    HttpServer server(test_options(), router, logger);
    REQUIRE(server.start().is_ok());
    const auto port = server.bound_port();
    auto post = std::async(std::launch::async, [port] {
        HttpClient client;
        return client.request("POST", "127.0.0.1", port, "/park", "{}", "application/json", 10s);
    });
    REQUIRE(wait_until([&] { return park.waiting(); }, 5s));
    // Answer while stop() is under way: stop waits for it, the client gets it.
    std::thread answer([&] {
        std::this_thread::yield();
        park.respond(Response::json(201, {{"late", true}}));
    });
    server.stop(5s);
    answer.join();
    auto res = post.get();
    REQUIRE(res.has_value());
    CHECK(res->status == 201);
}

namespace {

/// A body whose bytes depend on their position and on `seed`: a stale or shifted byte shows.
std::string pattern(std::size_t size, unsigned seed) {
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i) {
        s[i] = static_cast<char>((i * 131 + seed * 7 + i / 4093) & 0xff);
    }
    return s;
}

std::string post_head(std::size_t length, bool close = false) {
    return "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n" +
           std::string(close ? "Connection: close\r\n" : "") +
           "Content-Length: " + std::to_string(length) + "\r\n\r\n";
}

}  // namespace

TEST_CASE("HttpServer reads large bodies of a known length exactly, through kept buffers",
          "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    ServerOptions options = test_options();
    options.body_limit_bytes = 8u << 20;
    SECTION("buffers kept (the default)") {}
    SECTION("no buffers kept") {
        options.body_buffer_bytes = 0;
    }
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());
    const auto port = server.bound_port();

    // One keep-alive connection: sizes that shrink and grow a kept buffer, around the 64 KiB
    // threshold (below it the body goes through the parser), each with other bytes.
    HttpClient client;
    unsigned seed = 1;
    for (std::size_t size : {std::size_t{3} << 20, std::size_t{300000}, std::size_t{65537},
                             std::size_t{65536}, std::size_t{5} << 20, std::size_t{1} << 20,
                             std::size_t{1} << 20, std::size_t{8} << 20}) {
        const std::string body = pattern(size, seed++);
        auto res = client.request("POST", "127.0.0.1", port, "/echo", body,
                                  "application/octet-stream", 10s);
        REQUIRE(res.has_value());
        INFO("body of " << size << " bytes");
        CHECK(res->status == 200);
        CHECK(res->body.size() == size);
        CHECK(res->body == body);
    }
    CHECK(client.connections_opened() == 1);

    // Over the limit by one byte: 413 before any of it is read.
    auto big = client.request("POST", "127.0.0.1", port, "/echo", pattern((8u << 20) + 1, 9),
                              "application/octet-stream", 10s);
    REQUIRE(big.has_value());
    CHECK(big->status == 413);
    CHECK(server.stop(2s));
}

TEST_CASE("HttpServer: a large body in pieces, with the next request right behind it",
          "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    ServerOptions options = test_options();
    options.body_limit_bytes = 4u << 20;
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());

    const std::string first = pattern(700000, 3);
    const std::string second = pattern(200000, 4);
    RawConnection raw(server.bound_port());
    REQUIRE(raw.connected());
    // The head with the body's first bytes, then the rest in uneven pieces; the last piece
    // carries the whole next request (pipelined), which must not be taken for body bytes.
    REQUIRE(raw.send(post_head(first.size()) + first.substr(0, 1000)));
    std::size_t at = 1000;
    for (std::size_t piece : {std::size_t{1}, std::size_t{65536}, std::size_t{123457}}) {
        REQUIRE(raw.send(first.substr(at, piece)));
        at += piece;
    }
    REQUIRE(raw.send(first.substr(at) + post_head(second.size(), true) + second));
    bool closed = false;
    const std::string replies = raw.read_all(&closed);
    CHECK(closed);  // after the second answer (Connection: close)
    // Two answers, each with its own body, in order.
    const auto one = replies.find("\r\n\r\n");
    REQUIRE(one != std::string::npos);
    CHECK(replies.rfind("HTTP/1.1 200", 0) == 0);
    REQUIRE(replies.size() >= one + 4 + first.size());
    CHECK(replies.compare(one + 4, first.size(), first) == 0);
    const std::string rest = replies.substr(one + 4 + first.size());
    CHECK(rest.rfind("HTTP/1.1 200", 0) == 0);
    const auto two = rest.find("\r\n\r\n");
    REQUIRE(two != std::string::npos);
    CHECK(rest.substr(two + 4) == second);
}

TEST_CASE("HttpServer: a large body that stops arriving or is cut off", "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    ServerOptions options = test_options();
    options.body_limit_bytes = 4u << 20;
    options.body_timeout = 300ms;
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());

    SECTION("stalls: closed at the body timeout, with a warning") {
        const auto began = std::chrono::steady_clock::now();  // before the server's timer starts
        RawConnection raw(server.bound_port());
        REQUIRE(raw.send(post_head(1u << 20) + pattern(100000, 5)));
        bool closed = false;
        CHECK(raw.read_all(&closed).empty());
        CHECK(closed);
        CHECK(std::chrono::steady_clock::now() - began >= 300ms);
        // The stream closes the socket at the timeout, before the server's handler logs.
        CHECK(wait_until([&] { return logger.contains("request body not received in time"); }));
    }
    SECTION("the peer closes mid-body: nothing is answered, nothing breaks") {
        {
            RawConnection raw(server.bound_port());
            REQUIRE(raw.send(post_head(1u << 20) + pattern(300000, 6)));
        }
        CHECK_FALSE(logger.contains("request body not received in time"));
    }
    CHECK(wait_until([&] { return server.connection_count() == 0; }));
    // Still serving large bodies (the abandoned buffer went back, or was freed).
    HttpClient client;
    const std::string body = pattern(1u << 20, 7);
    auto res = client.request("POST", "127.0.0.1", server.bound_port(), "/echo", body,
                              "application/octet-stream", 10s);
    REQUIRE(res.has_value());
    CHECK(res->body == body);
}

TEST_CASE("HttpServer: concurrent large bodies each get their own buffer", "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Gate gate;
    std::atomic<int> inside{0};
    Router router;
    // Holds every request until four are in at once, so four bodies are live together.
    router.add("POST", "/hold", [&](const Request& r) {
        if (++inside == 4) {
            gate.release();
        }
        gate.enter_and_wait();
        Response res;
        res.content_type = "application/octet-stream";
        res.body = r.body;
        return res;
    });
    ServerOptions options = test_options();
    options.body_limit_bytes = 4u << 20;
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());
    const auto port = server.bound_port();
    for (int round = 0; round < 2; ++round) {  // the second round takes the kept buffers
        std::vector<std::future<bool>> calls;
        for (unsigned i = 0; i < 4; ++i) {
            calls.push_back(std::async(std::launch::async, [port, i, round] {
                HttpClient client;
                const std::string body = pattern((1u << 20) + i * 4096, i + 10 * round);
                auto res = client.request("POST", "127.0.0.1", port, "/hold", body,
                                          "application/octet-stream", 10s);
                return res.has_value() && res->status == 200 && res->body == body;
            }));
        }
        for (auto& c : calls) {
            CHECK(c.get());
        }
        inside = 0;
        std::lock_guard<std::mutex> lock(gate.mutex);
        gate.open = false;
    }
}

TEST_CASE("HttpServer over TLS reads large bodies of a known length exactly", "[unit][http]") {
    const auto& certs = synergos::testing::test_certs();
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    ServerOptions options = test_options();
    options.body_limit_bytes = 4u << 20;
    options.tls.cert_file = certs.server_cert;
    options.tls.key_file = certs.server_key;
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());
    synergos::core::http::ClientOptions client_options;
    client_options.tls.enabled = true;
    client_options.tls.ca_file = certs.ca;
    HttpClient client(client_options);
    unsigned seed = 20;
    for (std::size_t size : {std::size_t{3} << 20, std::size_t{100000}, std::size_t{3} << 20}) {
        const std::string body = pattern(size, seed++);
        auto res = client.request("POST", "127.0.0.1", server.bound_port(), "/echo", body,
                                  "application/octet-stream", 10s);
        REQUIRE(res.has_value());
        CHECK(res->status == 200);
        CHECK(res->body == body);
    }
    CHECK(client.connections_opened() == 1);
}

TEST_CASE("HttpServer: a large declared body commits memory only as its bytes arrive",
          "[unit][http]") {
    // The buffer of a large body of known length is reserved, then grown just ahead of the
    // received bytes: a peer that declares 256 MiB and sends a little makes the process's peak
    // resident size grow by far less than 256 MiB.
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    ServerOptions options = test_options();
    options.body_limit_bytes = std::size_t{1} << 30;
    options.body_timeout = 300ms;
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());
    {
        std::ofstream reset("/proc/self/clear_refs");
        reset << "5";  // VmHWM := VmRSS (Linux >= 4.0)
    }
    const long before = status_kib("VmHWM:");
    REQUIRE(before > 0);
    RawConnection raw(server.bound_port());
    REQUIRE(raw.send(post_head(std::size_t{256} << 20) + pattern(100000, 8)));
    bool closed = false;
    CHECK(raw.read_all(&closed).empty());
    CHECK(closed);  // at the body timeout, after the server had read what was sent
    CHECK(wait_until([&] { return logger.contains("request body not received in time"); }));
    const long grown_kib = status_kib("VmHWM:") - before;
    INFO("peak resident size grew by " << grown_kib << " KiB");
    CHECK(grown_kib < 32 * 1024);
}

TEST_CASE("HttpServer: a sent response is released, not held by the idle connection",
          "[unit][http]") {
    // 64 MiB is above glibc's largest mmap threshold, so freeing the body gives its pages back
    // at once and the resident size shows whether the idle connection still holds it. The
    // client reads through a small buffer and keeps the connection open.
    constexpr std::size_t kBody = std::size_t{64} << 20;
    synergos::sdk::testing::CapturingLogger logger;
    Router router;
    router.add("GET", "/big", [](const Request&) {
        Response res;
        res.content_type = "application/octet-stream";
        res.body.assign(kBody, 'x');
        return res;
    });
    HttpServer server(test_options(), router, logger);
    REQUIRE(server.start().is_ok());
    const long before = status_kib("VmRSS:");
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(server.bound_port());
    ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    const std::string get = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
    REQUIRE(::send(fd, get.data(), get.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(get.size()));
    std::string head;
    std::size_t body = 0;
    char buffer[65536];
    for (;;) {
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) {
            break;
        }
        if (head.find("\r\n\r\n") == std::string::npos) {
            head.append(buffer, static_cast<std::size_t>(n));
            const auto end = head.find("\r\n\r\n");
            if (end == std::string::npos) {
                continue;
            }
            body = head.size() - (end + 4);
            head.resize(end + 4);
        } else {
            body += static_cast<std::size_t>(n);
        }
        if (body >= kBody) {
            break;
        }
    }
    CHECK(head.rfind("HTTP/1.1 200", 0) == 0);
    CHECK(body == kBody);
    CHECK(server.connection_count() == 1);  // kept alive, idle
    CHECK(wait_until([&] { return status_kib("VmRSS:") - before < 16 * 1024; }));
    ::close(fd);
}

TEST_CASE("HttpServer serves its metrics, and what the process adds, at GET /metrics",
          "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    ServerOptions options = test_options();
    options.metrics_sources.push_back(
        [](std::string& out) { out.append("# TYPE extra_total counter\nextra_total 7\n"); });
    SECTION("open when the server has no tokens") {
        HttpServer server(options, router, logger);
        REQUIRE(server.start().is_ok());
        HttpClient client;
        for (int i = 0; i < 3; ++i) {
            REQUIRE(client.request("GET", "127.0.0.1", server.bound_port(), "/hello")->status == 200);
        }
        REQUIRE(client.request("GET", "127.0.0.1", server.bound_port(), "/nowhere")->status == 404);
        auto res = client.request("GET", "127.0.0.1", server.bound_port(), "/metrics");
        REQUIRE(res.has_value());
        CHECK(res->status == 200);
        CHECK(res->header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
        const std::string& page = res->body;
        INFO(page);
        CHECK_THAT(page, Catch::Contains("synergos_http_responses_total{code=\"2xx\"} 3\n"));
        CHECK_THAT(page, Catch::Contains("synergos_http_responses_total{code=\"4xx\"} 1\n"));
        CHECK_THAT(page, Catch::Contains("synergos_http_request_duration_seconds_count 4\n"));
        CHECK_THAT(page, Catch::Contains("synergos_http_connections 1\n"));
        CHECK_THAT(page, Catch::Contains("synergos_http_connections_refused_total 0\n"));
        CHECK_THAT(page, Catch::EndsWith("extra_total 7\n"));
        // The scrape itself is counted once it is answered.
        res = client.request("GET", "127.0.0.1", server.bound_port(), "/metrics");
        CHECK_THAT(res->body, Catch::Contains("synergos_http_responses_total{code=\"2xx\"} 4\n"));
    }
    SECTION("behind the API's bearer tokens when it has some") {
        options.tokens.push_back({"s3cret-token-value", synergos::core::http::Scope::Admin, "test"});
        HttpServer server(options, router, logger);
        REQUIRE(server.start().is_ok());
        HttpClient client;
        CHECK(client.request("GET", "127.0.0.1", server.bound_port(), "/metrics")->status == 401);
        auto res = client.request("GET", "127.0.0.1", server.bound_port(), "/metrics", {},
                                  "application/json", 5s,
                                  {{"Authorization", "Bearer s3cret-token-value"}});
        CHECK(res->status == 200);
        CHECK_THAT(res->body, Catch::Contains("synergos_http_responses_total{code=\"4xx\"} 1\n"));
    }
}

namespace {

namespace bhttp = boost::beast::http;

/// Parses one response from `pending`, reading more from `raw` as needed; what follows it stays
/// in `pending`. `head`: the answer to a HEAD request (no body, whatever Content-Length says).
std::optional<bhttp::response<bhttp::string_body>> next_response(RawConnection& raw,
                                                                  std::string& pending,
                                                                  bool head = false) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.skip(head);
    parser.eager(true);
    for (;;) {
        if (!pending.empty()) {
            boost::beast::error_code ec;
            const auto used = parser.put(boost::asio::buffer(pending), ec);
            if (ec && ec != bhttp::error::need_more) {
                return std::nullopt;
            }
            pending.erase(0, used);
            if (parser.is_done()) {
                return parser.release();
            }
            if (used > 0) {
                continue;
            }
        }
        const std::string more = raw.read_some();
        if (more.empty()) {
            return std::nullopt;  // closed, or timed out
        }
        pending += more;
    }
}

}  // namespace

TEST_CASE("HttpServer answers HEAD like GET without the body", "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    HttpServer server(test_options(), router, logger);
    REQUIRE(server.start().is_ok());
    RawConnection raw(server.bound_port());
    REQUIRE(raw.connected());
    std::string pending;
    for (const std::string path : {"/healthz", "/hello"}) {
        INFO(path);
        // HEAD then GET on one connection: a body after the HEAD answer would be read as the
        // start of the GET answer.
        REQUIRE(raw.send("HEAD " + path + " HTTP/1.1\r\nHost: x\r\n\r\nGET " + path +
                         " HTTP/1.1\r\nHost: x\r\n\r\n"));
        auto head = next_response(raw, pending, true);
        REQUIRE(head.has_value());
        CHECK(head->result_int() == 200);
        auto get = next_response(raw, pending);
        REQUIRE(get.has_value());
        CHECK(get->result_int() == 200);
        CHECK(head->at(bhttp::field::content_length) == std::to_string(get->body().size()));
        CHECK(pending.empty());
    }
}

TEST_CASE("HttpServer answers Expect 100-continue before it reads the body", "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    HttpServer server(test_options(), router, logger);
    REQUIRE(server.start().is_ok());
    RawConnection raw(server.bound_port(), 2s);
    REQUIRE(raw.connected());
    SECTION("accepted: 100 then the answer") {
        REQUIRE(raw.send("POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                         "Content-Length: 5\r\n\r\n"));
        const std::string interim = raw.read_until("\r\n\r\n");  // at most the 2 s read timeout
        CHECK(interim.rfind("HTTP/1.1 100", 0) == 0);
        REQUIRE(raw.send("hello"));
        std::string pending;
        auto res = next_response(raw, pending);
        REQUIRE(res.has_value());
        CHECK(res->result_int() == 200);
        CHECK(res->body() == "hello");
    }
    SECTION("refused at the headers: the refusal and no 100") {
        REQUIRE(raw.send("POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                         "Content-Length: 5000\r\n\r\n"));
        bool closed = false;
        const std::string reply = raw.read_all(&closed);
        CHECK(reply.rfind("HTTP/1.1 413", 0) == 0);
        CHECK(closed);
    }
}

TEST_CASE("HttpServer answers Expect 100-continue with the refusal for a bad route or method",
          "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    router.add("POST", "/items/{id}", [](const Request&) { return Response::json(201, {}); });
    HttpServer server(test_options(), router, logger);
    REQUIRE(server.start().is_ok());
    RawConnection raw(server.bound_port(), 2s);
    REQUIRE(raw.connected());
    struct Case {
        std::string head;
        std::string status;
        std::string allow;
    };
    Case c;
    SECTION("unknown route") { c = {"POST /nowhere", "404", ""}; }
    SECTION("wrong method") { c = {"PUT /echo", "405", "Allow: POST"}; }
    SECTION("wrong method on a probe") { c = {"POST /healthz", "405", "Allow: GET, HEAD"}; }
    SECTION("malformed escape in the path") { c = {"POST /items/a%2", "400", "\"id\""}; }
    INFO(c.head);
    // The body is never sent: a 100 here would leave the client uploading for nothing.
    REQUIRE(raw.send(c.head + " HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"));
    bool closed = false;
    const std::string reply = raw.read_all(&closed);  // at most the 2 s read timeout
    CHECK(reply.rfind("HTTP/1.1 " + c.status, 0) == 0);
    CHECK(reply.find(" 100 ") == std::string::npos);
    CHECK(reply.find(c.allow) != std::string::npos);
    CHECK(closed);  // refused before the body: the connection is not reused
    // The server is still serving.
    HttpClient client;
    auto res = client.request("GET", "127.0.0.1", server.bound_port(), "/hello");
    REQUIRE(res.has_value());
    CHECK(res->status == 200);
}

TEST_CASE("HttpServer lists HEAD in Allow wherever GET is allowed", "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    router.add("POST", "/hello", [](const Request&) { return Response::json(201, {}); });
    HttpServer server(test_options(), router, logger);
    REQUIRE(server.start().is_ok());
    RawConnection raw(server.bound_port(), 2s);
    REQUIRE(raw.connected());
    std::string pending;
    REQUIRE(raw.send("OPTIONS /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                     "DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                     "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
    for (const char* method : {"OPTIONS", "DELETE"}) {
        INFO(method);
        auto res = next_response(raw, pending);
        REQUIRE(res.has_value());
        CHECK(res->result_int() == 405);
        CHECK(res->at(bhttp::field::allow) == "GET, HEAD, POST");
    }
    // No GET route: no HEAD either.
    auto res = next_response(raw, pending);
    REQUIRE(res.has_value());
    CHECK(res->result_int() == 405);
    CHECK(res->at(bhttp::field::allow) == "POST");
    // And HEAD is indeed answered there.
    REQUIRE(raw.send("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto head = next_response(raw, pending, true);
    REQUIRE(head.has_value());
    CHECK(head->result_int() == 200);
}

TEST_CASE("HttpServer answers other methods on its probes with 405 and Allow GET HEAD",
          "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router;
    HttpServer server(test_options(), router, logger);
    REQUIRE(server.start().is_ok());
    HttpClient client;
    for (const std::string path : {"/healthz", "/readyz", "/metrics"}) {
        for (const std::string method : {"POST", "PUT", "DELETE", "OPTIONS"}) {
            INFO(method << " " << path);
            auto res = client.request(method, "127.0.0.1", server.bound_port(), path, "{}",
                                      "application/json", 5s);
            REQUIRE(res.has_value());
            CHECK(res->status == 405);
            CHECK(res->header("Allow") == "GET, HEAD");
            CHECK(nlohmann::json::parse(res->body)["message"] ==
                  "The method is not allowed for the requested URL.");
        }
        auto get = client.request("GET", "127.0.0.1", server.bound_port(), path);
        REQUIRE(get.has_value());
        CHECK(get->status == 200);
    }
}

TEST_CASE("HttpServer answers 504 when an asynchronous handler does not answer in time",
          "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    ParkedAnswer park;
    Router router = echo_router();
    park.install(router);
    ServerOptions options = test_options();
    options.async_timeout = 300ms;
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());
    HttpClient client;
    auto res = client.request("POST", "127.0.0.1", server.bound_port(), "/park", "{}",
                              "application/json", 5s);
    {
        // A late answer (it goes nowhere), given before any REQUIRE: unanswered, a server
        // without the deadline would never stop.
        REQUIRE(park.waiting());
        park.respond(Response::json(201, {{"late", true}}));
    }
    REQUIRE(res.has_value());
    CHECK(res->status == 504);
    CHECK(nlohmann::json::parse(res->body)["message"].get<std::string>().find("300 ms") !=
          std::string::npos);
    CHECK(logger.contains("did not answer in time"));
    // The connection serves its next request, not the late answer.
    auto next = client.request("GET", "127.0.0.1", server.bound_port(), "/hello");
    REQUIRE(next.has_value());
    CHECK(next->status == 200);
    CHECK(nlohmann::json::parse(next->body)["hello"] == "world");
    CHECK(client.connections_opened() == 1);
    CHECK(server.stop(2s));
}

TEST_CASE("HttpServer stop abandons unanswered asynchronous handlers and a late answer is harmless",
          "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    ParkedAnswer park;
    Router router;
    park.install(router);
    auto server = std::make_unique<HttpServer>(test_options(), router, logger);
    REQUIRE(server->start().is_ok());
    const auto port = server->bound_port();
    auto post = std::async(std::launch::async, [port] {
        HttpClient client;
        return client.request("POST", "127.0.0.1", port, "/park", "{}", "application/json", 10s);
    });
    REQUIRE(wait_until([&] { return park.waiting(); }));
    std::promise<bool> result;
    auto stopped = result.get_future();
    std::thread stopper([&] { result.set_value(server->stop(200ms)); });
    const bool ended = stopped.wait_for(5s) == std::future_status::ready;
    CHECK(ended);
    if (!ended) {
        park.respond(Response::json(500, {}));  // lets the stop end, to fail cleanly
    }
    stopper.join();
    CHECK_FALSE(stopped.get());  // cut off
    CHECK(logger.contains("abandoned"));
    auto res = post.get();
    CHECK_FALSE((res.has_value() && res->status == 201));
    server.reset();
    // Answered, then dropped, after the server is gone: nothing is reached.
    park.respond(Response::json(201, {{"late", true}}));
    std::lock_guard<std::mutex> lock(park.mutex);
    park.parked.reset();
}

TEST_CASE("HttpServer refuses asynchronous handlers with 503 once stopping", "[unit][http]") {
    using synergos::core::http::Responder;
    synergos::sdk::testing::CapturingLogger logger;
    std::atomic<int> started{0};
    Router router;
    router.add_async("POST", "/write", [&](const Request&, Responder responder) {
        ++started;
        responder.respond(Response::json(201, {}));
    });
    HttpServer server(test_options(), router, logger);
    REQUIRE(server.start().is_ok());
    const auto port = server.bound_port();
    RawConnection idle(port);
    RawConnection raw(port);
    REQUIRE(wait_until([&] { return server.connection_count() == 2; }));
    // The 100 tells the headers are in: the request is in flight when stop begins.
    REQUIRE(raw.send("POST /write HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     "Content-Length: 2\r\n\r\n"));
    REQUIRE(raw.read_until("\r\n\r\n").rfind("HTTP/1.1 100", 0) == 0);
    auto stopped = std::async(std::launch::async, [&] { return server.stop(5s); });
    bool idle_closed = false;
    CHECK(idle.read_all(&idle_closed).empty());
    REQUIRE(idle_closed);  // stop has begun
    REQUIRE(raw.send("{}"));
    const std::string reply = raw.read_all();
    CHECK(reply.rfind("HTTP/1.1 503", 0) == 0);
    CHECK(reply.find("\"message\"") != std::string::npos);
    CHECK(started == 0);
    CHECK(stopped.get());
}

TEST_CASE("HttpServer keeps serving after a handler throws something not a std::exception",
          "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    ServerOptions options = test_options();
    options.threads = 1;
    std::atomic<bool> thrown{false};
    options.metrics_sources.push_back([&](std::string&) {
        if (!thrown.exchange(true)) {
            throw 42;  // NOLINT: the point of the test
        }
    });
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());
    HttpClient client;
    auto first = client.request("GET", "127.0.0.1", server.bound_port(), "/metrics", {},
                                "application/json", 2s);
    CHECK_FALSE(first.has_value());  // that connection is lost
    CHECK(wait_until([&] { return logger.contains("unexpected exception"); }));
    HttpClient again;
    auto res = again.request("GET", "127.0.0.1", server.bound_port(), "/hello");
    REQUIRE(res.has_value());
    CHECK(res->status == 200);
    CHECK(again.request("GET", "127.0.0.1", server.bound_port(), "/metrics")->status == 200);
}

TEST_CASE("HttpServer gives a later request on a connection header_timeout for its headers",
          "[unit][http]") {
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    ServerOptions options = test_options();
    options.header_timeout = 300ms;
    options.keep_alive_timeout = 10s;  // far from header_timeout, and past read_all's 5 s
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());
    RawConnection raw(server.bound_port());
    REQUIRE(raw.connected());
    std::string pending;
    const std::string get = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
    REQUIRE(raw.send(get));
    auto first = next_response(raw, pending);
    REQUIRE(first.has_value());
    CHECK(first->result_int() == 200);
    // Idle longer than header_timeout: still within the keep-alive timeout.
    std::this_thread::sleep_for(500ms);
    REQUIRE(raw.send(get));
    auto second = next_response(raw, pending);
    REQUIRE(second.has_value());
    CHECK(second->result_int() == 200);
    // A third request's headers trickle in, one byte at a time: cut at about header_timeout.
    std::atomic<bool> done{false};
    const auto began = std::chrono::steady_clock::now();
    std::thread trickle([&] {
        if (!raw.send("GET /hello HTTP/1.1\r\nX-Slow: ")) {
            return;
        }
        const auto limit = std::chrono::steady_clock::now() + 6s;
        while (!done && std::chrono::steady_clock::now() < limit && raw.send("a")) {
            std::this_thread::sleep_for(50ms);
        }
    });
    bool closed = false;
    CHECK(raw.read_all(&closed).empty());
    const auto took = std::chrono::steady_clock::now() - began;
    done = true;
    trickle.join();
    CHECK(closed);
    CHECK(took >= 250ms);
    CHECK(took < 4s);  // the keep-alive timeout is 10 s
    CHECK(logger.contains("request headers not received in time"));
}

TEST_CASE("HttpServer answers 503 at the connection limit to a client that sends its whole "
          "request first",
          "[unit][http]") {
    // Most clients send the whole request before they read. Closed unread, the connection
    // resets: the client's send fails and it never looks at the 503.
    synergos::sdk::testing::CapturingLogger logger;
    Router router = echo_router();
    ServerOptions options = test_options();
    options.max_connections = 1;
    HttpServer server(options, router, logger);
    REQUIRE(server.start().is_ok());
    RawConnection held(server.bound_port());
    REQUIRE(wait_until([&] { return server.connection_count() == 1; }));
    const std::size_t body = std::size_t{2} << 20;  // below linger_bytes (4 MiB)
    const std::string request = post_head(body) + std::string(body, 'a');
    int answered = 0;
    constexpr int kTries = 5;
    for (int i = 0; i < kTries; ++i) {
        RawConnection c(server.bound_port());
        const bool sent = c.send(request);
        bool closed = false;
        const std::string reply = c.read_all(&closed);
        INFO("try " << i << ": sent " << sent << " closed " << closed << " reply "
                    << reply.substr(0, 12));
        CHECK(sent);
        if (sent && reply.rfind("HTTP/1.1 503", 0) == 0 && closed) {
            ++answered;  // sent whole, read whole, then a clean close rather than a reset
        }
    }
    CHECK(answered == kTries);
}
