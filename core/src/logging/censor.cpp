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

/// A credential in a value whatever its key ("Bearer abc", "Basic abc"): an Authorization header
/// copied into a message or a URL field must not leak because its key looked harmless.
bool looks_like_credential(const std::string& text) {
    for (std::string_view scheme : {"bearer ", "basic "}) {
        if (text.size() > scheme.size()) {
            bool same = true;
            for (std::size_t i = 0; i < scheme.size() && same; ++i) {
                same = lower(text[i]) == scheme[i];
            }
            if (same) {
                return true;
            }
        }
    }
    return false;
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
    } else if (value.is_string() && looks_like_credential(value.get_ref<const std::string&>())) {
        value = kRedacted;
    }
}

}  // namespace synergos::core
