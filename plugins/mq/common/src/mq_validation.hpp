// SPDX-License-Identifier: Apache-2.0
#pragma once

/// Input checks of the bundled queue plugins (`memory`, `rabbitmq`), at every entry point. The
/// rules are what a RabbitMQ broker accepts, so bad input is refused locally with a clear
/// message instead of closing a channel, and code tested against `memory` also runs against
/// `rabbitmq`.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include <synergos/sdk/message_queue.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::plugins::mq {

/// Longest queue name, message id, content type or header name (AMQP short string).
inline constexpr std::size_t kMaxShortString = 255;
/// Longest wait honoured for a receive or publish timeout (longer ones are clamped).
inline constexpr std::chrono::milliseconds kLongestWait = std::chrono::hours(24 * 365);
/// Largest body a RabbitMQ 3.x broker accepts by default (`max_message_size`).
inline constexpr std::size_t kMaxBodyBytes = 128U * 1024U * 1024U;
/// The frame_max the rabbitmq plugin asks for, and RabbitMQ's default: the largest a negotiated
/// one can be, and the limit the memory queue applies.
inline constexpr std::size_t kFrameMax = 131072;
/// The header the rabbitmq plugin adds to every publish (its confirm sequence number, an i64).
inline constexpr const char* kPublishSeqHeader = "x-synergos-publish-seq";

/// Bytes of the AMQP content-header frame payload the rabbitmq plugin sends for `message`: class,
/// weight, body size, property flags, and the properties it sets (delivery mode, priority,
/// timestamp, the headers table with kPublishSeqHeader, content type and message id when set),
/// encoded as rabbitmq-c encodes them.
std::size_t content_header_bytes(const sdk::Message& message);

/// Refuses a message whose content header does not fit one frame of `frame_max` bytes (AMQP
/// never splits it: the payload may be at most frame_max - 8). The error names the size and
/// the limit.
sdk::Status validate_content_header(const std::string& queue, const sdk::Message& message,
                                    std::size_t frame_max);

/// A queue name: 1..255 bytes, no spaces or control characters, not the reserved `amq.` prefix.
/// `field` names the offending field in the message ("queue", "dead_letter_queue").
sdk::Status validate_queue_name(const std::string& name, const char* field);

/// A whole queue spec (name, dead-letter queue distinct from the queue).
sdk::Status validate_spec(const sdk::QueueSpec& spec);

/// A message about to be published to `queue` (short-string limits, header names, body size,
/// headers that fit one frame of kFrameMax).
sdk::Status validate_message(const std::string& queue, const sdk::Message& message);

/// A publish timeout: strictly positive.
sdk::Status validate_timeout(const std::string& queue, std::chrono::milliseconds timeout);

/// A consumer prefetch: 1..65535 (0, "unlimited" in AMQP, is refused to keep memory bounded).
sdk::Status validate_prefetch(const std::string& queue, std::uint16_t prefetch);

}  // namespace synergos::plugins::mq
