// SPDX-License-Identifier: Apache-2.0
#include "graylog_sink.hpp"

#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace synergos::plugins::graylog {

namespace {

constexpr sdk::OptionSpec kOptions[] = {
    {"host", sdk::OptionType::String, false, "127.0.0.1",
     "Graylog host name or IP address; looked up by the sender thread, again after each failure "
     "(a name that does not resolve yet is retried with the reconnect back-off)",
     false},
    {"port", sdk::OptionType::Int, false, "12201", "port of the GELF UDP or TCP input", false},
    {"transport", sdk::OptionType::String, false, "udp", "udp or tcp", false},
    {"compression", sdk::OptionType::String, false, "zlib",
     "UDP payload compression: none, zlib or gzip (GELF TCP is never compressed)", false},
    {"chunk_size", sdk::OptionType::Int, false, "8154",
     "UDP: data bytes per datagram (64-65495); larger messages are chunked, up to 128 chunks",
     false},
    {"buffer_records", sdk::OptionType::Int, false, "65536",
     "records buffered for the sender thread (1-4194304); records beyond are dropped and counted",
     false},
    {"max_buffer_bytes", sdk::OptionType::Int, false, "67108864",
     "bytes of record text buffered for the sender thread (1048576-17179869184, default 64 MiB); "
     "records beyond are dropped and counted. Each value is cut to 32 KiB first",
     false},
    {"facility", sdk::OptionType::String, false, "synergos",
     "sent as the _facility field (empty: not sent)", false},
    {"connect_timeout_ms", sdk::OptionType::DurationMs, false, "2000",
     "how long one connection attempt (host name lookup included) may take", false},
    {"send_timeout_ms", sdk::OptionType::DurationMs, false, "5000",
     "how long a send may wait for Graylog to accept data before the connection is dropped and "
     "retried",
     false},
    {"flush_timeout_ms", sdk::OptionType::DurationMs, false, "2000",
     "the longest flush() waits, and the time stop() gives buffered records to go out", false},
    {"reconnect_min_ms", sdk::OptionType::DurationMs, false, "100",
     "first back-off after a failed lookup, connection or send; doubles up to reconnect_max_ms",
     false},
    {"reconnect_max_ms", sdk::OptionType::DurationMs, false, "30000",
     "longest back-off between lookup or connection attempts", false},
    {"drop_report_interval_ms", sdk::OptionType::DurationMs, false, "10000",
     "least time between two \"graylog records dropped\" records", false},
    {"resolve_interval_ms", sdk::OptionType::DurationMs, false, "30000",
     "UDP: how often the host name is looked up again while sending, to follow an address change "
     "(TCP looks it up on every reconnection)",
     false},
};

/// Records sent per pass of the sender loop before it returns to the lock.
constexpr std::uint64_t kMaxBatch = 512;
/// TCP frames are gathered into one send of about this size.
constexpr std::size_t kTcpSendBytes = 64 * 1024;
/// UDP: an ICMP error comes back within a round trip. A socket whose first datagram went out
/// this long ago without one counts as reaching Graylog.
constexpr std::chrono::milliseconds kUdpConfirmDelay{1000};

sdk::Error option_error(const std::string& key, const std::string& value, const std::string& hint) {
    return sdk::Error{sdk::ErrorCode::InvalidArgument,
                      "graylog: option '" + key + "' is '" + value + "'; " + hint};
}

sdk::Result<std::int64_t> int_option(const sdk::Options& options, const std::string& key,
                                     std::int64_t fallback, std::int64_t min, std::int64_t max) {
    if (!options.has(key)) {
        return fallback;
    }
    const std::string text = options.get_string(key);
    std::int64_t value = 0;
    const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
    const std::string hint =
        "use an integer from " + std::to_string(min) + " to " + std::to_string(max);
    if (text.empty() || result.ec != std::errc() || result.ptr != text.data() + text.size()) {
        return option_error(key, text, hint);
    }
    if (value < min || value > max) {
        return option_error(key, text, hint);
    }
    return value;
}

std::string machine_name() {
    char name[HOST_NAME_MAX + 1] = {};
    if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') {
        return "unknown";
    }
    return name;
}

GraylogConfig config_or_throw(const sdk::Options& options) {
    auto config = parse_graylog_config(options);
    if (!config) {
        throw std::invalid_argument(config.error().message);
    }
    return std::move(config).value();
}

}  // namespace

const sdk::PluginDescriptor kGraylogDescriptor{
    sizeof(sdk::PluginDescriptor),
    "graylog",
    sdk::PluginKind::LogSink,
    "1.0.0",
    "GELF 1.1 to Graylog over UDP (chunked, compressed) or TCP, from a bounded background buffer",
    "synergos",
    sdk::PluginStatus::Stable,
    kOptions,
    std::size(kOptions),
};

sdk::Result<GraylogConfig> parse_graylog_config(const sdk::Options& options) {
    GraylogConfig config;
    config.host = options.get_string("host", config.host);
    if (config.host.empty()) {
        return option_error("host", "", "give a host name or IP address");
    }

    const std::string transport = options.get_string("transport", "udp");
    if (transport == "udp") {
        config.transport = Transport::Udp;
    } else if (transport == "tcp") {
        config.transport = Transport::Tcp;
    } else {
        return option_error("transport", transport, "use udp or tcp");
    }

    const std::string compression = options.get_string("compression", "zlib");
    if (compression == "none") {
        config.compression = Compression::None;
    } else if (compression == "zlib") {
        config.compression = Compression::Zlib;
    } else if (compression == "gzip") {
        config.compression = Compression::Gzip;
    } else {
        return option_error("compression", compression, "use none, zlib or gzip");
    }

    config.facility = options.get_string("facility", config.facility);

    struct IntOption {
        const char* key;
        std::int64_t fallback;
        std::int64_t min;
        std::int64_t max;
    };
    constexpr std::int64_t kHourMs = 3600 * 1000;
    const IntOption ints[] = {
        {"port", 12201, 1, 65535},
        {"chunk_size", 8154, 64, static_cast<std::int64_t>(kMaxDatagram - kChunkHeaderSize)},
        {"buffer_records", 65536, 1, 4194304},
        {"connect_timeout_ms", 2000, 1, kHourMs},
        {"send_timeout_ms", 5000, 1, kHourMs},
        {"flush_timeout_ms", 2000, 0, kHourMs},
        {"reconnect_min_ms", 100, 1, kHourMs},
        {"reconnect_max_ms", 30000, 1, kHourMs},
        {"drop_report_interval_ms", 10000, 1, kHourMs},
        {"resolve_interval_ms", 30000, 1, kHourMs},
        {"max_buffer_bytes", 64LL * 1024 * 1024, 1024LL * 1024, 16LL * 1024 * 1024 * 1024},
    };
    std::int64_t values[std::size(ints)] = {};
    for (std::size_t i = 0; i < std::size(ints); ++i) {
        auto value = int_option(options, ints[i].key, ints[i].fallback, ints[i].min, ints[i].max);
        if (!value) {
            return value.error();
        }
        values[i] = *value;
    }
    config.port = static_cast<int>(values[0]);
    config.chunk_size = static_cast<std::size_t>(values[1]);
    config.buffer_records = static_cast<std::size_t>(values[2]);
    config.connect_timeout = std::chrono::milliseconds(values[3]);
    config.send_timeout = std::chrono::milliseconds(values[4]);
    config.flush_timeout = std::chrono::milliseconds(values[5]);
    config.reconnect_min = std::chrono::milliseconds(values[6]);
    config.reconnect_max = std::chrono::milliseconds(values[7]);
    config.drop_report_interval = std::chrono::milliseconds(values[8]);
    config.resolve_interval = std::chrono::milliseconds(values[9]);
    config.max_buffer_bytes = static_cast<std::size_t>(values[10]);
    if (config.reconnect_min > config.reconnect_max) {
        return option_error(
            "reconnect_min_ms", std::to_string(values[6]),
            "it must not exceed reconnect_max_ms (" + std::to_string(values[7]) + ")");
    }
    return config;
}

GraylogSink::GraylogSink(sdk::HostContext& host, const sdk::Options& options, Console console)
    : GraylogSink(host, config_or_throw(options), std::move(console)) {}

GraylogSink::GraylogSink(sdk::HostContext& host, GraylogConfig config, Console console)
    : host_(host),
      config_(std::move(config)),
      report_logger_(host.role() + "/" + host.node_id()),
      ring_(config_.buffer_records, config_.max_buffer_bytes),
      console_(std::move(console)),
      resolver_(config_.host, config_.port, config_.transport == Transport::Tcp),
      encoder_(config_.facility, machine_name()),
      udp_(config_.chunk_size, config_.compression),
      backoff_(config_.reconnect_min),
      jitter_state_(static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) | 1) {}

GraylogSink::~GraylogSink() {
    stop();
}

sdk::Status GraylogSink::start() noexcept {
    try {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (started_ || !accepting_) {
                return {sdk::ErrorCode::FailedPrecondition,
                        "graylog: start called twice or after stop"};
            }
            if (auto status = stop_.open(); !status) {
                return status;
            }
            started_ = true;  // claims start; writes keep buffering meanwhile
        }
        // One lookup here, bounded and outside the lock, only to warn early: Graylog may simply
        // not be up yet (a compose service starting later), so the node starts regardless and
        // the sender thread keeps looking the name up.
        std::string warning;
        auto endpoint = resolver_.resolve(stop_, Clock::now() + config_.connect_timeout);
        if (endpoint) {
            endpoint_ = std::move(endpoint).value();
            endpoint_fresh_ = true;
            next_refresh_ = Clock::now() + config_.resolve_interval;
        } else {
            warning = endpoint.error().message;
            failed_.fetch_add(1, std::memory_order_relaxed);
            schedule_reconnect();
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (endpoint_fresh_ && config_.transport == Transport::Udp) {
                if (auto status = open_udp(); !status) {
                    started_ = false;
                    return status;
                }
                link_ = Link::Up;
            } else if (!warning.empty()) {
                link_ = Link::Down;  // flush() need not wait for an address nobody knows yet
                last_error_ = warning;
            }
            last_report_ = Clock::now();
            sender_ = std::thread(&GraylogSink::run, this);
        }
        if (!warning.empty()) {
            std::string fields = "{\"host\":";
            append_json_string(fields, config_.host);
            fields += ",\"port\":" + std::to_string(config_.port) + ",\"error\":";
            append_json_string(fields, warning);
            fields += "}";
            host_.logger().warn(
                "graylog: Graylog's address is not known yet; records are buffered while the "
                "sender keeps looking it up",
                fields);
        }
        return {};
    } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!sender_.joinable()) {
            started_ = false;
        }
        return {sdk::ErrorCode::Internal, std::string("graylog: start failed: ") + e.what()};
    }
}

void GraylogSink::write(const sdk::LogRecord& record) noexcept {
    bool pushed = false;
    bool wake = false;
    try {
        // Over-long texts are cut before the lock: only a huge record pays, and others never
        // wait for it.
        RecordLimiter limiter;
        const sdk::LogRecord& limited = limiter.limit(record);
        std::lock_guard<std::mutex> lock(mutex_);
        if (accepting_) {
            pushed = ring_.push(limited);  // false when out of slots or bytes
        }
        if (pushed) {
            wake = sender_idle_;
            sender_idle_ = false;
        }
    } catch (const std::exception&) {
        pushed = false;  // out of memory: counted as dropped like a full buffer
    }
    if (!pushed) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    if (wake) {
        wake_sender_.notify_one();
    }
}

void GraylogSink::flush() noexcept {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!started_ || !accepting_) {
        return;  // no sender thread to wait for
    }
    const std::uint64_t target = ring_.tail();
    sender_idle_ = false;
    wake_sender_.notify_one();
    progress_.wait_for(lock, config_.flush_timeout, [&] {
        return ring_.head() >= target || link_ == Link::Down || !accepting_;
    });
}

void GraylogSink::stop() noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!accepting_) {
            return;
        }
        accepting_ = false;
    }
    if (sender_.joinable()) {
        stop_.request(Clock::now() + config_.flush_timeout);
        {
            // Taking the lock orders the request before the sender's next predicate check.
            std::lock_guard<std::mutex> lock(mutex_);
        }
        wake_sender_.notify_all();
        sender_.join();
    } else {
        std::lock_guard<std::mutex> lock(mutex_);
        dropped_.fetch_add(ring_.size(), std::memory_order_relaxed);
        ring_.pop_until(ring_.tail());
    }
    progress_.notify_all();
}

sdk::SinkStats GraylogSink::stats() const noexcept {
    sdk::SinkStats stats;
    stats.written = written_.load(std::memory_order_relaxed);
    stats.dropped = dropped_.load(std::memory_order_relaxed);
    stats.failed = failed_.load(std::memory_order_relaxed);
    return stats;
}

std::uint64_t GraylogSink::drop_reports_sent() const noexcept {
    return reports_sent_.load(std::memory_order_relaxed);
}

std::uint64_t GraylogSink::name_lookups() const noexcept {
    return resolver_.lookups();
}

std::string GraylogSink::last_error() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_error_;
}

void GraylogSink::run() noexcept {
    try {
        run_loop();
    } catch (const std::exception& e) {
        // Only allocation failures can get here; record why the sender ended early.
        try {
            set_link(Link::Down, std::string("sender stopped: ") + e.what());
        } catch (const std::exception&) {
            failed_.fetch_add(1, std::memory_order_relaxed);
        }
    }
    finish();
}

bool GraylogSink::link_ready() const noexcept {
    return config_.transport == Transport::Udp ? udp_.is_open() : tcp_.is_connected();
}

sdk::Status GraylogSink::open_link(Clock::time_point deadline) {
    // After a failure the name is looked up again: a restarted Graylog may have a new address.
    if (!endpoint_fresh_) {
        auto endpoint = resolver_.resolve(stop_, deadline);
        if (!endpoint) {
            return endpoint.status();
        }
        endpoint_ = std::move(endpoint).value();
        endpoint_fresh_ = true;
        next_refresh_ = Clock::now() + config_.resolve_interval;
    }
    if (config_.transport == Transport::Udp) {
        return open_udp();
    }
    return tcp_.connect(endpoint_, stop_, deadline);
}

sdk::Status GraylogSink::open_udp() {
    settle_unconfirmed();
    udp_confirmed_ = false;
    return udp_.open(endpoint_);
}

void GraylogSink::confirm_udp_link() {
    if (!udp_.check_error()) {
        udp_link_failed();
        return;
    }
    udp_confirmed_ = true;
    udp_probing_ = false;
    backoff_ = config_.reconnect_min;
    written_.fetch_add(std::exchange(udp_unconfirmed_, 0), std::memory_order_relaxed);
    set_link(Link::Up);
    // Graylog is back: say at once what was lost while it was down.
    maybe_report_drops(true);
}

void GraylogSink::udp_link_failed() {
    // What went out since the socket opened met a closed port: lost.
    dropped_.fetch_add(std::exchange(udp_unconfirmed_, 0), std::memory_order_relaxed);
    udp_probing_ = false;
    failed_.fetch_add(1, std::memory_order_relaxed);
    udp_.close();
    set_link(Link::Down, "graylog: " + udp_.last_error());
    schedule_reconnect();
}

void GraylogSink::settle_unconfirmed() {
    if (udp_unconfirmed_ == 0) {
        return;
    }
    const bool refused = udp_.is_open() && !udp_.check_error();
    (refused ? dropped_ : written_)
        .fetch_add(std::exchange(udp_unconfirmed_, 0), std::memory_order_relaxed);
}

void GraylogSink::refresh_udp_endpoint() {
    // UDP shows no error when Graylog moves (datagrams just vanish), so look the name up now and
    // then. The deadline is now: a slow lookup is collected on a later pass, never waited for.
    auto endpoint = resolver_.resolve(stop_, Clock::now());
    if (!endpoint && endpoint.error().code == sdk::ErrorCode::Timeout) {
        return;  // still in flight
    }
    next_refresh_ = Clock::now() + config_.resolve_interval;
    if (!endpoint) {
        return;  // keep sending to the last known address
    }
    const Endpoint& fresh = endpoint.value();
    if (fresh.length == endpoint_.length &&
        std::memcmp(&fresh.address, &endpoint_.address, fresh.length) == 0) {
        return;
    }
    endpoint_ = fresh;
    if (auto status = open_udp(); !status) {
        failed_.fetch_add(1, std::memory_order_relaxed);
        set_link(Link::Down, status.message());
        schedule_reconnect();
    }
}

void GraylogSink::set_link(Link link, std::string error) {
    std::string line;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        const Link before = link_;
        link_ = link;
        if (!error.empty()) {
            last_error_ = std::move(error);
        }
        // Everything logged while Graylog is down waits in the buffer or is dropped, and the
        // drop reports go to Graylog too: one console line says so, and one when it is back.
        const auto where = [&] {
            return config_.host + ":" + std::to_string(config_.port) +
                   (config_.transport == Transport::Tcp ? "/tcp" : "/udp");
        };
        const auto now = Clock::now();
        if (link == Link::Down && before != Link::Down && !console_said_down_ &&
            (console_down_at_ == Clock::time_point{} || now - console_down_at_ >= std::chrono::minutes(1))) {
            console_said_down_ = true;
            console_down_at_ = now;
            line = "synergos: graylog sink: cannot send to " + where() + " (" + last_error_ +
                   "); records wait in its buffer (" + std::to_string(config_.buffer_records) +
                   " records) and are sent once it is back, later ones are dropped and counted";
        } else if (link == Link::Up && console_said_down_) {
            console_said_down_ = false;
            line = "synergos: graylog sink: " + where() + " is reachable again; sending what was buffered";
        }
    }
    progress_.notify_all();
    if (!line.empty()) {
        if (console_) {
            console_(line);
        } else {
            line.push_back('\n');
            // One write(2): lines from other threads do not interleave inside it.
            (void)!::write(STDERR_FILENO, line.data(), line.size());
        }
    }
}

void GraylogSink::schedule_reconnect() {
    // Full jitter over the upper half, so many nodes restarted together do not reconnect in step.
    jitter_state_ ^= jitter_state_ << 13;
    jitter_state_ ^= jitter_state_ >> 7;
    jitter_state_ ^= jitter_state_ << 17;
    const auto half = backoff_.count() / 2;
    const auto jitter =
        half > 0 ? static_cast<long long>(jitter_state_ % static_cast<std::uint64_t>(half + 1)) : 0;
    next_attempt_ = Clock::now() + std::chrono::milliseconds(backoff_.count() - half + jitter);
    backoff_ = std::min(backoff_ * 2, config_.reconnect_max);
    endpoint_fresh_ = false;  // every failure may mean Graylog moved: look it up again
}

void GraylogSink::run_loop() {
    bool final_attempt_done = false;
    while (true) {
        const bool stopping = stop_.requested();
        if (stopping && Clock::now() >= stop_.deadline()) {
            return;
        }

        if (!link_ready()) {
            if (stopping && final_attempt_done) {
                return;
            }
            if (!stopping && Clock::now() < next_attempt_) {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_sender_.wait_until(lock, next_attempt_, [&] { return stop_.requested(); });
                continue;
            }
            final_attempt_done = stopping;
            auto status = open_link(stop_.bound(Clock::now() + config_.connect_timeout));
            if (!status) {
                failed_.fetch_add(1, std::memory_order_relaxed);
                set_link(Link::Down, status.message());
                schedule_reconnect();
                continue;
            }
            if (config_.transport == Transport::Tcp) {
                set_link(Link::Up);
                // The connection is back: say at once what was lost while it was down.
                maybe_report_drops(true);
            }
            // UDP: an open socket proves nothing; Graylog counts as back once datagrams went out
            // and no ICMP error came back for them (confirm_udp_link). Until then one record at
            // a time is risked, the rest stay buffered.
            udp_probing_ = config_.transport == Transport::Udp;
            continue;
        }

        if (config_.transport == Transport::Tcp && tcp_.peer_closed()) {
            tcp_.close();
            failed_.fetch_add(1, std::memory_order_relaxed);
            set_link(Link::Down, "graylog: " + endpoint_.text + " closed the connection");
            schedule_reconnect();
            continue;
        }

        if (config_.transport == Transport::Udp && Clock::now() >= next_refresh_) {
            refresh_udp_endpoint();
            if (!link_ready()) {
                continue;
            }
        }

        const bool udp_confirm_due =
            config_.transport == Transport::Udp && !udp_confirmed_ && udp_.datagrams() > 0;
        if (udp_confirm_due && Clock::now() >= udp_.first_datagram_at() + kUdpConfirmDelay) {
            confirm_udp_link();
            continue;
        }
        if (udp_confirm_due && udp_probing_ && !stop_.requested()) {
            // The probe is out: wait for its verdict (a stop sends what is left regardless).
            std::unique_lock<std::mutex> lock(mutex_);
            wake_sender_.wait_until(lock, udp_.first_datagram_at() + kUdpConfirmDelay,
                                    [&] { return stop_.requested(); });
            continue;
        }

        maybe_report_drops(false);

        std::uint64_t begin = 0;
        std::uint64_t end = 0;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            if (ring_.size() == 0) {
                progress_.notify_all();
                if (stop_.requested()) {
                    return;
                }
                sender_idle_ = true;
                // Wake for new records, stop, the next periodic drop report, or the UDP check.
                auto wake_at = Clock::now() + config_.drop_report_interval;
                if (udp_confirm_due) {
                    wake_at = std::min(wake_at, udp_.first_datagram_at() + kUdpConfirmDelay);
                }
                wake_sender_.wait_until(lock, wake_at,
                                        [&] { return ring_.size() > 0 || stop_.requested(); });
                sender_idle_ = false;
                continue;
            }
            begin = ring_.head();
            end = std::min(ring_.tail(), begin + kMaxBatch);
        }
        const std::uint64_t done = send_batch(begin, end);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ring_.pop_until(done);
        }
        progress_.notify_all();
    }
}

void GraylogSink::finish() noexcept {
    std::uint64_t leftover = 0;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        leftover = ring_.size();
        ring_.pop_until(ring_.tail());
    }
    dropped_.fetch_add(leftover, std::memory_order_relaxed);
    if (link_ready()) {
        try {
            maybe_report_drops(true);
        } catch (const std::exception&) {
            failed_.fetch_add(1, std::memory_order_relaxed);
        }
    }
    settle_unconfirmed();
    udp_.close();
    tcp_.close();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        link_ = Link::Down;
    }
    progress_.notify_all();
}

bool GraylogSink::encode(const sdk::LogRecord& record, std::string& out) noexcept {
    try {
        encoder_.encode(record, out);
        return true;
    } catch (const std::exception&) {
        return false;  // out of memory for this record
    }
}

std::uint64_t GraylogSink::send_batch(std::uint64_t begin, std::uint64_t end) {
    return config_.transport == Transport::Udp ? send_batch_udp(begin, end)
                                               : send_batch_tcp(begin, end);
}

std::uint64_t GraylogSink::send_batch_udp(std::uint64_t begin, std::uint64_t end) {
    for (std::uint64_t position = begin; position < end; ++position) {
        if (stop_.requested() && Clock::now() >= stop_.deadline()) {
            return position;
        }
        RecordSlot& slot = ring_.at(position);
        if (!encode(slot.view(), message_)) {
            dropped_.fetch_add(1, std::memory_order_relaxed);
            continue;
        }
        const auto outcome =
            udp_.send(message_, stop_, stop_.bound(Clock::now() + config_.send_timeout));
        slot.trim(ring_.keep_bytes());
        if (outcome == SendOutcome::Sent) {
            if (udp_confirmed_) {
                written_.fetch_add(1, std::memory_order_relaxed);
                backoff_ = config_.reconnect_min;  // sending works: the next failure retries soon
                continue;
            }
            ++udp_unconfirmed_;  // written or dropped once the verdict is in
            if (udp_probing_ && !stop_.requested()) {
                return position + 1;
            }
            continue;
        }
        // UDP has no retry: a message over 128 chunks or refused by the socket is lost.
        dropped_.fetch_add(1, std::memory_order_relaxed);
        if (outcome == SendOutcome::TooLarge) {
            // Says nothing about Graylog's reachability: the link state stays as it is.
            std::lock_guard<std::mutex> lock(mutex_);
            last_error_ = "graylog: a record of " + std::to_string(message_.size()) +
                          " bytes needs more than 128 chunks of chunk_size; dropped";
            continue;
        }
        // The socket refused it (port unreachable: Graylog down; no route; send timeout): the
        // address may be stale too. Keep the rest buffered, back off, and look the name up
        // again before the next datagram.
        udp_link_failed();
        return position + 1;
    }
    return end;
}

std::uint64_t GraylogSink::send_batch_tcp(std::uint64_t begin, std::uint64_t end) {
    // Frames of several records go out in one send. frame_ends_[i] is where record i's frame
    // ends in frames_; a record that could not be encoded adds an empty frame.
    std::uint64_t group_begin = begin;
    frames_.clear();
    frame_ends_.clear();
    for (std::uint64_t position = begin; position < end; ++position) {
        if (encode(ring_.at(position).view(), message_)) {
            frames_ += message_;
            frames_.push_back('\0');  // GELF TCP frame delimiter
        }
        frame_ends_.push_back(frames_.size());
        if (frames_.size() < kTcpSendBytes && position + 1 != end) {
            continue;
        }
        if (stop_.requested() && Clock::now() >= stop_.deadline()) {
            return group_begin;
        }
        const auto deadline = stop_.bound(Clock::now() + config_.send_timeout);
        const std::size_t sent = frames_.empty() ? 0 : tcp_.send(frames_, stop_, deadline);
        // Records whose whole frame reached the kernel are done; the rest are sent again after
        // reconnecting (Graylog discards the cut frame with the old connection).
        std::size_t complete = 0;
        std::size_t previous_end = 0;
        std::uint64_t sent_records = 0;
        std::uint64_t unencodable = 0;
        while (complete < frame_ends_.size() && frame_ends_[complete] <= sent) {
            if (frame_ends_[complete] > previous_end) {
                ++sent_records;
            } else {
                ++unencodable;
            }
            previous_end = frame_ends_[complete];
            ring_.at(group_begin + complete).trim(ring_.keep_bytes());
            ++complete;
        }
        written_.fetch_add(sent_records, std::memory_order_relaxed);
        dropped_.fetch_add(unencodable, std::memory_order_relaxed);
        if (sent < frames_.size()) {
            failed_.fetch_add(1, std::memory_order_relaxed);
            set_link(Link::Down, "graylog: " + endpoint_.text + ": " + tcp_.last_error());
            schedule_reconnect();
            return group_begin + complete;
        }
        backoff_ = config_.reconnect_min;  // a healthy connection resets the back-off
        group_begin = position + 1;
        frames_.clear();
        frame_ends_.clear();
    }
    return end;
}

void GraylogSink::maybe_report_drops(bool now_or_never) {
    const std::uint64_t dropped = dropped_.load(std::memory_order_relaxed);
    if (dropped == dropped_reported_ || !link_ready()) {
        return;
    }
    if (config_.transport == Transport::Udp && !udp_confirmed_ && !now_or_never) {
        return;  // Graylog may still be down: the report would vanish (sent on confirmation)
    }
    const auto now = Clock::now();
    if (!now_or_never && now - last_report_ < config_.drop_report_interval) {
        return;
    }
    const std::string fields = "{\"dropped\":" + std::to_string(dropped - dropped_reported_) +
                               ",\"dropped_total\":" + std::to_string(dropped) +
                               ",\"buffer_records\":" + std::to_string(config_.buffer_records) +
                               ",\"max_buffer_bytes\":" + std::to_string(config_.max_buffer_bytes) +
                               "}";
    sdk::LogRecord record;
    record.level = sdk::Level::Warn;
    record.event = "graylog records dropped";
    record.logger = report_logger_;
    record.time = std::chrono::system_clock::now();
    record.fields_json = fields;
    if (!encode(record, message_)) {
        return;
    }
    bool sent = false;
    const auto deadline = stop_.bound(now + config_.send_timeout);
    if (config_.transport == Transport::Udp) {
        sent = udp_.send(message_, stop_, deadline) == SendOutcome::Sent;
        if (!sent) {
            last_report_ = now;
            udp_link_failed();  // counts the failure
            return;
        }
    } else {
        message_.push_back('\0');
        sent = tcp_.send(message_, stop_, deadline) == message_.size();
        if (!sent) {
            set_link(Link::Down, "graylog: " + endpoint_.text + ": " + tcp_.last_error());
            schedule_reconnect();
        }
    }
    last_report_ = now;
    if (!sent) {
        failed_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    dropped_reported_ = dropped;
    reports_sent_.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace synergos::plugins::graylog
