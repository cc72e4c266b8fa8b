// SPDX-License-Identifier: Apache-2.0
// Where the client commands send a token.

#include <sstream>

#include <catch2/catch.hpp>

#include <synergos/core/client/client.hpp>

using synergos::core::client::ClientOptions;

TEST_CASE("A client command sends no token over plain http to another machine", "[unit][client]") {
    ClientOptions o;
    o.token = "read-token-0123456789abcdef";
    // Refused before any connection: 192.0.2.1 is a documentation address nothing answers on.
    o.server = "http://192.0.2.1:5000";
    std::ostringstream out;
    std::ostringstream err;
    CHECK(synergos::core::client::status(o, out, err) == 2);
    CHECK(err.str().find("a token is sent over https:// only") != std::string::npos);
    CHECK(out.str().empty());
    // Without a token the same server is tried (and is unreachable, but not refused).
    o.token.clear();
    o.server = "http://127.0.0.1:1";
    std::ostringstream err2;
    CHECK(synergos::core::client::status(o, out, err2) == 2);
    CHECK(err2.str().find("https://") == std::string::npos);
    // On this machine a token may go over plain http (the director's loopback default).
    o.token = "read-token-0123456789abcdef";
    std::ostringstream err3;
    CHECK(synergos::core::client::status(o, out, err3) == 2);
    CHECK(err3.str().find("unreachable") != std::string::npos);
}
