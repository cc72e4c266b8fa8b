// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/http/router.hpp>

#include <exception>
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

void Router::add(std::string method, std::string_view pattern, Handler handler,
                 Execution execution) {
    Route route;
    route.execution = execution;
    route.method = std::move(method);
    route.pattern = std::string(pattern);
    bool trailing = false;
    for (auto segment : split_path(pattern, trailing)) {
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
    route.handler = std::move(handler);
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
    std::set<std::string> allowed;
    const Route* chosen = nullptr;
    std::map<std::string, std::string> chosen_params;
    for (const auto& route : routes_) {
        if (route.segments.size() != segments.size()) {
            continue;
        }
        if (trailing && !route.optional_trailing_slash) {
            continue;
        }
        std::map<std::string, std::string> params;
        bool matched = true;
        for (std::size_t i = 0; i < segments.size() && matched; ++i) {
            const Segment& s = route.segments[i];
            if (s.is_param) {
                auto decoded = percent_decode(segments[i]);
                if (!decoded) {
                    out.error = Response::field_error(
                        400, "path parameter '" + s.text + "' has a malformed %-escape", s.text);
                    return out;
                }
                params.emplace(s.text, std::move(*decoded));
            } else if (s.text != segments[i]) {
                matched = false;
            }
        }
        if (!matched) {
            continue;
        }
        allowed.insert(route.method);
        if (route.method == request.method && chosen == nullptr) {
            chosen = &route;
            chosen_params = std::move(params);
        }
    }
    if (chosen != nullptr) {
        request.params = std::move(chosen_params);
        out.handler = &chosen->handler;
        out.execution = chosen->execution;
        return out;
    }
    if (!allowed.empty()) {
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

Response Router::route(Request& request) const {
    Match m = match(request);
    if (m.handler == nullptr) {
        return std::move(m.error);
    }
    return invoke(*m.handler, request);
}

}  // namespace synergos::core::http
