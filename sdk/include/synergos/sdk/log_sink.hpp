// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file log_sink.hpp
/// Plugin kind `logging`: a log sink (console, file, Graylog ...).

#include <cstdint>

#include <synergos/sdk/log.hpp>
#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::sdk {

/// Counters a sink reports; the host logs them at shutdown and exposes them in metrics.
struct SinkStats {
    std::uint64_t written = 0;  ///< records handed to the destination
    std::uint64_t dropped = 0;  ///< records discarded (buffer full, destination down)
    std::uint64_t failed = 0;   ///< send attempts that failed
};

/// A destination for log records.
/// Threading: `write` may be called from any thread concurrently and must never block on the
/// network: a sink that sends remotely buffers (bounded) and sends from its own thread.
/// Lifetime: `start` is called once before any `write`; `stop` once after the last `write`;
/// after `stop` returns no plugin thread runs (STYLE.md L6).
class BOOST_SYMBOL_VISIBLE LogSink : public PluginObject {
public:
    virtual Status start() noexcept = 0;
    /// Hands one record to the sink. The record's views are valid only during the call.
    virtual void write(const LogRecord& record) noexcept = 0;
    /// Pushes buffered records out, waiting at most a short bounded time.
    virtual void flush() noexcept = 0;
    virtual void stop() noexcept = 0;
    virtual SinkStats stats() const noexcept = 0;
};

}  // namespace synergos::sdk
