// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file client.hpp
/// A small synchronous HTTP/1.1 client (Boost.Beast) with connect and request timeouts and
/// keep-alive connection reuse per host:port, optionally over TLS (server verified against a CA,
/// optional client certificate). Used by the TTP to call workers (bodies of several MB) and by
/// the CLI. Beast stays out of this header (pimpl).

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <synergos/core/http/message.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::core::http {

/// TLS towards servers; off unless `enabled`.
struct ClientTlsOptions {
    bool enabled = false;     ///< https: every connection of this client uses TLS
    std::string ca_file;      ///< PEM CA bundle to trust; empty: the system's default paths
    std::string cert_file;    ///< client certificate for mutual TLS (optional)
    std::string key_file;     ///< its private key
    bool verify_host = true;  ///< the certificate must name the host (DNS name or IP address)
};

struct ClientOptions {
    std::chrono::milliseconds connect_timeout{5000};      ///< resolve + TCP connect
    std::size_t max_response_bytes = 1024 * 1024 * 1024;  ///< larger bodies fail the request
    std::size_t max_idle_per_host = 8;  ///< idle keep-alive connections kept per host:port
    /// An idle connection older than this is closed rather than reused: below the servers'
    /// keep-alive (30 s), so a request never races the server closing it.
    std::chrono::milliseconds max_idle_time{15000};
    std::string user_agent = "synergos";
    ClientTlsOptions tls;
    /// Sent with every request (e.g. `Authorization: Bearer ...`); a request's own headers win.
    std::vector<std::pair<std::string, std::string>> default_headers;
};

/// A request body in pieces, sent in order without being joined (e.g. a safetensors header and
/// then each tensor's bytes straight from the model). Borrowed for the call.
using BodyParts = std::vector<std::span<const char>>;

/// Receives a response as it arrives, so that a large body lands in its final buffers (no
/// growing string, no second copy). Called on the requesting thread, in this order: `on_head`
/// once, then `next_buffer`/`wrote` until the body is complete, then `on_end`. An error from
/// any of them ends the request with that error and closes the connection.
class ResponseSink {
public:
    virtual ~ResponseSink() = default;
    /// Status, content type and headers (`body` empty); `content_length` is absent when the
    /// body is chunked.
    virtual sdk::Status on_head(const Response& head,
                                std::optional<std::uint64_t> content_length) = 0;
    /// Where the next body bytes go: at least one byte, written from its front.
    virtual std::span<char> next_buffer() = 0;
    /// `n` bytes were written to the front of the last buffer.
    virtual sdk::Status wrote(std::size_t n) = 0;
    /// The whole body arrived.
    virtual sdk::Status on_end() = 0;
    /// `n` more bytes of the request body left for the peer (called while it is written).
    virtual void on_body_progress(std::size_t /*n*/) noexcept {}
    /// The request was written (or its write failed); called before the response is read.
    virtual void on_sent() noexcept {}
    /// The request is about to be sent again on a fresh connection (after `on_sent`, before any
    /// `on_head`). False: do not; the call fails with the first attempt's error.
    virtual bool on_retry() noexcept {
        return true;
    }
    /// Asked every 100 ms while the request waits on the network (connecting, writing,
    /// reading). True: the caller gave up (its job was cancelled, its process is stopping); the
    /// connection is closed and the request ends with Cancelled. A request answered within
    /// 100 ms ends normally whatever this says.
    virtual bool abandoned() noexcept {
        return false;
    }
};

/// For sinks: makes room in `buf` after its `filled` bytes, towards `end` (a declared length,
/// or a limit), touching at most 1 MiB ahead of the data, so a peer that declares a large
/// body and sends little commits little. The capacity doubles, so copies stay linear.
template <class Buffer>
void grow_body_buffer(Buffer& buf, std::size_t filled, std::size_t end) {
    constexpr std::size_t kAhead = std::size_t{1} << 20;
    const std::size_t want = std::min(end, filled + kAhead);
    if (want > buf.capacity()) {
        buf.reserve(std::min(end, std::max(want, buf.capacity() * 2)));
    }
    buf.resize(want);
}

/// Threading: `request` may be called from many threads at once; each call uses its own
/// connection (taken from the idle pool or newly opened).
class HttpClient {
public:
    /// A bad TLS file does not throw: every request then fails with InvalidArgument naming it.
    explicit HttpClient(ClientOptions options = {});
    ~HttpClient();
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    /// Sends one request and reads the whole response within `timeout` (connecting counts
    /// against `connect_timeout` as well, name lookup included). Errors: Unavailable (cannot
    /// resolve or connect, peer closed), Timeout, ResourceExhausted (response too large),
    /// InvalidArgument (bad method). Idle connections are checked before reuse; a failure on a
    /// reused one that the peer had closed is retried once on a fresh connection, but only for
    /// GET, HEAD, PUT, DELETE and OPTIONS, or when no byte of the request was sent, and never
    /// after a timeout: a POST the server may have run is not run twice. Interim 1xx answers
    /// (but 101) are skipped. Any final HTTP status is a success at this level.
    sdk::Result<Response> request(
        std::string_view method, const std::string& host, std::uint16_t port, std::string_view path,
        std::string_view body = {}, std::string_view content_type = "application/json",
        std::chrono::milliseconds timeout = std::chrono::seconds(30),
        const std::vector<std::pair<std::string, std::string>>& headers = {});

    /// As `request`, with the body sent from `body` (its pieces in order) and the response
    /// handed to `sink` as it arrives. A body of known length is read from the socket straight
    /// into the sink's buffers. The retry on a stale idle connection happens only before
    /// `on_head`. Errors: those of `request`, the sink's, or Cancelled (`sink.abandoned()`).
    sdk::Status request_streaming(
        std::string_view method, const std::string& host, std::uint16_t port, std::string_view path,
        const BodyParts& body, std::string_view content_type, std::chrono::milliseconds timeout,
        ResponseSink& sink, const std::vector<std::pair<std::string, std::string>>& headers = {});

    /// Idle connections currently pooled (for tests).
    std::size_t idle_connections() const;
    /// Connections opened since construction (for tests: shows reuse).
    std::size_t connections_opened() const noexcept;

private:
    class Impl;
    std::unique_ptr<Impl> impl_;
};

namespace detail {

/// Resolves a host name to numeric addresses (IPv4 or IPv6 text); blocking, called on a
/// lookup thread of its own.
using ResolveFn = std::function<sdk::Result<std::vector<std::string>>(const std::string& host)>;
/// Replaces the name lookup of every client (tests: a lookup that hangs); empty restores
/// getaddrinfo.
void set_resolve_for_testing(ResolveFn resolve);

}  // namespace detail

}  // namespace synergos::core::http
