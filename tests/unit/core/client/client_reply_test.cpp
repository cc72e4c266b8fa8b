// SPDX-License-Identifier: Apache-2.0
// The client reads a director's replies defensively: a server that answers without the fields
// a director sends (a proxy, a stub, another service on the port) gets an error, not a crash.

#include <atomic>
#include <chrono>
#include <memory>
#include <sstream>
#include <thread>
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

TEST_CASE("submit rides out a director that stops answering while its jobs run", "[unit][client]") {
    // A director restarting (its jobs resume) ended the wait at once with exit 2.
    std::atomic<int> job_polls{0};
    std::atomic<bool> answering{true};
    const auto answer = [&](const Request& r) {
        if (r.method == "GET" && r.path.rfind("/v1/jobs/", 0) == 0) {
            const int n = ++job_polls;
            return Response::json(200, {{"data", {{"job_id", "job-1"}, {"grid", 0},
                                                  {"state", n < 3 ? "running" : "succeeded"}}}});
        }
        if (r.method == "POST") {
            // Records and alignments are created (201); trainings and validations start (200).
            const bool starts = r.path.find("/alignments") == std::string::npos &&
                                (r.path.rfind("/ttp/train/", 0) == 0 || r.path.rfind("/ttp/evaluate/", 0) == 0);
            return Response::json(starts ? 200 : 201,
                                  {{"data", nlohmann::json::array()}, {"jobs", {{{"job_id", "job-1"}}}}});
        }
        return Response::json(404, {{"message", "no such record"}});
    };
    auto first = std::make_unique<synergos::tests::StubDirector>(answer);
    const std::string url = first->url();
    synergos::tests::Dir dir;
    const std::string file = dir.write("job.yaml", synergos::tests::job());
    ClientOptions o;
    o.server = url;
    o.timeout = std::chrono::seconds(60);
    o.poll = std::chrono::milliseconds(50);
    std::ostringstream out;
    std::ostringstream err;
    std::atomic<int> code{-1};
    std::thread client([&] { code = synergos::core::client::submit(file, o, out, err); });
    // Once the job is seen running, the director goes away for a second, then comes back.
    for (int i = 0; i < 400 && job_polls < 1; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    first.reset();
    std::this_thread::sleep_for(std::chrono::seconds(1));
    synergos::tests::StubDirector second(answer, static_cast<std::uint16_t>(std::stoi(url.substr(url.rfind(':') + 1))));
    client.join();
    INFO(out.str() << err.str());
    CHECK_THAT(out.str(), Catch::Contains("unreachable") && Catch::Contains("asking again"));
    // The wait went on to the job's end and the next step (the stub knows no model record, so
    // the command ends there, and not for want of a director).
    CHECK_THAT(out.str(), Catch::Contains("align job-1 [grid 0] succeeded") && Catch::Contains("alignment done"));
    CHECK_THAT(err.str(), !Catch::Contains("unreachable"));
    CHECK(code != 2);
}
