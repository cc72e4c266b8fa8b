// SPDX-License-Identifier: Apache-2.0
#include <condition_variable>
#include <mutex>

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
    std::uint16_t port() const { return server->bound_port(); }

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
