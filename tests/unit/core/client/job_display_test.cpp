// SPDX-License-Identifier: Apache-2.0
// The notes `synergos submit` and `synergos jobs` add to a job's line.

#include <catch2/catch.hpp>
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
