// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file record_ring.hpp
/// The bounded buffer between callers of `write()` and the sender thread: a ring of reusable
/// record slots, bounded both in records and in bytes. Copying a record into a slot reuses the
/// slot's memory, so a steady stream of records allocates nothing once the ring has warmed up.

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
    std::size_t charged = 0;  ///< bytes counted against the ring's budget (trim leaves it alone)
    std::string text;         ///< event, logger, host, fields, file NUL, function NUL

    /// Bytes `assign` copies for `record`.
    static std::size_t size_of(const sdk::LogRecord& record);
    /// Copies `record` in, reusing this slot's memory.
    void assign(const sdk::LogRecord& record);
    /// A record whose views point into this slot (valid until the slot is reused).
    sdk::LogRecord view() const;
    /// Frees the memory of a record larger than `keep` bytes so one burst does not pin it.
    void trim(std::size_t keep);
};

/// Cuts a record's texts to what the sink buffers: each of event, logger, host, file and
/// function to `kMaxValueBytes`, every string inside `fields_json` likewise, and `fields_json`
/// as a whole to `kMaxFieldsBytes` (beyond, it is cut as text and sent as `_fields_raw`). Cut
/// texts end with `kTruncationMarker`. Runs on the caller's thread, before the sink's lock.
class RecordLimiter {
public:
    /// `record` itself when it is within the limits (the common case, no copy), else a cut copy
    /// whose views point into this object (valid until the next call).
    const sdk::LogRecord& limit(const sdk::LogRecord& record);

private:
    sdk::LogRecord limited_;
    std::string event_;
    std::string logger_;
    std::string host_;
    std::string fields_;
    std::string file_;
    std::string function_;
};

/// Fixed-capacity FIFO of slots, indexed by ever-increasing 64-bit positions. The queued records'
/// text never exceeds `max_bytes` in total, and a slot keeps at most `keep_bytes()` of memory
/// once its record is sent, so idle slots hold at most about `max_bytes` more.
/// Threading: not synchronised. The sink guards `push` and the head/tail updates with its lock;
/// the sender thread reads slots in [head, tail) without the lock, which is safe because
/// producers only write slots outside that range and slot storage never moves.
class RecordRing {
public:
    explicit RecordRing(std::size_t capacity, std::size_t max_bytes = SIZE_MAX);

    std::size_t capacity() const noexcept { return capacity_; }
    std::size_t max_bytes() const noexcept { return max_bytes_; }
    /// Text bytes of the records in [head, tail).
    std::size_t bytes() const noexcept { return bytes_; }
    /// What a slot may keep for reuse after its record is sent (see `RecordSlot::trim`).
    std::size_t keep_bytes() const noexcept { return keep_bytes_; }
    std::uint64_t head() const noexcept { return head_; }
    std::uint64_t tail() const noexcept { return tail_; }
    std::size_t size() const noexcept { return static_cast<std::size_t>(tail_ - head_); }

    /// Copies `record` in at the tail. False (nothing changed, nothing copied) when the ring is
    /// full: all slots taken, or the record's text does not fit in what is left of `max_bytes`.
    bool push(const sdk::LogRecord& record);
    /// The slot at `position` (head <= position < tail).
    RecordSlot& at(std::uint64_t position);
    /// Releases every slot before `position` (head <= position <= tail).
    void pop_until(std::uint64_t position) noexcept;

private:
    static constexpr std::size_t kBlockSize = 1024;

    std::size_t capacity_;
    std::size_t max_bytes_;
    std::size_t keep_bytes_;
    std::size_t bytes_ = 0;
    // Slots are allocated in blocks on first use, so a large capacity costs nothing until needed.
    std::vector<std::unique_ptr<RecordSlot[]>> blocks_;
    std::uint64_t head_ = 0;
    std::uint64_t tail_ = 0;
};

}  // namespace synergos::plugins::graylog
