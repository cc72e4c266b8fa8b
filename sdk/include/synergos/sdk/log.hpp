// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file log.hpp
/// Structured log records and the `Logger` facade through which plugins log (STYLE.md G2).
///
/// Plugins never touch spdlog; they log through `HostContext::logger()`. The host adds the
/// logger name (node id and role), the timestamp and censoring, then hands the record to the
/// active `LogSink`.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace synergos::sdk {

/// Severity, lowest first.
enum class Level : std::uint8_t { Trace = 1, Debug, Info, Warn, Error, Critical };

/// Lower-case level name ("info", "warn", ...).
inline const char* to_string(Level level) noexcept {
    switch (level) {
        case Level::Trace: return "trace";
        case Level::Debug: return "debug";
        case Level::Info: return "info";
        case Level::Warn: return "warn";
        case Level::Error: return "error";
        case Level::Critical: return "critical";
    }
    return "info";
}

/// Syslog severity number used by GELF (critical 2 ... debug 7).
inline int to_syslog(Level level) noexcept {
    switch (level) {
        case Level::Trace: return 7;
        case Level::Debug: return 7;
        case Level::Info: return 6;
        case Level::Warn: return 4;
        case Level::Error: return 3;
        case Level::Critical: return 2;
    }
    return 6;
}

/// Where a record was emitted.
struct SourceLocation {
    const char* file = "";
    int line = 0;
    const char* function = "";
};

/// One structured record as it reaches a sink.
/// Lifetime: every view points into memory owned by the caller of `LogSink::write` and is valid
/// only for the duration of that call; a sink that buffers must copy.
struct LogRecord {
    Level level = Level::Info;
    std::string_view event;            ///< the message text
    std::string_view logger;           ///< "<role>/<node id>", e.g. "director/dir-1"
    std::string_view host;             ///< host name of the emitting machine
    std::chrono::system_clock::time_point time;  ///< UTC
    SourceLocation location;
    std::string_view fields_json;      ///< a JSON object of extra fields (already censored), "{}" when none
};

/// Facade through which plugins and core log. Implemented by the host.
/// Threading: every method may be called from any thread concurrently.
/// Errors: logging never fails from the caller's point of view.
class Logger {
public:
    virtual ~Logger() = default;

    /// Emits a record. `fields_json` must be a JSON object (or empty for none).
    virtual void log(Level level, std::string_view event, std::string_view fields_json,
                     SourceLocation location) noexcept = 0;
    /// True when a record of this level would be emitted (use to skip building fields).
    virtual bool enabled(Level level) const noexcept = 0;

    void debug(std::string_view event, std::string_view fields_json = {}) noexcept {
        log(Level::Debug, event, fields_json, {});
    }
    void info(std::string_view event, std::string_view fields_json = {}) noexcept {
        log(Level::Info, event, fields_json, {});
    }
    void warn(std::string_view event, std::string_view fields_json = {}) noexcept {
        log(Level::Warn, event, fields_json, {});
    }
    void error(std::string_view event, std::string_view fields_json = {}) noexcept {
        log(Level::Error, event, fields_json, {});
    }
};

}  // namespace synergos::sdk
