// SPDX-License-Identifier: Apache-2.0
// The notes `synergos submit` and `synergos jobs` add to a job's line.

#include <catch2/catch.hpp>

#include <sstream>
#include <nlohmann/json.hpp>

#include "job_display.hpp"

using nlohmann::json;
using synergos::core::client::early_stop_note;

TEST_CASE("A training its patience ended says where it stopped", "[unit][client]") {
    // As GET /v1/jobs/{id} answers a train job the train function's summary ended early.
    json job = {{"state", "succeeded"},
                {"progress", {{"round", 59}, {"rounds", 200}}},
                {"outputs", {{"summary", {{"rounds_run", 60}, {"stopped_early", true}}}}}};
    CHECK(early_stop_note(job) == "stopped early at round 60 of 200 (patience)");
    job.erase("progress");  // no progress kept: the total is left out
    CHECK(early_stop_note(job) == "stopped early at round 60 (patience)");
    job["outputs"]["summary"]["stopped_early"] = false;
    CHECK(early_stop_note(job).empty());
}

TEST_CASE("Odd job fields give no early-stop note and never throw", "[unit][client]") {
    for (const json& job : {json(nullptr), json::array(), json{{"outputs", "x"}},
                            json{{"outputs", {{"summary", 3}}}},
                            json{{"outputs", {{"summary", {{"stopped_early", "true"}, {"rounds_run", 5}}}}}},
                            json{{"outputs", {{"summary", {{"stopped_early", true}, {"rounds_run", "5"}}}}}},
                            json{{"outputs", {{"summary", {{"stopped_early", true}}}}}}}) {
        INFO(job.dump());
        CHECK(early_stop_note(job).empty());
    }
    const json odd_progress = {{"progress", {{"rounds", "200"}}},
                               {"outputs", {{"summary", {{"rounds_run", 7}, {"stopped_early", true}}}}}};
    CHECK(early_stop_note(odd_progress) == "stopped early at round 7 (patience)");
}

TEST_CASE("The metrics table reads odd records without reading past them", "[unit][client]") {
    using synergos::core::client::print_metrics;
    // TPs longer than FNs, no key, a key of another type, statistics not an object: before, a
    // const operator[] read out of bounds (undefined behaviour, a crash in release builds).
    const nlohmann::json records = nlohmann::json::parse(R"([
        {"key": {"participant_id": "p1"},
         "evaluate": {"statistics": {"TPs": [3, 1], "FNs": [1], "f_score": [0.5]}}},
        {"evaluate": {"statistics": {"TPs": [2], "FNs": [2]}}},
        {"key": 7, "evaluate": {"statistics": {"R2": 0.25, "MSE": 1, "MAE": 0.5}}},
        {"key": {"participant_id": "p4"}, "evaluate": {"statistics": 3}},
        "not a record"])");
    std::ostringstream out;
    print_metrics(records, "evaluate", out);
    const std::string table = out.str();
    INFO(table);
    CHECK(table.find("p1") != std::string::npos);
    CHECK(table.find("0.800") != std::string::npos);  // 4 true of 5 rows counted
    CHECK(table.find("?") != std::string::npos);      // no participant id
    CHECK(table.find("0.250") != std::string::npos);
    CHECK(table.find("p4") == std::string::npos);     // nothing to show
}
