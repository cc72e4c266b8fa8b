// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/runtime/signals.hpp>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <string>

namespace synergos::core {

namespace {

// Plain data with constant initialisation (STYLE.md H9): read by the signal handler.
int g_signal_pipe[2] = {-1, -1};
std::atomic<bool> g_watcher_active{false};
struct sigaction g_previous_int {};
struct sigaction g_previous_term {};

extern "C" void synergos_on_signal(int signal_number) {
    const int saved_errno = errno;
    const unsigned char byte = static_cast<unsigned char>(signal_number);
    // Best effort: a full pipe already holds a pending stop request.
    [[maybe_unused]] const auto written = ::write(g_signal_pipe[1], &byte, 1);
    errno = saved_errno;
}

void make_pipe(int fds[2]) {
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        throw std::runtime_error(std::string("cannot create a signal pipe: ") +
                                 std::strerror(errno));
    }
}

void close_pipe(int fds[2]) {
    for (int i = 0; i < 2; ++i) {
        if (fds[i] >= 0) {
            ::close(fds[i]);
            fds[i] = -1;
        }
    }
}

}  // namespace

SignalWatcher::SignalWatcher(std::function<void(int)> on_signal)
    : on_signal_(std::move(on_signal)) {
    bool expected = false;
    if (!g_watcher_active.compare_exchange_strong(expected, true)) {
        throw std::runtime_error("a signal watcher is already active");
    }
    try {
        make_pipe(g_signal_pipe);
        make_pipe(wake_pipe_);
        struct sigaction action {};
        action.sa_handler = synergos_on_signal;
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_RESTART;
        if (::sigaction(SIGINT, &action, &g_previous_int) != 0 ||
            ::sigaction(SIGTERM, &action, &g_previous_term) != 0) {
            throw std::runtime_error(std::string("cannot install signal handlers: ") +
                                     std::strerror(errno));
        }
        thread_ = std::thread([this] { run(); });
    } catch (...) {
        close_pipe(wake_pipe_);
        close_pipe(g_signal_pipe);
        g_watcher_active.store(false);
        throw;
    }
}

SignalWatcher::~SignalWatcher() {
    ::sigaction(SIGINT, &g_previous_int, nullptr);
    ::sigaction(SIGTERM, &g_previous_term, nullptr);
    const unsigned char byte = 0;
    [[maybe_unused]] const auto written = ::write(wake_pipe_[1], &byte, 1);
    if (thread_.joinable()) {
        thread_.join();
    }
    close_pipe(wake_pipe_);
    close_pipe(g_signal_pipe);
    g_watcher_active.store(false);
}

void SignalWatcher::run() {
    while (true) {
        pollfd fds[2] = {{g_signal_pipe[0], POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
        // No timeout: this thread lives as long as the watcher and wakes on either pipe.
        const int ready = ::poll(fds, 2, -1);
        if (ready < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        if ((fds[1].revents & POLLIN) != 0) {
            return;
        }
        if ((fds[0].revents & POLLIN) != 0) {
            unsigned char byte = 0;
            while (::read(g_signal_pipe[0], &byte, 1) == 1) {
                on_signal_(static_cast<int>(byte));
            }
        }
    }
}

}  // namespace synergos::core
