// SPDX-License-Identifier: Apache-2.0
#include <chrono>
#include <map>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include <synergos/core/http/metrics.hpp>

namespace {

using namespace std::chrono_literals;
using synergos::core::http::LatencyHistogram;

/// The sample lines of a text page (`name{labels} value`), comments left out.
std::map<std::string, std::string> samples(const std::string& page) {
    std::map<std::string, std::string> out;
    std::istringstream in(page);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') {
            continue;
        }
        const auto space = line.rfind(' ');
        out[line.substr(0, space)] = line.substr(space + 1);
    }
    return out;
}

}  // namespace

TEST_CASE("A latency histogram renders cumulative buckets, sum and count", "[unit][http]") {
    LatencyHistogram h;
    h.observe(200us);   // <= 0.5 ms
    h.observe(500us);   // on the bound: still <= 0.5 ms
    h.observe(3ms);     // <= 5 ms
    h.observe(20s);     // past every bound: +Inf only
    h.observe(-1ms);    // a clock step backwards counts as zero
    CHECK(h.count() == 5);
    std::string page;
    h.render(page, "x_seconds", "A test histogram.");
    CHECK(page.rfind("# HELP x_seconds A test histogram.\n# TYPE x_seconds histogram\n", 0) == 0);
    const auto s = samples(page);
    CHECK(s.at("x_seconds_bucket{le=\"0.0005\"}") == "3");
    CHECK(s.at("x_seconds_bucket{le=\"0.001\"}") == "3");
    CHECK(s.at("x_seconds_bucket{le=\"0.005\"}") == "4");
    CHECK(s.at("x_seconds_bucket{le=\"10\"}") == "4");
    CHECK(s.at("x_seconds_bucket{le=\"+Inf\"}") == "5");
    CHECK(s.at("x_seconds_count") == "5");
    CHECK(std::stod(s.at("x_seconds_sum")) == Approx(20.0037).epsilon(1e-9));
}

TEST_CASE("Counters and gauges render with their type", "[unit][http]") {
    std::string page;
    synergos::core::http::append_counter(page, "a_total", "Things.", 42);
    synergos::core::http::append_gauge(page, "b", "Level.", 2.5);
    CHECK(page ==
          "# HELP a_total Things.\n# TYPE a_total counter\na_total 42\n"
          "# HELP b Level.\n# TYPE b gauge\nb 2.5\n");
}
