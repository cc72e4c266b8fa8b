// SPDX-License-Identifier: Apache-2.0
// The same scenarios against a real RabbitMQ broker (SYNERGOS_TEST_AMQP_URL).

#include "jobs_scenarios.hpp"

namespace synergos::test {

TEST_CASE("Two TTPs on two grids run a batch in parallel, each job once, archived once (rabbitmq)",
          "[jobs][rabbitmq]") {
    two_grids_run_a_batch_once(Backend::RabbitMq);
}
TEST_CASE("A poison message and an always-failing job are dead-lettered while others flow (rabbitmq)",
          "[jobs][rabbitmq]") {
    poison_and_failing_jobs_are_dead_lettered(Backend::RabbitMq);
}
TEST_CASE("A preprocessing job is taken before a backlog of training jobs (rabbitmq)", "[jobs][rabbitmq]") {
    preprocessing_overtakes_a_training_backlog(Backend::RabbitMq);
}
TEST_CASE("A preprocessing job published while a TTP runs a job is taken next (rabbitmq)", "[jobs][rabbitmq]") {
    preprocessing_published_mid_job_runs_next(Backend::RabbitMq);
}
TEST_CASE("Cancelling a queued job drops it and a running job stops at a safe point (rabbitmq)",
          "[jobs][rabbitmq]") {
    cancel_queued_and_running(Backend::RabbitMq);
}

TEST_CASE("A published job's queued move is written within its delay though nothing else happens (rabbitmq)",
          "[jobs][rabbitmq]") {
    // The confirm comes after the writer went idle: it must still wake for the move's deadline.
    Harness h(Backend::RabbitMq, 1);
    h.start_director();
    const auto id = h.submit({h.spec("train", json{{"mode", "ok"}}, 0)}).front();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (h.service->store().get(id)->state == "submitting" && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
    }
    CHECK(h.service->store().get(id)->state == "queued");  // durable, not only the read overlay
}

}  // namespace synergos::test
