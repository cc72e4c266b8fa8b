// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/http/auth.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cctype>
#include <cstring>

namespace synergos::core::http {

const char* scope_name(Scope scope) noexcept {
    return scope == Scope::Read ? "read" : "admin";
}

bool constant_time_equals(std::string_view a, std::string_view b) noexcept {
    // Walk the whole presented value whatever the lengths, so timing says nothing about where
    // the first mismatch is.
    unsigned diff = a.size() == b.size() ? 0U : 1U;
    const std::size_t n = a.size();
    for (std::size_t i = 0; i < n; ++i) {
        const auto x = static_cast<unsigned char>(a[i]);
        const auto y = b.empty() ? 0U : static_cast<unsigned char>(b[i % b.size()]);
        diff |= x ^ y;
    }
    return diff == 0U && !b.empty();
}

bool is_open_path(std::string_view method, std::string_view path) noexcept {
    if (method != "GET" && method != "HEAD") {
        return false;
    }
    // Probes, and the dashboard's static page and assets: they carry no data (the page asks for
    // a token and sends it on every API call), and a browser cannot add a header to a page load.
    return path == "/healthz" || path == "/readyz" || path == "/" || path == "/index.html" ||
           (path.rfind("/assets/", 0) == 0 && path.size() > 8);
}

bool is_loopback_host(std::string_view host) noexcept {
    if (host == "localhost" || host == "::1" || host == "[::1]") {
        return true;
    }
    // An IPv4 address in 127.0.0.0/8, written as one: a name such as `127.example.net` is not
    // (it resolves wherever its owner says).
    if (host.size() >= sizeof("255.255.255.255") || host.rfind("127.", 0) != 0) {
        return false;
    }
    char text[sizeof("255.255.255.255")] = {};
    std::memcpy(text, host.data(), host.size());
    in_addr address{};
    return ::inet_pton(AF_INET, text, &address) == 1;
}

AuthDecision authorize(const std::vector<BearerToken>& tokens, std::string_view method,
                       std::string_view path, std::string_view authorization) {
    AuthDecision out;
    if (tokens.empty() || is_open_path(method, path)) {
        return out;
    }
    while (!authorization.empty() && authorization.front() == ' ') {
        authorization.remove_prefix(1);
    }
    constexpr std::string_view kScheme = "bearer ";
    bool bearer = authorization.size() > kScheme.size();
    for (std::size_t i = 0; bearer && i < kScheme.size(); ++i) {
        bearer = std::tolower(static_cast<unsigned char>(authorization[i])) == kScheme[i];
    }
    if (!bearer) {
        out.status = 401;
        out.message = authorization.empty()
                          ? "authentication required: send 'Authorization: Bearer <token>'"
                          : "unsupported Authorization scheme; use 'Bearer <token>'";
        return out;
    }
    std::string_view presented = authorization.substr(kScheme.size());
    while (!presented.empty() && (presented.back() == ' ' || presented.back() == '\t')) {
        presented.remove_suffix(1);
    }
    // Compare against every token (no early exit): the time does not tell which one matched.
    const BearerToken* matched = nullptr;
    for (const auto& token : tokens) {
        if (constant_time_equals(presented, token.secret) && matched == nullptr) {
            matched = &token;
        }
    }
    if (matched == nullptr) {
        out.status = 401;
        out.message = "invalid bearer token";
        return out;
    }
    out.token = matched;
    const bool reading = method == "GET" || method == "HEAD";
    if (!reading && matched->scope != Scope::Admin) {
        out.status = 403;
        out.message =
            "this token has the read scope; " + std::string(method) + " needs the admin scope";
    }
    return out;
}

}  // namespace synergos::core::http
