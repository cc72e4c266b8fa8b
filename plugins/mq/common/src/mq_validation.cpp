// SPDX-License-Identifier: Apache-2.0
#include "mq_validation.hpp"

#include <string_view>

namespace synergos::plugins::mq {

namespace {

bool has_bad_character(std::string_view text) {
    for (unsigned char c : text) {
        if (c <= 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}

sdk::Status invalid(std::string message) {
    return sdk::Status(sdk::ErrorCode::InvalidArgument, std::move(message));
}

}  // namespace

sdk::Status validate_queue_name(const std::string& name, const char* field) {
    if (name.empty()) {
        return invalid(std::string(field) + " name must not be empty");
    }
    if (name.size() > kMaxShortString) {
        return invalid(std::string(field) + " name '" + name.substr(0, 32) +
                       "...' is longer than 255 bytes");
    }
    if (has_bad_character(name)) {
        return invalid(std::string(field) + " name '" + name +
                       "' contains a space or control character");
    }
    if (name.rfind("amq.", 0) == 0) {
        return invalid(std::string(field) + " name '" + name +
                       "' uses the prefix 'amq.', which brokers reserve");
    }
    return sdk::Status::ok();
}

sdk::Status validate_spec(const sdk::QueueSpec& spec) {
    if (auto status = validate_queue_name(spec.name, "queue"); !status) {
        return status;
    }
    if (!spec.dead_letter_queue.empty()) {
        if (auto status = validate_queue_name(spec.dead_letter_queue, "dead_letter_queue");
            !status) {
            return status;
        }
        if (spec.dead_letter_queue == spec.name) {
            return invalid("queue '" + spec.name + "' cannot be its own dead_letter_queue");
        }
    }
    return sdk::Status::ok();
}

sdk::Status validate_message(const std::string& queue, const sdk::Message& message) {
    if (message.id.size() > kMaxShortString) {
        return invalid("message id for queue '" + queue + "' is longer than 255 bytes");
    }
    if (message.content_type.size() > kMaxShortString) {
        return invalid("content_type of message '" + message.id + "' for queue '" + queue +
                       "' is longer than 255 bytes");
    }
    if (message.body.size() > kMaxBodyBytes) {
        return invalid("body of message '" + message.id + "' for queue '" + queue + "' has " +
                       std::to_string(message.body.size()) + " bytes, more than the broker's " +
                       std::to_string(kMaxBodyBytes));
    }
    for (const auto& [key, value] : message.headers) {
        if (key.empty() || key.size() > kMaxShortString) {
            return invalid("header name of message '" + message.id + "' for queue '" + queue +
                           "' must be 1..255 bytes");
        }
        if (key.rfind("x-synergos-", 0) == 0) {
            return invalid("header '" + key + "' of message '" + message.id +
                           "' uses the reserved prefix 'x-synergos-'");
        }
    }
    return validate_content_header(queue, message, kFrameMax);
}

std::size_t content_header_bytes(const sdk::Message& message) {
    // class id, weight, body size, one word of property flags
    std::size_t bytes = 2 + 2 + 8 + 2;
    bytes += 1 + 1 + 8;  // delivery mode, priority, timestamp
    // headers: table length, then per entry a short-string name, a type octet and the value
    // (a long string: length + bytes; the sequence number: an i64)
    bytes += 4;
    for (const auto& [key, value] : message.headers) {
        bytes += 1 + key.size() + 1 + 4 + value.size();
    }
    bytes += 1 + std::string_view(kPublishSeqHeader).size() + 1 + 8;
    if (!message.content_type.empty()) {
        bytes += 1 + message.content_type.size();
    }
    if (!message.id.empty()) {
        bytes += 1 + message.id.size();
    }
    return bytes;
}

sdk::Status validate_content_header(const std::string& queue, const sdk::Message& message,
                                    std::size_t frame_max) {
    // A frame adds a 7-byte header and an end octet around its payload.
    const std::size_t limit = frame_max > 8 ? frame_max - 8 : 0;
    const std::size_t bytes = content_header_bytes(message);
    if (bytes <= limit) {
        return sdk::Status::ok();
    }
    return invalid("headers of message '" + message.id + "' for queue '" + queue + "' (" +
                   std::to_string(message.headers.size()) + " headers) need a content header of " +
                   std::to_string(bytes) + " bytes, more than the " + std::to_string(limit) +
                   " that fit one frame (frame_max " + std::to_string(frame_max) +
                   " bytes); put large data in the body");
}

sdk::Status validate_timeout(const std::string& queue, std::chrono::milliseconds timeout) {
    if (timeout.count() <= 0) {
        return invalid("publish timeout for queue '" + queue + "' must be positive, got " +
                       std::to_string(timeout.count()) + " ms");
    }
    return sdk::Status::ok();
}

sdk::Status validate_prefetch(const std::string& queue, std::uint16_t prefetch) {
    if (prefetch == 0) {
        return invalid("prefetch for queue '" + queue + "' must be 1..65535, got 0");
    }
    return sdk::Status::ok();
}

}  // namespace synergos::plugins::mq
