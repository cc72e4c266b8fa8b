// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file signals.hpp
/// Turns SIGINT and SIGTERM into a callback on an ordinary thread. The handler only writes the
/// signal number to a pipe (async-signal-safe); a watcher thread blocks on the pipe and calls
/// `on_signal`, so the callback may lock, log and notify freely.

#include <functional>
#include <thread>

namespace synergos::core {

/// Installs the handlers for its lifetime; the previous handlers come back on destruction.
/// Only one watcher may exist at a time (the handler has one pipe).
class SignalWatcher {
public:
    /// `on_signal(signal_number)` runs on the watcher thread, once per signal received.
    /// Throws std::runtime_error when the pipe or the handlers cannot be set up, or when
    /// another watcher is active.
    explicit SignalWatcher(std::function<void(int)> on_signal);
    ~SignalWatcher();
    SignalWatcher(const SignalWatcher&) = delete;
    SignalWatcher& operator=(const SignalWatcher&) = delete;

private:
    void run();

    std::function<void(int)> on_signal_;
    int wake_pipe_[2] = {-1, -1};  ///< written at destruction to end the thread
    std::thread thread_;
};

}  // namespace synergos::core
