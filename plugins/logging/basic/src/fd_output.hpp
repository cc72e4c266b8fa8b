// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file fd_output.hpp
/// One destination of the basic sink (a console stream or a file), written with write(2) from an
/// in-memory buffer. No stdio, so nothing is shared with other code writing to the same stream.

#include <cstdint>
#include <string>

#include <synergos/sdk/status.hpp>

namespace synergos::plugins::basic {

/// A file descriptor plus the bytes not yet written to it.
/// Threading: not synchronised; the sink serialises all calls with its own lock.
class FdOutput {
public:
    FdOutput() = default;
    FdOutput(const FdOutput&) = delete;
    FdOutput& operator=(const FdOutput&) = delete;
    ~FdOutput();

    /// Uses an inherited descriptor (1 or 2); it is never closed.
    void attach(int fd, bool buffered);
    /// Opens `path` for appending (created with mode 0644). The error names the path.
    sdk::Status open(const std::string& path, bool buffered);
    /// Writes what is buffered and closes an owned descriptor.
    void close();

    bool is_open() const noexcept { return fd_ >= 0; }
    bool is_buffered() const noexcept { return buffered_; }
    int fd() const noexcept { return fd_; }

    /// The buffer to append one record's bytes to; call `commit()` after each record.
    std::string& buffer() noexcept { return buffer_; }
    /// Ends a record: writes the buffer out when unbuffered, when `force` is set or when it is
    /// large. Returns false when a write failed (the buffered lines are then discarded).
    bool commit(bool force);
    /// Writes out the buffer. Returns false when the write failed (the lines are discarded).
    bool flush();
    /// Failed write(2) calls so far.
    std::uint64_t failures() const noexcept { return failures_; }

private:
    int fd_ = -1;
    bool owns_fd_ = false;
    bool buffered_ = false;
    std::string buffer_;
    std::uint64_t failures_ = 0;
};

}  // namespace synergos::plugins::basic
