// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file fd_output.hpp
/// One destination of the basic sink (a console stream or a file), written with write(2) from an
/// in-memory buffer. No stdio, so nothing is shared with other code writing to the same stream.

#include <cstddef>
#include <cstdint>
#include <string>

#include <synergos/sdk/status.hpp>

namespace synergos::plugins::basic {

/// Most bytes a stream output (pipe, terminal, socket) keeps for a reader that is not keeping up;
/// a record that does not fit is dropped whole.
inline constexpr std::size_t kMaxBacklog = 1024 * 1024;

/// A file descriptor plus the bytes not yet written to it.
///
/// Two kinds, chosen by what the descriptor is:
/// - a regular file (or a device that is not a terminal, like /dev/null): written with blocking
///   write(2), buffered or not, as durable as the kernel makes it once `flush()` returns;
/// - anything else (pipe, terminal, socket, FIFO): never blocks. Writes go through a
///   non-blocking descriptor of its own (a re-open of /proc/self/fd/N, so the inherited one's
///   flags, shared with other processes, are left alone; sockets use MSG_DONTWAIT); what the
///   reader does not take waits in a backlog of at most `kMaxBacklog` bytes, retried on the next
///   record or `flush()`. A reader that went away yields EPIPE, never SIGPIPE.
/// A write error discards the waiting bytes; if it cut a line, the next write starts with a
/// newline so the cut line is never continued by another record.
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
    /// Writes what is waiting (a stream waits at most `kCloseDrainMs` for its reader) and closes
    /// an owned descriptor.
    void close();

    bool is_open() const noexcept { return fd_ >= 0; }
    bool is_buffered() const noexcept { return buffered_; }
    /// True for a pipe, terminal, socket or FIFO: non-blocking, with a bounded backlog.
    bool is_stream() const noexcept { return stream_; }
    int fd() const noexcept { return fd_; }

    /// The buffer to append one record's bytes to; call `commit()` after each record.
    std::string& buffer() noexcept { return buffer_; }
    /// Ends a record: writes the buffer out when unbuffered (streams always are), when `force` is
    /// set or when it is large. Returns false when the record was dropped because a stream's
    /// backlog is full; write errors are counted in `failures()`.
    bool commit(bool force);
    /// Writes out what is waiting (a stream: as much as its reader takes now). Returns false when
    /// a write failed (the waiting lines are then discarded).
    bool flush();
    /// True when bytes wait to be written: a file's buffer or a stream's backlog.
    bool has_pending() const noexcept { return !buffer_.empty(); }
    /// Failed write(2) calls so far.
    std::uint64_t failures() const noexcept { return failures_; }

    /// How long `close()` waits for a slow stream reader before giving up on the backlog.
    static constexpr int kCloseDrainMs = 500;

private:
    void classify();
    bool write_file();
    bool write_stream();
    long write_some(const char* data, std::size_t size);
    void fail(std::size_t written);

    int fd_ = -1;      // the descriptor given or opened (for isatty)
    int out_fd_ = -1;  // where bytes go: fd_, or a non-blocking re-open of it
    bool owns_fd_ = false;
    bool owns_out_fd_ = false;
    bool buffered_ = false;
    bool stream_ = false;
    bool socket_ = false;
    bool pipe_ = false;
    bool poll_first_ = false;    // no non-blocking descriptor: poll, then write one PIPE_BUF
    bool mid_line_ = false;      // the last byte written was not a newline
    bool torn_ = false;          // an error cut a line: start the next write with a newline
    std::size_t committed_ = 0;  // bytes of whole records in buffer_
    std::string buffer_;
    std::uint64_t failures_ = 0;
};

}  // namespace synergos::plugins::basic
