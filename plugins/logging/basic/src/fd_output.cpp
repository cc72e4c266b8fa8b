// SPDX-License-Identifier: Apache-2.0
#include "fd_output.hpp"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

namespace synergos::plugins::basic {

namespace {

/// Buffered outputs are written out once they hold this much.
constexpr std::size_t kFlushThreshold = 64 * 1024;
/// A file descriptor someone made non-blocking is waited on at most this long per write.
constexpr int kWritableTimeoutMs = 1000;

/// write(2) to a pipe that cannot raise SIGPIPE (whose default action ends the process): the
/// signal is blocked for this thread during the call, and one the call raised is consumed.
ssize_t write_without_sigpipe(int fd, const char* data, std::size_t size) {
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    const bool already_pending = ::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    sigset_t old_mask;
    ::pthread_sigmask(SIG_BLOCK, &pipe_only, &old_mask);
    const ssize_t n = ::write(fd, data, size);
    const int err = errno;
    if (n < 0 && err == EPIPE && !already_pending) {
        const timespec zero{0, 0};
        while (::sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
        }
    }
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    errno = err;
    return n;
}

}  // namespace

FdOutput::~FdOutput() {
    close();
}

void FdOutput::attach(int fd, bool buffered) {
    close();
    fd_ = fd;
    owns_fd_ = false;
    buffered_ = buffered;
    classify();
}

sdk::Status FdOutput::open(const std::string& path, bool buffered) {
    close();
    // O_NONBLOCK: a FIFO without a reader fails at once (ENXIO) instead of hanging start();
    // it is cleared again for regular files in classify().
    const int fd = ::open(path.c_str(),
                          O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0644);
    if (fd < 0) {
        const int err = errno;
        return {sdk::ErrorCode::Unavailable, "basic: cannot open log file '" + path +
                                                 "': " + std::strerror(err) +
                                                 (err == ENXIO ? " (a FIFO needs a reader)" : "")};
    }
    fd_ = fd;
    owns_fd_ = true;
    buffered_ = buffered;
    classify();
    if (buffered_) {
        buffer_.reserve(kFlushThreshold + 4096);
    }
    return {};
}

void FdOutput::classify() {
    out_fd_ = fd_;
    owns_out_fd_ = false;
    stream_ = socket_ = pipe_ = poll_first_ = false;
    struct stat st {};
    const int flags = ::fcntl(fd_, F_GETFL);
    if (::fstat(fd_, &st) != 0 || S_ISREG(st.st_mode) ||
        (S_ISCHR(st.st_mode) && ::isatty(fd_) == 0)) {
        // A file (or a device such as /dev/null that never makes a writer wait): blocking
        // writes, so a record at flush_level is in the kernel when write() returns.
        // open() added O_NONBLOCK for the FIFO case: cleared, so file writes block as before.
        if (owns_fd_ && flags >= 0 && (flags & O_NONBLOCK) != 0) {
            ::fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
        }
        return;
    }
    stream_ = true;
    buffered_ = false;  // a console shows each line at once
    socket_ = S_ISSOCK(st.st_mode);
    pipe_ = S_ISFIFO(st.st_mode);
    if (socket_ || (flags >= 0 && (flags & O_NONBLOCK) != 0)) {
        return;  // send(MSG_DONTWAIT), or already non-blocking (our own open)
    }
    // Our own open file description: setting O_NONBLOCK on the inherited one would change it for
    // every process sharing it (the shell's terminal, say).
    char path[40];
    std::snprintf(path, sizeof(path), "/proc/self/fd/%d", fd_);
    const int fd = ::open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd >= 0) {
        out_fd_ = fd;
        owns_out_fd_ = true;
        return;
    }
    poll_first_ = true;  // no /proc: poll, then write at most PIPE_BUF (best effort)
}

void FdOutput::close() {
    if (fd_ < 0) {
        return;
    }
    if (stream_) {
        // Give a slow reader a short, bounded time to take the backlog; then it is lost.
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(kCloseDrainMs);
        while (flush() && has_pending()) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  deadline - std::chrono::steady_clock::now())
                                  .count();
            pollfd pfd{out_fd_, POLLOUT, 0};
            if (left <= 0 || ::poll(&pfd, 1, static_cast<int>(left)) == 0) {
                ++failures_;
                break;
            }
        }
    } else {
        flush();
    }
    if (owns_out_fd_) {
        ::close(out_fd_);
    }
    if (owns_fd_) {
        ::close(fd_);
    }
    fd_ = out_fd_ = -1;
    owns_fd_ = owns_out_fd_ = false;
    buffer_.clear();
    committed_ = 0;
    mid_line_ = torn_ = false;
}

bool FdOutput::commit(bool force) {
    if (stream_) {
        if (committed_ > 0 && buffer_.size() > kMaxBacklog) {
            // The reader is behind: see what it takes now, then drop this record whole if it
            // still does not fit (never a part of one).
            std::string record = buffer_.substr(committed_);
            buffer_.resize(committed_);
            flush();
            if (buffer_.size() + record.size() > kMaxBacklog) {
                return false;
            }
            buffer_ += record;
        }
        committed_ = buffer_.size();
        flush();
        return true;
    }
    committed_ = buffer_.size();
    if (!buffered_ || force || buffer_.size() >= kFlushThreshold) {
        flush();
    }
    return true;
}

bool FdOutput::flush() {
    if (buffer_.empty()) {
        return true;
    }
    if (out_fd_ < 0) {
        fail(0);
        return false;
    }
    if (torn_) {
        // An error cut the last line: end it so this text does not continue it.
        buffer_.insert(buffer_.begin(), '\n');
        ++committed_;
        torn_ = false;
    }
    return stream_ ? write_stream() : write_file();
}

long FdOutput::write_some(const char* data, std::size_t size) {
    if (socket_) {
        return ::send(out_fd_, data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    if (poll_first_) {
        pollfd pfd{out_fd_, POLLOUT, 0};
        if (::poll(&pfd, 1, 0) <= 0) {
            errno = EAGAIN;
            return -1;
        }
        size = std::min<std::size_t>(size, PIPE_BUF);  // at most what POLLOUT promises
    }
    return pipe_ ? write_without_sigpipe(out_fd_, data, size) : ::write(out_fd_, data, size);
}

bool FdOutput::write_stream() {
    std::size_t written = 0;
    while (written < buffer_.size()) {
        const long n = write_some(buffer_.data() + written, buffer_.size() - written);
        if (n > 0) {
            written += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
            break;  // the reader is behind: the rest waits in the backlog
        }
        fail(written);
        return false;
    }
    if (written > 0) {
        mid_line_ = buffer_[written - 1] != '\n';
        buffer_.erase(0, written);
        committed_ = committed_ > written ? committed_ - written : 0;
    }
    return true;
}

bool FdOutput::write_file() {
    std::size_t written = 0;
    while (written < buffer_.size()) {
        const ssize_t n = ::write(out_fd_, buffer_.data() + written, buffer_.size() - written);
        if (n > 0) {
            written += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd pfd{out_fd_, POLLOUT, 0};
            const int ready = ::poll(&pfd, 1, kWritableTimeoutMs);
            if (ready > 0 || (ready < 0 && errno == EINTR)) {
                continue;
            }
        }
        fail(written);
        return false;
    }
    mid_line_ = buffer_.back() != '\n';
    buffer_.clear();
    committed_ = 0;
    return true;
}

void FdOutput::fail(std::size_t written) {
    ++failures_;
    if (written > 0) {
        mid_line_ = buffer_[written - 1] != '\n';
    }
    torn_ = mid_line_;
    buffer_.clear();
    committed_ = 0;
}

}  // namespace synergos::plugins::basic
