// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/http/server.hpp>

#include <pthread.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstring>
#include <map>
#include <utility>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>

#include "tls_policy.hpp"

namespace synergos::core::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;

/// Bodies of unknown length above this size are read through a larger buffer (Beast reads as
/// much as fits); bodies of a known length above it are read straight into a BodyBuffers buffer.
constexpr std::size_t kLargeBody = 64 * 1024;
constexpr std::size_t kReadChunk = 256 * 1024;
/// A new body buffer grows this far ahead of the bytes received.
constexpr std::size_t kDirectRead = 1024 * 1024;
/// Read for the first bytes of a keep-alive connection's next request.
constexpr std::size_t kFirstRead = 4096;
/// Rejected connections (at max_connections) lingering at once; past it they are closed at once,
/// so a flood at the limit cannot hold many sockets for linger_timeout.
constexpr std::size_t kMaxLingeringRejections = 64;
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::seconds kPeerWarningInterval{10};

/// The host of a Host header, without the port: "[::1]:5000" -> "::1".
std::string_view host_of(std::string_view authority) {
    if (!authority.empty() && authority.front() == '[') {
        const auto close = authority.find(']');
        return authority.substr(1, close == std::string_view::npos ? authority.npos : close - 1);
    }
    return authority.substr(0, authority.find(':'));
}

/// A name a web page elsewhere could make resolve to this machine (DNS rebinding): a dotted
/// name, not an IP address and not under .localhost. Single-label names (a compose service,
/// "localhost") need a resolver on this machine's side, not the attacker's. `host` lower-case.
bool rebindable(const std::string& host) {
    if (host.find('.') == std::string::npos) {
        return false;
    }
    boost::system::error_code ec;
    (void)net::ip::make_address(host, ec);
    if (!ec) {
        return false;
    }
    constexpr std::string_view kLocal = ".localhost";
    return !(host.size() > kLocal.size() &&
             host.compare(host.size() - kLocal.size(), kLocal.size(), kLocal) == 0);
}

std::string lower(boost::beast::string_view text) {
    std::string out(text);
    for (auto& c : out) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
}

/// The peer's read of a header block may hold at most this much beyond the header limit:
/// Beast keeps buffering a chunk header's extensions or trailers until their line ends, with
/// neither the header nor the body limit applying (a peer sent 64 MiB of them to /healthz).
constexpr std::size_t kReadSlack = kReadChunk + 64 * 1024;
/// The most a GET or HEAD request may carry as a body.
constexpr std::size_t kQueryBodyLimit = 64 * 1024;

/// Buffers for large request bodies, kept for the next requests: a fresh model-sized buffer
/// costs a page fault per 4 KiB on every request (about 1 ms per 4 MB, on the CPU the other
/// connections need), and a worker is sent a model every round. At most `max_count` buffers
/// and `max_bytes` in all are kept; thread-safe.
class BodyBuffers {
public:
    BodyBuffers(std::size_t max_count, std::size_t max_bytes)
        : max_count_(max_count), max_bytes_(max_bytes) {}

    /// A buffer with room for `size` bytes. A kept one comes with the size it had (its pages
    /// are in memory); a new one is empty, its capacity reserved but not yet touched.
    std::string take(std::size_t size) {
        std::string buffer;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            // The smallest kept buffer that holds `size` without reallocating.
            std::size_t best = free_.size();
            for (std::size_t i = 0; i < free_.size(); ++i) {
                if (free_[i].capacity() >= size &&
                    (best == free_.size() || free_[i].capacity() < free_[best].capacity())) {
                    best = i;
                }
            }
            if (best != free_.size()) {
                buffer = std::move(free_[best]);
                free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(best));
                bytes_ -= buffer.capacity();
            }
        }
        buffer.reserve(size);
        return buffer;
    }

    /// Keeps `buffer` for a later take() while the limits allow; frees it otherwise.
    void give(std::string&& buffer) {
        if (buffer.capacity() <= kLargeBody) {
            return;
        }
        std::string dropped;  // freed outside the lock
        std::lock_guard<std::mutex> lock(mutex_);
        if (free_.size() < max_count_ && bytes_ + buffer.capacity() <= max_bytes_) {
            bytes_ += buffer.capacity();
            free_.push_back(std::move(buffer));
        } else {
            dropped = std::move(buffer);
        }
    }

private:
    const std::size_t max_count_;
    const std::size_t max_bytes_;
    std::mutex mutex_;
    std::vector<std::string> free_;
    std::size_t bytes_ = 0;
};

/// A connection refused at max_connections. Its 503 is written, then it closes the way an early
/// error answer does (half-close, then drain at most `limit` bytes, all within `timeout`): a
/// client that already sent its request would otherwise get a reset, which can destroy the 503
/// before the client has read it. `count` tracks the rejections still lingering.
class Rejection : public std::enable_shared_from_this<Rejection> {
public:
    Rejection(tcp::socket socket, std::atomic<std::size_t>& count)
        : stream_(std::move(socket)), count_(count) {
        ++count_;
    }
    ~Rejection() {
        --count_;
    }
    Rejection(const Rejection&) = delete;
    Rejection& operator=(const Rejection&) = delete;

    void start(std::string bytes, std::chrono::milliseconds timeout, std::size_t limit) {
        bytes_ = std::move(bytes);
        limit_ = limit;
        stream_.expires_after(timeout);
        net::async_write(stream_, net::buffer(bytes_),
                         [self = shared_from_this()](beast::error_code ec, std::size_t) {
                             if (!ec) {
                                 self->stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
                             }
                             if (ec) {
                                 self->close();
                                 return;
                             }
                             self->drain();
                         });
    }

private:
    void drain() {
        stream_.async_read_some(net::buffer(buffer_), [self = shared_from_this()](
                                                          beast::error_code ec, std::size_t n) {
            self->drained_ += n;
            if (ec || self->drained_ >= self->limit_) {
                self->close();
                return;
            }
            self->drain();
        });
    }

    void close() {
        beast::error_code ignored;
        stream_.socket().close(ignored);
    }

    beast::tcp_stream stream_;
    std::atomic<std::size_t>& count_;
    std::string bytes_;
    std::array<char, 4096> buffer_{};
    std::size_t limit_ = 0;
    std::size_t drained_ = 0;
};

}  // namespace

class HttpServer::Impl {
public:
    class SessionBase;
    template <bool kTls>
    class Session;

    Impl(ServerOptions options, const Router& router, sdk::Logger& logger)
        : options_(std::move(options)),
          router_(router),
          logger_(logger),
          body_buffers_(static_cast<std::size_t>(std::max(1, options_.threads)),
                        options_.body_buffer_bytes) {
        lifeline_->server = this;
    }

    /// What an asynchronous handler's Responder may reach: it can be called from any thread at
    /// any time, even after the server is gone. While `open` (read under `mutex`) the server and
    /// its event loops exist; stop() closes it before they go away.
    struct Lifeline {
        std::mutex mutex;
        bool open = true;
        Impl* server = nullptr;
    };
    /// One asynchronous request: answered, or timed out (504), whichever comes first.
    struct AsyncCall {
        std::atomic<bool> settled{false};
    };

    sdk::Status start();
    sdk::Status load_tls();
    bool stop(std::chrono::milliseconds deadline);

    /// A warning about a peer's behaviour (a refused handshake, a slow sender, the connection
    /// limit): anyone can cause these without a token, so each event is written at most once per
    /// kPeerWarningInterval, the next line counting the ones left out.
    void peer_warning(const char* event, nlohmann::json fields);

    void do_accept();
    void on_accept(beast::error_code ec, tcp::socket socket);
    void serve(tcp::socket socket);
    /// False when the peer's address holds max_connections_per_peer connections already.
    bool peer_has_room(const tcp::socket& socket);
    /// Answers 503 and closes: at max_connections, or at max_connections_per_peer (`per_peer`).
    void reject(tcp::socket socket, bool per_peer);

    /// Health probes, or the router's match (a handler, or the error to send).
    Match dispatch(Request& request);
    /// The refusal a request gets whatever its body, decided from its method and path alone: no
    /// route (404), a wrong method (405), a malformed %-escape in the path (400). Nothing when a
    /// handler or a probe takes it. HEAD is asked as GET, as dispatch() sees it.
    std::optional<Response> refusal_from_head(Request& request) const;
    void record(int status, Clock::time_point began) noexcept;
    std::string render_metrics() const;
    void log_access(const Request& request, int status, std::size_t bytes, Clock::time_point began);

    void session_opened(std::uint64_t id, const std::shared_ptr<SessionBase>& session,
                        const net::ip::address& peer);
    void session_closed(std::uint64_t id);
    /// Asynchronous handlers not yet answered, for stop() to wait for (until its deadline).
    /// async_started() refuses (false) once the server is stopping.
    bool async_started();
    void async_finished();

    ServerOptions options_;
    const Router& router_;
    sdk::Logger& logger_;
    std::atomic<std::uint16_t> port_{0};
    std::atomic<bool> ready_{true};
    std::atomic<bool> stopping_{false};
    std::atomic<bool> running_{false};
    std::atomic<std::size_t> connections_{0};
    std::atomic<std::uint64_t> next_session_id_{1};
    // GET /metrics: answers by status class (1xx..5xx), their latency from the request's headers
    // being read to the answer handed to the socket, and connections refused at the limit.
    std::array<std::atomic<std::uint64_t>, 5> answered_{};
    LatencyHistogram latency_;
    std::atomic<std::uint64_t> refused_{0};
    struct PeerWarning {
        bool written = false;
        Clock::time_point last{};
        std::size_t left_out = 0;
    };
    std::mutex peer_warnings_mutex_;
    std::map<std::string, PeerWarning> peer_warnings_;  ///< by event: a few fixed texts
    std::atomic<std::size_t> lingering_rejections_{0};
    std::shared_ptr<Lifeline> lifeline_ = std::make_shared<Lifeline>();
    std::optional<net::ssl::context> tls_context_;
    BodyBuffers body_buffers_;

    std::mutex sessions_mutex_;
    std::condition_variable sessions_cv_;
    std::map<std::uint64_t, std::weak_ptr<SessionBase>> sessions_;
    /// Open connections per peer address, and each session's address (under sessions_mutex_).
    std::map<net::ip::address, std::size_t> per_peer_;
    std::map<std::uint64_t, net::ip::address> peer_of_;
    std::size_t async_pending_ = 0;  // guarded by sessions_mutex_
    std::vector<std::thread> threads_;

    // Declared last among what sessions touch: destroyed first, so pending handlers (and the
    // sessions they keep alive) go away while the members above still exist. The handler pool
    // goes before the event loops: a pooled handler posts its response back into one of them.
    std::vector<std::unique_ptr<net::io_context>> contexts_;
    std::vector<net::executor_work_guard<net::io_context::executor_type>> work_;
    std::size_t next_context_ = 0;
    std::optional<net::thread_pool> pool_;
    std::optional<tcp::acceptor> acceptor_;
    std::optional<net::steady_timer> accept_timer_;
};

/// What stop() needs from a connection of either kind.
class HttpServer::Impl::SessionBase {
public:
    virtual ~SessionBase() = default;
    /// Called on stop: an idle connection closes now; a busy one closes after its response.
    virtual void shutdown(bool force) = 0;
};

/// One connection, owned by one event loop (one thread): reads requests one after the other
/// (keep-alive); quick handlers run inline, the others on the pool (see handle()). `kTls`: the
/// bytes go through an OpenSSL stream, after a handshake bounded by the header timeout.
template <bool kTls>
class HttpServer::Impl::Session : public SessionBase,
                                  public std::enable_shared_from_this<Session<kTls>> {
public:
    using Stream =
        std::conditional_t<kTls, beast::ssl_stream<beast::tcp_stream>, beast::tcp_stream>;

    Session(Impl& server, tcp::socket socket, std::uint64_t id)
        : server_(server),
          stream_(make_stream(server, std::move(socket))),
          async_timer_(stream_.get_executor()),
          id_(id) {
        buffer_.max_size(server_.options_.header_limit_bytes + kReadSlack);
        beast::error_code ec;
        const auto peer = tcp_layer().socket().remote_endpoint(ec);
        if (!ec) {
            remote_ = peer.address().to_string() + ":" + std::to_string(peer.port());
        }
    }
    ~Session() override {
        server_.session_closed(id_);
    }

    void run() {
        net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
            if constexpr (kTls) {
                self->handshake();
            } else {
                self->do_read();
            }
        });
    }

    void shutdown(bool force) override {
        net::post(stream_.get_executor(), [self = this->shared_from_this(), force] {
            if (force) {
                self->async_timer_.cancel();  // lets go of a session waiting for an answer
            }
            if (force || !self->busy_) {
                beast::error_code ec;
                self->tcp_layer().socket().shutdown(tcp::socket::shutdown_both, ec);
                self->tcp_layer().socket().close(ec);
            }
        });
    }

private:
    static Stream make_stream(Impl& server, tcp::socket socket) {
        if constexpr (kTls) {
            return Stream(std::move(socket), *server.tls_context_);
        } else {
            return Stream(std::move(socket));
        }
    }

    beast::tcp_stream& tcp_layer() {
        return beast::get_lowest_layer(stream_);
    }

    void handshake() {
        if constexpr (kTls) {
            tcp_layer().expires_after(server_.options_.header_timeout);
            stream_.async_handshake(net::ssl::stream_base::server,
                                    [self = this->shared_from_this()](beast::error_code ec) {
                                        self->on_handshake(ec);
                                    });
        }
    }

    void on_handshake(beast::error_code ec) {
        if (ec) {
            // A plain-HTTP peer, an untrusted or missing client certificate, or a timeout.
            server_.peer_warning("http: TLS handshake refused",
                                 {{"remote", remote_}, {"reason", ec.message()}});
            close();
            return;
        }
        do_read();
    }

    void do_read() {
        if (server_.stopping_) {
            close();
            return;
        }
        parser_.emplace();
        parser_->body_limit(server_.options_.body_limit_bytes);
        parser_->header_limit(static_cast<std::uint32_t>(server_.options_.header_limit_bytes));
        head_ = false;
        if (requests_ > 0 && buffer_.size() == 0) {
            // Between requests the keep-alive timeout runs only until the next request's first
            // byte: its headers then get header_timeout, or a slow sender would get both.
            tcp_layer().expires_after(server_.options_.keep_alive_timeout);
            stream_.async_read_some(buffer_.prepare(kFirstRead),
                                    [self = this->shared_from_this()](beast::error_code ec,
                                                                      std::size_t n) {
                                        self->buffer_.commit(n);
                                        if (ec) {
                                            self->close();  // idle, closed or timed out
                                            return;
                                        }
                                        self->read_header();
                                    });
            return;
        }
        read_header();
    }

    void read_header() {
        tcp_layer().expires_after(server_.options_.header_timeout);
        bhttp::async_read_header(stream_, buffer_, *parser_,
                                 [self = this->shared_from_this()](
                                     beast::error_code ec, std::size_t) { self->on_header(ec); });
    }

    static bool is_disconnect(const beast::error_code& ec) {
        return ec == bhttp::error::end_of_stream || ec == beast::error::timeout ||
               ec == net::error::operation_aborted || ec == net::error::connection_reset ||
               ec == net::error::eof || ec == net::error::bad_descriptor ||
               ec == net::ssl::error::stream_truncated;
    }

    void on_header(beast::error_code ec) {
        began_ = Clock::now();
        if (ec) {
            if (ec == bhttp::error::body_limit) {
                send_error(413, "request body exceeds the " +
                                    std::to_string(server_.options_.body_limit_bytes) +
                                    "-byte limit");
            } else if (ec == bhttp::error::header_limit) {
                send_error(431, "request headers exceed " +
                                    std::to_string(server_.options_.header_limit_bytes) + " bytes");
            } else if (is_disconnect(ec)) {
                if (ec == beast::error::timeout && buffer_.size() > 0) {
                    server_.peer_warning(
                        "http: request headers not received in time; connection cut",
                        {{"remote", remote_},
                         {"header_timeout_ms", server_.options_.header_timeout.count()}});
                }
                close();
            } else {
                send_error(400, "malformed HTTP request: " + ec.message());
            }
            return;
        }
        busy_ = true;
        ++requests_;
        auto& head = parser_->get();
        head_ = head.method() == bhttp::verb::head;  // every answer to it goes without a body
        // Credentials first: nobody unauthenticated gets to make us read a body.
        const std::string method(head.method_string());
        std::string path(head.target());
        path = path.substr(0, path.find('?'));
        const auto header = head[bhttp::field::authorization];
        const AuthDecision auth = authorize(server_.options_.tokens, method, path,
                                            std::string_view(header.data(), header.size()));
        if (auth.status != 0) {
            std::vector<std::pair<std::string, std::string>> extra;
            if (auth.status == 401) {
                extra.emplace_back("WWW-Authenticate", "Bearer realm=\"synergos\"");
            }
            send_error(auth.status, auth.message, std::move(extra));
            return;
        }
        if (server_.options_.tokens.empty()) {
            if (auto refusal = browser_refusal(head, method); !refusal.empty()) {
                send_error(403, refusal);
                return;
            }
        }
        if (head.find(bhttp::field::transfer_encoding) != head.end() &&
            (!parser_->chunked() || head.version() < 11)) {
            // Read as no body, its bytes would run as the next request (RFC 9112 6.3: 400).
            send_error(400, "Transfer-Encoding '" +
                                std::string(head[bhttp::field::transfer_encoding]) +
                                "' is not accepted: only 'chunked', on HTTP/1.1");
            return;
        }
        const std::string encoding = lower(head[bhttp::field::content_encoding]);
        if (!encoding.empty() && encoding != "identity") {
            // Decompressing a peer's body would let a small request become a huge one.
            send_error(415, "Content-Encoding '" + encoding +
                                "' is not accepted; send the body uncompressed (identity)");
            return;
        }
        const auto length = parser_->content_length();
        if (is_query()) {
            // No route reads one (clients send "{}" at most), and probes and the dashboard's
            // files need no token: up to body_limit_bytes there was memory anyone could make us
            // hold.
            if (length && *length > body_limit()) {
                send_error(413, body_limit_message());
                return;
            }
            parser_->body_limit(body_limit());
        }
        if (length && *length > server_.options_.body_limit_bytes) {
            send_error(413, "request body of " + std::to_string(*length) + " bytes exceeds the " +
                                std::to_string(server_.options_.body_limit_bytes) + "-byte limit");
            return;
        }
        tcp_layer().expires_after(server_.options_.body_timeout);
        if (!parser_->is_done() && head.version() >= 11 &&
            beast::iequals(head[bhttp::field::expect], "100-continue")) {
            // The client waits for this before it sends the body (curl, for large ones). A
            // request refused whatever its body (no route, wrong method) gets the refusal
            // instead, so the client does not upload up to body_limit_bytes for nothing.
            Request probe;
            probe.method = head_ ? "GET" : method;
            probe.path = path;
            if (auto refusal = server_.refusal_from_head(probe)) {
                send_refusal(std::move(*refusal));
                return;
            }
            // The checks above have passed too, or the client got their answer instead.
            net::async_write(stream_, net::buffer(kContinue.data(), kContinue.size()),
                             [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                                 if (ec) {
                                     self->close();
                                     return;
                                 }
                                 self->read_body();
                             });
            return;
        }
        read_body();
    }

    void read_body() {
        const auto length = parser_->content_length();
        if (length && *length > kLargeBody && !parser_->chunked()) {
            read_body_direct(static_cast<std::size_t>(*length));
            return;
        }
        if (length && *length > kLargeBody) {
            // Beast reads as much as the buffer has room for, 512 bytes when it is empty: a
            // model-sized body would take tens of thousands of reads. Released after the body.
            buffer_.reserve(kReadChunk);
        }
        bhttp::async_read(stream_, buffer_, *parser_,
                          [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                              self->on_body(ec);
                          });
    }

    /// A large body of known length goes from the socket straight into a kept buffer: no copy
    /// through `buffer_`, and no fresh pages to fault in. The parser has consumed the header
    /// only; what `buffer_` already holds past it is the start of the body.
    void read_body_direct(std::size_t length) {
        direct_body_ = server_.body_buffers_.take(length);
        direct_length_ = length;
        if (direct_body_.size() > length) {
            direct_body_.resize(length);  // shrinking writes nothing
        }
        const std::size_t have = std::min(buffer_.size(), length);
        if (have > 0) {
            if (direct_body_.size() < have) {
                direct_body_.resize(have);
            }
            std::memcpy(direct_body_.data(), buffer_.data().data(), have);
            buffer_.consume(have);
        }
        direct_filled_ = have;
        read_body_more();
    }

    /// Reads into the part of the buffer that is in use, and grows a new buffer at most
    /// kDirectRead ahead of what has arrived: a peer that declares a large body and sends
    /// nothing makes the server commit no memory for it (growing a string zero-fills it).
    void read_body_more() {
        if (direct_filled_ == direct_length_) {
            on_direct_body({});
            return;
        }
        const std::size_t end =
            std::max(direct_body_.size(), std::min(direct_length_, direct_filled_ + kDirectRead));
        if (direct_body_.size() < end) {
            direct_body_.resize(end);
        }
        stream_.async_read_some(
            net::buffer(direct_body_.data() + direct_filled_, end - direct_filled_),
            [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
                self->direct_filled_ += n;
                if (ec) {
                    self->on_direct_body(ec);
                    return;
                }
                self->read_body_more();
            });
    }

    void on_direct_body(beast::error_code ec) {
        if (ec) {
            if (ec == beast::error::timeout) {
                server_.peer_warning("http: request body not received in time; connection cut",
                                     {{"remote", remote_},
                                      {"body_timeout_ms", server_.options_.body_timeout.count()}});
            }
            // The peer closed or failed mid-body, or it timed out: nobody is left to answer.
            server_.body_buffers_.give(std::move(direct_body_));
            close();
            return;
        }
        handle(std::move(direct_body_));
    }

    void on_body(beast::error_code ec) {
        if (buffer_.capacity() > kReadChunk / 2 && buffer_.size() < kLargeBody) {
            buffer_.shrink_to_fit();  // idle keep-alive connections keep no large buffer
        }
        if (ec) {
            if (ec == bhttp::error::body_limit) {
                send_error(413, body_limit_message());
            } else if (is_disconnect(ec) || ec == bhttp::error::partial_message) {
                if (ec == beast::error::timeout) {
                    server_.peer_warning(
                        "http: request body not received in time; connection cut",
                        {{"remote", remote_},
                         {"body_timeout_ms", server_.options_.body_timeout.count()}});
                }
                close();
            } else {
                send_error(400, "malformed HTTP request body: " + ec.message());
            }
            return;
        }
        handle(std::move(parser_->get().body()));
    }

    void handle(std::string&& body) {
        auto& raw = parser_->get();
        Request request;
        request.method = std::string(raw.method_string());
        request.target = std::string(raw.target());
        const auto query_at = request.target.find('?');
        request.path = request.target.substr(0, query_at);
        if (query_at != std::string::npos) {
            request.query = request.target.substr(query_at + 1);
        }
        for (const auto& field : raw) {
            request.headers.emplace(lower(field.name_string()), std::string(field.value()));
        }
        request.body = std::move(body);
        request.remote = remote_;
        request.max_json_depth = server_.options_.max_json_depth;
        const bool keep_alive = raw.keep_alive();
        const unsigned version = raw.version();

        const bool reuse = keep_alive && !server_.stopping_;
        if (head_) {
            request.method = "GET";  // answered as GET; write() leaves the body out
        }
        Match match = server_.dispatch(request);
        if (head_) {
            request.method = "HEAD";  // what the handler and the access log see
        }
        if (!match.matched() || match.execution == Execution::Inline) {
            Response response = match.handler == nullptr ? std::move(match.error)
                                                         : Router::invoke(*match.handler, request);
            write(response, version, reuse, &request);
            server_.body_buffers_.give(std::move(request.body));
            return;
        }
        if (match.async_handler != nullptr) {
            if (!server_.async_started()) {
                // Stopping: the answer could come after the server is gone. Refused before it
                // starts, a write is safe to retry; cut off after its commit, it is not.
                Response refused = Response::error(503, "server is stopping; retry later");
                refused.headers.emplace_back("Retry-After", "1");
                write(refused, version, false, &request);
                server_.body_buffers_.give(std::move(request.body));
                return;
            }
            start_async(*match.async_handler, std::move(request), version, reuse);
            return;
        }
        // A handler that may block runs on the pool; its response comes back to this
        // connection's event loop, which serves other connections meanwhile.
        net::post(*server_.pool_, [self = this->shared_from_this(), handler = match.handler,
                                   request = std::move(request), version, reuse]() mutable {
            auto response = std::make_shared<Response>(Router::invoke(*handler, request));
            auto shared_request = std::make_shared<Request>(std::move(request));
            net::post(self->stream_.get_executor(),
                      [self, response, shared_request, version, reuse] {
                          self->write(*response, version, reuse && !self->server_.stopping_,
                                      shared_request.get());
                          self->server_.body_buffers_.give(std::move(shared_request->body));
                      });
        });
    }

    /// Starts an asynchronous handler; its answer comes back to this connection's event loop from
    /// wherever it finishes (e.g. a storage writer thread), and no thread waits for it. The
    /// Responder holds no strong reference to the session or the server: it may outlive both.
    void start_async(const AsyncHandler& handler, Request&& request, unsigned version, bool reuse) {
        auto shared_request = std::make_shared<Request>(std::move(request));
        auto call = std::make_shared<AsyncCall>();
        async_timer_.expires_after(server_.options_.async_timeout);
        async_timer_.async_wait([self = this->shared_from_this(), call, shared_request, version,
                                 reuse](beast::error_code ec) {
            if (!ec) {
                self->on_async_timeout(*call, *shared_request, version, reuse);
            }
        });
        std::weak_ptr<Session> weak = this->shared_from_this();
        Router::invoke_async(
            handler, *shared_request,
            Responder([weak, call, shared_request, version, reuse, life = server_.lifeline_,
                       executor = stream_.get_executor()](Responder::Producer produce) mutable {
                std::lock_guard<std::mutex> lock(life->mutex);
                if (!life->open || call->settled.exchange(true)) {
                    return;  // the server is gone, or it answered 504: nobody waits for this
                }
                net::post(executor, [weak, shared_request, produce = std::move(produce), version,
                                     reuse] {
                    if (auto self = weak.lock()) {
                        self->on_async_answer(produce, *shared_request, version, reuse);
                    }
                });
                life->server->async_finished();
            }));
    }

    void on_async_answer(const Responder::Producer& produce, Request& request, unsigned version,
                         bool reuse) {
        async_timer_.cancel();
        Response response = Responder::produce(produce);
        write(response, version, reuse && !server_.stopping_, &request);
    }

    void on_async_timeout(AsyncCall& call, Request& request, unsigned version, bool reuse) {
        if (call.settled.exchange(true)) {
            return;  // the answer is already on its way here
        }
        server_.async_finished();
        const auto ms = server_.options_.async_timeout.count();
        server_.logger_.warn("http: asynchronous handler did not answer in time",
                             nlohmann::json{{"method", request.method},
                                            {"path", request.path},
                                            {"remote", remote_},
                                            {"async_timeout_ms", ms}}
                                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        Response response =
            Response::error(504, "the handler did not answer within " + std::to_string(ms) + " ms");
        write(response, version, reuse && !server_.stopping_, &request);
    }

    /// Without tokens a browser is the way in: any page the operator opens can send a simple
    /// POST (no preflight) to a loopback server, and a page whose own name was made to resolve
    /// to 127.0.0.1 (DNS rebinding) can read the answers too. Browsers name the page's origin on
    /// every POST; other clients (the CLI, TTPs, curl) send none. Refuses, naming why, a dotted
    /// Host name on a loopback bind and a change whose Origin is not this server. Empty: accepted.
    std::string browser_refusal(const bhttp::request<bhttp::string_body>& head,
                                const std::string& method) const {
        const auto host_field = head[bhttp::field::host];
        const std::string_view host_value(host_field.data(), host_field.size());
        const std::string_view host = host_of(host_value);
        if (is_loopback_host(server_.options_.host) && rebindable(lower({host.data(), host.size()}))) {
            return "Host '" + std::string(host_value) +
                   "' is not served: without tokens a server on a loopback address answers "
                   "requests addressed to an IP address, localhost or a single-label name only";
        }
        const auto origin_field = head[bhttp::field::origin];
        if (origin_field.empty() || method == "GET" || method == "HEAD" || method == "OPTIONS") {
            return {};
        }
        std::string_view origin(origin_field.data(), origin_field.size());
        const auto scheme = origin.find("://");
        const std::string_view origin_authority =
            scheme == std::string_view::npos ? origin : origin.substr(scheme + 3);
        const std::string authority = lower({origin_authority.data(), origin_authority.size()});
        if (authority != lower({host_value.data(), host_value.size()})) {
            return "a " + method + " from the page of '" + std::string(origin) +
                   "' is refused: without tokens this server takes changes from its own pages only";
        }
        return {};
    }

    /// A GET or HEAD request: its body is held to kQueryBodyLimit.
    bool is_query() const {
        return parser_ && (parser_->get().method() == bhttp::verb::get || head_);
    }
    std::size_t body_limit() const {
        return is_query() ? std::min(kQueryBodyLimit, server_.options_.body_limit_bytes)
                          : server_.options_.body_limit_bytes;
    }
    std::string body_limit_message() const {
        return std::string(is_query() ? "a GET or HEAD request's body" : "request body") +
               " exceeds the " + std::to_string(body_limit()) + "-byte limit";
    }

    void send_error(int status, const std::string& message,
                    std::vector<std::pair<std::string, std::string>> extra = {}) {
        Response response = Response::error(status, message);
        response.headers = std::move(extra);
        send_refusal(std::move(response));
    }

    /// Answers before the body is read, and closes: the peer may still send a body.
    void send_refusal(Response response) {
        busy_ = true;
        Request request;
        if (parser_) {
            request.method = std::string(parser_->get().method_string());
            request.path = std::string(parser_->get().target());
            request.path = request.path.substr(0, request.path.find('?'));
        }
        request.remote = remote_;
        // The peer may still be sending a body we will not read: linger on close.
        linger_ = true;
        write(response, 11, false, &request);
    }

    void write(Response& response, unsigned version, bool keep_alive, const Request* request) {
        res_ = {};
        res_.version(version);
        res_.result(static_cast<unsigned>(response.status));
        res_.set(bhttp::field::server, "synergos");
        res_.set(bhttp::field::content_type, response.content_type);
        for (const auto& [name, value] : response.headers) {
            res_.set(name, value);
        }
        const std::size_t bytes = response.body.size();
        res_.body() = std::move(response.body);
        res_.keep_alive(keep_alive);
        res_.prepare_payload();
        if (request != nullptr) {
            server_.record(response.status, began_);
            server_.log_access(*request, response.status, bytes, began_);
        }
        tcp_layer().expires_after(server_.options_.body_timeout);
        if (head_) {
            // HEAD: the head GET would get, Content-Length included, and no body.
            head_serializer_.emplace(res_);
            bhttp::async_write_header(
                stream_, *head_serializer_,
                [self = this->shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
                    self->head_serializer_.reset();
                    self->on_write(ec, keep_alive);
                });
            return;
        }
        bhttp::async_write(
            stream_, res_,
            [self = this->shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
                self->on_write(ec, keep_alive);
            });
    }

    void on_write(beast::error_code ec, bool keep_alive) {
        busy_ = false;
        // Sent: an idle connection holds no response (a worker's is a model; it held one until
        // the next request, beside the request buffer the server keeps). Swapped out, since
        // assigning an empty string keeps the allocation.
        std::string().swap(res_.body());
        if (ec || !keep_alive) {
            if (!ec && linger_) {
                lingering_close();
            } else {
                close();
            }
            return;
        }
        do_read();
    }

    /// Half-closes, then reads and discards what the peer still sends (at most linger_bytes,
    /// for at most linger_timeout) before closing: closing with unread bytes makes the kernel
    /// send a reset that can destroy our answer before the peer has read it.
    void lingering_close() {
        beast::error_code ec;
        tcp_layer().socket().shutdown(tcp::socket::shutdown_send, ec);
        if (ec) {
            close();
            return;
        }
        drained_ = 0;
        tcp_layer().expires_after(server_.options_.linger_timeout);
        drain();
    }

    void drain() {
        tcp_layer().async_read_some(
            net::buffer(drain_buffer_),
            [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
                self->drained_ += n;
                if (ec || self->drained_ >= self->server_.options_.linger_bytes) {
                    self->close();
                    return;
                }
                self->drain();
            });
    }

    void close() {
        beast::error_code ec;
        tcp_layer().socket().shutdown(tcp::socket::shutdown_send, ec);
        tcp_layer().socket().close(ec);
    }

    Impl& server_;
    Stream stream_;
    beast::flat_buffer buffer_;
    std::string direct_body_;        ///< a large body of known length being read
    std::size_t direct_length_ = 0;  ///< its declared length
    std::size_t direct_filled_ = 0;  ///< bytes of it received
    std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
    bhttp::response<bhttp::string_body> res_;
    std::optional<bhttp::response_serializer<bhttp::string_body>> head_serializer_;
    net::steady_timer async_timer_;  ///< the async_timeout of a pending asynchronous handler
    std::string remote_;
    std::uint64_t id_;
    std::uint64_t requests_ = 0;
    bool busy_ = false;
    bool head_ = false;  ///< the current request is a HEAD
    bool linger_ = false;
    std::size_t drained_ = 0;
    std::array<char, 16 * 1024> drain_buffer_{};
    Clock::time_point began_ = Clock::now();
};

sdk::Status HttpServer::Impl::start() {
    const auto& o = options_;
    if (o.threads < 1 || o.threads > 64) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument, "http: option 'threads' must be 1-64");
    }
    if (o.handler_threads < 1 || o.handler_threads > 1024) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument,
                           "http: option 'handler_threads' must be 1-1024");
    }
    if (o.body_limit_bytes == 0 || o.max_connections == 0 || o.max_json_depth == 0) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument,
                           "http: options 'body_limit_bytes', 'max_connections' and "
                           "'max_json_depth' must be positive");
    }
    if (o.header_timeout.count() <= 0 || o.body_timeout.count() <= 0 ||
        o.keep_alive_timeout.count() <= 0 || o.async_timeout.count() <= 0) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument,
                           "http: options 'header_timeout', 'body_timeout', "
                           "'keep_alive_timeout' and 'async_timeout' must be positive");
    }
    if (auto st = load_tls(); !st) {
        return st;
    }
    beast::error_code ec;
    const auto address = net::ip::make_address(o.host, ec);
    if (ec) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument,
                           "http: option 'host' is not an IP address: '" + o.host + "'");
    }
    const tcp::endpoint endpoint(address, o.port);
    for (int i = 0; i < o.threads; ++i) {
        contexts_.push_back(std::make_unique<net::io_context>(1));
    }
    acceptor_.emplace(contexts_.front()->get_executor());
    acceptor_->open(endpoint.protocol(), ec);
    if (!ec) {
        acceptor_->set_option(net::socket_base::reuse_address(true), ec);
    }
    if (!ec) {
        acceptor_->bind(endpoint, ec);
    }
    if (!ec) {
        acceptor_->listen(net::socket_base::max_listen_connections, ec);
    }
    if (ec) {
        acceptor_.reset();
        return sdk::Status(sdk::ErrorCode::Unavailable, "http: cannot listen on " + o.host + ":" +
                                                            std::to_string(o.port) + ": " +
                                                            ec.message());
    }
    port_ = acceptor_->local_endpoint().port();
    accept_timer_.emplace(acceptor_->get_executor());
    running_ = true;
    pool_.emplace(static_cast<std::size_t>(o.handler_threads));
    for (auto& context : contexts_) {
        work_.push_back(net::make_work_guard(*context));
    }
    do_accept();
    for (auto& context : contexts_) {
        threads_.emplace_back([this, ioc = context.get()] {
            pthread_setname_np(pthread_self(), "http-io");  // for top/perf
            for (;;) {
                try {
                    ioc->run();
                    return;
                } catch (const std::exception& e) {
                    // A bug in a completion handler must not take the server down; log, go on.
                    logger_.error("http: unexpected exception in I/O thread",
                                  nlohmann::json{{"error", e.what()}}.dump());
                } catch (...) {
                    logger_.error("http: unexpected exception in I/O thread",
                                  nlohmann::json{{"error", "not a std::exception"}}.dump());
                }
            }
        });
    }
    logger_.info("http server listening", nlohmann::json{{"host", o.host},
                                                         {"port", port_.load()},
                                                         {"threads", o.threads},
                                                         {"tls", tls_context_.has_value()},
                                                         {"mutual_tls", o.tls.require_client_cert},
                                                         {"tokens", o.tokens.size()},
                                                         {"handler_threads", o.handler_threads}}
                                              .dump());
    return {};
}

sdk::Status HttpServer::Impl::load_tls() {
    const auto& t = options_.tls;
    if (!t.enabled()) {
        if (!t.key_file.empty() || t.require_client_cert) {
            return sdk::Status(sdk::ErrorCode::InvalidArgument,
                               "http: option 'tls.cert_file' is required when 'tls.key_file' or "
                               "'tls.require_client_cert' is set");
        }
        return {};
    }
    if (t.key_file.empty()) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument,
                           "http: option 'tls.key_file' is required with 'tls.cert_file'");
    }
    if (t.require_client_cert && t.ca_file.empty()) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument,
                           "http: option 'tls.ca_file' is required with 'tls.require_client_cert'");
    }
    net::ssl::context ctx(net::ssl::context::tls_server);
    beast::error_code ec;
    ctx.set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                        net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                        net::ssl::context::no_tlsv1_1 | net::ssl::context::single_dh_use,
                    ec);
    if (const std::string policy = detail::apply_tls_policy(ctx); !policy.empty()) {
        return sdk::Status(sdk::ErrorCode::Internal, "http: " + policy);
    }
    auto fail = [&](const char* option, const std::string& file) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument, std::string("http: option '") + option +
                                                                "': cannot use '" + file +
                                                                "': " + ec.message());
    };
    ctx.use_certificate_chain_file(t.cert_file, ec);
    if (ec) {
        return fail("tls.cert_file", t.cert_file);
    }
    ctx.use_private_key_file(t.key_file, net::ssl::context::pem, ec);
    if (ec) {
        return fail("tls.key_file", t.key_file);
    }
    if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument,
                           "http: option 'tls.key_file': '" + t.key_file +
                               "' does not match the certificate in '" + t.cert_file + "'");
    }
    if (!t.ca_file.empty()) {
        ctx.load_verify_file(t.ca_file, ec);
        if (ec) {
            return fail("tls.ca_file", t.ca_file);
        }
    }
    if (t.require_client_cert) {
        ctx.set_verify_mode(net::ssl::verify_peer | net::ssl::verify_fail_if_no_peer_cert, ec);
    } else if (!t.ca_file.empty()) {
        // A CA without the requirement: a presented certificate must still be valid.
        ctx.set_verify_mode(net::ssl::verify_peer, ec);
    }
    tls_context_.emplace(std::move(ctx));
    return {};
}

void HttpServer::Impl::do_accept() {
    auto& context = *contexts_[next_context_++ % contexts_.size()];
    acceptor_->async_accept(context, [this](beast::error_code ec, tcp::socket socket) {
        on_accept(ec, std::move(socket));
    });
}

void HttpServer::Impl::on_accept(beast::error_code ec, tcp::socket socket) {
    if (stopping_ || !acceptor_->is_open()) {
        return;
    }
    if (ec && ec != net::error::operation_aborted) {
        // E.g. EMFILE: retrying at once would spin; back off briefly, then accept again.
        logger_.warn("http: accept failed", nlohmann::json{{"error", ec.message()}}.dump());
        accept_timer_->expires_after(std::chrono::milliseconds(50));
        accept_timer_->async_wait([this](beast::error_code) {
            if (!stopping_) {
                do_accept();
            }
        });
        return;
    }
    if (!ec) {
        // Whatever happens to this connection, the next one must still be accepted.
        try {
            if (connections_.load() >= options_.max_connections) {
                reject(std::move(socket), false);
            } else if (!peer_has_room(socket)) {
                reject(std::move(socket), true);
            } else {
                serve(std::move(socket));
            }
        } catch (const std::exception& e) {
            logger_.error("http: cannot serve an accepted connection",
                          nlohmann::json{{"error", e.what()}}.dump());
        } catch (...) {
            logger_.error("http: cannot serve an accepted connection",
                          nlohmann::json{{"error", "not a std::exception"}}.dump());
        }
    }
    do_accept();
}

void HttpServer::Impl::serve(tcp::socket socket) {
    beast::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    const auto peer = socket.remote_endpoint(ec);
    const net::ip::address address = ec ? net::ip::address() : peer.address();
    const auto id = next_session_id_++;
    if (tls_context_) {
        auto session = std::make_shared<Session<true>>(*this, std::move(socket), id);
        session_opened(id, session, address);
        session->run();
    } else {
        auto session = std::make_shared<Session<false>>(*this, std::move(socket), id);
        session_opened(id, session, address);
        session->run();
    }
}

void HttpServer::Impl::peer_warning(const char* event, nlohmann::json fields) {
    std::size_t left_out = 0;
    {
        std::lock_guard<std::mutex> lock(peer_warnings_mutex_);
        auto& state = peer_warnings_[event];
        const auto now = Clock::now();
        if (state.written && now - state.last < kPeerWarningInterval) {
            ++state.left_out;
            return;
        }
        state.written = true;
        state.last = now;
        left_out = std::exchange(state.left_out, 0);
    }
    if (left_out > 0) {
        fields["left_out_since_last"] = left_out;
    }
    logger_.warn(event, fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

bool HttpServer::Impl::peer_has_room(const tcp::socket& socket) {
    if (options_.max_connections_per_peer == 0) {
        return true;
    }
    beast::error_code ec;
    const auto peer = socket.remote_endpoint(ec);
    if (ec) {
        return true;  // gone already: its session ends at once
    }
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    const auto it = per_peer_.find(peer.address());
    return it == per_peer_.end() || it->second < options_.max_connections_per_peer;
}

void HttpServer::Impl::reject(tcp::socket socket, bool per_peer) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    beast::error_code ec;
    const auto peer = socket.remote_endpoint(ec);
    if (per_peer) {
        peer_warning("http connection refused: limit per address reached",
                     {{"max_connections_per_peer", options_.max_connections_per_peer},
                      {"remote", ec ? std::string("?") : peer.address().to_string()}});
    } else {
        peer_warning("http connection refused: limit reached",
                     {{"max_connections", options_.max_connections}});
    }
    if (tls_context_) {
        // A plain-text 503 means nothing to a TLS client; closing is the clearer signal.
        beast::error_code ignored;
        socket.close(ignored);
        return;
    }
    if (lingering_rejections_.load() >= kMaxLingeringRejections) {
        beast::error_code ignored;
        socket.close(ignored);  // a flood: holding each socket for the linger would cost more
        return;
    }
    const std::string limit =
        per_peer ? "from this address (limit " + std::to_string(options_.max_connections_per_peer)
                 : "(limit " + std::to_string(options_.max_connections);
    std::string body =
        nlohmann::json{{"message", "too many connections " + limit + "); retry later"}}.dump() +
        "\n";
    std::make_shared<Rejection>(std::move(socket), lingering_rejections_)
        ->start("HTTP/1.1 503 Service Unavailable\r\nServer: synergos\r\nContent-Type: "
                "application/json\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body,
                options_.linger_timeout, options_.linger_bytes);
}

namespace {

/// Paths the server answers itself, for GET (and so HEAD) only.
bool is_probe_path(const std::string& path) {
    return path == "/healthz" || path == "/readyz" || path == "/metrics";
}

Response probe_method_not_allowed() {
    Response out = Response::error(405, "The method is not allowed for the requested URL.");
    out.headers.emplace_back("Allow", "GET, HEAD");
    return out;
}

}  // namespace

std::optional<Response> HttpServer::Impl::refusal_from_head(Request& request) const {
    if (is_probe_path(request.path)) {
        if (request.method == "GET") {
            return std::nullopt;
        }
        return probe_method_not_allowed();
    }
    Match match = router_.match(request);
    if (match.matched()) {
        return std::nullopt;
    }
    return std::move(match.error);
}

Match HttpServer::Impl::dispatch(Request& request) {
    Match out;
    if (is_probe_path(request.path) && request.method != "GET") {
        // The probes are the server's own paths: another method is wrong here, not unknown.
        out.error = probe_method_not_allowed();
        return out;
    }
    if (request.method == "GET" && request.path == "/healthz") {
        out.error = Response::json(200, nlohmann::json{{"status", "ok"}});
        return out;
    }
    if (request.method == "GET" && request.path == "/readyz") {
        if (ready_ && !stopping_) {
            out.error = Response::json(200, nlohmann::json{{"status", "ready"}});
        } else {
            out.error =
                Response::error(503, stopping_ ? "server is stopping" : "server is not ready");
        }
        return out;
    }
    if (request.method == "GET" && request.path == "/metrics") {
        Response page;
        page.status = 200;
        page.content_type = kMetricsContentType;
        page.body = render_metrics();
        out.error = std::move(page);
        return out;
    }
    return router_.match(request);
}

void HttpServer::Impl::record(int status, Clock::time_point began) noexcept {
    const int cls = status / 100;
    if (cls >= 1 && cls <= 5) {
        answered_[static_cast<std::size_t>(cls - 1)].fetch_add(1, std::memory_order_relaxed);
    }
    latency_.observe(Clock::now() - began);
}

std::string HttpServer::Impl::render_metrics() const {
    std::string out;
    out.reserve(4096);
    out.append("# HELP synergos_http_responses_total HTTP answers sent, by status class.\n"
               "# TYPE synergos_http_responses_total counter\n");
    for (std::size_t i = 0; i < answered_.size(); ++i) {
        out.append("synergos_http_responses_total{code=\"")
            .append(std::to_string(i + 1))
            .append("xx\"} ")
            .append(std::to_string(answered_[i].load(std::memory_order_relaxed)))
            .append("\n");
    }
    latency_.render(out, "synergos_http_request_duration_seconds",
                    "Time from a request's headers being read to its answer being handed to the socket.");
    append_gauge(out, "synergos_http_connections", "Open HTTP connections.",
                 static_cast<double>(connections_.load()));
    append_counter(out, "synergos_http_connections_refused_total",
                   "Connections refused at max_connections.", refused_.load());
    for (const auto& source : options_.metrics_sources) {
        if (source) {
            source(out);
        }
    }
    return out;
}

void HttpServer::Impl::log_access(const Request& request, int status, std::size_t bytes,
                                  Clock::time_point began) {
    if (!options_.access_log || !logger_.enabled(sdk::Level::Info)) {
        return;
    }
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - began).count();
    logger_.info("http request",
                 nlohmann::json{{"method", request.method},
                                {"path", request.path},
                                {"status", status},
                                {"bytes", bytes},
                                {"duration_ms", ms},
                                {"remote", request.remote}}
                     .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void HttpServer::Impl::session_opened(std::uint64_t id,
                                      const std::shared_ptr<SessionBase>& session,
                                      const net::ip::address& peer) {
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    sessions_.emplace(id, session);
    ++connections_;
    ++per_peer_[peer];
    peer_of_.emplace(id, peer);
}

void HttpServer::Impl::session_closed(std::uint64_t id) {
    {
        std::lock_guard<std::mutex> lock(sessions_mutex_);
        sessions_.erase(id);
        --connections_;
        if (const auto it = peer_of_.find(id); it != peer_of_.end()) {
            if (const auto count = per_peer_.find(it->second);
                count != per_peer_.end() && --count->second == 0) {
                per_peer_.erase(count);
            }
            peer_of_.erase(it);
        }
    }
    sessions_cv_.notify_all();
}

bool HttpServer::Impl::async_started() {
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    if (stopping_) {
        return false;
    }
    ++async_pending_;
    return true;
}

void HttpServer::Impl::async_finished() {
    bool last = false;
    {
        std::lock_guard<std::mutex> lock(sessions_mutex_);
        last = --async_pending_ == 0;
    }
    if (last) {
        sessions_cv_.notify_all();
    }
}

bool HttpServer::Impl::stop(std::chrono::milliseconds deadline) {
    if (!running_.exchange(false)) {
        return true;
    }
    stopping_ = true;
    net::post(acceptor_->get_executor(), [this] {
        beast::error_code ec;
        acceptor_->close(ec);
        accept_timer_->cancel();
    });
    auto shutdown_all = [this](bool force) {
        std::vector<std::shared_ptr<SessionBase>> live;
        {
            std::lock_guard<std::mutex> lock(sessions_mutex_);
            for (auto& [id, weak] : sessions_) {
                if (auto s = weak.lock()) {
                    live.push_back(std::move(s));
                }
            }
        }
        for (auto& s : live) {
            s->shutdown(force);
        }
    };
    shutdown_all(false);
    bool clean = true;
    {
        std::unique_lock<std::mutex> lock(sessions_mutex_);
        clean = sessions_cv_.wait_for(lock, deadline, [this] { return sessions_.empty(); });
    }
    if (!clean) {
        shutdown_all(true);
        std::unique_lock<std::mutex> lock(sessions_mutex_);
        sessions_cv_.wait_for(lock, std::chrono::milliseconds(500),
                              [this] { return sessions_.empty(); });
    }
    // Asynchronous answers still pending had until the deadline (their sessions were busy); their
    // connections are closed now, so they are abandoned: once the lifeline is closed a Responder
    // reaches neither this server nor its event loops, whenever it is called.
    std::size_t abandoned = 0;
    {
        std::lock_guard<std::mutex> lock(lifeline_->mutex);
        lifeline_->open = false;
    }
    {
        std::lock_guard<std::mutex> lock(sessions_mutex_);
        abandoned = async_pending_;
    }
    if (abandoned > 0) {
        clean = false;
        logger_.warn("http: stop abandoned asynchronous handlers that had not answered",
                     nlohmann::json{{"pending", abandoned}}.dump());
    }
    // Pool handlers still running finish (their responses are dropped): they may block briefly
    // but cannot be abandoned, since they run code of the router's owner on this server's pool.
    pool_->join();
    work_.clear();
    for (auto& context : contexts_) {
        context->stop();
    }
    for (auto& t : threads_) {
        if (t.joinable()) {
            t.join();
        }
    }
    threads_.clear();
    logger_.info("http server stopped", nlohmann::json{{"clean", clean}}.dump());
    return clean;
}

HttpServer::HttpServer(ServerOptions options, const Router& router, sdk::Logger& logger)
    : impl_(std::make_shared<Impl>(std::move(options), router, logger)) {}

HttpServer::~HttpServer() {
    impl_->stop(std::chrono::milliseconds(0));
}

sdk::Status HttpServer::start() {
    if (impl_->running_) {
        return sdk::Status(sdk::ErrorCode::FailedPrecondition, "http: server already started");
    }
    if (impl_->stopping_) {
        return sdk::Status(sdk::ErrorCode::FailedPrecondition,
                           "http: a stopped server cannot be restarted; create a new one");
    }
    return impl_->start();
}

std::uint16_t HttpServer::bound_port() const noexcept {
    return impl_->port_;
}

bool HttpServer::stop(std::chrono::milliseconds deadline) {
    return impl_->stop(deadline);
}

void HttpServer::set_ready(bool ready) noexcept {
    impl_->ready_ = ready;
}

std::size_t HttpServer::connection_count() const noexcept {
    return impl_->connections_;
}

}  // namespace synergos::core::http
