// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <synergos/core/http/auth.hpp>

namespace {

using namespace synergos::core::http;

TEST_CASE("authorize: scopes, schemes and open probes", "[unit][http][auth]") {
    const std::vector<BearerToken> tokens = {{"admin-secret-0123456789", Scope::Admin, "a"},
                                             {"read-secret-0123456789", Scope::Read, "r"}};
    CHECK(authorize({}, "POST", "/x", "").status == 0);  // no tokens: no authentication
    CHECK(authorize(tokens, "GET", "/healthz", "").status == 0);
    CHECK(authorize(tokens, "GET", "/readyz", "").status == 0);
    CHECK(authorize(tokens, "POST", "/healthz", "").status == 401);
    // The dashboard's page and assets load without a token; its API calls do not.
    CHECK(authorize(tokens, "GET", "/", "").status == 0);
    CHECK(authorize(tokens, "GET", "/index.html", "").status == 0);
    CHECK(authorize(tokens, "GET", "/assets/index-1a2b.js", "").status == 0);
    CHECK(authorize(tokens, "GET", "/assets/", "").status == 401);
    CHECK(authorize(tokens, "POST", "/", "").status == 401);
    CHECK(authorize(tokens, "GET", "/v1/dashboard/cluster", "").status == 401);
    CHECK(authorize(tokens, "GET", "/x", "").status == 401);
    CHECK(authorize(tokens, "GET", "/x", "Bearer").status == 401);
    CHECK(authorize(tokens, "GET", "/x", "Bearer ").status == 401);
    CHECK(authorize(tokens, "GET", "/x", "Basic admin-secret-0123456789").status == 401);
    CHECK(authorize(tokens, "GET", "/x", "Bearer admin-secret-012345678").status == 401);
    CHECK(authorize(tokens, "GET", "/x", "Bearer admin-secret-01234567890").status == 401);
    const auto read = authorize(tokens, "GET", "/x", "bearer read-secret-0123456789");
    CHECK(read.status == 0);
    REQUIRE(read.token != nullptr);
    CHECK(read.token->label == "r");
    CHECK(authorize(tokens, "HEAD", "/x", "Bearer read-secret-0123456789").status == 0);
    for (const char* method : {"POST", "PUT", "PATCH", "DELETE"}) {
        INFO(method);
        const auto d = authorize(tokens, method, "/x", "Bearer read-secret-0123456789");
        CHECK(d.status == 403);
        CHECK(d.message.find("read-secret") == std::string::npos);
        CHECK(authorize(tokens, method, "/x", "Bearer admin-secret-0123456789 ").status == 0);
    }
}

TEST_CASE("constant_time_equals compares whole values", "[unit][http][auth]") {
    CHECK(constant_time_equals("abcdef", "abcdef"));
    CHECK_FALSE(constant_time_equals("abcdeg", "abcdef"));
    CHECK_FALSE(constant_time_equals("abcde", "abcdef"));
    CHECK_FALSE(constant_time_equals("abcdefabcdef", "abcdef"));
    CHECK_FALSE(constant_time_equals("", ""));  // an empty secret never matches
    CHECK_FALSE(constant_time_equals("x", ""));
}

}  // namespace

TEST_CASE("is_loopback_host takes loopback addresses and localhost, not names that look like one",
          "[unit][http][auth]") {
    using synergos::core::http::is_loopback_host;
    for (const char* host : {"localhost", "::1", "[::1]", "127.0.0.1", "127.1.2.3", "127.255.255.255"}) {
        INFO(host);
        CHECK(is_loopback_host(host));
    }
    // Before, anything starting with "127." counted: a token went in clear text to such a name.
    for (const char* host : {"127.example.net", "127.0.0.1.nip.io", "127.0.0.256", "127.", "127.0.0.1 ",
                             "128.0.0.1", "10.0.0.1", "example.com", "", "localhost.example.com"}) {
        INFO(host);
        CHECK_FALSE(is_loopback_host(host));
    }
}
