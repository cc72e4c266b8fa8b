// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/http/client.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <synergos/core/http/auth.hpp>

#include "tls_policy.hpp"

namespace synergos::core::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

/// One keep-alive connection with its own io_context, so a synchronous call can run exactly
/// its own operations with a deadline.
struct Connection {
    net::io_context ioc;
    beast::tcp_stream stream{ioc};
    std::optional<beast::ssl_stream<beast::tcp_stream&>> tls;  ///< over `stream` when https
    /// Reads go as far as the buffer has room: 256 KiB, not Beast's 512-byte minimum, for
    /// model-sized responses.
    beast::flat_buffer buffer = [] {
        beast::flat_buffer b;
        b.reserve(256 * 1024);
        // A peer's chunk extensions or trailers are buffered until their line ends, under
        // neither the header nor the body limit: bounded here.
        b.max_size(1024 * 1024);
        return b;
    }();
    Clock::time_point idle_since;  ///< when it went back to the pool

    /// Runs `f` with the stream requests go through.
    template <class F>
    decltype(auto) with_stream(F&& f) {
        if (tls) {
            return f(*tls);
        }
        return f(stream);
    }
};

/// How often a waiting request asks its sink whether it was abandoned.
constexpr std::chrono::milliseconds kAbandonPoll{100};

/// Runs the connection's pending operations to their end. With a sink, whenever `next_check`
/// has passed (it is the request's own, so a long reply read piece by piece is checked too) it
/// asks whether the request was abandoned: then the socket is closed, the operations end
/// (operation_aborted) and true is returned; the connection must not be reused.
bool run_io(Connection& conn, ResponseSink* sink, Clock::time_point& next_check) {
    conn.ioc.restart();
    if (sink == nullptr) {
        conn.ioc.run();
        return false;
    }
    while (true) {
        if (const auto now = Clock::now(); now >= next_check) {
            next_check = now + kAbandonPoll;
            if (sink->abandoned()) {
                beast::error_code ignored;
                conn.stream.socket().close(ignored);
                conn.ioc.run();  // the aborted handlers, at once
                return true;
            }
        }
        conn.ioc.run_until(next_check);
        if (conn.ioc.stopped()) {
            return false;
        }
    }
}

/// An idle connection still usable: nothing to read (no EOF, no error, no stray bytes). A peer
/// that closed it, or sent something unasked, would make the next request fail after it was
/// sent, when it can no longer be retried safely.
bool idle_connection_usable(Connection& conn) {
    char byte = 0;
    const auto n = ::recv(conn.stream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/// Methods that may be sent twice (RFC 9110 idempotent): a retry cannot run a POST twice.
bool is_idempotent(bhttp::verb verb) {
    return verb == bhttp::verb::get || verb == bhttp::verb::head || verb == bhttp::verb::put ||
           verb == bhttp::verb::delete_ || verb == bhttp::verb::options;
}

/// Name lookups run on detached threads: getaddrinfo cannot be cancelled, and waiting for it
/// (as destroying an Asio resolver does) would outlast any deadline. Bounded, so a DNS outage
/// cannot pile up threads.
constexpr int kMaxLookups = 32;
/// Bytes offered to the socket per write of a request body (it takes what fits its buffer).
constexpr std::size_t kWriteChunk = std::size_t{4} << 20;
std::atomic<int> lookups_in_flight{0};
std::mutex resolve_mutex;
detail::ResolveFn resolve_override;  // guarded by resolve_mutex; empty: getaddrinfo

sdk::Result<std::vector<std::string>> system_resolve(const std::string& host) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    addrinfo* list = nullptr;
    if (const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &list); rc != 0) {
        return sdk::Error{sdk::ErrorCode::Unavailable, ::gai_strerror(rc)};
    }
    std::vector<std::string> out;
    for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
        char text[INET6_ADDRSTRLEN] = {};
        if (ai->ai_family == AF_INET) {
            const auto* a = reinterpret_cast<const sockaddr_in*>(ai->ai_addr);
            if (::inet_ntop(AF_INET, &a->sin_addr, text, sizeof text) != nullptr) {
                out.emplace_back(text);
            }
        } else if (ai->ai_family == AF_INET6) {
            const auto* a = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr);
            if (::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text) != nullptr) {
                out.emplace_back(text);
                if (a->sin6_scope_id != 0) {
                    out.back() += "%" + std::to_string(a->sin6_scope_id);  // link-local
                }
            }
        }
    }
    ::freeaddrinfo(list);
    return out;
}

/// Resolves `host` by `deadline` on a lookup thread of its own; a lookup still running then is
/// left to finish alone (its result goes to the shared state nobody waits for any more).
sdk::Result<std::vector<std::string>> resolve_by(const std::string& host,
                                                 Clock::time_point deadline) {
    struct Lookup {
        std::mutex mutex;
        std::condition_variable done;
        std::optional<sdk::Result<std::vector<std::string>>> result;
    };
    detail::ResolveFn resolve;
    {
        std::lock_guard<std::mutex> lock(resolve_mutex);
        resolve = resolve_override;
    }
    if (!resolve) {
        resolve = system_resolve;
    }
    if (lookups_in_flight.fetch_add(1) >= kMaxLookups) {
        lookups_in_flight.fetch_sub(1);
        return sdk::Error{sdk::ErrorCode::Unavailable,
                          "http: cannot resolve '" + host + "': " + std::to_string(kMaxLookups) +
                              " name lookups are already pending (is DNS answering?)"};
    }
    auto lookup = std::make_shared<Lookup>();
    try {
        std::thread([lookup, resolve = std::move(resolve), host] {
            std::optional<sdk::Result<std::vector<std::string>>> result;
            try {
                result.emplace(resolve(host));
            } catch (const std::exception& e) {
                result.emplace(sdk::Error{sdk::ErrorCode::Unavailable, e.what()});
            }
            lookups_in_flight.fetch_sub(1);
            std::lock_guard<std::mutex> lock(lookup->mutex);
            lookup->result = std::move(result);
            lookup->done.notify_all();
        }).detach();
    } catch (const std::exception& e) {
        lookups_in_flight.fetch_sub(1);
        return sdk::Error{sdk::ErrorCode::Unavailable,
                          "http: cannot resolve '" + host + "': " + e.what()};
    }
    std::unique_lock<std::mutex> lock(lookup->mutex);
    if (!lookup->done.wait_until(lock, deadline, [&] { return lookup->result.has_value(); })) {
        return sdk::Error{sdk::ErrorCode::Timeout, "http: resolving '" + host + "' timed out"};
    }
    if (!*lookup->result) {
        return sdk::Error{sdk::ErrorCode::Unavailable, "http: cannot resolve '" + host +
                                                           "': " + lookup->result->error().message};
    }
    return std::move(**lookup->result);
}

bool is_stale_connection_error(const beast::error_code& ec) {
    return ec == bhttp::error::end_of_stream || ec == net::error::eof ||
           ec == net::error::connection_reset || ec == net::error::broken_pipe ||
           ec == net::error::connection_aborted || ec == net::ssl::error::stream_truncated;
}

/// The TLS context of a client, or why it cannot be built (naming the option and file).
std::shared_ptr<net::ssl::context> make_tls_context(const ClientTlsOptions& t, std::string& error) {
    if (!t.enabled) {
        return nullptr;
    }
    auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
    beast::error_code ec;
    ctx->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                         net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                         net::ssl::context::no_tlsv1_1,
                     ec);
    if (const std::string policy = detail::apply_tls_policy(*ctx); !policy.empty()) {
        error = "http: " + policy;
        return nullptr;
    }
    if (t.ca_file.empty()) {
        ctx->set_default_verify_paths(ec);
    } else {
        ctx->load_verify_file(t.ca_file, ec);
        if (ec) {
            error = "http: TLS option 'ca_file': cannot use '" + t.ca_file + "': " + ec.message();
            return nullptr;
        }
    }
    if (!t.cert_file.empty() || !t.key_file.empty()) {
        if (t.cert_file.empty() || t.key_file.empty()) {
            error = "http: TLS options 'cert_file' and 'key_file' go together";
            return nullptr;
        }
        ctx->use_certificate_chain_file(t.cert_file, ec);
        if (ec) {
            error =
                "http: TLS option 'cert_file': cannot use '" + t.cert_file + "': " + ec.message();
            return nullptr;
        }
        ctx->use_private_key_file(t.key_file, net::ssl::context::pem, ec);
        if (ec) {
            error = "http: TLS option 'key_file': cannot use '" + t.key_file + "': " + ec.message();
            return nullptr;
        }
    }
    ctx->set_verify_mode(net::ssl::verify_peer, ec);
    return ctx;
}

}  // namespace

class HttpClient::Impl {
public:
    explicit Impl(ClientOptions options) : options_(std::move(options)) {
        tls_ = make_tls_context(options_.tls, tls_error_);
    }

    /// The most recently pooled connection still usable; old or closed ones are dropped.
    std::unique_ptr<Connection> take_idle(const std::string& key) {
        std::vector<std::unique_ptr<Connection>> dropped;  // closed outside the lock
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = idle_.find(key);
        if (it == idle_.end()) {
            return nullptr;
        }
        const auto now = Clock::now();
        while (!it->second.empty()) {
            auto conn = std::move(it->second.back());
            it->second.pop_back();
            if (now - conn->idle_since < options_.max_idle_time && idle_connection_usable(*conn)) {
                return conn;
            }
            dropped.push_back(std::move(conn));
        }
        return nullptr;
    }

    void give_back(const std::string& key, std::unique_ptr<Connection> conn) {
        std::lock_guard<std::mutex> lock(mutex_);
        auto& pool = idle_[key];
        if (pool.size() < options_.max_idle_per_host) {
            conn->idle_since = Clock::now();
            pool.push_back(std::move(conn));
        }
    }

    /// `sink` (optional): connecting stops when it says the request was abandoned, asked
    /// whenever `next_check` (the request's) has passed.
    sdk::Result<std::unique_ptr<Connection>> connect(const std::string& host, std::uint16_t port,
                                                     Clock::time_point deadline, ResponseSink* sink,
                                                     Clock::time_point& next_check) {
        auto conn = std::make_unique<Connection>();
        const auto connect_deadline = std::min(deadline, Clock::now() + options_.connect_timeout);
        beast::error_code ec;
        std::vector<tcp::endpoint> endpoints;
        const auto address = net::ip::make_address(host, ec);
        if (!ec) {
            endpoints.emplace_back(address, port);
        } else {
            // Not an Asio resolver: destroying one joins its thread, blocked in getaddrinfo
            // for as long as the system's DNS timeouts, whatever our deadline.
            auto addresses = resolve_by(host, connect_deadline);
            if (!addresses) {
                return addresses.error();
            }
            for (const auto& text : *addresses) {
                const auto resolved = net::ip::make_address(text, ec);
                if (!ec) {
                    endpoints.emplace_back(resolved, port);
                }
            }
            if (endpoints.empty()) {
                return sdk::Error{sdk::ErrorCode::Unavailable,
                                  "http: cannot resolve '" + host + "': no address"};
            }
        }
        conn->stream.expires_at(connect_deadline);
        ec = {};
        conn->stream.async_connect(endpoints,
                                   [&](beast::error_code cec, const tcp::endpoint&) { ec = cec; });
        if (run_io(*conn, sink, next_check)) {
            return sdk::Error{sdk::ErrorCode::Cancelled,
                              "http: connecting to " + host + ":" + std::to_string(port) + " stopped by its caller"};
        }
        if (ec) {
            const auto code =
                ec == beast::error::timeout ? sdk::ErrorCode::Timeout : sdk::ErrorCode::Unavailable;
            return sdk::Error{code, "http: cannot connect to " + host + ":" + std::to_string(port) +
                                        ": " + ec.message()};
        }
        conn->stream.socket().set_option(tcp::no_delay(true), ec);
        if (tls_) {
            conn->tls.emplace(conn->stream, *tls_);
            // SNI for a name; the certificate must name the host we asked for.
            if (net::ip::make_address(host, ec), ec) {
                SSL_set_tlsext_host_name(conn->tls->native_handle(), host.c_str());
            }
            if (options_.tls.verify_host) {
                conn->tls->set_verify_callback(net::ssl::host_name_verification(host), ec);
            }
            conn->stream.expires_at(deadline);
            ec = {};
            conn->tls->async_handshake(net::ssl::stream_base::client,
                                       [&](beast::error_code hec) { ec = hec; });
            if (run_io(*conn, sink, next_check)) {
                return sdk::Error{sdk::ErrorCode::Cancelled, "http: TLS handshake with " + host + ":" +
                                                                 std::to_string(port) + " stopped by its caller"};
            }
            if (ec) {
                const auto code = ec == beast::error::timeout ? sdk::ErrorCode::Timeout
                                                              : sdk::ErrorCode::Unavailable;
                return sdk::Error{code, "http: TLS handshake with " + host + ":" +
                                            std::to_string(port) + " failed: " + ec.message()};
            }
        }
        ++opened_;
        return conn;
    }

    std::shared_ptr<net::ssl::context> tls_;
    std::string tls_error_;
    ClientOptions options_;
    mutable std::mutex mutex_;
    std::map<std::string, std::vector<std::unique_ptr<Connection>>> idle_;
    std::atomic<std::size_t> opened_{0};
};

HttpClient::HttpClient(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

HttpClient::~HttpClient() = default;

namespace {

/// Collects a body into one string, grown as bytes arrive (grow_body_buffer): a peer declaring
/// a large length and sending nothing commits nothing.
class StringSink final : public ResponseSink {
public:
    explicit StringSink(std::size_t limit) : limit_(limit) {}

    sdk::Status on_head(const Response& head, std::optional<std::uint64_t> length) override {
        response_ = head;
        // Chunked: never past the limit (+1 to detect an excess).
        end_ = length ? static_cast<std::size_t>(*length) : limit_ + 1;
        return sdk::Status::ok();
    }
    std::span<char> next_buffer() override {
        auto& body = response_.body;
        if (filled_ == body.size()) {
            grow_body_buffer(body, filled_, std::max(end_, filled_ + 1));  // at least one byte
        }
        return {body.data() + filled_, body.size() - filled_};
    }
    sdk::Status wrote(std::size_t n) override {
        filled_ += n;
        return sdk::Status::ok();
    }
    sdk::Status on_end() override {
        response_.body.resize(filled_);
        return sdk::Status::ok();
    }
    Response take() {
        return std::move(response_);
    }

private:
    std::size_t limit_;
    Response response_;
    std::size_t end_ = 0;  ///< the declared length, or the limit + 1
    std::size_t filled_ = 0;
};

}  // namespace

sdk::Result<Response> HttpClient::request(
    std::string_view method, const std::string& host, std::uint16_t port, std::string_view path,
    std::string_view body, std::string_view content_type, std::chrono::milliseconds timeout,
    const std::vector<std::pair<std::string, std::string>>& headers) {
    StringSink sink(impl_->options_.max_response_bytes);
    BodyParts parts;
    if (!body.empty()) {
        parts.emplace_back(body.data(), body.size());
    }
    if (auto st = request_streaming(method, host, port, path, parts, content_type, timeout, sink,
                                    headers);
        !st) {
        return st.error();
    }
    return sink.take();
}

sdk::Status HttpClient::request_streaming(
    std::string_view method, const std::string& host, std::uint16_t port, std::string_view path,
    const BodyParts& body, std::string_view content_type, std::chrono::milliseconds timeout,
    ResponseSink& sink, const std::vector<std::pair<std::string, std::string>>& headers) {
    const auto verb = bhttp::string_to_verb(beast::string_view(method.data(), method.size()));
    if (verb == bhttp::verb::unknown) {
        return {sdk::ErrorCode::InvalidArgument,
                "http: unknown method '" + std::string(method) + "'"};
    }
    if (path.empty() || path.front() != '/') {
        return {sdk::ErrorCode::InvalidArgument,
                "http: path must start with '/': '" + std::string(path) + "'"};
    }
    if (!impl_->tls_error_.empty()) {
        return {sdk::ErrorCode::InvalidArgument, impl_->tls_error_};
    }
    const std::string key = host + ":" + std::to_string(port);
    const std::string where =
        std::string(method) + (impl_->tls_ ? " https://" : " http://") + key + std::string(path);
    if (!impl_->tls_ && !is_loopback_host(host)) {
        // Anyone on the path could read the token and act as this client (the TTP towards its
        // workers); the client commands refuse the same.
        for (const auto& [name, value] : impl_->options_.default_headers) {
            if (beast::iequals(name, "authorization")) {
                return {sdk::ErrorCode::PermissionDenied,
                        "http: " + where +
                            ": a token is sent over TLS only, or to this machine (127.0.0.1, localhost): "
                            "turn TLS on (worker_client.tls)"};
            }
        }
    }
    const auto deadline = Clock::now() + timeout;
    // Whether the caller abandoned the request is first asked after kAbandonPoll: a request
    // answered sooner ends normally.
    auto next_check = Clock::now() + kAbandonPoll;
    const std::size_t limit = impl_->options_.max_response_bytes;
    std::uint64_t body_bytes = 0;
    // The body is sent from the caller's memory: a copy per worker would hold one model per
    // worker for the whole round.
    std::vector<net::const_buffer> buffers;
    buffers.reserve(body.size());
    for (const auto& part : body) {
        body_bytes += part.size();
        if (!part.empty()) {
            buffers.emplace_back(part.data(), part.size());
        }
    }
    const auto stopped = [&]() -> sdk::Status {
        return {sdk::ErrorCode::Cancelled, "http: " + where + ": stopped by its caller"};
    };
    auto failure = [&](const beast::error_code& ec) -> sdk::Status {
        if (ec == beast::error::timeout) {
            return {sdk::ErrorCode::Timeout, "http: " + where + " timed out after " +
                                                 std::to_string(timeout.count()) + " ms"};
        }
        if (ec == bhttp::error::body_limit) {
            return {sdk::ErrorCode::ResourceExhausted,
                    "http: " + where + ": response exceeds " + std::to_string(limit) + " bytes"};
        }
        return {sdk::ErrorCode::Unavailable, "http: " + where + ": " + ec.message()};
    };

    for (int attempt = 0; attempt < 2; ++attempt) {
        auto conn = impl_->take_idle(key);
        const bool reused = conn != nullptr;
        if (!conn) {
            auto fresh = impl_->connect(host, port, deadline, &sink, next_check);
            if (!fresh) {
                return fresh.error();
            }
            conn = std::move(*fresh);
        }
        bhttp::request<bhttp::empty_body> req{verb, beast::string_view(path.data(), path.size()),
                                              11};
        // An IPv6 literal goes in brackets (RFC 9110 7.2); "::1:5000" is no host and port.
        req.set(bhttp::field::host,
                host.find(':') == std::string::npos ? key : "[" + host + "]:" + std::to_string(port));
        req.set(bhttp::field::user_agent, impl_->options_.user_agent);
        const bool has_body =
            body_bytes > 0 || verb == bhttp::verb::post || verb == bhttp::verb::put;
        if (has_body) {
            req.set(bhttp::field::content_type,
                    beast::string_view(content_type.data(), content_type.size()));
        }
        for (const auto& [name, value] : impl_->options_.default_headers) {
            req.set(name, value);
        }
        for (const auto& [name, value] : headers) {
            req.set(name, value);
        }
        if (has_body) {
            req.content_length(body_bytes);
        }
        req.keep_alive(true);
        bhttp::request_serializer<bhttp::empty_body> serializer{req};

        // buffer_body: a chunked or unframed body is read into the sink's buffers by the parser.
        // One per response: interim 1xx answers each take a fresh one.
        std::optional<bhttp::response_parser<bhttp::buffer_body>> parser;
        auto new_parser = [&] {
            parser.emplace();
            parser->body_limit(limit);
            parser->skip(verb == bhttp::verb::head);  // a HEAD answer's Content-Length has no body
        };
        new_parser();
        beast::error_code write_ec;
        beast::error_code read_ec;
        std::size_t head_sent = 0;  // bytes of the request head the socket took
        std::size_t body_reported = 0;  // bytes of the body told to sink.on_body_progress
        const auto report_body = [&](std::size_t total) {
            if (total > body_reported) {
                sink.on_body_progress(total - body_reported);
                body_reported = total;
            }
        };
        conn->stream.expires_at(deadline);
        conn->with_stream([&](auto& stream) {
            auto read_head = [&] {
                bhttp::async_read_header(
                    stream, conn->buffer, *parser,
                    [&](beast::error_code rec, std::size_t) { read_ec = rec; });
            };
            bhttp::async_write_header(
                stream, serializer, [&, read_head](beast::error_code ec, std::size_t n) {
                    head_sent = n;
                    if (ec) {
                        write_ec = ec;
                        sink.on_sent();
                        read_head();  // a server refusing the request may have answered
                        return;
                    }
                    // Asio's transfer_all writes 64 KiB per call: a model-sized body took
                    // 64 system calls per 4 MB. Each call here offers up to kWriteChunk (over
                    // TLS the stream still writes a record at a time), and what the socket took
                    // is reported, so the sink sees a stalled peer. The condition is not asked
                    // after the last write: the handler reports that one.
                    net::async_write(stream, buffers,
                                     [&](const beast::error_code& wec,
                                         std::size_t total) -> std::size_t {
                                         report_body(total);
                                         return wec ? 0 : kWriteChunk;
                                     },
                                     [&, read_head](beast::error_code bec, std::size_t total) {
                                         report_body(total);
                                         // Even when the write failed (a server refusing a
                                         // large body closes its read side), its answer may
                                         // already be here: read it.
                                         write_ec = bec;
                                         sink.on_sent();
                                         read_head();
                                     });
                });
        });
        if (run_io(*conn, &sink, next_check)) {
            return stopped();
        }
        // Interim answers (100 Continue, 103 Early Hints) come before the real one: Beast
        // completes them as messages, and taking one as final would leave the real answer
        // for the next request on this connection. 101 ends HTTP on the connection: final.
        bool interim = false;
        while (!read_ec && parser->is_header_done() && parser->get().result_int() / 100 == 1 &&
               parser->get().result_int() != 101) {
            interim = true;
            new_parser();
            conn->with_stream([&](auto& stream) {
                bhttp::async_read_header(
                    stream, conn->buffer, *parser,
                    [&](beast::error_code rec, std::size_t) { read_ec = rec; });
            });
            if (run_io(*conn, &sink, next_check)) {
                return stopped();
            }
        }
        if (write_ec && !read_ec && parser->is_header_done()) {
            write_ec = {};  // the server answered early (e.g. 413): that answer counts
        }
        const beast::error_code ec = write_ec ? write_ec : read_ec;
        if (ec) {
            // A reused connection that ends before any answer usually means the server had
            // closed it, but a server that ran the request and then died looks the same: only a
            // request that may run twice is sent again, or one of which no byte left. Never
            // past the deadline.
            const bool unanswered =
                !interim && !parser->got_some() && (write_ec || is_stale_connection_error(read_ec));
            const bool nothing_sent = write_ec && head_sent == 0;
            if (reused && attempt == 0 && unanswered && ec != beast::error::timeout &&
                Clock::now() < deadline && (is_idempotent(verb) || nothing_sent) &&
                sink.on_retry()) {
                continue;  // retry once on a fresh connection
            }
            return failure(ec);
        }

        auto& res = parser->get();
        Response head;
        head.status = static_cast<int>(res.result_int());
        head.content_type = std::string(res[bhttp::field::content_type]);
        for (const auto& field : res) {
            if (field.name() != bhttp::field::content_type) {
                head.headers.emplace_back(std::string(field.name_string()),
                                          std::string(field.value()));
            }
        }
        std::optional<std::uint64_t> length;
        if (parser->is_done()) {
            length = 0;  // no body (204, 304): a Content-Length here describes nothing to read
        } else if (parser->content_length() && !parser->chunked()) {
            length = *parser->content_length();
        }
        if (length && *length > limit) {
            return failure(bhttp::error::body_limit);
        }
        if (auto st = sink.on_head(head, length); !st) {
            return st;
        }
        if (length) {
            // Known length: buffered bytes first, then straight from the socket into the sink.
            std::uint64_t remaining = *length;
            while (remaining > 0 && conn->buffer.size() > 0) {
                const auto dest = sink.next_buffer();
                if (dest.empty()) {
                    return {sdk::ErrorCode::Internal, "http: " + where + ": no room for the body"};
                }
                const auto n = static_cast<std::size_t>(
                    std::min<std::uint64_t>({dest.size(), conn->buffer.size(), remaining}));
                std::memcpy(dest.data(), conn->buffer.data().data(), n);
                conn->buffer.consume(n);
                remaining -= n;
                if (auto st = sink.wrote(n); !st) {
                    return st;
                }
            }
            while (remaining > 0) {
                const auto dest = sink.next_buffer();
                if (dest.empty()) {
                    return {sdk::ErrorCode::Internal, "http: " + where + ": no room for the body"};
                }
                const auto want =
                    static_cast<std::size_t>(std::min<std::uint64_t>(dest.size(), remaining));
                std::size_t got = 0;
                conn->with_stream([&](auto& stream) {
                    stream.async_read_some(net::buffer(dest.data(), want),
                                           [&](beast::error_code rec, std::size_t n) {
                                               read_ec = rec;
                                               got = n;
                                           });
                });
                if (run_io(*conn, &sink, next_check)) {
                    return stopped();
                }
                if (read_ec && got == 0) {
                    return failure(read_ec == net::error::eof ? bhttp::error::partial_message
                                                              : read_ec);
                }
                remaining -= got;
                if (auto st = sink.wrote(got); !st) {
                    return st;
                }
            }
        } else {
            std::uint64_t received = 0;
            while (!parser->is_done()) {
                const auto dest = sink.next_buffer();
                if (dest.empty()) {
                    return {sdk::ErrorCode::Internal, "http: " + where + ": no room for the body"};
                }
                res.body().data = dest.data();
                res.body().size = dest.size();
                res.body().more = true;
                conn->with_stream([&](auto& stream) {
                    bhttp::async_read(stream, conn->buffer, *parser,
                                      [&](beast::error_code rec, std::size_t) { read_ec = rec; });
                });
                if (run_io(*conn, &sink, next_check)) {
                    return stopped();
                }
                if (read_ec == bhttp::error::need_buffer) {
                    read_ec = {};
                }
                if (read_ec) {
                    return failure(read_ec);
                }
                const std::size_t n = dest.size() - res.body().size;
                received += n;
                if (received > limit) {
                    return failure(bhttp::error::body_limit);
                }
                if (auto st = sink.wrote(n); !st) {
                    return st;
                }
            }
        }
        if (auto st = sink.on_end(); !st) {
            return st;
        }
        if (parser->keep_alive() && conn->buffer.size() == 0) {
            impl_->give_back(key, std::move(conn));
        }
        return sdk::Status::ok();
    }
    return {sdk::ErrorCode::Unavailable, "http: " + where + ": connection lost"};
}

std::size_t HttpClient::idle_connections() const {
    std::lock_guard<std::mutex> lock(impl_->mutex_);
    std::size_t n = 0;
    for (const auto& [key, pool] : impl_->idle_) {
        n += pool.size();
    }
    return n;
}

std::size_t HttpClient::connections_opened() const noexcept {
    return impl_->opened_;
}

void detail::set_resolve_for_testing(ResolveFn resolve) {
    std::lock_guard<std::mutex> lock(resolve_mutex);
    resolve_override = std::move(resolve);
}

}  // namespace synergos::core::http
