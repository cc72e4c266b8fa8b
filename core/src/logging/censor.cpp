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

bool digit(char c) { return c >= '0' && c <= '9'; }

/// Length of an IPv4 address (with an optional :port) starting at `at`, or 0.
std::size_t ipv4_at(const std::string& text, std::size_t at) {
    std::size_t i = at;
    for (int part = 0; part < 4; ++part) {
        if (part > 0) {
            if (i >= text.size() || text[i] != '.') {
                return 0;
            }
            ++i;
        }
        const std::size_t start = i;
        while (i < text.size() && digit(text[i]) && i - start < 3) {
            ++i;
        }
        if (i == start) {
            return 0;
        }
    }
    if (i < text.size() && (digit(text[i]) || text[i] == '.')) {
        return 0;  // more than an address: a longer number or version
    }
    if (i + 1 < text.size() && text[i] == ':' && digit(text[i + 1])) {
        for (++i; i < text.size() && digit(text[i]); ++i) {
        }
    }
    return i - at;
}

/// Where a path or an address may begin: the start, or after a separator of free text.
bool boundary(const std::string& text, std::size_t at) {
    if (at == 0) {
        return true;
    }
    const char c = text[at - 1];
    return c == ' ' || c == '\'' || c == '"' || c == '=' || c == '(' || c == ':' || c == ',' ||
           c == '[' || c == '@' || c == '\t';
}

/// Replaces absolute paths and IPv4 addresses inside free text (error messages quote the file
/// or the peer they failed on). Returns true when something was replaced.
bool scrub(std::string& text) {
    std::string out;
    bool changed = false;
    std::size_t i = 0;
    while (i < text.size()) {
        if (text[i] == '/' && boundary(text, i) && i + 1 < text.size() && text[i + 1] != ' ') {
            std::size_t end = i + 1;
            while (end < text.size() && text[end] != ' ' && text[end] != '\'' && text[end] != '"' &&
                   text[end] != ')' && text[end] != ',' && text[end] != ';' && text[end] != '\t') {
                ++end;
            }
            out += Censor::kRedacted;
            changed = true;
            i = end;
            continue;
        }
        if (digit(text[i]) && boundary(text, i)) {
            if (const std::size_t n = ipv4_at(text, i); n > 0) {
                out += Censor::kRedacted;
                changed = true;
                i += n;
                continue;
            }
        }
        out += text[i++];
    }
    if (changed) {
        text = std::move(out);
    }
    return changed;
}

}  // namespace

Censor::Censor(std::vector<std::string> patterns, bool scrub_free_text)
    : patterns_(std::move(patterns)), scrub_free_text_(scrub_free_text) {
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
    } else if (value.is_string()) {
        auto& text = value.get_ref<std::string&>();
        if (looks_like_credential(text)) {
            value = kRedacted;
        } else if (scrub_free_text_) {
            (void)scrub(text);
        }
    }
}

}  // namespace synergos::core
