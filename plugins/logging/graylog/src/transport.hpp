// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file transport.hpp
/// GELF transports: UDP (optionally compressed, chunked past one datagram) and TCP (null-byte
/// delimited, uncompressed). Sockets are non-blocking and every wait is a poll() bounded by a
/// deadline, which a stop request can shorten.

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <netdb.h>
#include <zlib.h>

#include <synergos/sdk/status.hpp>

namespace synergos::plugins::graylog {

using Clock = std::chrono::steady_clock;

/// Compression of UDP messages.
enum class Compression : std::uint8_t { None = 1, Zlib, Gzip };

/// Size of a GELF chunk header: magic 0x1e 0x0f, 8-byte message id, sequence number, count.
inline constexpr std::size_t kChunkHeaderSize = 12;
/// GELF allows at most 128 chunks per message; Graylog discards larger messages.
inline constexpr std::size_t kMaxChunks = 128;
/// Largest UDP payload over IPv4.
inline constexpr std::size_t kMaxDatagram = 65507;

/// Writes the 12-byte chunk header for chunk `sequence` (0-based) of `count`.
void write_chunk_header(unsigned char* out, std::uint64_t message_id, std::uint8_t sequence,
                        std::uint8_t count);

/// Number of datagrams needed for `size` bytes with `chunk_size` bytes of data per chunk
/// (1 = sent as a plain datagram without a chunk header).
std::size_t chunk_count(std::size_t size, std::size_t chunk_size);

/// zlib or gzip deflate with reused streams.
/// Threading: not synchronised.
class Compressor {
public:
    explicit Compressor(Compression mode) : mode_(mode) {}
    Compressor(const Compressor&) = delete;
    Compressor& operator=(const Compressor&) = delete;
    ~Compressor();

    /// Replaces `out` with the compressed `in`. False on a zlib failure (out of memory).
    bool compress(std::string_view in, std::string& out);

private:
    struct Stream {
        z_stream z{};
        bool initialised = false;
    };

    Compression mode_;
    // Resetting a stream clears its hash table, which costs more than compressing a typical
    // record: small messages use a stream with a small hash.
    Stream small_;
    Stream large_;
};

/// Lets `stop()` interrupt the sender thread's polls, and bounds every later wait by the stop
/// deadline. Threading: `request` from any thread; `wait` from the sender thread.
class StopSignal {
public:
    StopSignal() = default;
    StopSignal(const StopSignal&) = delete;
    StopSignal& operator=(const StopSignal&) = delete;
    ~StopSignal();

    /// Creates the eventfd. The error says why.
    sdk::Status open();
    /// Asks the sender to finish by `deadline`; wakes a poll in progress.
    void request(Clock::time_point deadline) noexcept;
    bool requested() const noexcept { return requested_.load(std::memory_order_acquire); }
    Clock::time_point deadline() const noexcept;
    /// `deadline`, shortened to the stop deadline once a stop was requested.
    Clock::time_point bound(Clock::time_point deadline) const noexcept;
    /// Waits until `fd` reports `events`, or the (bounded) deadline passes.
    /// Returns 1 when ready, 0 on timeout, -1 on a poll error (errno kept).
    int wait(int fd, short events, Clock::time_point deadline) const noexcept;

private:
    int event_fd_ = -1;
    std::atomic<bool> requested_{false};
    std::atomic<std::int64_t> deadline_ns_{0};
};

/// A resolved socket address.
struct Endpoint {
    sockaddr_storage address{};
    socklen_t length = 0;
    std::string text;  ///< "host:port" for messages
};

/// Resolves `host` (name or IP literal) once, blocking. The error names host and port.
sdk::Result<Endpoint> resolve_endpoint(const std::string& host, int port, bool tcp);

/// Resolves one host name again and again without ever blocking its caller past a deadline: the
/// lookup runs in glibc's resolver threads (getaddrinfo_a), so a slow DNS server cannot hold up
/// the sender thread or `stop()`. A lookup that outlives one call carries on, and a later call
/// collects its answer instead of starting another (at most one lookup is in flight).
/// Threading: not synchronised; one thread at a time (start, then the sender thread).
class Resolver {
public:
    Resolver(std::string host, int port, bool tcp);
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;
    ~Resolver();

    /// Starts a lookup unless one is in flight, and waits for its answer until `deadline`
    /// (shortened by a stop request; a deadline in the past only collects a finished answer).
    /// Errors name host and port: Unavailable when the name does not resolve, Timeout while the
    /// lookup is still running.
    sdk::Result<Endpoint> resolve(const StopSignal& stop, Clock::time_point deadline);
    /// Lookups started so far.
    std::uint64_t lookups() const noexcept { return lookups_.load(std::memory_order_relaxed); }

private:
    struct Lookup;

    std::string host_;
    std::string service_;
    std::string text_;
    bool tcp_;
    Lookup* pending_ = nullptr;  // owned; leaked on purpose if glibc still uses it at destruction
    std::atomic<std::uint64_t> lookups_{0};  // read by other threads for stats
};

/// What became of one send.
enum class SendOutcome : std::uint8_t { Sent = 1, TooLarge, Failed };

/// GELF over UDP. The socket is connected to the endpoint, so the kernel reports an ICMP error
/// for an earlier datagram (port unreachable: nothing listens) as ECONNREFUSED on a later send
/// or in `take_error()`; an unconnected socket never reports them. Best effort: a network that
/// drops ICMP, or a host that is down, still shows no error.
/// Threading: sender thread only.
class UdpSender {
public:
    UdpSender(std::size_t chunk_size, Compression compression);
    UdpSender(const UdpSender&) = delete;
    UdpSender& operator=(const UdpSender&) = delete;
    ~UdpSender();

    /// Creates the socket and connects it to `endpoint`. The error names the endpoint.
    sdk::Status open(const Endpoint& endpoint);
    void close();
    bool is_open() const noexcept { return fd_ >= 0; }

    /// Compresses, chunks and sends one message. `TooLarge` when it needs more than 128 chunks;
    /// `Failed` with `last_error()` set when the socket refuses it (ECONNREFUSED: Graylog's
    /// port was unreachable for an earlier datagram).
    SendOutcome send(std::string_view message, const StopSignal& stop, Clock::time_point deadline);
    const std::string& last_error() const noexcept { return last_error_; }

    /// Datagrams accepted by the socket since `open`, and when the first of them was.
    std::uint64_t datagrams() const noexcept { return datagrams_; }
    Clock::time_point first_datagram_at() const noexcept { return first_datagram_at_; }
    /// Collects (and clears) an error the kernel recorded for an earlier datagram: false with
    /// `last_error()` set when there was one (the socket stays open), true when there was none.
    bool check_error();

private:
    bool send_datagram(const unsigned char* header, std::size_t header_size, const char* data,
                       std::size_t size, const StopSignal& stop, Clock::time_point deadline);

    std::size_t chunk_size_;
    Compression compression_;
    Compressor compressor_;
    Endpoint endpoint_;
    int fd_ = -1;
    std::string compressed_;
    std::uint64_t id_state_;
    std::string last_error_;
    std::uint64_t datagrams_ = 0;
    Clock::time_point first_datagram_at_{};
};

/// GELF over TCP (each message followed by a NUL byte). Threading: sender thread only.
class TcpSender {
public:
    TcpSender() = default;
    TcpSender(const TcpSender&) = delete;
    TcpSender& operator=(const TcpSender&) = delete;
    ~TcpSender();

    /// Connects with a deadline. The error names the endpoint and the cause.
    sdk::Status connect(const Endpoint& endpoint, const StopSignal& stop,
                        Clock::time_point deadline);
    void close();
    bool is_connected() const noexcept { return fd_ >= 0; }
    /// True when the peer has closed or reset the connection (checked without blocking).
    bool peer_closed();

    /// Sends `frames` (already NUL-delimited). Returns the bytes the kernel accepted; on a
    /// shortfall the connection is closed and `last_error()` says why.
    std::size_t send(std::string_view frames, const StopSignal& stop, Clock::time_point deadline);
    const std::string& last_error() const noexcept { return last_error_; }

private:
    int fd_ = -1;
    std::string last_error_;
};

}  // namespace synergos::plugins::graylog
