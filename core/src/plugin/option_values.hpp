// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file option_values.hpp
/// Type checks and normalisation of textual option values (shared by descriptor checks and
/// `PluginLoader::validate_options`).

#include <optional>
#include <string>
#include <string_view>

#include <synergos/sdk/options.hpp>

namespace synergos::core::plugin_detail {

/// The value in canonical text for `type` ("yes" -> "true", "2s" -> "2000"), or nullopt when
/// `value` does not parse as `type`.
/// - int: a base-10 64-bit integer; double: a finite number; bool: true/false, yes/no, on/off,
///   1/0 (any case); duration_ms: a non-negative integer with an optional unit ms, s, m or h;
///   path: non-empty; json: a JSON document; string and string_list: anything.
std::optional<std::string> normalise_option_value(sdk::OptionType type, std::string_view value);

}  // namespace synergos::core::plugin_detail
