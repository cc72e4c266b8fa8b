// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file text.hpp
/// (SDK 1.2.1) UTF-8 checks for plugins that take text from users or files and hand it on as
/// JSON, key fields or tracking names (a Latin-1 CSV cell, a store key, an MLflow tag).
/// Header-only: nothing here crosses the plugin boundary, so the ABI is unchanged.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace synergos::sdk {

/// The number of code points in `text` when it is well-formed UTF-8 (RFC 3629: no overlong
/// forms, no surrogates, nothing past U+10FFFF, no truncated sequence), else
/// `std::string_view::npos`.
inline std::size_t utf8_length(std::string_view text) noexcept {
    std::size_t count = 0;
    std::size_t i = 0;
    while (i < text.size()) {
        const auto c = static_cast<unsigned char>(text[i]);
        std::size_t extra = 0;
        std::uint32_t cp = 0;
        if (c < 0x80U) {
            ++i;
            ++count;
            continue;
        }
        if ((c & 0xE0U) == 0xC0U) {
            extra = 1;
            cp = c & 0x1FU;
        } else if ((c & 0xF0U) == 0xE0U) {
            extra = 2;
            cp = c & 0x0FU;
        } else if ((c & 0xF8U) == 0xF0U) {
            extra = 3;
            cp = c & 0x07U;
        } else {
            return std::string_view::npos;  // a continuation byte first, or 0xF8-0xFF
        }
        if (i + extra >= text.size()) {
            return std::string_view::npos;  // truncated sequence
        }
        for (std::size_t k = 1; k <= extra; ++k) {
            const auto cc = static_cast<unsigned char>(text[i + k]);
            if ((cc & 0xC0U) != 0x80U) {
                return std::string_view::npos;
            }
            cp = (cp << 6U) | (cc & 0x3FU);
        }
        constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
        if (cp < kMin[extra] || cp > 0x10FFFFU || (cp >= 0xD800U && cp <= 0xDFFFU)) {
            return std::string_view::npos;  // overlong, past U+10FFFF, or a surrogate
        }
        i += extra + 1;
        ++count;
    }
    return count;
}

/// True when `text` is well-formed UTF-8 (see utf8_length).
inline bool is_utf8(std::string_view text) noexcept {
    return utf8_length(text) != std::string_view::npos;
}

}  // namespace synergos::sdk
