// SPDX-License-Identifier: Apache-2.0
// The job machinery end to end (director service, TTP runners, archival) on a real sqlite store
// and the in-process `memory` queue backend.

#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <synergos/core/http/client.hpp>
#include <synergos/core/roles/worker_client.hpp>

#include "jobs_scenarios.hpp"
#include "support/storage_double.hpp"
#include "unit/core/http/http_test_util.hpp"

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
TEST_CASE("A preprocessing job published while a TTP runs a job is taken next (memory)", "[jobs]") {
    preprocessing_published_mid_job_runs_next(Backend::Memory);
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

TEST_CASE("A job running past its time limit is stopped at a safe point and fails for good saying so",
          "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    h.start_ttp(0, 300ms);
    const auto began = std::chrono::steady_clock::now();
    auto id = h.submit({h.spec("train", json{{"mode", "sleep"}, {"ms", 20000}})}).front();
    auto job = h.wait(id, 15s);
    CHECK(std::chrono::steady_clock::now() - began < 10s);  // stopped, not run to its end
    CHECK(job.state == "failed");
    CHECK_THAT(job.reason, Catch::Contains("time limit") && Catch::Contains("jobs.job_timeout_s: 0.3 s"));
    CHECK(job.attempts == 1);  // not retried: it would run as long again
    // The TTP goes on with the next job, under the same limit.
    auto quick = h.submit({h.spec("train", json{{"mode", "ok"}})}).front();
    CHECK(h.wait(quick).state == "succeeded");
}

TEST_CASE("A job that fails on its own after its time limit is not retried", "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    h.start_ttp(0, 200ms);
    // No safe point: it runs past the limit, then fails with a retryable error. A retry would
    // get a whole new limit (three attempts, three times the limit).
    auto id = h.submit({h.spec("train", json{{"mode", "busy"}, {"ms", 600}})}).front();
    auto job = h.wait(id, 15s);
    CHECK(job.state == "failed");
    CHECK(job.attempts == 1);
    CHECK_THAT(job.reason, Catch::Contains("fixture call timed out") &&
                               Catch::Contains("past its time limit (jobs.job_timeout_s: 0.2 s): not retried"));
    CHECK(h.log_counts("executed.log")[id] == 1);
}

TEST_CASE("A job cancelled by its user and then interrupted by shutdown stays cancelled", "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    auto& ttp = h.start_ttp(0);
    auto id = h.submit({h.spec("train", json{{"mode", "busy"}, {"ms", 3000}})}).front();
    for (int i = 0; i < 400 && h.service->get(id)->state != "running"; ++i) {
        (void)h.service->wait(id, 50ms);
    }
    REQUIRE(h.service->get(id)->state == "running");
    REQUIRE(h.service->cancel(id));
    for (int i = 0; i < 500 && !h.host.captured().contains("cancel taken for the running job"); ++i) {
        std::this_thread::sleep_for(10ms);  // the TTP's control thread takes it
    }
    REQUIRE(h.host.captured().contains("cancel taken for the running job"));
    // The cancel is known only to this TTP: requeued on shutdown, the job would run again in
    // full after a restart.
    ttp.stop();
    auto job = h.wait(id, 15s);
    CHECK(job.state == "cancelled");
    h.start_ttp(0);
    auto after = h.submit({h.spec("train", json{{"mode", "ok"}})}).front();
    REQUIRE(h.wait(after).state == "succeeded");
    CHECK(h.log_counts("executed.log")[id] == 1);
    CHECK(h.service->get(id)->state == "cancelled");
}

TEST_CASE("Messages whose id is not UTF-8 are dead-lettered without taking the director or a TTP down",
          "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    h.start_ttp(0);
    auto& mq = h.new_queue();
    // Broker message ids are raw bytes. Logging one with a strict JSON dump threw out of the
    // archival thread: std::terminate, again at every restart (the message was never settled).
    const std::string bad_id = "\xff\xfe\x80 id";
    REQUIRE(mq.publish(h.topology.results(), sdk::Message{bad_id, "{not json", 5, "application/json", {}}, 10s));
    REQUIRE(mq.publish(h.topology.jobs(0), sdk::Message{bad_id, "{not json", 5, "application/json", {}}, 10s));
    auto marker = h.submit({h.spec("train", json{{"mode", "ok"}})}).front();
    REQUIRE(h.wait(marker).state == "succeeded");
    // The job in its queue's dead letters; in the results', the bad result and the TTP's
    // failure event for the job (no job has its id).
    for (const auto& [queue, expected] : {std::pair<std::string, std::uint64_t>{h.topology.jobs_dead(), 1},
                                          {h.topology.results_dead(), 2}}) {
        INFO(queue);
        std::uint64_t dead = 0;
        for (int i = 0; i < 200 && dead < expected; ++i) {
            auto depth = mq.depth(queue);
            REQUIRE(depth);
            dead = *depth;
            if (dead < expected) {
                std::this_thread::sleep_for(50ms);
            }
        }
        CHECK(dead == expected);
    }
}

TEST_CASE("Control messages of the wrong shape are dropped without taking a TTP down", "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    h.start_ttp(0);
    auto& mq = h.new_queue();
    // A `type` that is not a string threw out of the TTP's control thread: std::terminate.
    for (const std::string body : {R"({"type":1})", R"({"type":null})", R"({"type":"cancel","job_id":7})",
                                   R"([1,2])", "{not json"}) {
        REQUIRE(mq.publish(h.topology.control(0), sdk::Message{"m", body, 5, "application/json", {}}, 10s));
    }
    // The TTP still takes a cancel, and jobs.
    auto running = h.submit({h.spec("train", json{{"mode", "sleep"}, {"ms", 20000}})}).front();
    for (int i = 0; i < 400 && h.service->get(running)->state != "running"; ++i) {
        (void)h.service->wait(running, 50ms);
    }
    REQUIRE(h.service->cancel(running));
    CHECK(h.wait(running, 15s).state == "cancelled");
    auto marker = h.submit({h.spec("train", json{{"mode", "ok"}})}).front();
    CHECK(h.wait(marker).state == "succeeded");
}

TEST_CASE("A standalone director's restart runs again the jobs its in-process queue lost", "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.volatile_queue = true;
    h.start_director();
    h.start_ttp(0);
    auto running = h.submit({h.spec("train", json{{"mode", "sleep"}, {"ms", 1500}})}).front();
    auto queued = h.submit({h.spec("train", json{{"mode", "ok"}})}).front();
    for (int i = 0; i < 400 && h.service->get(running)->state != "running"; ++i) {
        (void)h.service->wait(running, 50ms);
    }
    REQUIRE(h.service->get(running)->state == "running");
    // The process stops (the TTP requeues its job into the in-process queue) and the queue
    // ends with it. Before, both jobs stayed running and queued for good.
    h.lose_memory_broker();
    h.start_director();
    h.start_ttp(0);
    CHECK(h.wait(running, 30s).state == "succeeded");
    CHECK(h.wait(queued, 30s).state == "succeeded");
    CHECK(h.log_counts("archived.log")[running] == 1);
    CHECK(h.log_counts("archived.log")[queued] == 1);
}

TEST_CASE("A retried job published again at start keeps its attempt and its limit", "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.volatile_queue = true;
    // Running its second attempt when the process stopped (the stored message is the first's:
    // retries are published by the TTP).
    const auto job = h.put_job("job-second-attempt", "running", "", {{"mode", "fail"}}, 2);
    h.start_director();
    h.start_ttp(0);
    auto done = h.wait(job.job_id, 30s);
    CHECK(done.state == "failed");
    CHECK(done.attempts == 3);
    // Attempts 2 and 3 ran. Before, it started over at attempt 1 and ran three more times.
    CHECK(h.log_counts("executed.log")[job.job_id] == 2);
}

TEST_CASE("A job waiting for its retry when the process stopped is published again at the next attempt",
          "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.volatile_queue = true;
    // Attempt 1 failed ("retrying"): queued, one attempt made.
    const auto job = h.put_job("job-waiting-retry", "queued", "retrying (attempt 2 of 3) after: fixture failure",
                               {{"mode", "fail"}}, 1);
    h.start_director();
    h.start_ttp(0);
    auto done = h.wait(job.job_id, 30s);
    CHECK(done.state == "failed");
    CHECK(done.attempts == 3);
    // Attempts 2 and 3 ran. Before, attempt 1 ran again: three runs, four attempts in all.
    CHECK(h.log_counts("executed.log")[job.job_id] == 2);
}

TEST_CASE("A job cancelled before the director went down ends cancelled at the next start", "[jobs]") {
    for (const bool volatile_queue : {true, false}) {
        INFO("volatile queue: " << volatile_queue);
        Harness h(Backend::Memory, 1);
        h.volatile_queue = volatile_queue;
        // What a SIGKILL leaves: a running job whose user asked to cancel it, no TTP result.
        const auto job = h.put_job("job-cancel-pending", "running",
                                   "cancellation requested; stopping at the next safe point", {{"mode", "ok"}});
        h.start_director();
        h.start_ttp(0);
        auto marker = h.submit({h.spec("train", json{{"mode", "ok"}})}).front();
        REQUIRE(h.wait(marker).state == "succeeded");  // the TTP is up and has read its notices
        if (!volatile_queue) {
            // A durable queue still holds it (published here by hand, as the broker would
            // redeliver it to a restarted TTP, which lost the first notice): the notice sent
            // again at start-up makes the TTP drop it on delivery.
            auto& mq = h.new_queue();
            REQUIRE(mq.publish(h.topology.jobs(0), core::jobs::make_message(job.job_id, job.message), 10s));
        }
        // The in-process queue lost it: it ends cancelled at start-up instead of running again.
        auto j = h.wait(job.job_id, 10s);
        CHECK(j.state == "cancelled");
        CHECK(h.log_counts("executed.log").count(job.job_id) == 0);
    }
}

namespace {
/// A store whose disk is full while `full` is set: writes of fixture results fail as SQLite's
/// SQLITE_FULL does (everything else is written, so jobs can start).
class FullDisk final : public testing::ForwardingStorage {
public:
    using ForwardingStorage::ForwardingStorage;
    sdk::Result<std::vector<sdk::Record>> apply(const std::vector<sdk::Mutation>& batch) noexcept override {
        for (const auto& m : batch) {
            if (full && m.kind == "FixtureResult") {
                return sdk::Error{sdk::ErrorCode::ResourceExhausted, "storage 'sqlite': database or disk is full"};
            }
        }
        return inner_.apply(batch);
    }
    std::atomic<bool> full{false};
};
}  // namespace

TEST_CASE("A result the store cannot write while its disk is full is kept and archived once it can",
          "[jobs]") {
    Harness h(Backend::Memory, 1);
    FullDisk disk(*h.storage);
    h.service_storage = &disk;
    h.start_director();
    h.start_ttp(0);
    disk.full = true;
    auto id = h.submit({h.spec("train", json{{"mode", "ok"}})}).front();
    for (int i = 0; i < 500 && !h.host.captured().contains("archival deferred"); ++i) {
        std::this_thread::sleep_for(10ms);
    }
    // Before, the result was dead-lettered at once and the job stayed running for good.
    REQUIRE(h.host.captured().contains("archival deferred"));
    CHECK(h.service->get(id)->state != "succeeded");
    disk.full = false;
    CHECK(h.wait(id, 30s).state == "succeeded");
    auto stored = h.storage->get("FixtureResult", {{"job_id", id}});
    CHECK(stored.has_value());
    auto dead = h.new_queue().depth(h.topology.results_dead());
    REQUIRE(dead);
    CHECK(*dead == 0);
}

namespace {
/// A store whose commits of new jobs take `delay` while `slow` is set (a stalled disk).
class SlowDisk final : public testing::ForwardingStorage {
public:
    using ForwardingStorage::ForwardingStorage;
    sdk::Result<std::vector<sdk::Record>> apply(const std::vector<sdk::Mutation>& batch) noexcept override {
        for (const auto& m : batch) {
            if (slow && m.mode == sdk::WriteMode::Insert && m.kind == "Job") {
                std::this_thread::sleep_for(delay);
                break;
            }
        }
        return inner_.apply(batch);
    }
    std::atomic<bool> slow{false};
    std::chrono::milliseconds delay{1500};
};
}  // namespace

TEST_CASE("A submit that times out waiting for the store leaves no job to run later", "[jobs]") {
    Harness h(Backend::Memory, 1);
    SlowDisk disk(*h.storage);
    h.service_storage = &disk;
    h.publish_timeout = 500ms;
    h.start_director();
    h.start_ttp(0);
    disk.slow = true;
    auto refused = h.service->submit({h.spec("train", json{{"mode", "ok"}})});
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == sdk::ErrorCode::Timeout);
    disk.slow = false;
    // The records were committed after the answer: the job is failed, not left `submitting`
    // for the next start to publish (the client, told it failed, may have submitted again).
    std::vector<core::jobs::JobRecord> jobs;
    for (int i = 0; i < 200; ++i) {
        auto all = core::jobs::JobStore(*h.storage).list(core::jobs::JobFilter{});
        REQUIRE(all);
        jobs = *all;
        if (!jobs.empty() && jobs.front().is_terminal()) {
            break;
        }
        std::this_thread::sleep_for(25ms);
    }
    REQUIRE(jobs.size() == 1);
    CHECK(jobs.front().state == "failed");
    CHECK_THAT(jobs.front().reason, Catch::Contains("submission timed out"));
    // A restart does not run it.
    h.ttps.front()->stop();
    h.service->stop();
    h.start_director();
    auto marker = h.submit({h.spec("train", json{{"mode", "ok"}})}).front();
    h.start_ttp(0);
    REQUIRE(h.wait(marker).state == "succeeded");
    CHECK(h.log_counts("executed.log").count(jobs.front().job_id) == 0);
}

TEST_CASE("A director-side job's result waits out a full disk instead of being dropped", "[jobs]") {
    Harness h(Backend::Memory, 1);
    FullDisk disk(*h.storage);
    h.service_storage = &disk;
    h.start_director(3, {"noop"});  // the fixture's noop runs on the director, as a search does
    disk.full = true;
    auto id = h.submit({h.spec("noop", json{{"mode", "ok"}})}).front();
    for (int i = 0; i < 500 && !h.host.captured().contains("director-side job result deferred"); ++i) {
        std::this_thread::sleep_for(10ms);
    }
    REQUIRE(h.host.captured().contains("director-side job result deferred"));
    // Before, it gave up after five tries (2.5 s): the job stayed running and ran again in
    // full at the next start.
    std::this_thread::sleep_for(3500ms);
    disk.full = false;
    CHECK(h.wait(id, 60s).state == "succeeded");
    CHECK(h.storage->get("FixtureResult", {{"job_id", id}}).has_value());
    CHECK(h.log_counts("executed.log")[id] == 1);
}

TEST_CASE("A job its user cancelled that starts again on a TTP without the notice gets it again",
          "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    // A TTP took the notice, then died (SIGKILL) before its next safe point: the job is still
    // running with the cancel requested, and the broker gives it to the next TTP, which never
    // saw the notice. Before, that TTP ran it to its end and it was archived as succeeded.
    const auto job = h.put_job("job-cancel-redelivered", "running",
                               "cancellation requested; stopping at the next safe point",
                               {{"mode", "sleep"}, {"ms", 30000}}, 1);
    REQUIRE(h.new_queue().publish(h.topology.jobs(0), core::jobs::make_message(job.job_id, job.message), 10s));
    const auto began = std::chrono::steady_clock::now();
    h.start_ttp(0);
    auto j = h.wait(job.job_id, 45s);
    CHECK(j.state == "cancelled");
    CHECK(std::chrono::steady_clock::now() - began < 15s);  // stopped at a safe point, not run out
    CHECK(h.log_counts("executed.log")[job.job_id] == 1);
}

TEST_CASE("A job cancelled while queued that a TTP runs anyway is told again and stopped", "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    auto& mq = h.new_queue();
    const auto id = h.submit({h.spec("train", json{{"mode", "sleep"}, {"ms", 30000}}, 0)}).front();
    REQUIRE(h.service->cancel(id));
    REQUIRE(h.service->get(id)->state == "cancelled");
    {
        // A TTP took the notice and restarted without it (a TTP keeps notices in memory only),
        // or the notice was lost: the job's message is still queued and runs on the next TTP.
        auto control = mq.consume(h.topology.control(0), 1);
        REQUIRE(control);
        auto notice = (*control)->receive(10s);
        REQUIRE(notice);
        REQUIRE(notice->has_value());
        REQUIRE((*control)->ack((**notice).tag));
        (*control)->close();
    }
    const auto began = std::chrono::steady_clock::now();
    auto& ttp = h.start_ttp(0);
    // Its started event gets the notice sent again, so it stops at a safe point instead of
    // sleeping out its 30 s (before, nothing told it: the director ignored the event of a
    // cancelled job).
    while (ttp.jobs_done() == 0 && std::chrono::steady_clock::now() - began < 40s) {
        std::this_thread::sleep_for(20ms);
    }
    CHECK(ttp.jobs_done() == 1);
    CHECK(std::chrono::steady_clock::now() - began < 15s);
    CHECK(h.log_counts("executed.log")[id] == 1);
    CHECK(h.service->get(id)->state == "cancelled");
    CHECK(h.service->get(id)->reason == "cancelled while queued");
}

TEST_CASE("A job delivered again after its TTP published its outcome is not run again", "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    auto& ttp = h.start_ttp(0);
    const auto id = h.submit({h.spec("train", json{{"mode", "ok"}}, 0)}).front();
    REQUIRE(h.wait(id).state == "succeeded");
    // The same delivery again, as after an ack lost to a reconnect or a publish the broker
    // stored twice. Before, the TTP ran the whole job a second time.
    const auto job = *h.service->get(id);
    auto& mq = h.new_queue();
    REQUIRE(mq.publish(h.topology.jobs(0), core::jobs::make_message(id, job.message), 10s));
    // A later job on the same TTP marks that the repeat was taken first (one queue, in order).
    const auto marker = h.submit({h.spec("train", json{{"mode", "ok"}}, 0)}).front();
    REQUIRE(h.wait(marker).state == "succeeded");
    CHECK(h.log_counts("executed.log")[id] == 1);
    CHECK(h.log_counts("archived.log")[id] == 1);
    CHECK(ttp.jobs_done() == 2);
    // A later attempt of the same job is another delivery: it runs.
    auto again = job.message;
    again["attempt"] = 2;
    REQUIRE(mq.publish(h.topology.jobs(0), core::jobs::make_message(id, again), 10s));
    const auto marker2 = h.submit({h.spec("train", json{{"mode", "ok"}}, 0)}).front();
    REQUIRE(h.wait(marker2).state == "succeeded");
    CHECK(h.log_counts("executed.log")[id] == 2);
}

TEST_CASE("A job whose publish went unconfirmed but reached a TTP is archived after all", "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    // What a publish timeout leaves when the broker stored the message all the same.
    const auto job = h.put_job(
        "job-unconfirmed", "failed",
        "could not publish to " + h.topology.jobs(0) + ": sent but not confirmed; it may still be stored",
        {{"mode", "ok"}});
    REQUIRE(h.new_queue().publish(h.topology.jobs(0), core::jobs::make_message(job.job_id, job.message), 10s));
    h.start_ttp(0);
    // Before, its events were dropped as a finished job's: it ran, and stayed failed.
    for (int i = 0; i < 400 && h.service->get(job.job_id)->state != "succeeded"; ++i) {
        std::this_thread::sleep_for(25ms);  // (wait() returns at once for a job that reads finished)
    }
    CHECK(h.service->get(job.job_id)->state == "succeeded");
    CHECK(h.storage->get("FixtureResult", {{"job_id", job.job_id}}).has_value());
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

TEST_CASE("The job service counts its submits, events and commits for GET /metrics", "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    h.start_ttp(0);
    const auto ids = h.submit({h.spec("train", json{{"mode", "ok"}}), h.spec("train", json{{"mode", "ok"}}),
                               h.spec("train", json{{"mode", "ok"}})});
    for (const auto& id : ids) {
        REQUIRE(h.wait(id).state == "succeeded");
    }
    std::string page;
    h.service->append_metrics(page);
    INFO(page);
    CHECK_THAT(page, Catch::Contains("synergos_jobs_submitted_total 3\n"));
    // At least each job's result (started events are best effort), each in some commit.
    std::uint64_t events = 0;
    std::uint64_t commits = 0;
    std::istringstream lines(page);
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind("synergos_job_events_total ", 0) == 0) {
            events = std::stoull(line.substr(line.find(' ') + 1));
        } else if (line.rfind("synergos_job_store_commit_seconds_count ", 0) == 0) {
            commits = std::stoull(line.substr(line.find(' ') + 1));
        }
    }
    CHECK(events >= 3);
    CHECK(commits >= 2);  // the submit's records, then at least one commit of results
}

namespace {
std::uint64_t events_taken(core::jobs::JobService& service) {
    std::string page;
    service.append_metrics(page);
    const std::string name = "\nsynergos_job_events_total ";
    const auto at = page.find(name);
    return at == std::string::npos ? 0 : std::stoull(page.substr(at + name.size()));
}
}  // namespace

TEST_CASE("A job that ends within the started delay sends no started event and a longer one does", "[jobs]") {
    Harness h(Backend::Memory, 1);
    // Long enough that the fixture's jobs (each appends and fsyncs a log line) end within it on
    // a loaded machine; the default is 20 ms.
    h.started_delay = 2s;
    h.start_director();
    h.start_ttp(0);
    const auto ids = h.submit({h.spec("train", json{{"mode", "ok"}}), h.spec("train", json{{"mode", "ok"}}),
                               h.spec("train", json{{"mode", "ok"}})});
    for (const auto& id : ids) {
        const auto job = h.wait(id);
        REQUIRE(job.state == "succeeded");
        CHECK_FALSE(job.started_at.empty());  // the result says it ran
        CHECK(job.ttp_id == "ttp-0");
    }
    // Three results and nothing else: each started event was withdrawn when its job ended.
    CHECK(events_taken(*h.service) == 3);

    // Held until the gate file exists: a start time while it still runs can only come from
    // its started event (progress does not set one; the result has not come).
    const std::string gate = (h.dir / "gate").string();
    const auto slow =
        h.submit({h.spec("train", json{{"mode", "sleep"}, {"ms", 30000}, {"until_file", gate}})}).front();
    bool started = false;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!started && std::chrono::steady_clock::now() < deadline) {
        auto job = h.service->get(slow);
        REQUIRE(job);
        REQUIRE_FALSE(job->is_terminal());
        started = !job->started_at.empty();
        std::this_thread::sleep_for(10ms);
    }
    CHECK(started);
    std::ofstream(gate).put('x');
    CHECK(h.wait(slow).state == "succeeded");
}

namespace {
/// A worker whose process is frozen (SIGSTOP): the kernel takes connections and requests for
/// it, and nothing ever answers.
class FrozenWorker {
public:
    FrozenWorker() {
        listener_ = synergos::testing::listen_loopback(port, 8);
        REQUIRE(listener_ >= 0);
    }
    ~FrozenWorker() { ::close(listener_); }
    FrozenWorker(const FrozenWorker&) = delete;
    FrozenWorker& operator=(const FrozenWorker&) = delete;
    std::uint16_t port = 0;

private:
    int listener_ = -1;
};

/// Waits until the job has started on its TTP (its started event arrived).
void await_started(Harness& h, const std::string& id) {
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
        auto job = h.service->get(id);
        REQUIRE(job);
        if (!job->started_at.empty()) {
            return;
        }
        (void)h.service->wait(id, 50ms);
    }
    FAIL("job " << id << " did not start within 15 s");
}
}  // namespace

TEST_CASE("A job waiting on a frozen worker is cancelled and its TTP stopped within seconds not at the call's timeout",
          "[jobs]") {
    FrozenWorker frozen;
    synergos::core::http::HttpClient http;
    synergos::core::roles::HttpWorkerClient workers(http);
    Harness h(Backend::Memory, 1);
    h.workers = &workers;
    h.grid_nodes = json::array({json::array({json{{"participant_id", "frozen"}, {"host", "127.0.0.1"},
                                                  {"port", frozen.port}}})});
    h.start_director();
    auto& ttp = h.start_ttp(0);
    // The call would wait a minute for its answer; before, so did the cancel.
    const auto id = h.submit({h.spec("train", json{{"mode", "call"}, {"timeout_ms", 60000}}, 0)}).front();
    await_started(h, id);
    const auto cancelled_at = std::chrono::steady_clock::now();
    REQUIRE(h.service->cancel(id));
    const auto job = h.wait(id, 90s);
    CHECK(job.state == "cancelled");
    CHECK(std::chrono::steady_clock::now() - cancelled_at < 10s);

    const auto second = h.submit({h.spec("train", json{{"mode", "call"}, {"timeout_ms", 60000}}, 0)}).front();
    await_started(h, second);
    const auto stopping_at = std::chrono::steady_clock::now();
    ttp.stop();
    CHECK(std::chrono::steady_clock::now() - stopping_at < 10s);
    // Interrupted by the stop, not ended: it goes back to the queue for the next TTP.
    CHECK_FALSE(h.service->get(second)->is_terminal());
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

TEST_CASE("A result whose archive needs a record deleted meanwhile fails its job and writes nothing",
          "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    h.start_ttp(0);
    REQUIRE(h.storage->apply({{sdk::WriteMode::Insert, "Run", {{"run_id", "kept"}}, "{}"}}));
    const json kept{{"mode", "ok"}, {"require", {{"kind", "Run"}, {"key", {{"run_id", "kept"}}}}}};
    const json gone{{"mode", "ok"}, {"require", {{"kind", "Run"}, {"key", {{"run_id", "gone"}}}}}};
    const auto ids = h.submit({h.spec("train", kept, 0), h.spec("train", gone, 0)});
    REQUIRE(ids.size() == 2);
    CHECK(h.wait(ids[0]).state == "succeeded");
    const auto failed = h.wait(ids[1]);
    CHECK(failed.state == "failed");
    CHECK_THAT(failed.reason, Catch::Contains("archival failed") && Catch::Contains("Run"));
    CHECK(h.storage->get("FixtureResult", {{"job_id", ids[0]}}));
    CHECK_FALSE(h.storage->get("FixtureResult", {{"job_id", ids[1]}}));
}

TEST_CASE("A result whose archive the store refuses for good fails its job instead of leaving it running",
          "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    h.start_ttp(0);
    const auto id = h.submit({h.spec("train", json{{"mode", "sleep"}, {"ms", 300}})}).front();
    // The function's archive inserts FixtureResult/<job id>: taken meanwhile, the Insert is
    // refused (AlreadyExists). Before, the result was dead-lettered and the job read running.
    REQUIRE(h.storage->apply({{sdk::WriteMode::Insert, "FixtureResult", {{"job_id", id}}, "{}"}}));
    const auto job = h.wait(id, 15s);
    CHECK(job.state == "failed");
    CHECK_THAT(job.reason, Catch::Contains("archival failed") && Catch::Contains("already exists"));
    auto marker = h.submit({h.spec("train", json{{"mode", "ok"}})}).front();
    CHECK(h.wait(marker).state == "succeeded");
}

TEST_CASE("A published job reads as queued until the writer or a stop writes its move",
          "[jobs]") {
    Harness h(Backend::Memory, 1);
    core::jobs::JobServiceOptions o;
    o.outputs_dir = (h.dir / "outputs").string();
    o.topology = h.topology;
    o.queued_flush_delay = std::chrono::hours(1);  // only the stop writes moves
    h.service = std::make_unique<core::jobs::JobService>(*h.storage, h.new_queue(), h.host.logger(), h.registry,
                                                         nullptr, o);
    REQUIRE(h.service->start());
    const auto first = h.submit({h.spec("train", json{{"mode", "ok"}}, 0)}).front();
    // Recorded (durably) as submitting; published, so it reads as queued everywhere.
    CHECK(h.service->store().get(first)->state == "submitting");
    CHECK(h.service->get(first)->state == "queued");
    auto queued = h.service->list(core::jobs::JobFilter{"queued", "", "", ""});
    REQUIRE(queued);
    REQUIRE(queued->size() == 1);
    CHECK(queued->front().job_id == first);
    CHECK(h.service->list(core::jobs::JobFilter{"submitting", "", "", ""})->empty());
    // Other commits do not carry it before its time.
    const auto second = h.submit({h.spec("train", json{{"mode", "ok"}}, 0)}).front();
    CHECK(h.service->store().get(first)->state == "submitting");
    CHECK(h.service->store().get(second)->state == "submitting");
    CHECK(h.service->get(second)->state == "queued");
    // A stop writes what is left, so a restart does not publish them again.
    h.service->stop();
    CHECK(h.service->store().get(first)->state == "queued");
    CHECK(h.service->store().get(second)->state == "queued");
}

TEST_CASE("A job whose publish fails after its submit returned is marked failed with the reason",
          "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.memory_options = {{"max_messages_per_queue", "2"}};  // the third publish is refused
    h.start_director();
    const auto ids = h.submit({h.spec("train", json{{"mode", "ok"}}, 0), h.spec("train", json{{"mode", "ok"}}, 0),
                               h.spec("train", json{{"mode", "ok"}}, 0)});
    REQUIRE(ids.size() == 3);
    const auto third = h.wait(ids[2], 10s);  // terminal once the writer wrote the failure
    CHECK(third.state == "failed");
    CHECK_THAT(third.reason, Catch::Contains("could not publish") && Catch::Contains("max_messages_per_queue"));
    CHECK(h.service->store().get(ids[2])->state == "failed");
    // The others were published and run once a TTP serves the grid.
    h.start_ttp(0);
    CHECK(h.wait(ids[0]).state == "succeeded");
    CHECK(h.wait(ids[1]).state == "succeeded");
}

TEST_CASE("A started event that arrives after its attempt's retrying result does not reopen the attempt",
          "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    auto& mq = h.new_queue();
    const auto retried = h.submit({h.spec("train", json{{"mode", "ok"}}, 0)}).front();
    const auto marker = h.submit({h.spec("train", json{{"mode", "ok"}}, 0)}).front();
    const auto send = [&](const core::jobs::ResultMessage& event) {
        REQUIRE(mq.publish(h.topology.results(), core::jobs::make_message(event.job_id, event.to_json()), 10s));
    };
    const auto wait_for = [&](const std::string& id, const std::function<bool(const core::jobs::JobRecord&)>& done) {
        for (int i = 0; i < 200; ++i) {
            auto job = h.service->get(id);
            REQUIRE(job);
            if (done(*job)) {
                return *job;
            }
            (void)h.service->wait(id, 50ms);  // wakes on any job change, bounded
        }
        FAIL("job " << id << " did not reach the expected state");
        return core::jobs::JobRecord{};
    };
    core::jobs::ResultMessage failed;
    failed.job_id = retried;
    failed.process = "train";
    failed.outcome = core::jobs::Outcome::Failed;
    failed.final = false;
    failed.attempt = 1;
    failed.reason = "worker unreachable";
    send(failed);
    auto job = wait_for(retried, [](const auto& j) { return j.attempts == 1; });
    CHECK(job.state == "queued");
    // Attempt 1's started event comes late (the TTP publishes it while the job runs).
    core::jobs::ResultMessage started;
    started.type = core::jobs::EventType::Started;
    started.job_id = retried;
    started.process = "train";
    started.attempt = 1;
    started.ttp_id = "ttp-0";
    send(started);
    core::jobs::ResultMessage other = started;
    other.job_id = marker;
    send(other);
    wait_for(marker, [](const auto& j) { return j.state == "running"; });  // consumed in order
    job = *h.service->store().get(retried);  // as stored (get() explains a queued job instead)
    CHECK(job.state == "queued");
    CHECK_THAT(job.reason, Catch::Contains("retrying"));
    // Attempt 2 starting is real.
    started.attempt = 2;
    send(started);
    job = wait_for(retried, [](const auto& j) { return j.state == "running"; });
    CHECK(job.attempts == 2);
    // Attempt 1's "failed, retrying" delivered again now (a redelivery, a replayed commit):
    // attempt 2 keeps running; before, the job read queued while it ran.
    send(failed);
    core::jobs::ResultMessage marker_done;
    marker_done.job_id = marker;
    marker_done.process = "train";
    marker_done.attempt = 1;
    marker_done.outputs = json::object();
    send(marker_done);
    wait_for(marker, [](const auto& j) { return j.state == "succeeded"; });  // consumed in order
    job = *h.service->store().get(retried);
    CHECK(job.state == "running");
    CHECK(job.attempts == 2);
}

TEST_CASE("A result that arrives before its started event still records the TTP and a start time",
          "[jobs]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    auto& mq = h.new_queue();
    const auto id = h.submit({h.spec("train", json{{"mode", "ok"}}, 0)}).front();
    // A short job: its result overtakes the started event the TTP sent from another thread.
    core::jobs::ResultMessage result;
    result.job_id = id;
    result.process = "train";
    result.outcome = core::jobs::Outcome::Failed;
    result.final = true;
    result.reason = "worker unreachable";
    result.ttp_id = "ttp-7";
    REQUIRE(mq.publish(h.topology.results(), core::jobs::make_message(id, result.to_json()), 10s));
    const auto job = h.wait(id, 10s);
    CHECK(job.state == "failed");
    CHECK(job.ttp_id == "ttp-7");
    CHECK_FALSE(job.started_at.empty());
    CHECK_FALSE(job.finished_at.empty());
}

}  // namespace synergos::test

namespace synergos::test {
namespace {

/// A director-side job that submits two `train` follow-ups (no TTP serves their grid, so they
/// stay queued) and then ends as `ending` says: cancelled when the job is cancelled, or at once
/// with a timeout error.
class FanOut final : public sdk::TtpFunction {
public:
    /// `work`: the follow-ups' parameters (the fixture function's modes).
    explicit FanOut(bool time_out, json work = json{{"mode", "ok"}}, bool succeed = false)
        : time_out_(time_out), succeed_(succeed), work_(std::move(work)) {}
    std::vector<std::string> processes() const override { return {"fanout"}; }
    sdk::Result<std::string> execute(sdk::JobContext& ctx, std::string_view) noexcept override {
        for (int i = 0; i < 2; ++i) {
            const std::string follow_up =
                json{{"process", "train"}, {"keys", {"c1", "p1", "e1", "t" + std::to_string(i)}},
                     {"grid", 0}, {"parameters", work_}}
                    .dump();
            auto id = ctx.submit_job(follow_up);
            if (!id) {
                return id.error();
            }
            std::lock_guard<std::mutex> lock(mutex_);
            ids_.push_back(*id);
        }
        submitted_.notify_all();
        if (succeed_) {
            return std::string("{\"note\":\"stopped at its limit\"}");  // its follow-ups unfinished
        }
        if (time_out_) {
            return sdk::Error{sdk::ErrorCode::Timeout, "fan-out exceeded its time"};
        }
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        while (!ctx.is_cancelled() && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(5ms);
        }
        return sdk::Error{sdk::ErrorCode::Cancelled, "fan-out cancelled"};
    }
    sdk::Result<std::vector<sdk::Mutation>> archive(sdk::ArchiveContext&, std::string_view,
                                                    std::string_view) noexcept override {
        return std::vector<sdk::Mutation>{};
    }
    /// The ids of every follow-up submitted so far, once there are `count` (or after 10 s).
    std::vector<std::string> wait_submitted(std::size_t count = 2) {
        std::unique_lock<std::mutex> lock(mutex_);
        submitted_.wait_for(lock, 10s, [&] { return ids_.size() >= count; });
        return ids_;
    }

private:
    bool time_out_;
    bool succeed_;
    json work_;
    std::mutex mutex_;
    std::condition_variable submitted_;
    std::vector<std::string> ids_;
};

}  // namespace

TEST_CASE("A director-side job that ends without a result cancels its unfinished follow-ups", "[jobs]") {
    const bool time_out = GENERATE(false, true);
    INFO((time_out ? "timed out" : "cancelled"));
    FanOut fanout(time_out);  // outlives the harness's service, which may still hold it
    Harness h(Backend::Memory, 1);
    h.registry["fanout"] = &fanout;
    h.start_director(3, {"fanout"});
    const auto search = h.submit({h.spec("fanout", json::object())}).front();
    const auto follow_ups = fanout.wait_submitted();
    REQUIRE(follow_ups.size() == 2);
    if (!time_out) {
        REQUIRE(h.service->cancel(search));
    }
    const auto ended = h.wait(search, 20s);
    CHECK(ended.state == (time_out ? "failed" : "cancelled"));
    for (const auto& id : follow_ups) {
        INFO(id);
        const auto follow_up = h.wait(id, 20s);
        CHECK(follow_up.state == "cancelled");
    }
    // Nothing of theirs runs later: a TTP for the grid finds no job to take.
    h.start_ttp(0);
    std::this_thread::sleep_for(200ms);
    for (const auto& id : follow_ups) {
        CHECK(h.service->get(id)->state == "cancelled");
    }
}

TEST_CASE("A director-side job that succeeds with follow-ups still running cancels them", "[jobs]") {
    // An optimization that stops at its time limit succeeds with the trials it finished; the
    // ones still running were left holding the grids past the limit.
    FanOut fanout(false, json{{"mode", "sleep"}, {"ms", 30000}}, true);  // outlives the services
    Harness h(Backend::Memory, 1);
    h.registry["fanout"] = &fanout;
    h.start_director(3, {"fanout"});
    const auto search = h.submit({h.spec("fanout", json::object())}).front();
    CHECK(h.wait(search, 20s).state == "succeeded");
    for (const auto& id : fanout.wait_submitted()) {
        INFO(id);
        CHECK(h.wait(id, 20s).state == "cancelled");
    }
}

TEST_CASE("A director-side job run again after a restart cancels its interrupted run's follow-ups",
          "[jobs]") {
    // Without a TTP both follow-ups stay queued; with one, it runs one of them (a long sleep that
    // stops at safe points) while the other waits.
    const bool one_running = GENERATE(false, true);
    INFO((one_running ? "one follow-up running" : "both follow-ups queued"));
    // A standalone director's queue is in-process (volatile): nothing of it survives a restart.
    const bool volatile_queue = GENERATE(false, true);
    INFO((volatile_queue ? "volatile queue" : "durable queue"));
    FanOut fanout(false, json{{"mode", "sleep"}, {"ms", 30000}});  // outlives the harness's services
    Harness h(Backend::Memory, 1);
    h.volatile_queue = volatile_queue;
    h.registry["fanout"] = &fanout;
    h.start_director(3, {"fanout"});
    const auto search = h.submit({h.spec("fanout", json::object())}).front();
    const auto first = fanout.wait_submitted(2);
    REQUIRE(first.size() == 2);
    std::string running;
    if (one_running) {
        h.start_ttp(0);
        const auto until = std::chrono::steady_clock::now() + 10s;
        while (running.empty() && std::chrono::steady_clock::now() < until) {
            for (const auto& id : first) {
                if (h.service->get(id)->state == "running") {
                    running = id;
                }
            }
            std::this_thread::sleep_for(5ms);
        }
        REQUIRE_FALSE(running.empty());
    }
    // The director stops mid-search: the search has no result, so it stays unfinished, and so do
    // its follow-ups.
    h.service->stop();
    REQUIRE_FALSE(h.service->get(search)->is_terminal());
    // A trial recorded by a version before `parent_job`: only its parameters name the search.
    core::jobs::JobRecord legacy;
    legacy.job_id = "job-legacy-trial";
    legacy.process = "train";
    legacy.state = "queued";
    legacy.message = json{{"job_id", legacy.job_id}, {"process", "train"},
                          {"parameters", {{"optimization", search}}}};
    {
        core::jobs::JobStore::Batch batch(h.service->store());
        batch.insert({legacy});
        REQUIRE(batch.commit());
    }
    for (const auto& id : first) {
        INFO(id);
        CHECK(h.service->get(id)->state == (id == running ? "running" : "queued"));
        CHECK(h.service->get(id)->parent_job == search);
    }
    // The next start cancels the first run's follow-ups before the search runs again: a queued
    // one at once, a running one at its next safe point.
    h.start_director(3, {"fanout"});
    for (const auto& id : first) {
        INFO(id);
        const auto job = *h.service->get(id);
        if (id == running && volatile_queue) {
            // No TTP has it any more and no result will come: ended at once. Before, it was
            // asked to stop and read `running` for good.
            CHECK(job.state == "cancelled");
            CHECK_THAT(job.reason, Catch::Contains("in-process queue kept nothing"));
        } else if (id == running) {
            // Asked to stop; it may already have reached its safe point and ended.
            if (job.state == "running") {
                CHECK_THAT(job.reason, Catch::Contains("cancellation requested"));
            } else {
                CHECK(job.state == "cancelled");
            }
            CHECK(h.wait(id, 10s).state == "cancelled");
        } else {
            CHECK(job.state == "cancelled");
        }
    }
    CHECK(h.service->get(legacy.job_id)->state == "cancelled");
    // The search's new run submits its own, which are left alone.
    const auto all = fanout.wait_submitted(4);
    REQUIRE(all.size() == 4);
    for (std::size_t i = 2; i < all.size(); ++i) {
        INFO(all[i]);
        CHECK_FALSE(h.service->get(all[i])->is_terminal());
        CHECK(h.service->get(all[i])->parent_job == search);
    }
    CHECK(h.service->get(search)->state == "running");
}

TEST_CASE("An interrupted director-side job whose function is no longer active fails, saying so",
          "[jobs]") {
    FanOut fanout(false);
    Harness h(Backend::Memory, 1);
    h.registry["fanout"] = &fanout;
    h.start_director(3, {"fanout"});
    const auto search = h.submit({h.spec("fanout", json::object())}).front();
    const auto first = fanout.wait_submitted(2);
    REQUIRE(first.size() == 2);
    h.service->stop();
    // Started again without the function: the job cannot run, and its follow-ups go too.
    h.registry.erase("fanout");
    h.start_director(3, {"fanout"});
    const auto job = *h.service->get(search);
    CHECK(job.state == "failed");
    CHECK_THAT(job.reason, Catch::Contains("process 'fanout' is no longer run by this director"));
    for (const auto& id : first) {
        INFO(id);
        CHECK(h.service->get(id)->state == "cancelled");
    }
}

/// Polls (bounded) until `done` holds for the job as get() shows it; returns it then.
inline core::jobs::JobRecord await_job(Harness& h, const std::string& id,
                                       const std::function<bool(const core::jobs::JobRecord&)>& done,
                                       std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    core::jobs::JobRecord last;
    while (std::chrono::steady_clock::now() < deadline) {
        auto job = h.service->get(id);
        REQUIRE(job);
        last = *job;
        if (done(last)) {
            return last;
        }
        (void)h.service->wait(id, 20ms);  // wakes on any job change, bounded
    }
    FAIL("job " << id << " did not reach the expected state: " << last.state << " (" << last.reason << ")");
    return last;
}

TEST_CASE("A retried job's final reason names its last attempt and its first failure", "[jobs][retry]") {
    Harness h(Backend::Memory, 1);
    h.start_director(/*max_attempts=*/3);
    h.start_ttp(0);
    const auto id = h.submit({h.spec("train", json{{"mode", "fail"}}, 0)}).front();
    const auto job = h.wait(id, 30s);
    CHECK(job.state == "failed");
    CHECK(job.attempts == 3);
    CHECK_THAT(job.reason, Catch::StartsWith("attempt 3 of 3: fixture failure") &&
                               Catch::Contains("; first failure (attempt 1): fixture failure"));
    CHECK(job.reason.size() < 1000);
    // Its function is told once, when the retries are spent (not at each failed attempt).
    CHECK(h.log_lines_once("ended.log", 1) == std::vector<std::string>{id + " failed"});
}

TEST_CASE("A retry waits a pause that grows with each attempt while the grid's other jobs go on",
          "[jobs][retry]") {
    Harness h(Backend::Memory, 1);
    h.retry_pause = 2s;  // 2 s after attempt 1, 4 s after attempt 2
    h.start_director(/*max_attempts=*/3);
    h.start_ttp(0);
    const auto t0 = std::chrono::steady_clock::now();
    const auto failing = h.submit({h.spec("train", json{{"mode", "fail"}}, 0)}).front();
    auto job = await_job(h, failing, [](const auto& j) { return j.reason.find("retrying") != std::string::npos; });
    CHECK(job.state == "queued");
    CHECK_THAT(job.reason, Catch::StartsWith("retrying (attempt 2 of 3) after: fixture failure"));
    // The same grid's next job runs during the pause: the TTP does not sleep on its job thread.
    const auto ok = h.submit({h.spec("train", json{{"mode", "ok"}}, 0)}).front();
    CHECK(h.wait(ok, 10s).state == "succeeded");
    CHECK_FALSE(h.service->get(failing)->is_terminal());
    job = h.wait(failing, 30s);
    CHECK(job.state == "failed");
    CHECK(job.attempts == 3);
    CHECK(std::chrono::steady_clock::now() - t0 >= 6s);
    CHECK(h.log_counts("executed.log")[failing] == 3);
}

TEST_CASE("A retry pause ends at once on a cancel and does not hold up the TTP's stop", "[jobs][retry]") {
    Harness h(Backend::Memory, 1);
    h.retry_pause = 60s;
    // The TTP's loops wait up to 5 s between looks: the cancel must wake the retry, not a look.
    h.ttp_receive_timeout = 5s;
    h.start_director(/*max_attempts=*/3);
    auto& ttp = h.start_ttp(0);
    const auto is_retrying = [](const core::jobs::JobRecord& j) {
        return j.reason.find("retrying") != std::string::npos;
    };
    const auto cancelled = h.submit({h.spec("train", json{{"mode", "fail"}}, 0)}).front();
    await_job(h, cancelled, is_retrying);
    const auto cancelled_at = std::chrono::steady_clock::now();
    REQUIRE(h.service->cancel(cancelled));
    // The TTP lets go of the held delivery (acked with a cancelled result), not after 60 s.
    const auto deadline = cancelled_at + 10s;
    while (ttp.jobs_done() < 1 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
    }
    CHECK(ttp.jobs_done() == 1);
    CHECK(std::chrono::steady_clock::now() - cancelled_at < 3s);
    CHECK(h.service->get(cancelled)->state == "cancelled");

    const auto held = h.submit({h.spec("train", json{{"mode", "fail"}}, 0)}).front();
    await_job(h, held, is_retrying);
    const auto t0 = std::chrono::steady_clock::now();
    ttp.stop();  // its threads end at their next look (receive timeout), not after the pause
    CHECK(std::chrono::steady_clock::now() - t0 < 30s);
    // Stopping published the retry at once: it waits in the queue as attempt 2, nothing lost.
    h.await_published(0, 1);
    CHECK(h.log_counts("executed.log")[held] == 1);
    h.retry_pause = 10ms;
    h.start_ttp(0);
    const auto done = h.wait(held, 30s);
    CHECK(done.state == "failed");
    CHECK(done.attempts == 3);
    CHECK(h.log_counts("executed.log")[held] == 3);
}

TEST_CASE("A submit's jobs carry their stored doc_id and can be explained as GET shows them", "[jobs][answer]") {
    Harness h(Backend::Memory, 1);
    h.start_director();  // no TTP on grid 0
    auto jobs = h.service->submit({h.spec("train", json{{"mode", "ok"}}, 0), h.spec("train", json{{"mode", "ok"}}, 0)});
    REQUIRE(jobs);
    h.service->explain(*jobs);  // what the train and alignment routes answer
    for (const auto& job : *jobs) {
        INFO("job " << job.job_id);
        const auto stored = h.service->get(job.job_id);
        REQUIRE(stored);
        CHECK(job.doc_id != 0);
        CHECK(job.doc_id == stored->doc_id);
        CHECK(job.to_api()["doc_id"] == std::to_string(stored->doc_id));
        CHECK(job.reason == "no TTP connected for grid 0");
        CHECK(job.reason == stored->reason);
    }
}

TEST_CASE("A running job whose grid lost its TTP says so until a TTP takes it again", "[jobs][answer]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    auto& ttp = h.start_ttp(0);
    const auto id = h.submit({h.spec("train", json{{"mode", "sleep"}, {"ms", 5000}}, 0)}).front();
    await_job(h, id, [](const auto& j) { return j.state == "running"; });
    CHECK(h.service->get(id)->reason.empty());
    ttp.stop();  // as a killed TTP: the job is not acknowledged and no result comes
    const std::string hint = "no TTP connected for grid 0; the job resumes when one connects";
    auto job = *h.service->get(id);
    CHECK(job.state == "running");
    CHECK(job.reason == hint);
    auto listed = h.service->list({});
    REQUIRE(listed);
    REQUIRE(listed->size() == 1);
    CHECK(listed->front().reason == hint);
    h.start_ttp(0);
    // Redelivered: the hint is gone while it runs again, and it ends normally.
    CHECK(h.service->get(id)->reason.find("no TTP") == std::string::npos);
    job = h.wait(id, 30s);
    CHECK(job.state == "succeeded");
    CHECK(job.reason.empty());
    // A redelivery resumes the same attempt: it does not use up a retry.
    CHECK(job.attempts == 1);
}

TEST_CASE("A queued job's reason names its place in line in words", "[jobs][answer]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    h.start_ttp(0);
    const auto busy = h.submit({h.spec("train", json{{"mode", "sleep"}, {"ms", 20000}}, 0)}).front();
    await_job(h, busy, [](const auto& j) { return j.state == "running"; });
    const auto ids = h.submit({h.spec("train", json{{"mode", "ok"}}, 0), h.spec("train", json{{"mode", "ok"}}, 0),
                               h.spec("train", json{{"mode", "ok"}}, 0)});
    CHECK(h.service->get(ids[0])->reason == "next in line on grid 0");
    CHECK(h.service->get(ids[1])->reason == "waiting behind 1 job on grid 0");
    CHECK(h.service->get(ids[2])->reason == "waiting behind 2 jobs on grid 0");
    REQUIRE(h.service->cancel(busy));
    for (const auto& id : ids) {
        CHECK(h.wait(id, 30s).state == "succeeded");
    }
}

TEST_CASE("A finished job's progress carries no time left", "[jobs][answer]") {
    Harness h(Backend::Memory, 1);
    h.start_director();
    auto& mq = h.new_queue();
    const auto id = h.submit({h.spec("train", json{{"mode", "ok"}}, 0)}).front();
    const auto send = [&](const core::jobs::ResultMessage& event) {
        REQUIRE(mq.publish(h.topology.results(), core::jobs::make_message(event.job_id, event.to_json()), 10s));
    };
    core::jobs::ResultMessage progress;
    progress.type = core::jobs::EventType::Progress;
    progress.job_id = id;
    progress.process = "train";
    progress.ttp_id = "ttp-0";
    progress.progress = {{"round", 60}, {"rounds", 200}, {"eta_s", 6.2}};
    send(progress);
    await_job(h, id, [](const auto& j) { return j.progress.contains("eta_s"); });
    core::jobs::ResultMessage result = progress;
    result.type = core::jobs::EventType::Result;
    result.outcome = core::jobs::Outcome::Succeeded;
    result.outputs = {{"summary", {{"rounds_run", 60}, {"stopped_early", true}}}};
    send(result);
    const auto job = h.wait(id, 10s);
    CHECK(job.state == "succeeded");
    CHECK(job.progress.value("round", 0) == 60);
    CHECK_FALSE(job.progress.contains("eta_s"));
    CHECK(job.outputs["summary"].value("stopped_early", false));
}

}  // namespace synergos::test
