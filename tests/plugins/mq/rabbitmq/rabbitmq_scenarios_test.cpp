// SPDX-License-Identifier: Apache-2.0
// The shared mq scenarios against a real RabbitMQ broker (SYNERGOS_TEST_AMQP_URL).

#include <memory>

#include <catch2/catch.hpp>

#include "broker_fixture.hpp"
#include "plugins/mq/memory/mq_scenarios.hpp"

namespace {

std::unique_ptr<synergos::tests::mq::Backend> make_rabbit_backend() {
    return std::make_unique<synergos::tests::mq::RabbitBackend>();
}

}  // namespace

SYNERGOS_MQ_SCENARIOS("rabbitmq mq", "[rabbitmq][mq]", make_rabbit_backend)
