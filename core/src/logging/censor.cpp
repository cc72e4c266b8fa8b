// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/logging/censor.hpp>

#include <cctype>

namespace synergos::core {

namespace {

char lower(char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

/// Glob match with `*` only; `pattern` is lower-case, `text` is compared case-insensitively.
bool glob_match(std::string_view pattern, std::string_view text) {
    std::size_t p = 0;
    std::size_t t = 0;
    std::size_t star = std::string_view::npos;
    std::size_t resume = 0;
    while (t < text.size()) {
        if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            resume = t;
        } else if (p < pattern.size() && pattern[p] == lower(text[t])) {
            ++p;
            ++t;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            t = ++resume;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') {
        ++p;
    }
    return p == pattern.size();
}

}  // namespace

Censor::Censor(std::vector<std::string> patterns) : patterns_(std::move(patterns)) {
    for (auto& pattern : patterns_) {
        for (auto& c : pattern) {
            c = lower(c);
        }
    }
}

bool Censor::matches(std::string_view key) const {
    for (const auto& pattern : patterns_) {
        if (glob_match(pattern, key)) {
            return true;
        }
    }
    return false;
}

void Censor::apply(nlohmann::json& value) const {
    if (value.is_object()) {
        for (auto it = value.begin(); it != value.end(); ++it) {
            if (matches(it.key())) {
                if (!it.value().is_null()) {
                    it.value() = kRedacted;
                }
            } else {
                apply(it.value());
            }
        }
    } else if (value.is_array()) {
        for (auto& item : value) {
            apply(item);
        }
    }
}

}  // namespace synergos::core
