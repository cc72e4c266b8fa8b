// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "descriptor.hpp"
#include "rabbitmq_queue.hpp"

SYNERGOS_DECLARE_MESSAGE_QUEUE_PLUGIN(synergos::plugins::rabbitmq::RabbitMqQueue,
                                      synergos::plugins::rabbitmq::kDescriptor)
