// SPDX-License-Identifier: Apache-2.0
#include "option_values.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>

#include <nlohmann/json.hpp>

namespace synergos::core::plugin_detail {
namespace {

std::optional<std::int64_t> parse_int(std::string_view text) {
    std::int64_t value = 0;
    const char* first = text.data();
    const char* last = text.data() + text.size();
    auto [end, ec] = std::from_chars(first, last, value);
    if (text.empty() || ec != std::errc() || end != last) {
        return std::nullopt;
    }
    return value;
}

std::string lower(std::string_view text) {
    std::string out(text);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') {
            c = static_cast<char>(c - 'A' + 'a');
        }
    }
    return out;
}

std::optional<std::string> normalise_bool(std::string_view value) {
    const std::string v = lower(value);
    if (v == "true" || v == "yes" || v == "on" || v == "1") {
        return std::string("true");
    }
    if (v == "false" || v == "no" || v == "off" || v == "0") {
        return std::string("false");
    }
    return std::nullopt;
}

std::optional<std::string> normalise_double(std::string_view value) {
    double number = 0.0;
    const char* last = value.data() + value.size();
    auto [end, ec] = std::from_chars(value.data(), last, number);
    if (value.empty() || ec != std::errc() || end != last || !std::isfinite(number)) {
        return std::nullopt;
    }
    return std::string(value);
}

std::optional<std::string> normalise_duration(std::string_view value) {
    std::size_t digits = 0;
    while (digits < value.size() && value[digits] >= '0' && value[digits] <= '9') {
        ++digits;
    }
    const auto number = parse_int(value.substr(0, digits));
    if (!number || *number < 0) {
        return std::nullopt;
    }
    const std::string_view unit = value.substr(digits);
    std::int64_t factor = 0;
    if (unit.empty() || unit == "ms") {
        factor = 1;
    } else if (unit == "s") {
        factor = 1000;
    } else if (unit == "m") {
        factor = 60 * 1000;
    } else if (unit == "h") {
        factor = 60 * 60 * 1000;
    } else {
        return std::nullopt;
    }
    if (*number > std::numeric_limits<std::int64_t>::max() / factor) {
        return std::nullopt;
    }
    return std::to_string(*number * factor);
}

}  // namespace

std::optional<std::string> normalise_option_value(sdk::OptionType type, std::string_view value) {
    switch (type) {
        case sdk::OptionType::String:
        case sdk::OptionType::StringList:
            return std::string(value);
        case sdk::OptionType::Int:
            if (!parse_int(value)) {
                return std::nullopt;
            }
            return std::string(value);
        case sdk::OptionType::Bool:
            return normalise_bool(value);
        case sdk::OptionType::Double:
            return normalise_double(value);
        case sdk::OptionType::DurationMs:
            return normalise_duration(value);
        case sdk::OptionType::Path:
            if (value.empty()) {
                return std::nullopt;
            }
            return std::string(value);
        case sdk::OptionType::Json:
            if (nlohmann::json::parse(value, nullptr, false).is_discarded()) {
                return std::nullopt;
            }
            return std::string(value);
    }
    return std::nullopt;
}

}  // namespace synergos::core::plugin_detail
