// SPDX-License-Identifier: Apache-2.0
#pragma once

/// The memory queue's input checks: the ones every bundled queue plugin shares
/// (plugins/mq/common/src/mq_validation.hpp).

#include <chrono>

#include "mq_validation.hpp"

namespace synergos::plugins::memory {

using mq::kMaxBodyBytes;
using mq::kMaxShortString;
using mq::validate_message;
using mq::validate_prefetch;
using mq::validate_queue_name;
using mq::validate_spec;
using mq::validate_timeout;

/// Longest wait honoured for a receive timeout (longer ones are clamped).
inline constexpr std::chrono::milliseconds kLongestWait = std::chrono::hours(24 * 365);

}  // namespace synergos::plugins::memory
