// SPDX-License-Identifier: Apache-2.0
// The job machinery end to end (director service, TTP runners, archival) on a real sqlite store
// and the in-process `memory` queue backend.

#include "jobs_scenarios.hpp"

namespace synergos::test {

TEST_CASE("Two TTPs on two grids run a batch in parallel, each job once, archived once (memory)", "[jobs]") {
    two_grids_run_a_batch_once(Backend::Memory);
}
TEST_CASE("A poison message and an always-failing job are dead-lettered while others flow (memory)", "[jobs]") {
    poison_and_failing_jobs_are_dead_lettered(Backend::Memory);
}
TEST_CASE("A preprocessing job is taken before a backlog of training jobs (memory)", "[jobs]") {
    preprocessing_overtakes_a_training_backlog(Backend::Memory);
}
TEST_CASE("Cancelling a queued job drops it and a running job stops at a safe point (memory)", "[jobs]") {
    cancel_queued_and_running(Backend::Memory);
}
TEST_CASE("A job for a grid the registrations do not define fails with a clear reason", "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    h.start_ttp(1);
    auto id = h.submit({h.spec("train", json{{"mode", "ok"}}, 1)}).front();
    auto job = h.wait(id);
    CHECK(job.state == "failed");
    CHECK_THAT(job.reason, Catch::Contains("grid 1") && Catch::Contains("define 1 grids"));
}

TEST_CASE("A queued job on a grid without a TTP says so", "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    auto id = h.submit({h.spec("train", json{{"mode", "ok"}}, 0)}).front();
    auto job = h.service->get(id);
    REQUIRE(job);
    CHECK(job->state == "queued");
    CHECK_THAT(job->reason, Catch::Contains("no TTP connected for grid 0"));
}

TEST_CASE("A result delivered twice is archived once", "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    h.start_ttp(0);
    auto id = h.submit({h.spec("train", json{{"mode", "ok"}})}).front();
    REQUIRE(h.wait(id).state == "succeeded");
    // Replay the success result by hand, as a redelivery after a crash would.
    core::jobs::ResultMessage dup;
    dup.job_id = id;
    dup.process = "train";
    dup.outputs = json{{"echo", "again"}};
    auto& mq = h.new_queue();
    REQUIRE(mq.publish(h.topology.results(), core::jobs::make_message(id, dup.to_json()), 10s));
    auto marker = h.submit({h.spec("train", json{{"mode", "ok"}})}).front();
    REQUIRE(h.wait(marker).state == "succeeded");  // the duplicate was consumed before this
    CHECK(h.log_counts("archived.log")[id] == 1);
    CHECK(h.service->get(id)->state == "succeeded");
}

}  // namespace synergos::test
