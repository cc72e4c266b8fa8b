// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file record_ring.hpp
/// The bounded buffer between callers of `write()` and the sender thread: a ring of reusable
/// record slots. Copying a record into a slot reuses the slot's memory, so a steady stream of
/// records allocates nothing once the ring has warmed up.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <synergos/sdk/log.hpp>

namespace synergos::plugins::graylog {

/// One buffered record: its scalars plus all its text packed into one string.
struct RecordSlot {
    sdk::Level level = sdk::Level::Info;
    int line = 0;
    std::chrono::system_clock::time_point time;
    std::uint32_t event_size = 0;
    std::uint32_t logger_size = 0;
    std::uint32_t host_size = 0;
    std::uint32_t fields_size = 0;
    std::uint32_t file_size = 0;
    std::string text;  ///< event, logger, host, fields, file NUL, function NUL

    /// Copies `record` in, reusing this slot's memory.
    void assign(const sdk::LogRecord& record);
    /// A record whose views point into this slot (valid until the slot is reused).
    sdk::LogRecord view() const;
    /// Frees the memory of an unusually large record so one burst does not pin it for good.
    void trim();
};

/// Fixed-capacity FIFO of slots, indexed by ever-increasing 64-bit positions.
/// Threading: not synchronised. The sink guards `push` and the head/tail updates with its lock;
/// the sender thread reads slots in [head, tail) without the lock, which is safe because
/// producers only write slots outside that range and slot storage never moves.
class RecordRing {
public:
    explicit RecordRing(std::size_t capacity);

    std::size_t capacity() const noexcept { return capacity_; }
    std::uint64_t head() const noexcept { return head_; }
    std::uint64_t tail() const noexcept { return tail_; }
    std::size_t size() const noexcept { return static_cast<std::size_t>(tail_ - head_); }

    /// Copies `record` in at the tail. False (nothing changed) when the ring is full.
    bool push(const sdk::LogRecord& record);
    /// The slot at `position` (head <= position < tail).
    RecordSlot& at(std::uint64_t position);
    /// Releases every slot before `position` (head <= position <= tail).
    void pop_until(std::uint64_t position) noexcept { head_ = position; }

private:
    static constexpr std::size_t kBlockSize = 1024;

    std::size_t capacity_;
    // Slots are allocated in blocks on first use, so a large capacity costs nothing until needed.
    std::vector<std::unique_ptr<RecordSlot[]>> blocks_;
    std::uint64_t head_ = 0;
    std::uint64_t tail_ = 0;
};

}  // namespace synergos::plugins::graylog
