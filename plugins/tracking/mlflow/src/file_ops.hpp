// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file file_ops.hpp
/// Crash-safe file primitives (POSIX). Whole files are replaced through a temporary file in a
/// staging directory on the same filesystem: write, fsync, rename over the target, fsync the
/// target's directory; a reader sees the old content or the new, never a mix. Appends use one
/// O_APPEND write per call. Errors name the path and carry the errno text.

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>

#include <synergos/sdk/status.hpp>

namespace synergos::plugins::mlflow {

/// Prefix of temporary files; they live in a run or experiment folder, where MLflow's readers
/// never look (they list only sub-folders there, and named sub-folders of a run).
inline constexpr std::string_view kTempPrefix = ".synergos-tmp-";

/// `bytes` random bytes as lower-case hex.
std::string random_hex(std::size_t bytes);

/// Creates `dir` and its parents when missing.
sdk::Status make_dirs(const std::filesystem::path& dir);

/// Creates exactly `dir` (its parent must exist). `created` is false when it already existed.
sdk::Status make_dir(const std::filesystem::path& dir, bool& created);

/// Replaces `target` with `content` (see the file comment). The temp file goes in `staging`.
sdk::Status write_file_atomic(const std::filesystem::path& target, std::string_view content,
                              const std::filesystem::path& staging);

/// Copies `source` to `target` the same way (data fsynced before the rename).
sdk::Status copy_file_atomic(const std::filesystem::path& source,
                             const std::filesystem::path& target,
                             const std::filesystem::path& staging);

/// Drops a torn last line (bytes after the last '\n', left by a crash in the middle of an
/// append) so the next append starts on a line of its own. No-op for a missing or clean file.
sdk::Status repair_torn_tail(const std::filesystem::path& file);

/// Appends `data` with one O_APPEND write loop, creating the file (0644) when missing; with
/// `sync`, fsyncs the file (and, when it was created, its directory) before returning. When the
/// write or fsync fails the file is cut back to its size before the call (removed when that was
/// 0), so a short write never leaves part of a line behind.
sdk::Status append_file(const std::filesystem::path& file, std::string_view data, bool sync);

/// Reads a whole file.
sdk::Result<std::string> read_file(const std::filesystem::path& file);

/// fsyncs a directory (so a rename or a creation in it is durable).
sdk::Status sync_dir(const std::filesystem::path& dir);

/// An exclusive lock (flock) on one file, shared by every process that opens the same file:
/// processes sharing an MLflow root hold it while they look a name up and create it, so two
/// of them never create the same experiment or run twice. The file is created when missing.
/// Threading: one holder at a time per object (the caller serialises its own threads).
class FileLock {
public:
    explicit FileLock(std::filesystem::path file) : file_(std::move(file)) {}
    ~FileLock();
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;

    /// Takes the lock, waiting at most `timeout` for another process to release it
    /// (Unavailable naming the file past it). Pair with unlock().
    sdk::Status lock(std::chrono::milliseconds timeout);
    void unlock() noexcept;

private:
    std::filesystem::path file_;
    int fd_ = -1;
};

/// Holds a FileLock for a scope once lock() succeeded.
class FileLockGuard {
public:
    explicit FileLockGuard(FileLock& lock) : lock_(lock) {}
    ~FileLockGuard() {
        if (held_) {
            lock_.unlock();
        }
    }
    FileLockGuard(const FileLockGuard&) = delete;
    FileLockGuard& operator=(const FileLockGuard&) = delete;
    sdk::Status lock(std::chrono::milliseconds timeout) {
        auto status = lock_.lock(timeout);
        held_ = status.is_ok();
        return status;
    }

private:
    FileLock& lock_;
    bool held_ = false;
};

}  // namespace synergos::plugins::mlflow
