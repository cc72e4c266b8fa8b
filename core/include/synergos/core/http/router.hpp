// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file router.hpp
/// Method + path-pattern routing. Patterns are absolute paths whose segments are literals or
/// `{name}` parameters, e.g. `/ttp/connect/collaborations/{collab_id}`. A pattern that ends in
/// `/` (a collection route in the original API) answers both spellings, with and without the
/// trailing slash; a pattern without one answers only that spelling. Handlers are synchronous and
/// run on the HTTP server's thread pool, so they may block briefly (storage) but must not wait
/// for long. Other areas add their routes with `add`; the server owns nothing but a reference.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <synergos/core/http/message.hpp>

namespace synergos::core::http {

/// A route handler. Exceptions it throws become a JSON 500 (they never reach the network code).
using Handler = std::function<Response(const Request&)>;

/// Where the server runs a handler.
enum class Execution : std::uint8_t {
    /// On the server's handler pool (ServerOptions::handler_threads): for handlers that may
    /// block (storage writes, queue publishes, calls to other hosts). The default.
    Pool = 1,
    /// Directly on the I/O thread that read the request: only for handlers that never wait
    /// (in-memory work, short reads). Saves two thread hand-offs per request.
    Inline,
};

/// The outcome of matching a request: a handler to run, or the error response to send.
struct Match {
    const Handler* handler = nullptr;
    Execution execution = Execution::Pool;
    Response error;  ///< 404/405/400 when `handler` is null
};

/// Threading: add every route before the server starts; `route` is then safe from any thread.
class Router {
public:
    /// Registers `handler` for `method` (e.g. "GET") on `pattern`. A second registration of the
    /// same method and pattern replaces the first.
    void add(std::string method, std::string_view pattern, Handler handler,
             Execution execution = Execution::Pool);

    /// Finds the handler and fills `request.params`; does not run it.
    Match match(Request& request) const;

    /// Runs a matched handler, turning exceptions into a JSON 500.
    static Response invoke(const Handler& handler, const Request& request) noexcept;

    /// Dispatches: fills `request.params` and calls the handler; a JSON 404 when no pattern
    /// matches the path, 405 (with `Allow`) when the path matches but not the method, 400 when a
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
        Execution execution = Execution::Pool;
    };

    std::vector<Route> routes_;
};

/// Splits a path into its segments (no decoding); `trailing_slash` tells whether it ended in '/'.
std::vector<std::string_view> split_path(std::string_view path, bool& trailing_slash);

}  // namespace synergos::core::http
