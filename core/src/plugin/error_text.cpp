// SPDX-License-Identifier: Apache-2.0
#include "error_text.hpp"

#include <cstring>

namespace synergos::core::plugin_detail {

std::string sanitize(std::string_view text, std::size_t max_chars) {
    std::string out;
    out.reserve(text.size() < max_chars ? text.size() : max_chars + 3);
    for (char c : text) {
        if (out.size() >= max_chars) {
            out += "...";
            break;
        }
        const auto u = static_cast<unsigned char>(c);
        out.push_back(u < 0x20 || u == 0x7f ? ' ' : c);
    }
    return out;
}

std::string read_plugin_string(const char* text, std::size_t max_chars) {
    if (text == nullptr) {
        return "(none)";
    }
    // strnlen bounds the read: a forged descriptor may point at unterminated memory.
    const std::size_t length = ::strnlen(text, max_chars + 1);
    return sanitize(std::string_view(text, length), max_chars);
}

std::string plugin_prefix(std::string_view name, sdk::PluginKind kind, std::string_view file) {
    std::string out = "plugin '" + sanitize(name) + "' (kind " + describe_kind(kind);
    if (!file.empty()) {
        out += ", file ";
        out += sanitize(file, 4096);
    }
    out += ")";
    return out;
}

std::string describe_kind(sdk::PluginKind kind) {
    const std::string name = sdk::kind_name(kind);
    if (name == "unknown") {
        return "unknown (" + std::to_string(static_cast<int>(kind)) + ")";
    }
    return name;
}

std::string join(const std::vector<std::string>& items, std::string_view separator,
                 std::string_view empty_text) {
    if (items.empty()) {
        return std::string(empty_text);
    }
    std::string out;
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i != 0) {
            out += separator;
        }
        out += items[i];
    }
    return out;
}

bool is_valid_identifier(std::string_view name) {
    if (name.empty() || name.size() > 64) {
        return false;
    }
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        if (!ok) {
            return false;
        }
    }
    return true;
}

}  // namespace synergos::core::plugin_detail
