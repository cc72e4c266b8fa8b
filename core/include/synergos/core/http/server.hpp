// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file server.hpp
/// The asynchronous HTTP/1.1 server (Boost.Beast): keep-alive; `threads` I/O threads, each running
/// its own event loop with its share of the connections; a pool of `handler_threads` that runs the
/// route handlers that may block (Execution::Pool) while quick handlers run inline on the I/O
/// thread and asynchronous ones (Execution::Async) start there and answer later from any thread
/// (the connect writes: their answer comes back once the store's writer has committed them); a
/// body limit (413), header and body read timeouts, a connection limit (503 past it),
/// `GET /healthz`, `GET /readyz` and `GET /metrics` (Prometheus text; authenticated like the API
/// when tokens are set), HEAD answered as GET without the body, `Expect: 100-continue` answered
/// once the headers pass the checks, an access log line per request, a deadline for
/// asynchronous answers (504 past it), and a graceful stop that lets in-flight requests finish.
/// Optionally TLS (OpenSSL; mutual TLS when a client certificate is required) and bearer tokens
/// (auth.hpp), checked as soon as the headers are in, before any body is read. Error answers
/// sent before the body was read, and the 503 past the connection limit, end with a lingering
/// close (half-close, then drain a bounded amount for a bounded time) so the peer reads the
/// answer instead of a reset. A large body of known length is read from the socket straight
/// into a buffer kept for later requests (`body_buffer_bytes`): no copy through the parser's
/// buffer and no fresh pages per model-sized request. Beast stays out of this header (pimpl).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <synergos/core/http/auth.hpp>
#include <synergos/core/http/metrics.hpp>
#include <synergos/core/http/router.hpp>
#include <synergos/sdk/log.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::core::http {

/// TLS for the server; off while `cert_file` is empty.
struct ServerTlsOptions {
    std::string cert_file;             ///< PEM certificate chain
    std::string key_file;              ///< PEM private key
    std::string ca_file;               ///< PEM CA bundle that client certificates must chain to
    bool require_client_cert = false;  ///< mutual TLS: refuse peers without a trusted cert

    bool enabled() const noexcept {
        return !cert_file.empty();
    }
};

struct ServerOptions {
    std::string host = "127.0.0.1";  ///< address to bind; "0.0.0.0" for every interface
    std::uint16_t port = 5000;       ///< 0: an ephemeral port, read it back with bound_port()
    int threads = 2;                 ///< I/O threads, one event loop each (1-64)
    int handler_threads = 16;        ///< pool for Execution::Pool handlers (1-1024)
    std::size_t body_limit_bytes = 16 * 1024 * 1024;      ///< larger bodies get 413
    std::size_t header_limit_bytes = 16 * 1024;           ///< larger headers get 431
    std::chrono::milliseconds header_timeout{10000};      ///< to receive a request's headers
    std::chrono::milliseconds body_timeout{60000};        ///< to receive its body
    /// Idle time between requests, until the next request's first byte; its headers then have
    /// `header_timeout`.
    std::chrono::milliseconds keep_alive_timeout{30000};
    /// An asynchronous handler (Execution::Async) not answered in this time gets 504; an answer
    /// after that is dropped.
    std::chrono::milliseconds async_timeout{60000};
    std::size_t max_connections = 1024;  ///< open connections; one more gets 503 and is closed
    /// Open connections from one IP address; one more from it gets 503 and is closed, so one
    /// peer holding idle sockets cannot take every place. 0: no limit but max_connections.
    std::size_t max_connections_per_peer = 0;
    std::size_t max_json_depth = 64;     ///< passed to handlers through Request::max_json_depth
    bool access_log = true;              ///< one Info line per request through the logger
    ServerTlsOptions tls;                ///< HTTPS when enabled
    std::vector<BearerToken> tokens;     ///< empty: no authentication (see authorize())
    std::size_t linger_bytes = 4 * 1024 * 1024;      ///< drained after an early error answer
    std::chrono::milliseconds linger_timeout{2000};  ///< at most this long
    /// Request bodies over 64 KiB with a Content-Length are read into buffers the server keeps
    /// for later requests (a fresh model-sized buffer faults in its pages on every request): at
    /// most one per I/O thread, and at most this many bytes in all; 0 keeps none.
    std::size_t body_buffer_bytes = 256 * 1024 * 1024;
    /// Appended to `GET /metrics` after the server's own metrics (see metrics.hpp).
    std::vector<MetricsSource> metrics_sources;
};

/// Threading: start/stop from one owner thread; bound_port/set_ready from any thread.
class HttpServer {
public:
    /// `router` and `logger` must outlive the server.
    HttpServer(ServerOptions options, const Router& router, sdk::Logger& logger);
    ~HttpServer();  ///< stops with a zero deadline if still running
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    /// Validates the options, binds and starts the threads. Fails with a message naming the
    /// option or the address when binding is impossible.
    sdk::Status start();

    /// The port actually bound (useful with port 0); 0 before start.
    std::uint16_t bound_port() const noexcept;

    /// Stops accepting, closes idle connections, lets requests already being read or handled
    /// finish (their responses carry `Connection: close`) until `deadline`, then closes the rest
    /// and joins the threads. Asynchronous handlers are refused (503) once stopping; answers
    /// still pending after the deadline are abandoned (a Responder called later does nothing).
    /// Waits without limit only for Pool handlers already running. Returns true when nothing had
    /// to be cut off.
    bool stop(std::chrono::milliseconds deadline);

    /// `GET /readyz` answers 200 when ready (default after start), 503 otherwise.
    void set_ready(bool ready) noexcept;

    /// Connections currently open (for tests and metrics).
    std::size_t connection_count() const noexcept;

private:
    class Impl;
    std::shared_ptr<Impl> impl_;
};

}  // namespace synergos::core::http
