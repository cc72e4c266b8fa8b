// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file testing/fake_host.hpp
/// A `HostContext` for plugin unit tests: captures log lines in memory and points the
/// directories at a folder of the test's choosing. Part of `synergos::sdk_testing`.

#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/log.hpp>

namespace synergos::sdk::testing {

/// One captured log call.
struct CapturedLine {
    Level level;
    std::string event;
    std::string fields_json;
};

/// A logger that keeps every line. Threading: safe from any thread.
class CapturingLogger final : public Logger {
public:
    void log(Level level, std::string_view event, std::string_view fields_json,
             SourceLocation) noexcept override {
        std::lock_guard<std::mutex> lock(mutex_);
        lines_.push_back({level, std::string(event), std::string(fields_json)});
    }
    bool enabled(Level) const noexcept override { return true; }

    std::vector<CapturedLine> lines() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return lines_;
    }
    /// True when some line's event contains `text`.
    bool contains(std::string_view text) const {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& line : lines_) {
            if (line.event.find(text) != std::string::npos) {
                return true;
            }
        }
        return false;
    }

private:
    mutable std::mutex mutex_;
    std::vector<CapturedLine> lines_;
};

/// A host context rooted at `root` (data, outputs and mlflow directories are subfolders).
class FakeHost final : public HostContext {
public:
    explicit FakeHost(std::string root = "/tmp", std::string role = "test")
        : root_(std::move(root)), role_(std::move(role)) {}

    Logger& logger() noexcept override { return logger_; }
    std::string node_id() const override { return "test-node"; }
    std::string role() const override { return role_; }
    std::string data_dir() const override { return root_ + "/data"; }
    std::string outputs_dir() const override { return root_ + "/outputs"; }
    std::string mlflow_dir() const override { return root_ + "/mlflow"; }

    CapturingLogger& captured() { return logger_; }

private:
    std::string root_;
    std::string role_;
    CapturingLogger logger_;
};

}  // namespace synergos::sdk::testing
