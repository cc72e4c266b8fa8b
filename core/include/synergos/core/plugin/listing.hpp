// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file listing.hpp
/// Renders `PluginLoader::discover()` results for `synergos plugins --format text|json|markdown`.
/// Markdown output is what plugin READMEs paste as their options table (STYLE.md D4).

#include <string>
#include <string_view>
#include <vector>

#include <synergos/core/plugin/loader.hpp>

namespace synergos::core {

/// The accepted `format` values, for help texts and validation.
inline constexpr const char* kListingFormats = "text, json, markdown";

/// True when `format` is one `render_plugin_listing` accepts.
bool is_listing_format(std::string_view format);

/// Renders every entry (plugins and refused files) in `format`.
/// - text: one block per plugin (kind/name, version, status, file, options) and one
///   `error: <message>` line per refused file;
/// - json: `{"plugins": [...], "errors": [{"file", "code", "message"}]}`, each plugin with
///   name, kind, version, status, description, vendor, file, abi {major, minor}, fingerprint
///   and options [{key, type, required, default (null when none), description, secret}];
/// - markdown: a section per plugin with an options table, then a list of refused files.
/// Errors: throws std::invalid_argument naming the format and the valid ones when `format` is
/// not accepted (check with `is_listing_format` first to avoid it).
std::string render_plugin_listing(const std::vector<PluginLoader::Discovered>& entries,
                                  std::string_view format);

}  // namespace synergos::core
