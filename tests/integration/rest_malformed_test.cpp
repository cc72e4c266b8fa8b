// SPDX-License-Identifier: Apache-2.0
// Sends a corpus of bad requests to the REST server process: each must get a 4xx JSON error with
// a message, and the server must keep serving (checked after every request, and the process must
// still be alive at the end).

#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/core/http/client.hpp>

#include "server_process.hpp"
#include "unit/core/http/http_test_util.hpp"
#include "unit/core/rest/rest_fixture.hpp"

namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using synergos::core::http::HttpClient;
using synergos::testing::RawConnection;
using synergos::testing::ServerProcess;
using synergos::testing::TempDir;

const std::string kC = "/ttp/connect/collaborations";
const std::string kP = "/ttp/connect/collaborations/c1/projects/p1";
const std::string kReg = kP + "/participants/w1/registration";

struct Bad {
    std::string name;
    std::string method;
    std::string path;
    std::string body;
    std::string content_type = "application/json";
    int status;
};

/// A status line and body from a raw HTTP exchange.
struct RawReply {
    int status = 0;
    std::string body;
};

RawReply raw_exchange(std::uint16_t port, const std::string& bytes) {
    RawConnection raw(port);
    raw.send(bytes);
    const std::string reply = raw.read_all();
    RawReply out;
    if (reply.rfind("HTTP/1.1 ", 0) == 0) {
        out.status = std::stoi(reply.substr(9, 3));
    }
    const auto split = reply.find("\r\n\r\n");
    if (split != std::string::npos) {
        out.body = reply.substr(split + 4);
    }
    return out;
}

}  // namespace

TEST_CASE("malformed requests get a 4xx JSON error and never stop the server",
          "[integration][rest]") {
    TempDir dir;
    ServerProcess server(dir.path, {"--body-limit", "1048576"});
    REQUIRE(server.port() != 0);
    const auto port = server.port();
    HttpClient client;
    auto call = [&](const std::string& method, const std::string& path, const std::string& body,
                    const std::string& type) {
        auto res = client.request(method, "127.0.0.1", port, path, body, type, 10s);
        REQUIRE(res.has_value());
        return std::move(*res);
    };
    // A small valid tree so deeper routes are reachable.
    REQUIRE(call("POST", kC, R"({"collab_id":"c1"})", "application/json").status == 201);
    REQUIRE(call("POST", kC + "/c1/projects", R"({"project_id":"p1","incentives":{}})",
                 "application/json")
                .status == 201);
    REQUIRE(
        call("POST", "/ttp/connect/participants", R"({"id":"w1"})", "application/json").status ==
        201);

    const std::string deep = std::string(5000, '[') + std::string(5000, ']');
    const std::vector<Bad> corpus = {
        // Truncated or broken JSON.
        {"truncated object", "POST", kC, R"({"collab_id": "c2")", "application/json", 400},
        {"truncated string", "POST", kC, R"({"collab_id": "c2)", "application/json", 400},
        {"trailing garbage", "POST", kC, R"({"collab_id": "c2"} x)", "application/json", 400},
        {"not json at all", "POST", kC, "collab_id=c2", "application/json", 400},
        {"empty body", "POST", kC, "", "application/json", 400},
        {"json null", "POST", kC, "null", "application/json", 400},
        {"repeated key", "POST", kC, R"({"collab_id": "c2", "collab_id": "c3"})",
         "application/json", 400},
        {"json array", "PUT", kC + "/c1", "[]", "application/json", 400},
        {"nesting bomb", "POST", kC, deep, "application/json", 400},
        {"number overflow", "POST", kC, R"({"collab_id": "c2", "mq": {"ports": {"main": 1e999}}})",
         "application/json", 400},
        // Wrong types.
        {"id as number", "POST", kC, R"({"collab_id": 7})", "application/json", 422},
        {"id as object", "POST", "/ttp/connect/participants", R"({"id": {"a": 1}})",
         "application/json", 422},
        {"incentives as list", "POST", kC + "/c1/projects",
         R"({"project_id": "p2", "incentives": []})", "application/json", 422},
        {"rounds as string", "POST", kP + "/experiments", R"({"expt_id": "e1", "model": "linear"})",
         "application/json", 422},
        {"n_count as string", "POST", kReg, R"({"role": "host", "n_count": "1", "node_0": {}})",
         "application/json", 422},
        {"tags as string", "POST", kReg + "/tags", R"({"train": "a"})", "application/json", 422},
        {"ports as string", "POST", kC, R"({"collab_id": "c3", "mq": {"ports": "5672"}})",
         "application/json", 422},
        // Unknown or reserved fields.
        {"unknown registration field", "POST", kReg,
         R"({"role": "host", "n_count": 1, "node_0": {}, "admin": true})", "application/json", 422},
        {"reserved relations", "POST", kC, R"({"collab_id": "c4", "relations": {}})",
         "application/json", 422},
        {"reserved key", "PUT", kC + "/c1", R"({"key": {"collab_id": "zz"}})", "application/json",
         422},
        {"id mismatch", "POST", kC + "/c1/projects",
         R"({"project_id": "p5", "collab_id": "c9", "incentives": {}})", "application/json", 422},
        // Bad UTF-8.
        {"bad utf-8 in body", "POST", kC, "{\"collab_id\": \"c\xff\xfe\"}", "application/json",
         400},
        {"overlong utf-8 in body", "POST", kC, "{\"collab_id\": \"\xc0\xaf\"}", "application/json",
         400},
        {"bad utf-8 in path", "GET", kC + "/c%ff%fe", "", "application/json", 400},
        // Path traversal and odd ids.
        {"dot-dot id", "GET", kC + "/..", "", "application/json", 400},
        {"encoded dot-dot", "GET", kC + "/%2e%2e", "", "application/json", 400},
        {"encoded slash traversal", "GET", kC + "/c1%2F..%2F..%2Fetc%2Fpasswd", "",
         "application/json", 400},
        {"traversal in project", "DELETE", kC + "/c1/projects/..%2F..", "", "application/json",
         400},
        {"nul byte id", "GET", kC + "/c1%00", "", "application/json", 400},
        {"control char id", "GET", "/ttp/connect/participants/w%0a1", "", "application/json", 400},
        {"overlong id", "GET", kC + "/" + std::string(300, 'a'), "", "application/json", 400},
        {"broken escape", "GET", kC + "/c1%G1", "", "application/json", 400},
        {"traversal in body id", "POST", kC, R"({"collab_id": "../../etc"})", "application/json",
         422},
        // Methods not allowed, wrong media type, unknown routes.
        {"PATCH a collection", "PATCH", kC, "{}", "application/json", 405},
        {"DELETE a collection", "DELETE", kC + "/", "", "application/json", 405},
        {"POST an item", "POST", kC + "/c1", "{}", "application/json", 405},
        {"PUT a listing", "PUT", kC + "/c1/registrations", "{}", "application/json", 405},
        {"form body", "POST", kC, "collab_id=c2", "application/x-www-form-urlencoded", 415},
        {"text body", "PUT", kC + "/c1", "{}", "text/plain", 415},
        {"unknown route", "GET", "/ttp/connect/nothing", "", "application/json", 404},
        {"unknown tree", "GET", "/etc/passwd", "", "application/json", 404},
        // Size.
        {"body over the limit", "POST", kC,
         R"({"collab_id": "big", "x": ")" + std::string(1100000, 'a') + "\"}", "application/json",
         413},
    };
    for (const auto& bad : corpus) {
        INFO(bad.name);
        auto res = call(bad.method, bad.path, bad.body, bad.content_type);
        CHECK(res.status == bad.status);
        CHECK(res.status >= 400);
        CHECK(res.status < 500);
        CHECK(res.content_type == "application/json");
        auto body = json::parse(res.body, nullptr, false);
        CHECK(body.is_object());
        CHECK((body.is_object() && body.contains("message") && body["message"].is_string()));
        // Still serving, on a fresh connection too.
        HttpClient fresh;
        auto health = fresh.request("GET", "127.0.0.1", port, "/healthz");
        REQUIRE(health.has_value());
        CHECK(health->status == 200);
    }

    // Malformed HTTP itself, through a raw socket.
    struct RawBad {
        std::string name;
        std::string bytes;
        int status;
    };
    const std::vector<RawBad> raw_corpus = {
        {"garbage request line", "HELLO\r\n\r\n", 400},
        {"bad version", "GET /healthz HTTP/7.0\r\n\r\n", 400},
        {"header without colon", "GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", 400},
        {"bad content length", "POST " + kC + " HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
         400},
        {"huge content length",
         "POST " + kC +
             " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
             "99999999999\r\n\r\n{",
         413},
        {"huge chunked body",
         "POST " + kC +
             " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: "
             "chunked\r\n\r\nFFFFFFF\r\n{",
         413},
        {"raw high bytes in target", "GET " + kC + "/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400},
        {"unknown method", "BREW " + kC + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405},
        {"huge header",
         "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: " + std::string(64 * 1024, 'j') + "\r\n\r\n",
         431},
    };
    for (const auto& bad : raw_corpus) {
        INFO(bad.name);
        const RawReply reply = raw_exchange(port, bad.bytes);
        CHECK(reply.status == bad.status);
        CHECK(json::parse(reply.body, nullptr, false).contains("message"));
        HttpClient fresh;
        auto health = fresh.request("GET", "127.0.0.1", port, "/healthz");
        REQUIRE(health.has_value());
        CHECK(health->status == 200);
    }

    // Nothing bad was stored, and the process is alive and still answers real work.
    auto list = call("GET", kC, "", "application/json");
    CHECK(json::parse(list.body)["data"].size() == 1);
    CHECK(call("POST", kC, R"({"collab_id":"c2"})", "application/json").status == 201);
    CHECK(server.alive());
    CHECK(server.stop(SIGTERM) == 0);
}
