// SPDX-License-Identifier: Apache-2.0
#pragma once
// Scenarios 1, 4, 5, 6 of issue 4, written once and run on both queue backends.

#include <algorithm>
#include <fstream>
#include <thread>

#include "jobs_harness.hpp"

namespace synergos::test {

inline void two_grids_run_a_batch_once(Backend backend) {
    Harness h(backend);
    h.start_director();
    h.start_ttp(0);
    h.start_ttp(1);
    std::vector<core::jobs::JobSpec> specs;
    for (int i = 0; i < 40; ++i) {
        specs.push_back(h.spec("train", json{{"mode", "sleep"}, {"ms", 20}}));
    }
    auto ids = h.submit(specs);
    std::set<int> grids_used;
    for (const auto& id : ids) {
        auto job = h.wait(id);
        REQUIRE(job.state == "succeeded");
        grids_used.insert(job.grid);
        REQUIRE(job.outputs.value("grid", -1) == job.grid);
    }
    // Both grids took work, every job ran exactly once, and was archived exactly once.
    CHECK(grids_used == std::set<int>{0, 1});
    auto executed = h.log_counts("executed.log");
    auto archived = h.log_counts("archived.log");
    REQUIRE(executed.size() == ids.size());
    REQUIRE(archived.size() == ids.size());
    for (const auto& id : ids) {
        CHECK(executed[id] == 1);
        CHECK(archived[id] == 1);
    }
    auto results = h.storage->list(sdk::Query{"FixtureResult", {}, 0, 0});
    REQUIRE(results);
    CHECK(results->size() == ids.size());
    // The two grids overlapped in time: parallel, not one after the other.
    auto lines = h.log_lines("executed.log");
    std::set<std::string> first_half_grids;
    for (std::size_t i = 0; i < lines.size() / 2; ++i) {
        first_half_grids.insert(lines[i].substr(lines[i].find(' ') + 1, 1));
    }
    CHECK(first_half_grids.size() == 2);
}

inline void poison_and_failing_jobs_are_dead_lettered(Backend backend) {
    Harness h(backend, 1);
    h.start_director(/*max_attempts=*/3);
    h.start_ttp(0);
    // A poison message straight onto the grid queue (not JSON), and one without required fields.
    auto& mq = h.new_queue();
    REQUIRE(mq.publish(h.topology.jobs(0), sdk::Message{"poison-1", "{not json", 5, "application/json", {}}, 10s));
    REQUIRE(mq.publish(h.topology.jobs(0), sdk::Message{"poison-2", R"({"job_id": 7})", 5, "application/json", {}}, 10s));
    auto failing = h.submit({h.spec("train", json{{"mode", "fail"}})}).front();
    auto refused = h.submit({h.spec("train", json{{"mode", "bad"}})}).front();
    std::vector<core::jobs::JobSpec> good;
    for (int i = 0; i < 5; ++i) {
        good.push_back(h.spec("train", json{{"mode", "ok"}}));
    }
    auto ok_ids = h.submit(good);

    auto f = h.wait(failing);
    CHECK(f.state == "failed");
    CHECK(f.attempts == 3);
    CHECK_THAT(f.reason, Catch::Contains("attempt 3 of 3: fixture failure"));
    auto r = h.wait(refused);
    CHECK(r.state == "failed");
    CHECK(r.attempts == 1);  // a permanent error is not retried
    CHECK_THAT(r.reason, Catch::Contains("mode"));
    for (const auto& id : ok_ids) {
        CHECK(h.wait(id).state == "succeeded");
    }
    CHECK(h.log_counts("executed.log")[failing] == 3);
    // Both poison messages and both failed jobs end in the dead-letter queue.
    std::uint64_t dead = 0;
    for (int i = 0; i < 200 && dead < 4; ++i) {
        auto depth = mq.depth(h.topology.jobs_dead());
        REQUIRE(depth);
        dead = *depth;
        if (dead < 4) {
            std::this_thread::sleep_for(50ms);  // the broker applies dead-lettering asynchronously
        }
    }
    CHECK(dead == 4);
}

inline void preprocessing_overtakes_a_training_backlog(Backend backend) {
    Harness h(backend, 1);
    h.start_director();
    // Queue a backlog of training jobs before any TTP runs, then a preprocessing job.
    std::vector<core::jobs::JobSpec> backlog;
    for (int i = 0; i < 6; ++i) {
        backlog.push_back(h.spec("train", json{{"mode", "ok"}}, 0));
    }
    auto train_ids = h.submit(backlog);
    auto pre = h.submit({h.spec("preprocess", json{{"mode", "ok"}}, 0)}).front();
    auto evaluate = h.submit({h.spec("validate", json{{"mode", "ok"}}, 0)}).front();
    h.await_published(0, 8);  // the whole backlog is in the broker before the TTP starts
    h.start_ttp(0);
    for (const auto& id : train_ids) {
        REQUIRE(h.wait(id).state == "succeeded");
    }
    REQUIRE(h.wait(pre).state == "succeeded");
    REQUIRE(h.wait(evaluate).state == "succeeded");
    auto lines = h.log_lines("executed.log");
    REQUIRE(lines.size() == 8);
    CHECK(lines.front().rfind(pre, 0) == 0);       // preprocessing first
    CHECK(lines.back().rfind(evaluate, 0) == 0);   // evaluation after training
}

/// While a TTP runs a job, a training backlog and then a preprocessing job arrive: the
/// preprocessing job runs next. A TTP that held a prefetched job (or took its next one before
/// its current job ended) would run a training job first.
inline void preprocessing_published_mid_job_runs_next(Backend backend) {
    Harness h(backend, 1);
    h.start_director();
    h.start_ttp(0);
    // Held until the backlog is in the broker (the gate file), at most 30 s.
    const std::string gate = (h.dir / "release-first").string();
    auto first = h.submit({h.spec("train", json{{"mode", "sleep"}, {"ms", 30000}, {"until_file", gate}}, 0)})
                     .front();
    for (int i = 0; i < 400 && h.service->get(first)->state != "running"; ++i) {
        (void)h.service->wait(first, 50ms);  // wakes on any job change, bounded
    }
    REQUIRE(h.service->get(first)->state == "running");
    std::vector<core::jobs::JobSpec> backlog;
    for (int i = 0; i < 3; ++i) {
        backlog.push_back(h.spec("train", json{{"mode", "ok"}}, 0));
    }
    auto train_ids = h.submit(backlog);
    auto pre = h.submit({h.spec("preprocess", json{{"mode", "ok"}}, 0)}).front();
    h.await_published(0, 4);  // all in the broker while the first job still runs
    REQUIRE(h.service->get(first)->state == "running");
    std::ofstream(gate).put('\n');
    REQUIRE(h.wait(first).state == "succeeded");
    for (const auto& id : train_ids) {
        REQUIRE(h.wait(id).state == "succeeded");
    }
    REQUIRE(h.wait(pre).state == "succeeded");
    auto lines = h.log_lines("executed.log");
    REQUIRE(lines.size() == 5);
    CHECK(lines[0].rfind(first, 0) == 0);
    CHECK(lines[1].rfind(pre, 0) == 0);  // taken next, ahead of the earlier training jobs
}

inline void cancel_queued_and_running(Backend backend) {
    Harness h(backend, 1);
    h.start_director();
    h.start_ttp(0);
    auto running = h.submit({h.spec("train", json{{"mode", "sleep"}, {"ms", 20000}})}).front();
    auto queued = h.submit({h.spec("train", json{{"mode", "ok"}})}).front();
    // Wait until the long job runs (the queued one waits behind it: prefetch 1, one TTP).
    for (int i = 0; i < 400; ++i) {
        if (h.service->get(running)->state == "running") {
            break;
        }
        (void)h.service->wait(running, 50ms);  // wakes on any job change, bounded
    }
    REQUIRE(h.service->get(running)->state == "running");
    auto q = h.service->get(queued);
    REQUIRE(q->state == "queued");
    CHECK_THAT(q->reason, Catch::Equals("next in line on grid 0"));

    auto c1 = h.service->cancel(queued);
    REQUIRE(c1);
    CHECK(c1->state == "cancelled");
    auto c2 = h.service->cancel(running);
    REQUIRE(c2);
    auto r = h.wait(running, 15s);
    CHECK(r.state == "cancelled");
    CHECK_THAT(r.reason, Catch::Contains("safe point"));
    // The queued job was dropped on delivery: never executed, never archived.
    auto after = h.submit({h.spec("train", json{{"mode", "ok"}})}).front();
    REQUIRE(h.wait(after).state == "succeeded");
    CHECK(h.log_counts("executed.log").count(queued) == 0);
    CHECK(h.service->get(queued)->state == "cancelled");
    // The function is told of the job its TTP stopped (a training's tracker run ends KILLED),
    // once; the one dropped before any TTP took it never ran.
    CHECK(h.log_lines_once("ended.log", 1) == std::vector<std::string>{running + " cancelled"});
    // Cancelling a finished job is refused.
    auto again = h.service->cancel(after);
    REQUIRE_FALSE(again);
    CHECK(again.error().code == sdk::ErrorCode::FailedPrecondition);
}

}  // namespace synergos::test
