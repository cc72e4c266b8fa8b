// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file logger_factory.hpp
/// The host's logging: named loggers (`sdk::Logger`) for core components and plugins, level
/// filtering, censoring, and routing of every record to the active `LogSink` plugin, or to the
/// console until one is attached (and after it is detached at shutdown).

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <source_location>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include <synergos/core/logging/censor.hpp>
#include <synergos/sdk/log.hpp>
#include <synergos/sdk/log_sink.hpp>

namespace synergos::core {

class LoggerFactory;

/// One named logger. Records carry the node's logger name (`<role>/<id>`) and this logger's
/// component (e.g. `runtime`, `plugin.logging.graylog`) as the `module` field.
/// Lifetime: owned by its LoggerFactory. Threading: every method may run on any thread.
class HostLogger final : public sdk::Logger {
public:
    HostLogger(LoggerFactory& factory, std::string component);

    void log(sdk::Level level, std::string_view event, std::string_view fields_json,
             sdk::SourceLocation location) noexcept override;
    bool enabled(sdk::Level level) const noexcept override;

    /// Core conveniences: fields as JSON, the caller's location taken automatically.
    void log_json(sdk::Level level, std::string_view event, nlohmann::json fields,
                  std::source_location where = std::source_location::current()) noexcept;
    void debug(std::string_view event, nlohmann::json fields = nlohmann::json::object(),
               std::source_location where = std::source_location::current()) noexcept {
        log_json(sdk::Level::Debug, event, std::move(fields), where);
    }
    void info(std::string_view event, nlohmann::json fields = nlohmann::json::object(),
              std::source_location where = std::source_location::current()) noexcept {
        log_json(sdk::Level::Info, event, std::move(fields), where);
    }
    void warn(std::string_view event, nlohmann::json fields = nlohmann::json::object(),
              std::source_location where = std::source_location::current()) noexcept {
        log_json(sdk::Level::Warn, event, std::move(fields), where);
    }
    void error(std::string_view event, nlohmann::json fields = nlohmann::json::object(),
               std::source_location where = std::source_location::current()) noexcept {
        log_json(sdk::Level::Error, event, std::move(fields), where);
    }
    void critical(std::string_view event, nlohmann::json fields = nlohmann::json::object(),
                  std::source_location where = std::source_location::current()) noexcept {
        log_json(sdk::Level::Critical, event, std::move(fields), where);
    }

    const std::string& component() const { return component_; }

private:
    LoggerFactory& factory_;
    std::string component_;
};

/// Creates named loggers and routes their records.
/// Threading: every method may run on any thread; `attach_sink`/`detach_sink` wait for records
/// being written to finish, so a detached sink is no longer used when `detach_sink` returns.
class LoggerFactory {
public:
    /// Receives one console line (a JSON object, no newline). The default writes to stderr.
    using ConsoleWriter = std::function<void(std::string_view line)>;

    /// `logger_name` is `<role>/<node id>`.
    explicit LoggerFactory(std::string logger_name, ConsoleWriter console = {});
    ~LoggerFactory();
    LoggerFactory(const LoggerFactory&) = delete;
    LoggerFactory& operator=(const LoggerFactory&) = delete;

    /// The logger of a component; the same object for the same name, valid while the factory lives.
    HostLogger& logger(const std::string& component);

    /// Records below `level` are dropped.
    void set_level(sdk::Level level) noexcept { level_.store(level); }
    sdk::Level level() const noexcept { return level_.load(); }
    bool enabled(sdk::Level level) const noexcept { return level >= level_.load(); }

    /// Turns censoring on with these key patterns (or off with nullopt).
    void set_censor(std::optional<Censor> censor);

    /// Routes records to `sink` from now on. Not owned: keep it alive until `detach_sink`.
    void attach_sink(sdk::LogSink* sink);
    /// Routes records back to the console; returns the sink that was attached (or nullptr).
    sdk::LogSink* detach_sink();
    bool has_sink() const;
    /// Writes out what the attached sink buffers (nothing without one). For a process about to
    /// end without stopping its sink.
    void flush_sink() noexcept;

    /// Emits one record (used by HostLogger). Never throws.
    void emit(sdk::Level level, std::string_view component, std::string_view event,
              nlohmann::json fields, sdk::SourceLocation location) noexcept;

    /// The record as one JSON line: time, level, logger, host, event, file, line, function, fields
    /// (the keys of the basic sink's JSON lines).
    static std::string format_json_line(const sdk::LogRecord& record);
    /// ISO-8601 UTC with milliseconds, e.g. "2026-11-26T04:11:50.123Z".
    static std::string iso8601_utc(std::chrono::system_clock::time_point time);

    const std::string& logger_name() const { return logger_name_; }
    const std::string& host_name() const { return host_name_; }
    /// Records dropped by level, and written to the console / to the sink (for tests and stats).
    std::uint64_t console_records() const noexcept { return console_records_.load(); }
    std::uint64_t sink_records() const noexcept { return sink_records_.load(); }

private:
    std::string logger_name_;
    std::string host_name_;
    ConsoleWriter console_;
    std::atomic<sdk::Level> level_{sdk::Level::Info};

    mutable std::shared_mutex route_mutex_;  ///< shared: writing a record; exclusive: swapping
    sdk::LogSink* sink_ = nullptr;
    std::shared_ptr<const Censor> censor_;

    std::mutex loggers_mutex_;
    std::map<std::string, std::unique_ptr<HostLogger>, std::less<>> loggers_;

    std::atomic<std::uint64_t> console_records_{0};
    std::atomic<std::uint64_t> sink_records_{0};
};

}  // namespace synergos::core
