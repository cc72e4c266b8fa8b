// SPDX-License-Identifier: Apache-2.0
#pragma once

// The real `synergos` executable as a child process, for tests that drive it from outside.
// The including test target defines SYNERGOS_EXE (the executable's path).

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

#include <catch2/catch.hpp>

#ifndef SYNERGOS_EXE
#error "define SYNERGOS_EXE (the synergos executable) for the test target"
#endif

extern char** environ;

namespace synergos::tests {

/// A child process whose stdout and stderr are read through pipes with timeouts.
class Child {
public:
    explicit Child(const std::vector<std::string>& args) {
        REQUIRE(::pipe2(out_, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(err_, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out_[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&actions, err_[1], STDERR_FILENO);
        std::vector<char*> argv;
        argv.push_back(const_cast<char*>(SYNERGOS_EXE));
        for (const auto& a : args) {
            argv.push_back(const_cast<char*>(a.c_str()));
        }
        argv.push_back(nullptr);
        const int rc = ::posix_spawn(&pid_, SYNERGOS_EXE, &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(out_[1]);
        ::close(err_[1]);
        REQUIRE(rc == 0);
    }
    ~Child() {
        if (pid_ > 0 && !exit_code_) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        ::close(out_[0]);
        ::close(err_[0]);
    }

    /// Reads both pipes until `done()` holds on the stderr lines, EOF on both, or the timeout.
    template <typename Pred>
    bool read_until(Pred done, std::chrono::milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!done(err_lines_)) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0 || (out_eof_ && err_eof_)) {
                return done(err_lines_);
            }
            pollfd fds[2] = {{out_eof_ ? -1 : out_[0], POLLIN, 0},
                             {err_eof_ ? -1 : err_[0], POLLIN, 0}};
            if (::poll(fds, 2, static_cast<int>(left.count())) <= 0) {
                continue;
            }
            drain(fds[0], out_[0], out_buffer_, out_lines_, out_eof_);
            drain(fds[1], err_[0], err_buffer_, err_lines_, err_eof_);
        }
        return true;
    }
    /// Reads to EOF and reaps the child; nullopt when it did not finish within the timeout.
    std::optional<int> wait(std::chrono::milliseconds timeout) {
        read_until([](const auto&) { return false; }, timeout);
        if (!exit_code_) {
            // After EOF on both pipes the child is exiting, so a blocking reap is bounded;
            // before it (timeout), only look.
            int status = 0;
            const pid_t r = ::waitpid(pid_, &status, out_eof_ && err_eof_ ? 0 : WNOHANG);
            if (r == pid_) {
                exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
        }
        return exit_code_;
    }
    void signal(int signal_number) const { ::kill(pid_, signal_number); }
    const std::vector<std::string>& out_lines() const { return out_lines_; }
    pid_t pid() const { return pid_; }
    const std::vector<std::string>& err_lines() const { return err_lines_; }
    std::string out_text() const {
        std::string text;
        for (const auto& l : out_lines_) {
            text += l + "\n";
        }
        return text + out_buffer_;
    }

private:
    static void drain(const pollfd& p, int fd, std::string& buffer, std::vector<std::string>& lines,
                      bool& eof) {
        if (p.fd < 0 || (p.revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
            return;
        }
        char chunk[4096];
        const ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n <= 0) {
            eof = true;
            if (!buffer.empty()) {
                lines.push_back(buffer);
                buffer.clear();
            }
            return;
        }
        buffer.append(chunk, static_cast<std::size_t>(n));
        std::size_t newline;
        while ((newline = buffer.find('\n')) != std::string::npos) {
            lines.push_back(buffer.substr(0, newline));
            buffer.erase(0, newline + 1);
        }
    }

    pid_t pid_ = -1;
    int out_[2] = {-1, -1};
    int err_[2] = {-1, -1};
    bool out_eof_ = false;
    bool err_eof_ = false;
    std::string out_buffer_;
    std::string err_buffer_;
    std::vector<std::string> out_lines_;
    std::vector<std::string> err_lines_;
    std::optional<int> exit_code_;
};

}  // namespace synergos::tests
