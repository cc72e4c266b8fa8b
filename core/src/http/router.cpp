// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/http/router.hpp>

#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>

namespace synergos::core::http {

std::vector<std::string_view> split_path(std::string_view path, bool& trailing_slash) {
    std::vector<std::string_view> out;
    trailing_slash = path.size() > 1 && path.back() == '/';
    std::size_t start = 0;
    while (start < path.size()) {
        if (path[start] == '/') {
            ++start;
            continue;
        }
        std::size_t end = path.find('/', start);
        if (end == std::string_view::npos) {
            end = path.size();
        }
        out.push_back(path.substr(start, end - start));
        start = end;
    }
    return out;
}

Responder::~Responder() {
    if (deliver_) {
        respond(Response::error(500, "internal error: the handler dropped the request"));
    }
}

Responder& Responder::operator=(Responder&& other) noexcept {
    if (this != &other) {
        if (deliver_) {
            respond(Response::error(500, "internal error: the handler dropped the request"));
        }
        deliver_ = std::move(other.deliver_);
        other.deliver_ = nullptr;
    }
    return *this;
}

void Responder::respond(Response response) noexcept {
    try {
        respond_with([response = std::move(response)]() mutable { return std::move(response); });
    } catch (...) {
        // Only allocation can fail here; respond_with below reports nothing either.
    }
}

void Responder::respond_with(Producer produce) noexcept {
    if (!deliver_) {
        return;  // answered already: exactly once
    }
    Deliver deliver = std::move(deliver_);
    deliver_ = nullptr;
    try {
        deliver(std::move(produce));
    } catch (...) {
        // The owner could not take the answer (e.g. out of memory); nothing else can reach it.
    }
}

Response Responder::produce(const Producer& producer) noexcept {
    try {
        return producer();
    } catch (const std::exception& e) {
        return Response::error(500, std::string("internal error: ") + e.what());
    } catch (...) {
        return Response::error(500, "internal error");
    }
}

void Router::add(std::string method, std::string_view pattern, Handler handler,
                 Execution execution) {
    Route route;
    route.execution = execution == Execution::Async ? Execution::Pool : execution;
    route.method = std::move(method);
    route.pattern = std::string(pattern);
    route.handler = std::move(handler);
    add_route(std::move(route));
}

void Router::add_async(std::string method, std::string_view pattern, AsyncHandler handler) {
    Route route;
    route.execution = Execution::Async;
    route.method = std::move(method);
    route.pattern = std::string(pattern);
    route.async_handler = std::move(handler);
    add_route(std::move(route));
}

void Router::add_route(Route route) {
    bool trailing = false;
    for (auto segment : split_path(route.pattern, trailing)) {
        Segment s;
        if (segment.size() >= 2 && segment.front() == '{' && segment.back() == '}') {
            s.is_param = true;
            s.text = std::string(segment.substr(1, segment.size() - 2));
        } else {
            s.text = std::string(segment);
        }
        route.segments.push_back(std::move(s));
    }
    route.optional_trailing_slash = trailing;
    for (auto& existing : routes_) {
        if (existing.method == route.method && existing.pattern == route.pattern) {
            existing = std::move(route);
            return;
        }
    }
    routes_.push_back(std::move(route));
}

Match Router::match(Request& request) const {
    Match out;
    bool trailing = false;
    const auto segments = split_path(request.path, trailing);
    // Empty segments ("//") are collapsed by split_path; refuse them so ids cannot be empty.
    if (request.path.find("//") != std::string::npos) {
        out.error = Response::error(404, "no route for '" + request.path + "'");
        return out;
    }
    // Literal segments first: parameters are decoded only for the route that is used (this runs
    // once per request over every route).
    auto literals_match = [&](const Route& route) {
        if (route.segments.size() != segments.size() ||
            (trailing && !route.optional_trailing_slash)) {
            return false;
        }
        for (std::size_t i = 0; i < segments.size(); ++i) {
            const Segment& s = route.segments[i];
            if (!s.is_param && s.text != segments[i]) {
                return false;
            }
        }
        return true;
    };
    // Decodes the route's parameters; false (with a 400 in `out`) on a malformed escape.
    auto decode = [&](const Route& route, std::map<std::string, std::string>& params) {
        for (std::size_t i = 0; i < segments.size(); ++i) {
            const Segment& s = route.segments[i];
            if (!s.is_param) {
                continue;
            }
            auto decoded = percent_decode(segments[i]);
            if (!decoded) {
                out.error = Response::field_error(
                    400, "path parameter '" + s.text + "' has a malformed %-escape", s.text);
                return false;
            }
            params.emplace(s.text, std::move(*decoded));
        }
        return true;
    };
    const Route* first_path_match = nullptr;
    for (const auto& route : routes_) {
        if (!literals_match(route)) {
            continue;
        }
        if (first_path_match == nullptr) {
            first_path_match = &route;
        }
        if (route.method != request.method) {
            continue;
        }
        std::map<std::string, std::string> params;
        if (!decode(route, params)) {
            return out;
        }
        request.params = std::move(params);
        out.execution = route.execution;
        if (route.execution == Execution::Async) {
            out.async_handler = &route.async_handler;
        } else {
            out.handler = &route.handler;
        }
        return out;
    }
    if (first_path_match != nullptr) {
        std::map<std::string, std::string> params;
        if (!decode(*first_path_match, params)) {
            return out;
        }
        std::set<std::string> allowed;
        for (const auto& route : routes_) {
            if (literals_match(route)) {
                allowed.insert(route.method);
            }
        }
        if (allowed.count("GET") != 0) {
            allowed.insert("HEAD");  // the server answers HEAD wherever GET is (as GET, no body)
        }
        out.error = Response::error(405, "The method is not allowed for the requested URL.");
        std::string allow;
        for (const auto& method : allowed) {
            allow += (allow.empty() ? "" : ", ") + method;
        }
        out.error.headers.emplace_back("Allow", allow);
        return out;
    }
    out.error = Response::error(404, "no route for '" + request.path + "'");
    return out;
}

Response Router::invoke(const Handler& handler, const Request& request) noexcept {
    try {
        return handler(request);
    } catch (const std::exception& e) {
        return Response::error(500, std::string("internal error: ") + e.what());
    } catch (...) {
        return Response::error(500, "internal error");
    }
}

void Router::invoke_async(const AsyncHandler& handler, const Request& request,
                          Responder responder) noexcept {
    // The handler takes the responder by value; keep a way back to it for exceptions thrown
    // before it was moved in (the moved-from responder answers nothing).
    // The handler's by-value responder is destroyed while its exception unwinds, which would
    // answer "dropped" before the catch below could give the exception's message: an answer
    // made during that unwinding is skipped. Unanswered, `shared` still answers "dropped" when
    // its last copy goes.
    auto shared = std::make_shared<Responder>(std::move(responder));
    const int unwinding_before = std::uncaught_exceptions();
    Responder forward([shared, unwinding_before](Responder::Producer produce) {
        if (std::uncaught_exceptions() > unwinding_before) {
            return;
        }
        shared->respond_with(std::move(produce));
    });
    try {
        handler(request, std::move(forward));
    } catch (const std::exception& e) {
        shared->respond(Response::error(500, std::string("internal error: ") + e.what()));
    } catch (...) {
        shared->respond(Response::error(500, "internal error"));
    }
}

Response Router::route(Request& request) const {
    Match m = match(request);
    if (m.handler != nullptr) {
        return invoke(*m.handler, request);
    }
    if (m.async_handler == nullptr) {
        return std::move(m.error);
    }
    // Synchronous callers (tests, tools) wait for the answer; the producer runs here.
    struct Waiter {
        std::mutex mutex;
        std::condition_variable cv;
        std::optional<Responder::Producer> producer;
    };
    auto waiter = std::make_shared<Waiter>();
    invoke_async(*m.async_handler, request, Responder([waiter](Responder::Producer produce) {
                     {
                         std::lock_guard<std::mutex> lock(waiter->mutex);
                         waiter->producer = std::move(produce);
                     }
                     waiter->cv.notify_all();
                 }));
    std::unique_lock<std::mutex> lock(waiter->mutex);
    if (!waiter->cv.wait_for(lock, kRouteAsyncTimeout, [&] { return waiter->producer.has_value(); })) {
        return Response::error(504, "the handler did not answer within " +
                                        std::to_string(kRouteAsyncTimeout.count()) + " s");
    }
    auto producer = std::move(*waiter->producer);
    lock.unlock();
    return Responder::produce(producer);
}

}  // namespace synergos::core::http
