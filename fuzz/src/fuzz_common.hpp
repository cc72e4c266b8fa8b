// SPDX-License-Identifier: Apache-2.0
#pragma once

// Helpers shared by the fuzz targets: splitting one input into sections, and a check that aborts
// (libFuzzer records the input) when an invariant of the code under test does not hold.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace synergos::fuzz {

/// Aborts with a message: a broken invariant is a finding, like a sanitizer report.
[[noreturn]] inline void fail(const char* what, const std::string& detail = {}) {
    std::fprintf(stderr, "fuzz invariant broken: %s %s\n", what, detail.c_str());
    std::abort();
}

inline void check(bool condition, const char* what, const std::string& detail = {}) {
    if (!condition) {
        fail(what, detail);
    }
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

/// Splits `text` at every `separator` (seed files stay readable: sections are plain text).
inline std::vector<std::string_view> split_sections(std::string_view text,
                                                    std::string_view separator) {
    std::vector<std::string_view> out;
    for (;;) {
        const auto at = text.find(separator);
        if (at == std::string_view::npos) {
            out.push_back(text);
            return out;
        }
        out.push_back(text.substr(0, at));
        text.remove_prefix(at + separator.size());
    }
}

}  // namespace synergos::fuzz
