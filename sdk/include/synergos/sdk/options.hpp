// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file options.hpp
/// Option specifications (a plugin's "config map") and the validated option values a plugin
/// receives. The host checks every configured key against the plugin's `OptionSpec` table:
/// unknown keys and missing required keys are refused before the factory runs, defaults are
/// filled in, and `secret` values are redacted wherever options are printed.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace synergos::sdk {

/// The type of an option's value; the host checks the configured value parses as this type.
enum class OptionType : std::uint8_t {
    String = 1,
    Int,
    Bool,
    Double,
    DurationMs,  ///< an integer number of milliseconds
    Path,
    StringList,  ///< a comma-separated list
    Json,        ///< an opaque JSON document, for rare nested options
};

/// Lower-case type name ("string", "int", ...).
inline const char* to_string(OptionType type) noexcept {
    switch (type) {
        case OptionType::String: return "string";
        case OptionType::Int: return "int";
        case OptionType::Bool: return "bool";
        case OptionType::Double: return "double";
        case OptionType::DurationMs: return "duration_ms";
        case OptionType::Path: return "path";
        case OptionType::StringList: return "string_list";
        case OptionType::Json: return "json";
    }
    return "string";
}

/// One entry of a plugin's option table. Plain data with static storage in the plugin.
struct OptionSpec {
    const char* key;            ///< `[a-z0-9_]+`
    OptionType type;
    bool required;
    const char* default_value;  ///< textual default, or nullptr for none
    const char* description;
    bool secret;                ///< redacted when printed or logged
};

/// Validated option values handed to a plugin factory. Every key is one the plugin declared;
/// defaults are already filled in. Values are kept as text and parsed on access.
/// Threading: immutable after construction; safe to read from any thread.
class Options {
public:
    Options() = default;
    explicit Options(std::map<std::string, std::string> values) : values_(std::move(values)) {}

    bool has(const std::string& key) const { return values_.count(key) != 0; }

    std::string get_string(const std::string& key, const std::string& fallback = {}) const {
        auto it = values_.find(key);
        return it == values_.end() ? fallback : it->second;
    }
    std::int64_t get_int(const std::string& key, std::int64_t fallback = 0) const {
        auto it = values_.find(key);
        if (it == values_.end()) {
            return fallback;
        }
        try {
            return std::stoll(it->second);
        } catch (...) {
            return fallback;
        }
    }
    double get_double(const std::string& key, double fallback = 0.0) const {
        auto it = values_.find(key);
        if (it == values_.end()) {
            return fallback;
        }
        try {
            return std::stod(it->second);
        } catch (...) {
            return fallback;
        }
    }
    bool get_bool(const std::string& key, bool fallback = false) const {
        auto it = values_.find(key);
        if (it == values_.end()) {
            return fallback;
        }
        const std::string& v = it->second;
        return v == "true" || v == "1" || v == "yes" || v == "on";
    }
    std::vector<std::string> get_list(const std::string& key) const {
        std::vector<std::string> out;
        auto it = values_.find(key);
        if (it == values_.end()) {
            return out;
        }
        std::string item;
        for (char c : it->second) {
            if (c == ',') {
                if (!item.empty()) {
                    out.push_back(item);
                }
                item.clear();
            } else if (c != ' ') {
                item.push_back(c);
            }
        }
        if (!item.empty()) {
            out.push_back(item);
        }
        return out;
    }
    /// Every key and its textual value.
    const std::map<std::string, std::string>& values() const { return values_; }

private:
    std::map<std::string, std::string> values_;
};

}  // namespace synergos::sdk
