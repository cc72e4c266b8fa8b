// SPDX-License-Identifier: Apache-2.0
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/core/http/message.hpp>
#include <synergos/core/http/router.hpp>

namespace {

using synergos::core::http::Request;
using synergos::core::http::Response;
using synergos::core::http::Router;

Request make(const std::string& method, const std::string& path) {
    Request r;
    r.method = method;
    r.path = path;
    r.target = path;
    return r;
}

Response echo(const Request& r) {
    nlohmann::json params = nlohmann::json::object();
    for (const auto& [k, v] : r.params) {
        params[k] = v;
    }
    return Response::json(200, params);
}

}  // namespace

TEST_CASE("Router matches literal and parameter segments", "[unit][http]") {
    Router router;
    router.add("GET", "/a/{x}/b/{y}", echo);
    router.add("GET", "/a/{x}", [](const Request&) { return Response::json(200, "item"); });
    auto req = make("GET", "/a/1/b/two");
    auto res = router.route(req);
    CHECK(res.status == 200);
    CHECK(nlohmann::json::parse(res.body) == nlohmann::json{{"x", "1"}, {"y", "two"}});
    auto item = make("GET", "/a/9");
    CHECK(nlohmann::json::parse(router.route(item).body) == "item");
    CHECK(router.size() == 2);
}

TEST_CASE("Router serves both slash spellings of collection patterns only", "[unit][http]") {
    Router router;
    router.add("GET", "/things/", echo);
    router.add("GET", "/things/{id}", echo);
    for (const char* path : {"/things", "/things/"}) {
        auto req = make("GET", path);
        CHECK(router.route(req).status == 200);
    }
    auto slash_item = make("GET", "/things/1/");
    CHECK(router.route(slash_item).status == 404);
    auto doubled = make("GET", "/things//");
    CHECK(router.route(doubled).status == 404);
}

TEST_CASE("Router answers 404, 405 with Allow, and 400 for malformed escapes", "[unit][http]") {
    Router router;
    router.add("GET", "/x/{id}", echo);
    router.add("PUT", "/x/{id}", echo);
    auto missing = make("GET", "/y");
    auto res = router.route(missing);
    CHECK(res.status == 404);
    CHECK(nlohmann::json::parse(res.body)["message"].get<std::string>().find("/y") !=
          std::string::npos);
    auto wrong = make("DELETE", "/x/1");
    res = router.route(wrong);
    CHECK(res.status == 405);
    CHECK(res.header("allow") == "GET, HEAD, PUT");  // HEAD is served wherever GET is
    CHECK(nlohmann::json::parse(res.body)["message"] ==
          "The method is not allowed for the requested URL.");
    auto encoded = make("GET", "/x/a%2Fb%20c");
    CHECK(nlohmann::json::parse(router.route(encoded).body)["id"] == "a/b c");
    auto bad = make("GET", "/x/a%2");
    res = router.route(bad);
    CHECK(res.status == 400);
    CHECK(nlohmann::json::parse(res.body)["field"] == "id");
}

TEST_CASE("Router turns a handler exception into a JSON 500", "[unit][http]") {
    Router router;
    router.add("GET", "/boom",
               [](const Request&) -> Response { throw std::runtime_error("kaput"); });
    auto req = make("GET", "/boom");
    auto res = router.route(req);
    CHECK(res.status == 500);
    CHECK(nlohmann::json::parse(res.body)["message"].get<std::string>().find("kaput") !=
          std::string::npos);
}

TEST_CASE("Router: a later registration replaces the same method and pattern", "[unit][http]") {
    Router router;
    router.add("GET", "/v", [](const Request&) { return Response::json(200, 1); });
    router.add("GET", "/v", [](const Request&) { return Response::json(200, 2); });
    auto req = make("GET", "/v");
    CHECK(nlohmann::json::parse(router.route(req).body) == 2);
    CHECK(router.size() == 1);
}

TEST_CASE("parse_json_body checks type, emptiness, depth, syntax and UTF-8", "[unit][http]") {
    Request r = make("POST", "/");
    r.headers["content-type"] = "application/json; charset=utf-8";
    r.body = R"({"a": [1, {"b": 2}]})";
    auto ok = synergos::core::http::parse_json_body(r);
    REQUIRE(ok.ok());
    CHECK((*ok.value)["a"][1]["b"] == 2);

    r.headers["content-type"] = "text/plain";
    CHECK(synergos::core::http::parse_json_body(r).error.status == 415);
    r.headers.erase("content-type");
    CHECK(synergos::core::http::parse_json_body(r).error.status == 415);
    r.headers["content-type"] = "application/json";
    r.body = "   ";
    CHECK(synergos::core::http::parse_json_body(r).error.status == 400);
    r.max_json_depth = 8;
    r.body = std::string(9, '[') + std::string(9, ']');
    auto deep = synergos::core::http::parse_json_body(r, false);
    CHECK(deep.error.status == 400);
    CHECK(deep.error.body.find("deeper than 8") != std::string::npos);
    r.body = "\"[[[[[[[[[[[[[[\"";  // brackets inside a string do not count
    CHECK(synergos::core::http::parse_json_body(r, false).ok());
    r.body = "{\"a\": \"\xff\xfe\"}";
    CHECK(synergos::core::http::parse_json_body(r).error.status == 400);
    r.body = "{\"a\": 1";
    CHECK(synergos::core::http::parse_json_body(r).error.status == 400);
    r.body = "3";
    CHECK(synergos::core::http::parse_json_body(r).error.status == 400);
}

TEST_CASE("parse_json_body refuses a repeated key and names it", "[unit][http]") {
    Request r = make("POST", "/");
    r.headers["content-type"] = "application/json";
    r.body = R"({"rounds": 2, "epochs": 1, "rounds": 3})";
    auto top = synergos::core::http::parse_json_body(r);
    CHECK(top.error.status == 400);
    CHECK(top.error.body.find("'rounds'") != std::string::npos);
    CHECK(top.error.body.find(R"("field":"rounds")") != std::string::npos);
    r.body = R"({"model": [{"l_type": "Linear", "structure": {"bias": true, "bias": false}}]})";
    auto nested = synergos::core::http::parse_json_body(r);
    CHECK(nested.error.status == 400);
    CHECK(nested.error.body.find("'bias'") != std::string::npos);
    // The same key in sibling or nested objects is no repeat.
    r.body = R"({"a": {"x": 1}, "b": {"x": 2, "a": {"x": 3}}, "c": [{"x": 1}, {"x": 2}]})";
    auto siblings = synergos::core::http::parse_json_body(r);
    REQUIRE(siblings.ok());
    CHECK((*siblings.value)["b"]["a"]["x"] == 3);
    CHECK((*siblings.value)["c"][1]["x"] == 2);
}

TEST_CASE("parse_json_body stays linear in the number of nested objects", "[unit][http]") {
    // 200k sibling objects after one with many keys: a parser that rescans the parent at each
    // object's end, or sweeps the big object's key table at each sibling, takes minutes here.
    std::string body = R"({"big": {)";
    for (int i = 0; i < 20000; ++i) {
        body += (i ? ",\"k" : "\"k") + std::to_string(i) + "\": 1";
    }
    body += R"(}, "list": [)";
    for (int i = 0; i < 200000; ++i) {
        body += i ? ",{}" : "{}";
    }
    body += "]}";
    Request r = make("POST", "/");
    r.headers["content-type"] = "application/json";
    r.body = body;
    const auto start = std::chrono::steady_clock::now();
    auto parsed = synergos::core::http::parse_json_body(r);
    const auto seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    REQUIRE(parsed.ok());
    CHECK((*parsed.value)["list"].size() == 200000);
    CHECK((*parsed.value)["big"].size() == 20000);
    CHECK(seconds < 5.0);  // about 0.1 s; quadratic would be far beyond
}

TEST_CASE("percent_decode decodes escapes and refuses malformed ones", "[unit][http]") {
    using synergos::core::http::percent_decode;
    CHECK(percent_decode("a%20b") == std::optional<std::string>("a b"));
    CHECK(percent_decode("%2e%2E") == std::optional<std::string>(".."));
    CHECK_FALSE(percent_decode("%").has_value());
    CHECK_FALSE(percent_decode("%4").has_value());
    CHECK_FALSE(percent_decode("%zz").has_value());
}

TEST_CASE("Router::route waits for an asynchronous handler answered from another thread",
          "[unit][http]") {
    using synergos::core::http::Responder;
    Router router;
    std::thread worker;
    // Catch2's assertions are not thread-safe: each thread records what it saw, checked below.
    std::atomic<bool> produced_elsewhere{false};
    std::atomic<bool> still_pending{true};
    router.add_async("POST", "/later/{id}", [&](const Request& r, Responder responder) {
        const std::string id = r.param("id");
        worker = std::thread([id, responder = std::move(responder), &produced_elsewhere,
                              &still_pending]() mutable {
            // The producer runs on the thread that owns the request, not on this one.
            const auto here = std::this_thread::get_id();
            responder.respond_with([id, here, &produced_elsewhere] {
                produced_elsewhere = std::this_thread::get_id() != here;
                return Response::json(201, {{"id", id}});
            });
            still_pending = responder.pending();
        });
    });
    auto req = make("POST", "/later/x7");
    auto res = router.route(req);
    worker.join();
    CHECK(produced_elsewhere);
    CHECK_FALSE(still_pending);
    CHECK(res.status == 201);
    CHECK(nlohmann::json::parse(res.body)["id"] == "x7");
}

TEST_CASE("a Responder answers once, and a dropped or thrown one still gets the request a 500",
          "[unit][http]") {
    using synergos::core::http::Responder;
    int delivered = 0;
    Response last;
    {
        Responder responder([&](Responder::Producer produce) {
            ++delivered;
            last = Responder::produce(produce);
        });
        responder.respond(Response::json(200, 1));
        responder.respond(Response::json(200, 2));  // ignored: answered already
    }
    CHECK(delivered == 1);
    CHECK(last.body == "1\n");
    {
        Responder dropped([&](Responder::Producer produce) {
            ++delivered;
            last = Responder::produce(produce);
        });
    }
    CHECK(delivered == 2);
    CHECK(last.status == 500);

    Router router;
    router.add_async("GET", "/drop", [](const Request&, Responder) {});
    router.add_async("GET", "/throw", [](const Request&, Responder) {
        throw std::runtime_error("kaput");
    });
    router.add_async("GET", "/bad-producer", [](const Request&, Responder responder) {
        responder.respond_with([]() -> Response { throw std::runtime_error("late kaput"); });
    });
    auto drop = make("GET", "/drop");
    CHECK(router.route(drop).status == 500);
    auto thrown = make("GET", "/throw");
    auto res = router.route(thrown);
    CHECK(res.status == 500);
    CHECK(res.body.find("kaput") != std::string::npos);
    auto bad = make("GET", "/bad-producer");
    res = router.route(bad);
    CHECK(res.status == 500);
    CHECK(res.body.find("late kaput") != std::string::npos);
    // 405 lists asynchronous routes too.
    auto wrong = make("PUT", "/drop");
    res = router.route(wrong);
    CHECK(res.status == 405);
    CHECK(res.header("allow") == "GET, HEAD");
}
