// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file message.hpp
/// Transport-independent HTTP request and response values used by the router, the route handlers
/// and the client. Header names are stored lower-case.

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace synergos::core::http {

/// A request as a route handler sees it.
struct Request {
    std::string method;  ///< upper-case, e.g. "GET"
    std::string target;  ///< raw request target, e.g. "/ttp/connect/collaborations?x=1"
    std::string path;    ///< target without the query, not percent-decoded
    std::string query;   ///< after '?', raw
    std::map<std::string, std::string> headers;  ///< lower-case names
    std::string body;
    std::map<std::string, std::string> params;  ///< `{name}` segments, percent-decoded
    std::string remote;                         ///< "ip:port" of the peer
    std::size_t max_json_depth = 64;            ///< from the server options

    /// A header's value, or an empty string.
    const std::string& header(const std::string& lower_name) const;
    /// A path parameter's value, or an empty string.
    const std::string& param(const std::string& name) const;
};

/// A response produced by a handler or received by the client.
struct Response {
    int status = 200;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;  ///< extra headers
    std::string body;

    /// A compact JSON response with a trailing newline (as flask-restx writes them).
    static Response json(int status, const nlohmann::json& value);
    /// `{"message": message}` with the given status.
    static Response error(int status, std::string_view message);
    /// `{"message": message, "field": field}`: an error about one named field or parameter.
    static Response field_error(int status, std::string_view message, std::string_view field);

    /// A header's value (case-insensitive), or an empty string.
    std::string header(std::string_view name) const;
};

/// The result of reading a JSON request body: the value, or the error response to send.
struct JsonBody {
    std::optional<nlohmann::json> value;
    Response error;
    bool ok() const noexcept { return value.has_value(); }
};

/// Checks the Content-Type (415 unless application/json), the nesting depth (400 past
/// `request.max_json_depth`), the syntax and UTF-8 (400) and, when `require_object`, that the
/// body is a JSON object (400).
JsonBody parse_json_body(const Request& request, bool require_object = true);

/// Deepest nesting of arrays and objects in a JSON text, counted outside strings without
/// parsing (so before a recursive parser sees it); stops counting past `limit`.
std::size_t nesting_depth(std::string_view text, std::size_t limit);

/// Decodes %XX escapes; nullopt on a malformed escape.
std::optional<std::string> percent_decode(std::string_view text);

/// The default reason phrase of a status code, e.g. "Not Found".
std::string_view reason_phrase(int status) noexcept;

}  // namespace synergos::core::http
