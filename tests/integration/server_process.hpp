// SPDX-License-Identifier: Apache-2.0
#pragma once

// Runs the test-only REST server (rest_test_server.cpp) as a child process and reads the port it
// prints. Used by the crash and malformed-input tests.

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace synergos::testing {

class ServerProcess {
public:
    /// Starts the server on `data_dir`; `port()` is 0 when it did not report a port within 20 s.
    explicit ServerProcess(const std::string& data_dir, std::vector<std::string> extra = {}) {
        int out[2];
        if (::pipe(out) != 0) {
            return;
        }
        std::vector<std::string> args = {
            SYNERGOS_REST_TEST_SERVER, "--data", data_dir, "--port", "0", "--quiet"};
        args.insert(args.end(), extra.begin(), extra.end());
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(out[1], STDOUT_FILENO);
            ::close(out[0]);
            ::close(out[1]);
            std::vector<char*> argv;
            for (auto& a : args) {
                argv.push_back(a.data());
            }
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(out[1]);
        fd_ = out[0];
        std::string line;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (line.find('\n') == std::string::npos &&
               std::chrono::steady_clock::now() < deadline) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 200) <= 0) {
                continue;
            }
            char buffer[64];
            const auto n = ::read(fd_, buffer, sizeof(buffer));
            if (n <= 0) {
                break;
            }
            line.append(buffer, static_cast<std::size_t>(n));
        }
        if (line.rfind("PORT ", 0) == 0) {
            port_ = static_cast<std::uint16_t>(std::stoi(line.substr(5)));
        }
    }
    ~ServerProcess() {
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    ServerProcess(const ServerProcess&) = delete;
    ServerProcess& operator=(const ServerProcess&) = delete;

    std::uint16_t port() const { return port_; }
    bool alive() {
        if (pid_ <= 0 || reaped_) {
            return false;
        }
        if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
            reaped_ = true;
            return false;
        }
        return true;
    }
    /// Sends `signal` and waits for the exit; returns the exit status (as from waitpid).
    int stop(int signal) {
        int status = -1;
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, signal);
            ::waitpid(pid_, &status, 0);
            reaped_ = true;
        }
        return status;
    }

private:
    pid_t pid_ = -1;
    int fd_ = -1;
    std::uint16_t port_ = 0;
    bool reaped_ = false;
};

}  // namespace synergos::testing
