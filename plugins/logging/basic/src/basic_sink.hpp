// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file basic_sink.hpp
/// The `basic` logging backend: readable lines on the console (or a file) and, optionally, JSON
/// lines in a file. Writes with write(2) from its own buffers: no spdlog registry, no stdio.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/log_sink.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>

#include "fd_output.hpp"
#include "text_format.hpp"

namespace synergos::plugins::basic {

/// The plugin's descriptor (exported by src/plugin.cpp).
extern const sdk::PluginDescriptor kBasicDescriptor;

/// When readable lines get ANSI colours.
enum class ColorMode : std::uint8_t { Auto = 1, Always, Never };

/// The validated options.
struct BasicConfig {
    std::string output = "stderr";  ///< "stderr", "stdout", "none" or a file path
    ColorMode color = ColorMode::Auto;
    std::string json_file;  ///< "" for none, "stderr", "stdout" or a file path
    sdk::Level flush_level = sdk::Level::Warn;
    bool buffered = true;        ///< buffer file outputs (consoles are never buffered)
    bool show_location = false;  ///< append "(file:line)" to readable lines
};

/// Parses a level name ("trace" ... "critical"); false when unknown.
bool parse_level(const std::string& text, sdk::Level& level);

/// Checks and converts the plugin options. Errors name the option and list the valid values.
sdk::Result<BasicConfig> parse_basic_config(const sdk::Options& options);

/// The sink. Threading: every method may be called from any thread; records are formatted and
/// written under one lock, so lines from different threads never interleave. A timer thread
/// (started by `start`, joined by `stop`) writes out buffered file lines 1 s after the last
/// write-out and retries what a slow console reader has not taken yet.
class BasicSink final : public sdk::LogSink {
public:
    /// Throws std::invalid_argument naming the option when an option is invalid (the export
    /// macro turns that into an error for the host).
    BasicSink(sdk::HostContext& host, const sdk::Options& options);
    BasicSink(sdk::HostContext& host, BasicConfig config);
    ~BasicSink() override;

    sdk::Status start() noexcept override;
    void write(const sdk::LogRecord& record) noexcept override;
    void flush() noexcept override;
    void stop() noexcept override;
    sdk::SinkStats stats() const noexcept override;

    /// True when readable lines are coloured (decided at start).
    bool uses_color() const noexcept;

private:
    void format_console(const sdk::LogRecord& record, std::string& out);
    void format_json(const sdk::LogRecord& record, std::string& out);
    void note_failures();
    void run_timer() noexcept;

    sdk::HostContext& host_;
    const BasicConfig config_;

    mutable std::mutex mutex_;
    FdOutput console_;
    FdOutput json_;
    TimestampFormatter timestamps_;
    std::vector<JsonMember> members_;  // scratch, reused under the lock
    std::chrono::steady_clock::time_point last_flush_;
    bool use_color_ = false;
    bool started_ = false;
    bool stopped_ = false;
    std::uint64_t failures_seen_ = 0;
    std::condition_variable timer_wake_;
    std::thread timer_;

    std::atomic<std::uint64_t> written_{0};
    std::atomic<std::uint64_t> dropped_{0};
    std::atomic<std::uint64_t> failed_{0};
};

}  // namespace synergos::plugins::basic
