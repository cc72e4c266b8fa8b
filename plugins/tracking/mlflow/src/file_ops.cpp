// SPDX-License-Identifier: Apache-2.0
#include "file_ops.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <system_error>
#include <thread>
#include <vector>

namespace synergos::plugins::mlflow {

namespace fs = std::filesystem;

namespace {

sdk::Status io_error(const std::string& action, const fs::path& path, int error) {
    return sdk::Status(sdk::ErrorCode::Internal, "mlflow: cannot " + action + " '" + path.string() +
                                                     "': " + std::strerror(error));
}

/// Closes a descriptor on scope exit.
class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }
    /// Closes now, reporting the error close() may carry for buffered writes.
    int close_checked() {
        const int rc = ::close(fd_);
        fd_ = -1;
        return rc;
    }

private:
    int fd_;
};

sdk::Status write_all(int fd, std::string_view data, const fs::path& path) {
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return io_error("write", path, errno);
        }
        done += static_cast<std::size_t>(n);
    }
    return sdk::Status::ok();
}

fs::path temp_path(const fs::path& staging) {
    return staging / (std::string(kTempPrefix) + random_hex(8));
}

/// Renames `temp` over `target` and makes both directory entries durable.
sdk::Status commit_rename(const fs::path& temp, const fs::path& target) {
    if (::rename(temp.c_str(), target.c_str()) != 0) {
        const int error = errno;
        ::unlink(temp.c_str());
        return io_error("rename into", target, error);
    }
    if (auto status = sync_dir(target.parent_path()); !status) {
        return status;
    }
    if (temp.parent_path() != target.parent_path()) {
        return sync_dir(temp.parent_path());
    }
    return sdk::Status::ok();
}

}  // namespace

std::string random_hex(std::size_t bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::random_device device;
    std::string out;
    out.reserve(bytes * 2);
    for (std::size_t i = 0; i < bytes; ++i) {
        const auto byte = static_cast<unsigned>(device()) & 0xFFU;
        out.push_back(kHex[byte >> 4U]);
        out.push_back(kHex[byte & 0xFU]);
    }
    return out;
}

sdk::Status make_dirs(const fs::path& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
        return io_error("create directory", dir, ec.value());
    }
    return sdk::Status::ok();
}

sdk::Status make_dir(const fs::path& dir, bool& created) {
    created = false;
    if (::mkdir(dir.c_str(), 0755) == 0) {
        created = true;
        return sdk::Status::ok();
    }
    if (errno == EEXIST) {
        return sdk::Status::ok();
    }
    return io_error("create directory", dir, errno);
}

sdk::Status write_file_atomic(const fs::path& target, std::string_view content,
                              const fs::path& staging) {
    const fs::path temp = temp_path(staging);
    Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (fd.get() < 0) {
        return io_error("create", temp, errno);
    }
    sdk::Status status = write_all(fd.get(), content, temp);
    if (status && ::fsync(fd.get()) != 0) {
        status = io_error("fsync", temp, errno);
    }
    if (status && fd.close_checked() != 0) {
        status = io_error("close", temp, errno);
    }
    if (!status) {
        ::unlink(temp.c_str());
        return status;
    }
    return commit_rename(temp, target);
}

sdk::Status copy_file_atomic(const fs::path& source, const fs::path& target,
                             const fs::path& staging) {
    const fs::path temp = temp_path(staging);
    std::error_code ec;
    fs::copy_file(source, temp, fs::copy_options::none, ec);
    if (ec) {
        fs::remove(temp, ec);
        return sdk::Status(sdk::ErrorCode::Internal,
                           "mlflow: cannot copy '" + source.string() + "': " + ec.message());
    }
    {
        Fd fd(::open(temp.c_str(), O_RDONLY | O_CLOEXEC));
        if (fd.get() < 0 || ::fsync(fd.get()) != 0) {
            const int error = errno;
            ::unlink(temp.c_str());
            return io_error("fsync", temp, error);
        }
    }
    return commit_rename(temp, target);
}

sdk::Status repair_torn_tail(const fs::path& file) {
    Fd fd(::open(file.c_str(), O_RDWR | O_CLOEXEC));
    if (fd.get() < 0) {
        return errno == ENOENT ? sdk::Status::ok() : io_error("open", file, errno);
    }
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) {
        return io_error("stat", file, errno);
    }
    off_t end = info.st_size;
    if (end == 0) {
        return sdk::Status::ok();
    }
    char last = 0;
    if (::pread(fd.get(), &last, 1, end - 1) != 1) {
        return io_error("read", file, errno);
    }
    if (last == '\n') {
        return sdk::Status::ok();
    }
    // Walk back to the last complete line.
    std::vector<char> chunk(4096);
    off_t keep = 0;
    while (end > 0) {
        const off_t start =
            end > static_cast<off_t>(chunk.size()) ? end - static_cast<off_t>(chunk.size()) : 0;
        const auto size = static_cast<std::size_t>(end - start);
        if (::pread(fd.get(), chunk.data(), size, start) != static_cast<ssize_t>(size)) {
            return io_error("read", file, errno);
        }
        bool found = false;
        for (std::size_t i = size; i > 0; --i) {
            if (chunk[i - 1] == '\n') {
                keep = start + static_cast<off_t>(i);
                found = true;
                break;
            }
        }
        if (found) {
            break;
        }
        end = start;
    }
    if (::ftruncate(fd.get(), keep) != 0 || ::fsync(fd.get()) != 0) {
        return io_error("truncate the torn last line of", file, errno);
    }
    return sdk::Status::ok();
}

sdk::Status append_file(const fs::path& file, std::string_view data, bool sync) {
    const bool existed = ::access(file.c_str(), F_OK) == 0;
    Fd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (fd.get() < 0) {
        return io_error("open", file, errno);
    }
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) {
        return io_error("stat", file, errno);
    }
    // A write cut short (disk full) leaves part of a line; cut back to where this append began
    // so the file holds whole lines only and the failed call added nothing.
    // An empty metric file is one MLflow refuses ("No data found"): that one goes instead.
    const auto undo = [&](sdk::Status status) {
        const bool undone = info.st_size == 0 ? ::unlink(file.c_str()) == 0
                                              : ::ftruncate(fd.get(), info.st_size) == 0;
        if (!undone) {
            const int error = errno;
            return sdk::Status(status.code(), status.message() +
                                                  "; cutting the partial append off failed too: " +
                                                  std::strerror(error));
        }
        return status;
    };
    if (auto status = write_all(fd.get(), data, file); !status) {
        return undo(std::move(status));
    }
    if (sync && ::fsync(fd.get()) != 0) {
        return undo(io_error("fsync", file, errno));
    }
    if (fd.close_checked() != 0) {
        return io_error("close", file, errno);
    }
    if (sync && !existed) {
        return sync_dir(file.parent_path());
    }
    return sdk::Status::ok();
}

sdk::Result<std::string> read_file(const fs::path& file) {
    Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
        const int error = errno;
        if (error == ENOENT) {
            return sdk::Error{sdk::ErrorCode::NotFound,
                              "mlflow: '" + file.string() + "' does not exist"};
        }
        return io_error("open", file, error).error();
    }
    std::string out;
    char buffer[8192];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return io_error("read", file, errno).error();
        }
        if (n == 0) {
            break;
        }
        out.append(buffer, static_cast<std::size_t>(n));
    }
    return out;
}

sdk::Status sync_dir(const fs::path& dir) {
    Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() < 0) {
        return io_error("open directory", dir, errno);
    }
    if (::fsync(fd.get()) != 0) {
        return io_error("fsync directory", dir, errno);
    }
    return sdk::Status::ok();
}

FileLock::~FileLock() {
    if (fd_ >= 0) {
        ::close(fd_);  // releases the lock too
    }
}

sdk::Status FileLock::lock(std::chrono::milliseconds timeout) {
    if (fd_ < 0) {
        fd_ = ::open(file_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd_ < 0) {
            return io_error("open the lock file", file_, errno);
        }
    }
    // Polled, not a blocking flock: a process that hangs while holding it must not hang us.
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            return io_error("lock", file_, errno);
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            return sdk::Status(sdk::ErrorCode::Unavailable,
                               "mlflow: another process has held the lock '" + file_.string() +
                                   "' for over " + std::to_string(timeout.count()) + " ms");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return sdk::Status::ok();
}

void FileLock::unlock() noexcept {
    if (fd_ >= 0) {
        (void)::flock(fd_, LOCK_UN);
    }
}

}  // namespace synergos::plugins::mlflow
