// SPDX-License-Identifier: Apache-2.0
#pragma once

// A `synergos` child process for the multi-process suites: stdout through a pipe (the role
// announces its port there), stderr to a file, SIGKILL on destruction if still running.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

extern char** environ;

namespace synergos::e2e {

class Process {
public:
    /// Starts `exe args...`; stderr is appended to `stderr_path`. `pid()` is -1 on failure.
    Process(const std::string& exe, const std::vector<std::string>& args,
            const std::string& stderr_path) {
        if (::pipe2(out_, O_CLOEXEC) != 0) {
            return;
        }
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out_[1], STDOUT_FILENO);
        posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_path.c_str(),
                                         O_WRONLY | O_CREAT | O_APPEND, 0644);
        std::vector<char*> argv;
        argv.push_back(const_cast<char*>(exe.c_str()));
        for (const auto& a : args) {
            argv.push_back(const_cast<char*>(a.c_str()));
        }
        argv.push_back(nullptr);
        if (::posix_spawn(&pid_, exe.c_str(), &actions, nullptr, argv.data(), environ) != 0) {
            pid_ = -1;
        }
        posix_spawn_file_actions_destroy(&actions);
        ::close(out_[1]);
        out_[1] = -1;
    }
    ~Process() {
        kill(SIGKILL);
        if (out_[0] >= 0) {
            ::close(out_[0]);
        }
    }
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    pid_t pid() const {
        return pid_;
    }

    /// The first stdout line containing `needle`, read within `timeout` (nullopt otherwise).
    std::optional<std::string> read_line_with(const std::string& needle,
                                              std::chrono::milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (true) {
            std::size_t nl;
            while ((nl = buffer_.find('\n')) != std::string::npos) {
                std::string line = buffer_.substr(0, nl);
                buffer_.erase(0, nl + 1);
                if (line.find(needle) != std::string::npos) {
                    return line;
                }
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0 || out_[0] < 0) {
                return std::nullopt;
            }
            pollfd p{out_[0], POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
                continue;
            }
            char chunk[4096];
            const ssize_t n = ::read(out_[0], chunk, sizeof chunk);
            if (n <= 0) {
                ::close(out_[0]);
                out_[0] = -1;
                continue;
            }
            buffer_.append(chunk, static_cast<std::size_t>(n));
        }
    }

    /// Sends `signal` and reaps the child; returns the wait status (or -1 if already reaped).
    int kill(int signal) {
        if (pid_ <= 0 || reaped_) {
            return -1;
        }
        ::kill(pid_, signal);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        reaped_ = true;
        return status;
    }

private:
    pid_t pid_ = -1;
    int out_[2] = {-1, -1};
    bool reaped_ = false;
    std::string buffer_;
};

}  // namespace synergos::e2e
