// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/http/message.hpp>

#include <algorithm>
#include <cctype>
#include <exception>
#include <optional>
#include <unordered_set>
#include <vector>

namespace synergos::core::http {
namespace {

const std::string kEmpty;

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                              [](char x, char y) { return lower(x) == lower(y); });
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}


/// Builds the document as json::parse does, and stops at a key repeated within one object
/// (which json::parse would silently resolve to its last value). Linear in the body: the
/// callback form of json::parse rescans a parent at every nested object's end.
class UniqueKeysDom {
public:
    using Json = nlohmann::json;
    explicit UniqueKeysDom(Json& root) : dom_(root, true) {}

    bool null() { return dom_.null(); }
    bool boolean(bool v) { return dom_.boolean(v); }
    bool number_integer(Json::number_integer_t v) { return dom_.number_integer(v); }
    bool number_unsigned(Json::number_unsigned_t v) { return dom_.number_unsigned(v); }
    bool number_float(Json::number_float_t v, const std::string& text) {
        return dom_.number_float(v, text);
    }
    bool string(std::string& v) { return dom_.string(v); }
    bool binary(Json::binary_t& v) { return dom_.binary(v); }
    bool start_object(std::size_t n) {
        if (depth_ == keys_.size()) {
            keys_.emplace_back();
        } else if (keys_[depth_].bucket_count() > 64) {
            keys_[depth_] = {};  // clear() would sweep a big sibling's buckets every time
        } else {
            keys_[depth_].clear();
        }
        ++depth_;
        return dom_.start_object(n);
    }
    bool key(std::string& k) {
        if (!keys_[depth_ - 1].insert(k).second) {
            repeated = k;
            return false;  // stops the parse
        }
        return dom_.key(k);
    }
    bool end_object() {
        --depth_;
        return dom_.end_object();
    }
    bool start_array(std::size_t n) { return dom_.start_array(n); }
    bool end_array() { return dom_.end_array(); }
    template <class Exception>
    bool parse_error(std::size_t position, const std::string& token, const Exception& ex) {
        return dom_.parse_error(position, token, ex);  // throws, as json::parse does
    }

    std::optional<std::string> repeated;

private:
    nlohmann::detail::json_sax_dom_parser<Json> dom_;
    std::vector<std::unordered_set<std::string>> keys_;  // per open object, reused by depth
    std::size_t depth_ = 0;
};

}  // namespace

std::size_t nesting_depth(std::string_view text, std::size_t limit) {
    std::size_t depth = 0;
    std::size_t deepest = 0;
    bool in_string = false;
    bool escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            deepest = std::max(deepest, ++depth);
            if (deepest > limit) {
                return deepest;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return deepest;
}

const std::string& Request::header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? kEmpty : it->second;
}

const std::string& Request::param(const std::string& name) const {
    auto it = params.find(name);
    return it == params.end() ? kEmpty : it->second;
}

Response Response::json(int status, const nlohmann::json& value) {
    Response response;
    response.status = status;
    // Replace invalid UTF-8 rather than throw: a response must always be producible.
    response.body = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    response.body.push_back('\n');
    return response;
}

Response Response::error(int status, std::string_view message) {
    return json(status, nlohmann::json{{"message", message}});
}

Response Response::field_error(int status, std::string_view message, std::string_view field) {
    return json(status, nlohmann::json{{"message", message}, {"field", field}});
}

std::string Response::header(std::string_view name) const {
    if (iequals(name, "content-type")) {
        return content_type;
    }
    for (const auto& [key, value] : headers) {
        if (iequals(key, name)) {
            return value;
        }
    }
    return {};
}

JsonBody parse_json_body(const Request& request, bool require_object) {
    JsonBody out;
    std::string type = request.header("content-type");
    type = type.substr(0, type.find(';'));
    type.erase(std::remove_if(type.begin(), type.end(),
                              [](char c) { return std::isspace(static_cast<unsigned char>(c)); }),
               type.end());
    if (!iequals(type, "application/json")) {
        out.error = Response::error(
            415, "request body must be JSON (Content-Type: application/json), not '" +
                     (type.empty() ? std::string("none") : type) + "'");
        return out;
    }
    if (request.body.find_first_not_of(" \t\r\n") == std::string::npos) {
        out.error = Response::error(400, "request body is empty; a JSON object is required");
        return out;
    }
    if (nesting_depth(request.body, request.max_json_depth) > request.max_json_depth) {
        out.error = Response::error(400, "request body nests deeper than " +
                                             std::to_string(request.max_json_depth) + " levels");
        return out;
    }
    try {
        nlohmann::json value;
        UniqueKeysDom sax(value);
        if (!nlohmann::json::sax_parse(request.body, &sax)) {
            out.error = sax.repeated
                            ? Response::field_error(400,
                                                    "request body repeats the key '" +
                                                        *sax.repeated +
                                                        "'; each key may appear once",
                                                    *sax.repeated)
                            : Response::error(400, "request body is not valid JSON");
            return out;
        }
        if (require_object && !value.is_object()) {
            out.error = Response::error(
                400, std::string("request body must be a JSON object, not ") + value.type_name());
            return out;
        }
        out.value = std::move(value);
    } catch (const std::exception& e) {
        out.error =
            Response::error(400, std::string("request body is not valid JSON: ") + e.what());
    }
    return out;
}

std::optional<std::string> percent_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out.push_back(text[i]);
            continue;
        }
        if (i + 2 >= text.size()) {
            return std::nullopt;
        }
        const int hi = hex_value(text[i + 1]);
        const int lo = hex_value(text[i + 2]);
        if (hi < 0 || lo < 0) {
            return std::nullopt;
        }
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return out;
}

std::string_view reason_phrase(int status) noexcept {
    switch (status) {
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 204:
            return "No Content";
        case 400:
            return "Bad Request";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 409:
            return "Conflict";
        case 413:
            return "Payload Too Large";
        case 415:
            return "Unsupported Media Type";
        case 422:
            return "Unprocessable Entity";
        case 429:
            return "Too Many Requests";
        case 431:
            return "Request Header Fields Too Large";
        case 500:
            return "Internal Server Error";
        case 501:
            return "Not Implemented";
        case 503:
            return "Service Unavailable";
        case 504:
            return "Gateway Timeout";
        case 507:
            return "Insufficient Storage";
        default:
            return "";
    }
}

}  // namespace synergos::core::http
