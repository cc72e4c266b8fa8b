// SPDX-License-Identifier: Apache-2.0
#include "text.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <system_error>

namespace synergos::plugins::mlflow {

namespace {

bool is_plain_safe(std::string_view text) {
    if (text.empty()) {
        return false;
    }
    const char first = text.front();
    if (!((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z'))) {
        return false;
    }
    for (char c : text) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '/' || c == '-';
        if (!ok) {
            return false;
        }
    }
    // YAML 1.1 resolves these plain words to booleans or null (PyYAML's resolver table).
    static constexpr std::array<std::string_view, 25> kReserved = {
        "y",  "Y",    "yes",  "Yes",  "YES",   "n",     "N",     "no", "No",
        "NO", "true", "True", "TRUE", "false", "False", "FALSE", "on", "On",
        "ON", "off",  "Off",  "OFF",  "null",  "Null",  "NULL"};
    for (std::string_view word : kReserved) {
        if (text == word) {
            return false;
        }
    }
    return true;
}

bool is_printable_ascii(std::string_view text) {
    for (char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u > 0x7E) {
            return false;
        }
    }
    return true;
}

void append_hex(std::string& out, const char* prefix, std::uint32_t value, int digits) {
    char buffer[16];
    std::snprintf(buffer, sizeof(buffer), "%s%0*X", prefix, digits, value);
    out.append(buffer);
}

}  // namespace

std::string yaml_string(std::string_view text) {
    if (is_plain_safe(text)) {
        return std::string(text);
    }
    std::string out;
    if (is_printable_ascii(text)) {
        out.push_back('\'');
        for (char c : text) {
            out.push_back(c);
            if (c == '\'') {
                out.push_back('\'');
            }
        }
        out.push_back('\'');
        return out;
    }
    out.push_back('"');
    std::size_t i = 0;
    while (i < text.size()) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(static_cast<char>(c));
            ++i;
        } else if (c == '\n') {
            out.append("\\n");
            ++i;
        } else if (c == '\t') {
            out.append("\\t");
            ++i;
        } else if (c < 0x20 || c == 0x7F) {
            append_hex(out, "\\x", c, 2);
            ++i;
        } else if (c < 0x80) {
            out.push_back(static_cast<char>(c));
            ++i;
        } else {
            // Decode one UTF-8 sequence (the caller validated the text) and escape it.
            std::size_t extra = c >= 0xF0 ? 3 : (c >= 0xE0 ? 2 : 1);
            std::uint32_t cp = c & (extra == 3 ? 0x07U : (extra == 2 ? 0x0FU : 0x1FU));
            for (std::size_t k = 1; k <= extra && i + k < text.size(); ++k) {
                cp = (cp << 6U) | (static_cast<unsigned char>(text[i + k]) & 0x3FU);
            }
            if (cp > 0xFFFF) {
                append_hex(out, "\\U", cp, 8);
            } else {
                append_hex(out, "\\u", cp, 4);
            }
            i += extra + 1;
        }
    }
    out.push_back('"');
    return out;
}

std::string python_float_repr(double value) {
    if (std::isnan(value)) {
        return "nan";
    }
    if (std::isinf(value)) {
        return value > 0 ? "inf" : "-inf";
    }
    if (value == 0.0) {
        return std::signbit(value) ? "-0.0" : "0.0";
    }
    // Shortest round-trip digits in scientific form: "-d.ddde[+-]xx".
    char buffer[64];
    const auto result =
        std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
    const std::string_view sci(buffer, static_cast<std::size_t>(result.ptr - buffer));
    const bool negative = sci.front() == '-';
    const std::size_t e_pos = sci.find('e');
    std::string digits;
    for (char c : sci.substr(negative ? 1 : 0, e_pos - (negative ? 1 : 0))) {
        if (c != '.') {
            digits.push_back(c);
        }
    }
    int exponent = 0;
    const std::string_view exp_text = sci.substr(e_pos + 1);
    std::from_chars(exp_text.data() + (exp_text.front() == '+' ? 1 : 0),
                    exp_text.data() + exp_text.size(), exponent);
    // Python: value = 0.d1d2... x 10^decpt; exponent notation when decpt <= -4 or decpt > 16.
    const int decpt = exponent + 1;
    std::string out = negative ? "-" : "";
    if (decpt <= -4 || decpt > 16) {
        out.push_back(digits.front());
        if (digits.size() > 1) {
            out.push_back('.');
            out.append(digits, 1);
        }
        char exp_buffer[16];
        std::snprintf(exp_buffer, sizeof(exp_buffer), "e%c%02d", exponent < 0 ? '-' : '+',
                      exponent < 0 ? -exponent : exponent);
        out.append(exp_buffer);
    } else if (decpt <= 0) {
        out.append("0.");
        out.append(static_cast<std::size_t>(-decpt), '0');
        out.append(digits);
    } else if (static_cast<std::size_t>(decpt) >= digits.size()) {
        out.append(digits);
        out.append(static_cast<std::size_t>(decpt) - digits.size(), '0');
        out.append(".0");
    } else {
        out.append(digits, 0, static_cast<std::size_t>(decpt));
        out.push_back('.');
        out.append(digits, static_cast<std::size_t>(decpt));
    }
    return out;
}

std::string file_uri(std::string_view absolute_path) {
    std::string out = "file://";
    for (char c : absolute_path) {
        const auto u = static_cast<unsigned char>(c);
        const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-' || c == '~' ||
                          c == '/';
        if (keep) {
            out.push_back(c);
        } else {
            append_hex(out, "%", u, 2);
        }
    }
    return out;
}

std::optional<std::string> local_path_of_uri(std::string_view uri) {
    if (!uri.empty() && uri.front() == '/') {
        return std::string(uri);
    }
    constexpr std::string_view kScheme = "file://";
    if (uri.substr(0, kScheme.size()) != kScheme) {
        return std::nullopt;
    }
    std::string_view rest = uri.substr(kScheme.size());
    if (rest.substr(0, 9) == "localhost") {
        rest.remove_prefix(9);
    }
    if (rest.empty() || rest.front() != '/') {
        return std::nullopt;  // file://host/... names another machine
    }
    std::string out;
    for (std::size_t i = 0; i < rest.size(); ++i) {
        if (rest[i] == '%' && i + 2 < rest.size()) {
            int byte = 0;
            const auto r = std::from_chars(rest.data() + i + 1, rest.data() + i + 3, byte, 16);
            if (r.ec == std::errc() && r.ptr == rest.data() + i + 3) {
                out.push_back(static_cast<char>(byte));
                i += 2;
                continue;
            }
        }
        out.push_back(rest[i]);
    }
    return out;
}

}  // namespace synergos::plugins::mlflow
