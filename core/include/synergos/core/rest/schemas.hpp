// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file schemas.hpp
/// The record schemas the original enforced on create (synarchive templates, section 4.3 of the
/// reference), checked by hand so each failure names its field. Here they also apply to updates
/// (the merged document is checked), which the original never validated.

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace synergos::core::rest {

/// Which field is wrong and why, e.g. {"rounds", "must be an integer"}.
struct FieldError {
    std::string field;
    std::string problem;
};

/// Checks a document of `kind` (without its id fields). nullopt when valid.
std::optional<FieldError> validate_document(std::string_view kind, const nlohmann::json& doc);

/// A list of data tags as a Tag record holds them: arrays of path tokens (strings).
bool is_tag_list(const nlohmann::json& tags);

/// Ids (path parameters and body id fields): 1-128 of [A-Za-z0-9_.:-], not "." or "..".
/// Returns the problem, or nullopt when valid.
std::optional<std::string> id_problem(std::string_view id);

}  // namespace synergos::core::rest
