// SPDX-License-Identifier: Apache-2.0
// The client reads a director's replies defensively: a server that answers without the fields
// a director sends (a proxy, a stub, another service on the port) gets an error, not a crash.

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include <synergos/core/client/client.hpp>

#include "stub_director.hpp"

namespace fs = std::filesystem;
using synergos::core::client::ClientOptions;
using synergos::core::http::Request;
using synergos::core::http::Response;

TEST_CASE("submit against a server whose replies hold no data fails without crashing", "[unit][client]") {
    // Every path answers `{}`: 201 for a POST, 200 otherwise (before, reading the missing
    // `data` of a held experiment was undefined behaviour: an abort in a debug build).
    synergos::tests::StubDirector server([](const Request& r) {
        return Response::json(r.method == "POST" ? 201 : 200, nlohmann::json::object());
    });
    std::random_device rd;
    const fs::path dir = fs::temp_directory_path() / ("synergos-client-reply-" + std::to_string(rd()));
    fs::create_directories(dir);
    std::ofstream(dir / "m.json") << R"([{"is_input": true, "l_type": "Linear",
        "structure": {"in_features": 4, "out_features": 1}, "activation": "sigmoid"}])";
    std::ofstream(dir / "job.yaml") << "collaboration: {id: c1}\n"
                                       "project: {id: p1}\n"
                                       "experiment: {id: e1, model_file: m.json}\n"
                                       "runs: [{id: r1, rounds: 2}]\n"
                                       "participants:\n"
                                       "  - id: a\n"
                                       "    nodes: [{host: 127.0.0.1, f_port: 5101}]\n"
                                       "    tags: {train: [[x, y]]}\n";
    ClientOptions o;
    o.server = server.url();
    o.timeout = std::chrono::seconds(20);
    o.poll = std::chrono::milliseconds(10);
    std::ostringstream out;
    std::ostringstream err;
    const int code = synergos::core::client::submit((dir / "job.yaml").string(), o, out, err);
    INFO(out.str() << err.str());
    CHECK(code != 0);
    CHECK_FALSE(err.str().empty());
    std::error_code ec;
    fs::remove_all(dir, ec);
}
