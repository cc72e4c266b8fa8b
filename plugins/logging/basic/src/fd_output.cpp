// SPDX-License-Identifier: Apache-2.0
#include "fd_output.hpp"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cstring>

namespace synergos::plugins::basic {

namespace {

/// Buffered outputs are written out once they hold this much.
constexpr std::size_t kFlushThreshold = 64 * 1024;
/// A descriptor someone made non-blocking is waited on at most this long per write.
constexpr int kWritableTimeoutMs = 1000;

/// Writes all of `data`, retrying on EINTR, partial writes and EAGAIN (bounded). Returns 0 or
/// errno.
int write_all(int fd, const char* data, std::size_t size) {
    while (size > 0) {
        const ssize_t n = ::write(fd, data, size);
        if (n > 0) {
            data += n;
            size -= static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd pfd{fd, POLLOUT, 0};
            const int ready = ::poll(&pfd, 1, kWritableTimeoutMs);
            if (ready > 0 || (ready < 0 && errno == EINTR)) {
                continue;
            }
            return ready == 0 ? ETIMEDOUT : errno;
        }
        return n < 0 ? errno : EIO;
    }
    return 0;
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
}

sdk::Status FdOutput::open(const std::string& path, bool buffered) {
    close();
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        const int err = errno;
        return {sdk::ErrorCode::Unavailable,
                "basic: cannot open log file '" + path + "': " + std::strerror(err)};
    }
    fd_ = fd;
    owns_fd_ = true;
    buffered_ = buffered;
    if (buffered_) {
        buffer_.reserve(kFlushThreshold + 4096);
    }
    return {};
}

void FdOutput::close() {
    if (fd_ < 0) {
        return;
    }
    flush();
    if (owns_fd_) {
        ::close(fd_);
    }
    fd_ = -1;
    owns_fd_ = false;
}

bool FdOutput::commit(bool force) {
    if (!buffered_ || force || buffer_.size() >= kFlushThreshold) {
        return flush();
    }
    return true;
}

bool FdOutput::flush() {
    if (buffer_.empty()) {
        return true;
    }
    const int err = fd_ >= 0 ? write_all(fd_, buffer_.data(), buffer_.size()) : EBADF;
    buffer_.clear();
    if (err != 0) {
        ++failures_;
        return false;
    }
    return true;
}

}  // namespace synergos::plugins::basic
