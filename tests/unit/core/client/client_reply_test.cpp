// SPDX-License-Identifier: Apache-2.0
// The client reads a director's replies defensively: a server that answers without the fields
// a director sends (a proxy, a stub, another service on the port) gets an error, not a crash.

#include <chrono>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include <synergos/core/client/client.hpp>

#include "job_dir.hpp"
#include "stub_director.hpp"

using synergos::core::client::ClientOptions;
using synergos::core::http::Request;
using synergos::core::http::Response;

TEST_CASE("submit against a server whose replies hold no data fails without crashing", "[unit][client]") {
    // Every path answers `{}`: 201 for a POST, 200 otherwise (before, reading the missing
    // `data` of a held experiment was undefined behaviour: an abort in a debug build).
    synergos::tests::StubDirector server([](const Request& r) {
        return Response::json(r.method == "POST" ? 201 : 200, nlohmann::json::object());
    });
    synergos::tests::Dir dir;
    const std::string file = dir.write("job.yaml", synergos::tests::job());
    ClientOptions o;
    o.server = server.url();
    o.timeout = std::chrono::seconds(20);
    o.poll = std::chrono::milliseconds(10);
    std::ostringstream out;
    std::ostringstream err;
    const int code = synergos::core::client::submit(file, o, out, err);
    INFO(out.str() << err.str());
    CHECK(code != 0);
    CHECK_FALSE(err.str().empty());
}
