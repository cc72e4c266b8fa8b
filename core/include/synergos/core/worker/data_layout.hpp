// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file data_layout.hpp
/// The Synergos worker data layout (ARCHITECTURE.md "External contracts" 5): a tag is a list of
/// folder-name tokens naming one dataset folder under the worker's data directory; that folder
/// holds `metadata.json` (`{"datatype": ..., "operations": {...}}`) and the data files.
///
/// Security: tokens containing `/`, `\`, NUL or control characters, `.` or `..`, and resolved
/// folders whose real path (symbolic links followed) is outside the data directory are refused,
/// so no tag can make the worker read outside its data directory.
/// Threading: pure functions over the file system, safe from any thread.

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/status.hpp>

namespace synergos::core::worker {

/// The deepest nesting of JSON the worker accepts, in requests and in the data directory's JSON
/// files: nlohmann::json copies and prints values recursively, so deeper input would overflow
/// the stack.
inline constexpr std::size_t kMaxJsonDepth = 64;


/// A resolved tag.
struct DatasetFolder {
    std::filesystem::path path;  ///< canonical (real) path, inside the data directory
    std::string relative;        ///< path relative to the data directory, '/'-separated
    std::string datatype;        ///< metadata.json "datatype"
    nlohmann::json operations = nlohmann::json::object();  ///< metadata.json "operations"
};

/// Checks one tag (a JSON array of folder-name tokens). InvalidArgument names the tag and token.
sdk::Status check_tag(const nlohmann::json& tag);

/// The tag as readable text for messages, e.g. `["heart_disease", "data1", "iid_1"]`.
std::string tag_text(const nlohmann::json& tag);

/// Resolves `tag` under `data_root` (a canonical path): the folder `data_root/tok1/tok2/...` when
/// it has a `metadata.json`; otherwise the folder with a `metadata.json` whose relative path
/// components contain every token (order-insensitive, as the original worker), the one with the
/// fewest components winning, then the smallest path. At most `max_entries` directory entries
/// are visited. Errors: InvalidArgument (bad token, path outside the data directory or
/// metadata.json not a regular file inside it), FailedPrecondition (metadata.json unusable: larger
/// than 1 MiB, not a JSON object, nested deeper than kMaxJsonDepth, no 'datatype', 'operations'
/// not an object; the message names the file), NotFound (no folder matches), ResourceExhausted
/// (search bound hit).
sdk::Result<DatasetFolder> resolve_tag(const std::filesystem::path& data_root,
                                       const nlohmann::json& tag, std::size_t max_entries);

/// A cheap fingerprint of every entry below a folder (relative names, sizes, modification
/// times), so that a cached load is reused only while its files are unchanged.
std::string folder_fingerprint(const std::filesystem::path& folder);

}  // namespace synergos::core::worker
