// SPDX-License-Identifier: Apache-2.0
#pragma once

/// The rabbitmq queue's input checks: the ones every bundled queue plugin shares
/// (plugins/mq/common/src/mq_validation.hpp).

#include <chrono>

#include "mq_validation.hpp"

namespace synergos::plugins::rabbitmq {

using mq::kMaxBodyBytes;
using mq::kMaxShortString;
using mq::validate_message;
using mq::validate_prefetch;
using mq::validate_queue_name;
using mq::validate_spec;
using mq::validate_timeout;

}  // namespace synergos::plugins::rabbitmq
