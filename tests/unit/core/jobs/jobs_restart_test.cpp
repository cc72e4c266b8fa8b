// SPDX-License-Identifier: Apache-2.0
// Issue 4 acceptance 3: the broker restarted (rabbitmqctl stop_app/start_app) in the middle of a
// batch of 200 jobs. Every job completes, none is lost, none is archived twice. Runs alone
// (RUN_SERIAL): a restart disturbs every other broker client.

#include <chrono>
#include <string>
#include <vector>

#include "broker_fixture.hpp"
#include "jobs_harness.hpp"

namespace synergos::test {

TEST_CASE("A broker restart during a batch of 200 jobs loses none and archives each once",
          "[jobs][rabbitmq][restart]") {
    Harness h(Backend::RabbitMq, 2);
    h.start_director();
    h.start_ttp(0);
    h.start_ttp(1);
    constexpr std::size_t kJobs = 200;
    // 60 ms each on two grids: the batch lasts ~6 s, so the restart lands in its middle.
    std::vector<core::jobs::JobSpec> specs;
    for (std::size_t i = 0; i < kJobs; ++i) {
        specs.push_back(h.spec("train", json{{"mode", "sleep"}, {"ms", 60}}));
    }
    auto ids = h.submit(specs);
    REQUIRE(ids.size() == kJobs);

    // Restart once some, but not all, results are archived.
    for (const auto& id : ids) {
        auto job = h.service->wait(id, 60s);
        REQUIRE(job);
        if (h.log_counts("archived.log").size() >= 20) {
            break;
        }
    }
    const std::size_t before = h.log_counts("archived.log").size();
    REQUIRE(before >= 20);
    REQUIRE(before < kJobs);
    {
        tests::mq::BrokerRestart restart;
        restart.stop_app();
        restart.start_app();
    }

    for (const auto& id : ids) {
        auto job = h.wait(id, 180s);
        INFO("job " << id << ": " << job.reason);
        REQUIRE(job.state == "succeeded");
    }
    // At-least-once execution (a job in hand during the outage runs again), exactly-once
    // archival: one archive call and one stored result per job.
    auto executed = h.log_counts("executed.log");
    auto archived = h.log_counts("archived.log");
    CHECK(executed.size() == kJobs);
    REQUIRE(archived.size() == kJobs);
    for (const auto& id : ids) {
        CHECK(executed[id] >= 1);
        CHECK(archived[id] == 1);
    }
    auto results = h.storage->list(sdk::Query{"FixtureResult", {}, 0, 0});
    REQUIRE(results);
    CHECK(results->size() == kJobs);
    auto succeeded = h.service->list(core::jobs::JobFilter{"succeeded", "", "", ""});
    REQUIRE(succeeded);
    CHECK(succeeded->size() == kJobs);
}

}  // namespace synergos::test
