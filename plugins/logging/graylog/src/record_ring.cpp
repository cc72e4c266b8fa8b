// SPDX-License-Identifier: Apache-2.0
#include "record_ring.hpp"

#include "gelf.hpp"

#include <algorithm>
#include <cstring>

namespace synergos::plugins::graylog {

namespace {

/// Bounds of what a slot keeps between records: the ring's share of the byte budget per slot,
/// but enough for a typical record and never more than a large one.
constexpr std::size_t kMinKeep = 256;
constexpr std::size_t kMaxKeep = 16 * 1024;

std::uint32_t clamp_size(std::size_t size) {
    return static_cast<std::uint32_t>(std::min<std::size_t>(size, UINT32_MAX / 8));
}

std::string_view c_string(const char* text) {
    return text != nullptr ? std::string_view(text) : std::string_view();
}

}  // namespace

std::size_t RecordSlot::size_of(const sdk::LogRecord& record) {
    return std::size_t{clamp_size(record.event.size())} + clamp_size(record.logger.size()) +
           clamp_size(record.host.size()) + clamp_size(record.fields_json.size()) +
           clamp_size(c_string(record.location.file).size()) +
           clamp_size(c_string(record.location.function).size()) + 2;
}

void RecordSlot::assign(const sdk::LogRecord& record) {
    level = record.level;
    line = record.location.line;
    time = record.time;
    const std::string_view file = c_string(record.location.file);
    const std::string_view function = c_string(record.location.function);
    event_size = clamp_size(record.event.size());
    logger_size = clamp_size(record.logger.size());
    host_size = clamp_size(record.host.size());
    fields_size = clamp_size(record.fields_json.size());
    file_size = clamp_size(file.size());
    const std::uint32_t function_size = clamp_size(function.size());
    text.clear();
    text.reserve(std::size_t{event_size} + logger_size + host_size + fields_size + file_size +
                 function_size + 2);
    text.append(record.event.data(), event_size);
    text.append(record.logger.data(), logger_size);
    text.append(record.host.data(), host_size);
    text.append(record.fields_json.data(), fields_size);
    text.append(file.data(), file_size);
    text.push_back('\0');
    text.append(function.data(), function_size);
    text.push_back('\0');
}

sdk::LogRecord RecordSlot::view() const {
    sdk::LogRecord record;
    const char* p = text.data();
    record.level = level;
    record.time = time;
    record.event = std::string_view(p, event_size);
    p += event_size;
    record.logger = std::string_view(p, logger_size);
    p += logger_size;
    record.host = std::string_view(p, host_size);
    p += host_size;
    record.fields_json = std::string_view(p, fields_size);
    p += fields_size;
    record.location.file = p;
    p += file_size + 1;
    record.location.function = p;
    record.location.line = line;
    return record;
}

void RecordSlot::trim(std::size_t keep) {
    if (text.capacity() > keep) {
        std::string().swap(text);
    }
}

const sdk::LogRecord& RecordLimiter::limit(const sdk::LogRecord& record) {
    const std::string_view file = c_string(record.location.file);
    const std::string_view function = c_string(record.location.function);
    // Within the limits (every record but the rare huge one): no copy at all.
    if (record.event.size() <= kMaxValueBytes && record.logger.size() <= kMaxValueBytes &&
        record.host.size() <= kMaxValueBytes && record.fields_json.size() <= kMaxValueBytes &&
        file.size() <= kMaxValueBytes && function.size() <= kMaxValueBytes) {
        return record;
    }
    limited_ = record;
    auto cut = [](std::string_view text, std::string& storage) -> std::string_view {
        if (text.size() <= kMaxValueBytes) {
            return text;
        }
        storage.clear();
        append_capped(storage, text, kMaxValueBytes);
        return storage;
    };
    limited_.event = cut(record.event, event_);
    limited_.logger = cut(record.logger, logger_);
    limited_.host = cut(record.host, host_);
    if (file.size() > kMaxValueBytes) {
        limited_.location.file = cut(file, file_).data();  // append_capped leaves a NUL after it
    }
    if (function.size() > kMaxValueBytes) {
        limited_.location.function = cut(function, function_).data();
    }
    if (record.fields_json.size() > kMaxValueBytes &&
        cap_json_strings(record.fields_json, kMaxValueBytes, fields_)) {
        limited_.fields_json = fields_;
    }
    if (limited_.fields_json.size() > kMaxFieldsBytes) {
        // Too big even with its strings cut: keep the start as text (no longer valid JSON, so it
        // is sent as _fields_raw, itself cut to kMaxValueBytes).
        std::string text(limited_.fields_json.substr(
            0,
            utf8_prefix_length(limited_.fields_json, kMaxValueBytes - kTruncationMarker.size())));
        text.append(kTruncationMarker);
        fields_ = std::move(text);
        limited_.fields_json = fields_;
    }
    return limited_;
}

RecordRing::RecordRing(std::size_t capacity, std::size_t max_bytes)
    : capacity_(std::max<std::size_t>(capacity, 1)),
      max_bytes_(max_bytes),
      keep_bytes_(std::clamp(max_bytes / capacity_, kMinKeep, kMaxKeep)),
      blocks_((capacity_ + kBlockSize - 1) / kBlockSize) {}

bool RecordRing::push(const sdk::LogRecord& record) {
    const std::size_t size = RecordSlot::size_of(record);
    // Checked before copying: a record that does not fit costs nothing.
    if (this->size() >= capacity_ || size > max_bytes_ - bytes_) {
        return false;
    }
    const std::size_t index = static_cast<std::size_t>(tail_ % capacity_);
    auto& block = blocks_[index / kBlockSize];
    if (!block) {
        block = std::make_unique<RecordSlot[]>(kBlockSize);
    }
    RecordSlot& slot = block[index % kBlockSize];
    slot.assign(record);
    slot.charged = size;
    bytes_ += size;
    ++tail_;
    return true;
}

void RecordRing::pop_until(std::uint64_t position) noexcept {
    for (; head_ < position; ++head_) {
        bytes_ -= at(head_).charged;
    }
}

RecordSlot& RecordRing::at(std::uint64_t position) {
    const std::size_t index = static_cast<std::size_t>(position % capacity_);
    return blocks_[index / kBlockSize][index % kBlockSize];
}

}  // namespace synergos::plugins::graylog
