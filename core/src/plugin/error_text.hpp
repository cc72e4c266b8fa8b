// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file error_text.hpp
/// Building blocks of the loader's one-line error messages.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <synergos/sdk/plugin.hpp>

namespace synergos::core::plugin_detail {

/// Longest plugin-supplied text echoed in a message; longer text is cut with "...".
inline constexpr std::size_t kMaxEchoedChars = 256;

/// Makes untrusted text safe for a one-line message: control characters become spaces and the
/// text is cut at `max_chars`.
std::string sanitize(std::string_view text, std::size_t max_chars = kMaxEchoedChars);

/// Reads a NUL-terminated string from plugin memory, at most `max_chars` characters, sanitised.
/// nullptr yields "(none)".
std::string read_plugin_string(const char* text, std::size_t max_chars = kMaxEchoedChars);

/// "plugin '<name>' (kind <kind>)" or "plugin '<name>' (kind <kind>, file <file>)".
std::string plugin_prefix(std::string_view name, sdk::PluginKind kind, std::string_view file = {});

/// Kind name with the numeric value for out-of-range kinds ("unknown (42)").
std::string describe_kind(sdk::PluginKind kind);

/// "a, b, c", or `empty_text` when `items` is empty.
std::string join(const std::vector<std::string>& items, std::string_view separator = ", ",
                 std::string_view empty_text = "none");

/// True for `[a-z0-9_]+` names of at most 64 characters (plugin names and option keys).
bool is_valid_identifier(std::string_view name);

}  // namespace synergos::core::plugin_detail
