// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file router.hpp
/// Method + path-pattern routing. Patterns are absolute paths whose segments are literals or
/// `{name}` parameters, e.g. `/ttp/connect/collaborations/{collab_id}`. A pattern that ends in
/// `/` (a collection route in the original API) answers both spellings, with and without the
/// trailing slash; a pattern without one answers only that spelling. Handlers are synchronous and
/// run on the HTTP server's thread pool (or inline, see Execution), so they may block briefly
/// (storage) but must not wait for long; asynchronous handlers (add_async) answer through a
/// Responder, so no thread waits for them. Other areas add their routes with `add`; the server owns nothing but a reference.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <synergos/core/http/message.hpp>

namespace synergos::core::http {

/// A route handler. Exceptions it throws become a JSON 500 (they never reach the network code).
using Handler = std::function<Response(const Request&)>;

/// Completes one request of an asynchronous handler, exactly once, from any thread. Dropping it
/// unanswered answers 500, so a request never hangs on a lost responder. Move-only.
class Responder {
public:
    /// Produces the response; runs on the thread that owns the request (the server's I/O thread
    /// of the connection, or the caller of Router::route). Exceptions become a JSON 500.
    using Producer = std::function<Response()>;
    /// How the owner of the request receives the producer (the server posts it to the I/O thread).
    using Deliver = std::function<void(Producer)>;

    explicit Responder(Deliver deliver) : deliver_(std::move(deliver)) {}
    ~Responder();
    Responder(Responder&& other) noexcept : deliver_(std::move(other.deliver_)) {
        other.deliver_ = nullptr;
    }
    Responder& operator=(Responder&& other) noexcept;
    Responder(const Responder&) = delete;
    Responder& operator=(const Responder&) = delete;

    /// Sends `response`.
    void respond(Response response) noexcept;
    /// Sends what `produce` returns, computed on the request's own thread: lets a worker thread
    /// hand the rest of the work (reads, JSON) back to the I/O thread instead of doing it itself.
    void respond_with(Producer produce) noexcept;
    /// True until answered.
    bool pending() const noexcept { return static_cast<bool>(deliver_); }

    /// Runs a producer, turning exceptions into a JSON 500.
    static Response produce(const Producer& producer) noexcept;

private:
    Deliver deliver_;
};

/// An asynchronous route handler: runs on the I/O thread, must not block, and answers through
/// the responder now or later from any thread (e.g. after a durable commit on a writer thread).
/// Exceptions it throws before answering become a JSON 500.
using AsyncHandler = std::function<void(const Request&, Responder)>;

/// How long Router::route waits for an asynchronous handler's answer.
inline constexpr std::chrono::seconds kRouteAsyncTimeout{120};

/// Where the server runs a handler.
enum class Execution : std::uint8_t {
    /// On the server's handler pool (ServerOptions::handler_threads): for handlers that may
    /// block (storage writes, queue publishes, calls to other hosts). The default.
    Pool = 1,
    /// Directly on the I/O thread that read the request: only for handlers that never wait
    /// (in-memory work, short reads). Saves two thread hand-offs per request.
    Inline,
    /// An AsyncHandler (add_async), started on the I/O thread: no thread waits for its answer.
    Async,
};

/// The outcome of matching a request: a handler to run, or the error response to send.
struct Match {
    const Handler* handler = nullptr;             ///< set for Pool and Inline routes
    const AsyncHandler* async_handler = nullptr;  ///< set for Async routes
    Execution execution = Execution::Pool;
    Response error;  ///< 404/405/400 when neither handler is set

    bool matched() const noexcept { return handler != nullptr || async_handler != nullptr; }
};

/// Threading: add every route before the server starts; `route` is then safe from any thread.
class Router {
public:
    /// Registers `handler` for `method` (e.g. "GET") on `pattern`. A second registration of the
    /// same method and pattern replaces the first.
    void add(std::string method, std::string_view pattern, Handler handler,
             Execution execution = Execution::Pool);

    /// Registers an asynchronous handler (Execution::Async); same replacement rule as add().
    void add_async(std::string method, std::string_view pattern, AsyncHandler handler);

    /// Finds the handler and fills `request.params`; does not run it.
    Match match(Request& request) const;

    /// Runs a matched handler, turning exceptions into a JSON 500.
    static Response invoke(const Handler& handler, const Request& request) noexcept;
    /// Starts a matched asynchronous handler; an exception it throws answers 500 through
    /// `responder` if it was not answered yet.
    static void invoke_async(const AsyncHandler& handler, const Request& request,
                             Responder responder) noexcept;

    /// Dispatches: fills `request.params` and calls the handler (waiting for an asynchronous
    /// one's answer, at most kRouteAsyncTimeout, then 504); a JSON 404 when no pattern
    /// matches the path, 405 (with `Allow`, which lists HEAD wherever GET is: the server answers
    /// HEAD as GET) when the path matches but not the method, 400 when a
    /// path segment has a malformed %-escape.
    Response route(Request& request) const;

    /// Number of (method, pattern) routes.
    std::size_t size() const noexcept { return routes_.size(); }

private:
    struct Segment {
        std::string text;
        bool is_param = false;
    };
    struct Route {
        std::string method;
        std::string pattern;
        std::vector<Segment> segments;
        bool optional_trailing_slash = false;
        Handler handler;
        AsyncHandler async_handler;
        Execution execution = Execution::Pool;
    };

    void add_route(Route route);

    std::vector<Route> routes_;
};

/// Splits a path into its segments (no decoding); `trailing_slash` tells whether it ended in '/'.
std::vector<std::string_view> split_path(std::string_view path, bool& trailing_slash);

}  // namespace synergos::core::http
