// SPDX-License-Identifier: Apache-2.0
#include "record_ring.hpp"

#include <algorithm>
#include <cstring>

namespace synergos::plugins::graylog {

namespace {

/// Slots keep at most this much memory between records.
constexpr std::size_t kKeepCapacity = 16 * 1024;

std::uint32_t clamp_size(std::size_t size) {
    return static_cast<std::uint32_t>(std::min<std::size_t>(size, UINT32_MAX / 8));
}

std::string_view c_string(const char* text) {
    return text != nullptr ? std::string_view(text) : std::string_view();
}

}  // namespace

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

void RecordSlot::trim() {
    if (text.capacity() > kKeepCapacity) {
        std::string().swap(text);
    }
}

RecordRing::RecordRing(std::size_t capacity)
    : capacity_(std::max<std::size_t>(capacity, 1)),
      blocks_((capacity_ + kBlockSize - 1) / kBlockSize) {}

bool RecordRing::push(const sdk::LogRecord& record) {
    if (size() >= capacity_) {
        return false;
    }
    const std::size_t index = static_cast<std::size_t>(tail_ % capacity_);
    auto& block = blocks_[index / kBlockSize];
    if (!block) {
        block = std::make_unique<RecordSlot[]>(kBlockSize);
    }
    block[index % kBlockSize].assign(record);
    ++tail_;
    return true;
}

RecordSlot& RecordRing::at(std::uint64_t position) {
    const std::size_t index = static_cast<std::size_t>(position % capacity_);
    return blocks_[index / kBlockSize][index % kBlockSize];
}

}  // namespace synergos::plugins::graylog
