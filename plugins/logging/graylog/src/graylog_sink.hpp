// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file graylog_sink.hpp
/// The `graylog` logging backend: GELF 1.1 over UDP (chunked, compressed) or TCP, sent from a
/// background thread through a bounded buffer, so a down or slow Graylog never blocks a caller.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/log_sink.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>

#include "gelf.hpp"
#include "record_ring.hpp"
#include "transport.hpp"

namespace synergos::plugins::graylog {

/// The plugin's descriptor (exported by src/plugin.cpp).
extern const sdk::PluginDescriptor kGraylogDescriptor;

enum class Transport : std::uint8_t { Udp = 1, Tcp };

/// The validated options.
struct GraylogConfig {
    std::string host = "127.0.0.1";
    int port = 12201;
    Transport transport = Transport::Udp;
    Compression compression = Compression::Zlib;  ///< UDP only; GELF TCP is never compressed
    std::size_t chunk_size = 8154;                ///< data bytes per UDP chunk
    std::size_t buffer_records = 65536;
    std::size_t max_buffer_bytes = 64 * 1024 * 1024;  ///< text of the buffered records
    std::string facility = "synergos";
    std::chrono::milliseconds connect_timeout{2000};
    std::chrono::milliseconds send_timeout{5000};
    std::chrono::milliseconds flush_timeout{2000};
    std::chrono::milliseconds reconnect_min{100};
    std::chrono::milliseconds reconnect_max{30000};
    std::chrono::milliseconds drop_report_interval{10000};
    std::chrono::milliseconds resolve_interval{30000};  ///< UDP: re-lookup of the host name
};

/// Checks and converts the plugin options. Errors name the option and the valid values.
sdk::Result<GraylogConfig> parse_graylog_config(const sdk::Options& options);

/// The sink.
/// Threading: `write`, `flush` and `stats` may be called from any thread. `write` only copies
/// the record into the bounded buffer (or counts it as dropped when the buffer is full); one
/// sender thread, started by `start` and joined by `stop`, encodes and sends.
/// The sender never logs through the host logger: that logger may route into this very sink.
class GraylogSink final : public sdk::LogSink {
public:
    /// Throws std::invalid_argument naming the option when an option is invalid.
    /// Where the sink says, one line at a time, that Graylog became unreachable or reachable
    /// again: not the host logger, which may route into this very sink. Default: stderr.
    using Console = std::function<void(const std::string& line)>;

    GraylogSink(sdk::HostContext& host, const sdk::Options& options, Console console = {});
    GraylogSink(sdk::HostContext& host, GraylogConfig config, Console console = {});
    ~GraylogSink() override;

    sdk::Status start() noexcept override;
    void write(const sdk::LogRecord& record) noexcept override;
    void flush() noexcept override;
    void stop() noexcept override;
    sdk::SinkStats stats() const noexcept override;

    /// "graylog records dropped" reports sent so far.
    std::uint64_t drop_reports_sent() const noexcept;
    /// Lookups of Graylog's host name started so far (at start, then by the sender thread).
    std::uint64_t name_lookups() const noexcept;
    /// The last connection or send error ("" when none yet).
    std::string last_error() const;

private:
    enum class Link : std::uint8_t { Unknown = 1, Up, Down };

    void run() noexcept;
    void run_loop();
    void finish() noexcept;
    bool link_ready() const noexcept;
    sdk::Status open_link(Clock::time_point deadline);
    void set_link(Link link, std::string error = {});
    /// Sends records [begin, end); returns the position up to which records are done with
    /// (sent or dropped). Stops early when a TCP send fails or the stop deadline passes.
    std::uint64_t send_batch(std::uint64_t begin, std::uint64_t end);
    std::uint64_t send_batch_udp(std::uint64_t begin, std::uint64_t end);
    std::uint64_t send_batch_tcp(std::uint64_t begin, std::uint64_t end);
    void maybe_report_drops(bool now_or_never);
    void refresh_udp_endpoint();
    /// Opens the UDP socket to endpoint_; Graylog counts as reachable only once confirmed.
    sdk::Status open_udp();
    /// Once datagrams went out a while ago, says whether an ICMP error came back for them.
    void confirm_udp_link();
    /// A UDP send or check failed (last_error set): close, back off, look the name up again.
    void udp_link_failed();
    /// Counts the records sent before a verdict as written, or as dropped when an error came
    /// back for them (at stop, or before the socket is replaced).
    void settle_unconfirmed();
    void schedule_reconnect();
    bool encode(const sdk::LogRecord& record, std::string& out) noexcept;

    sdk::HostContext& host_;
    const GraylogConfig config_;
    const std::string report_logger_;

    // Guarded by mutex_.
    mutable std::mutex mutex_;
    std::condition_variable wake_sender_;
    std::condition_variable progress_;
    RecordRing ring_;
    bool accepting_ = true;
    bool started_ = false;
    bool sender_idle_ = false;
    Link link_ = Link::Unknown;
    std::string last_error_;
    Console console_;
    bool console_said_down_ = false;         ///< the last console line said "unreachable"
    Clock::time_point console_down_at_{};    ///< when it said so (at most one per minute)

    // Owned by the sender thread once started.
    StopSignal stop_;
    Resolver resolver_;
    Endpoint endpoint_;
    bool endpoint_fresh_ = false;  // looked up since the last failure
    Clock::time_point next_refresh_{};
    GelfEncoder encoder_;
    UdpSender udp_;
    bool udp_confirmed_ = false;  // no ICMP error came back for this socket's first datagrams
    bool udp_probing_ = false;    // reopened after a failure: one record goes out, then a verdict
    std::uint64_t udp_unconfirmed_ = 0;  // records sent before the verdict: written or dropped
    TcpSender tcp_;
    std::string message_;
    std::string frames_;
    std::vector<std::size_t> frame_ends_;
    Clock::time_point next_attempt_{};
    std::chrono::milliseconds backoff_;
    Clock::time_point last_report_{};
    std::uint64_t dropped_reported_ = 0;
    std::uint64_t jitter_state_;
    std::thread sender_;

    std::atomic<std::uint64_t> written_{0};
    std::atomic<std::uint64_t> dropped_{0};
    std::atomic<std::uint64_t> failed_{0};
    std::atomic<std::uint64_t> reports_sent_{0};
};

}  // namespace synergos::plugins::graylog
