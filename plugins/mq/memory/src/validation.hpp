// SPDX-License-Identifier: Apache-2.0
#pragma once

/// Input checks shared by every entry point of the memory queue. The rules match what a
/// RabbitMQ broker accepts, so code tested against `memory` also runs against `rabbitmq`.

#include <chrono>
#include <string>

#include <synergos/sdk/message_queue.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::plugins::memory {

/// Longest queue name, message id, content type or header name (AMQP short string).
inline constexpr std::size_t kMaxShortString = 255;
/// Longest wait honoured for a receive timeout (longer ones are clamped).
inline constexpr std::chrono::milliseconds kLongestWait = std::chrono::hours(24 * 365);

/// A queue name: 1..255 bytes, no spaces or control characters, not the reserved `amq.` prefix.
/// `field` names the offending field in the message ("queue", "dead_letter_queue").
sdk::Status validate_queue_name(const std::string& name, const char* field);

/// A whole queue spec (name, dead-letter queue distinct from the queue).
sdk::Status validate_spec(const sdk::QueueSpec& spec);

/// A message about to be published to `queue` (short-string limits, header names).
sdk::Status validate_message(const std::string& queue, const sdk::Message& message);

/// A publish timeout: strictly positive.
sdk::Status validate_timeout(const std::string& queue, std::chrono::milliseconds timeout);

/// A consumer prefetch: 1..65535 (0, "unlimited" in AMQP, is refused to keep memory bounded).
sdk::Status validate_prefetch(const std::string& queue, std::uint16_t prefetch);

}  // namespace synergos::plugins::memory
