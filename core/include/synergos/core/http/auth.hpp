// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file auth.hpp
/// Bearer-token authorisation for the HTTP server: a token has a scope; GET and HEAD need read,
/// every other method needs admin. Tokens are compared in constant time and never logged.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace synergos::core::http {

/// What a token may do.
enum class Scope : std::uint8_t {
    Read = 1,  ///< GET and HEAD
    Admin,     ///< every method
};

/// "read" or "admin".
const char* scope_name(Scope scope) noexcept;

struct BearerToken {
    std::string secret;  ///< the token itself (never logged)
    Scope scope = Scope::Admin;
    std::string label;  ///< where it came from, e.g. "http.tokens[0]" (safe to log)
};

/// The outcome of checking a request's credentials.
struct AuthDecision {
    int status = 0;                      ///< 0: allowed; 401 or 403 otherwise
    std::string message;                 ///< why not (names no secret)
    const BearerToken* token = nullptr;  ///< the token that matched, when one did
};

/// Equality that takes the same time wherever the first difference is (length leaks only).
bool constant_time_equals(std::string_view a, std::string_view b) noexcept;

/// Paths answered without credentials (health and readiness probes).
bool is_open_path(std::string_view method, std::string_view path) noexcept;

/// True for 127.0.0.0/8, ::1 (also as "[::1]", as a URL writes it) and "localhost": an address
/// only this machine reaches.
bool is_loopback_host(std::string_view host) noexcept;

/// Checks `authorization` (the raw header value, possibly empty) against `tokens` for `method`
/// on `path`. With no tokens configured every request is allowed.
AuthDecision authorize(const std::vector<BearerToken>& tokens, std::string_view method,
                       std::string_view path, std::string_view authorization);

}  // namespace synergos::core::http
