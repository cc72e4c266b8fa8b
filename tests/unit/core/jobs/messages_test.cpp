// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "synergos/core/jobs/messages.hpp"

namespace synergos::core::jobs {

TEST_CASE("A job message round-trips through JSON", "[jobs][unit]") {
    JobMessage m;
    m.job_id = "job-1";
    m.process = "train";
    m.keys = {"c", "p", "e", "r"};
    m.grid = 1;
    m.grids = nlohmann::json::array({nlohmann::json::array(), nlohmann::json::array()});
    m.parameters = {{"lr", 0.1}};
    m.attempt = 2;
    auto back = JobMessage::from_json(m.to_json().dump());
    REQUIRE(back);
    CHECK(back->job_id == "job-1");
    CHECK(back->keys == m.keys);
    CHECK(back->grid == 1);
    CHECK(back->attempt == 2);
    CHECK(back->parameters["lr"] == 0.1);
}

TEST_CASE("Malformed job messages are refused naming the field", "[jobs][unit]") {
    auto check = [](const std::string& body, const std::string& expected) {
        auto r = JobMessage::from_json(body);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == sdk::ErrorCode::InvalidArgument);
        CHECK_THAT(r.error().message, Catch::Contains(expected));
    };
    check("{not json", "not valid JSON");
    check("[1,2]", "JSON object");
    check(R"({"process":"train","keys":[],"grid":0,"parameters":{}})", "'job_id' is missing");
    check(R"({"job_id":5,"process":"train","keys":[],"grid":0,"parameters":{}})", "'job_id' must be a string");
    check(R"({"job_id":"j","process":"train","keys":[1],"grid":0,"parameters":{}})", "'keys' must hold strings");
    check(R"({"job_id":"j","process":"train","keys":[],"grid":-1,"parameters":{}})", "'grid' must be >= 0");
    check(R"({"job_id":"j","process":"train","keys":[],"grid":0,"parameters":[]})", "'parameters' must be an object");
    check(R"({"job_id":"j","process":"train","keys":[],"grid":0,"parameters":{},"attempt":0})",
          "'attempt' must be 1..1000");
    check(R"({"job_id":"j","process":"train","keys":[],"grid":0,"parameters":{},"max_attempts":1001})",
          "'max_attempts' must be 1..1000");
}

TEST_CASE("Result messages decode each event type and refuse unknown ones", "[jobs][unit]") {
    ResultMessage r;
    r.type = EventType::Result;
    r.job_id = "j";
    r.process = "train";
    r.outcome = Outcome::Failed;
    r.final = false;
    r.reason = "worker down";
    auto back = ResultMessage::from_json(r.to_json().dump());
    REQUIRE(back);
    CHECK(back->outcome == Outcome::Failed);
    CHECK_FALSE(back->final);
    CHECK(back->reason == "worker down");
    auto bad = ResultMessage::from_json(R"({"type":"weird","job_id":"j","process":"p"})");
    REQUIRE_FALSE(bad);
    CHECK_THAT(bad.error().message, Catch::Contains("'type' is unknown"));
    auto bad_status = ResultMessage::from_json(R"({"type":"result","job_id":"j","process":"p","status":"meh"})");
    REQUIRE_FALSE(bad_status);
    // A forged attempt: INT_MAX + 1 was computed for its retry (overflow), and a large one made
    // the job's genuine events read as stale.
    for (const char* attempt : {"2147483647", "1001", "0", "-3"}) {
        INFO(attempt);
        auto forged = ResultMessage::from_json(std::string(R"({"type":"started","job_id":"j","process":"p","attempt":)") +
                                               attempt + "}");
        REQUIRE_FALSE(forged);
        CHECK_THAT(forged.error().message, Catch::Contains("'attempt' must be 1..1000"));
    }
}

TEST_CASE("Priorities put preprocessing before training before evaluation", "[jobs][unit]") {
    CHECK(priority_of("preprocess") > priority_of("train"));
    CHECK(priority_of("train") > priority_of("validate"));
    CHECK(priority_of("validate") == priority_of("predict"));
    CHECK(priority_of("train") <= kMaxPriority);
}

TEST_CASE("Job ids keep their shape and sort by creation time", "[jobs][unit]") {
    // Ids made a little over a millisecond apart, in order.
    std::vector<std::string> made;
    for (int i = 0; i < 12; ++i) {
        made.push_back(new_job_id());
        std::this_thread::sleep_for(std::chrono::microseconds(1100));
    }
    for (const std::string& id : made) {
        INFO(id);
        REQUIRE(id.size() == 28);
        CHECK(id.rfind("job-", 0) == 0);
        CHECK(id.find_first_not_of("0123456789abcdef", 4) == std::string::npos);
    }
    // Later ids sort after earlier ones (the store appends them to its key B-trees)...
    CHECK(std::is_sorted(made.begin(), made.end()));
    // ... and ids made within one millisecond still differ.
    std::set<std::string> burst;
    for (int i = 0; i < 1000; ++i) {
        burst.insert(new_job_id());
    }
    CHECK(burst.size() == 1000);
}

}  // namespace synergos::core::jobs
