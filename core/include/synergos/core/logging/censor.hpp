// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file censor.hpp
/// Redacts sensitive values in structured log fields (`--censored`). Unlike the original, which
/// only looked at a few top-level keys, it walks nested objects and arrays.

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace synergos::core {

/// Replaces the value of every key matching one of the patterns, at any depth.
/// Patterns match whole keys, case-insensitively; `*` matches any run of characters
/// (`*_dir` matches `DATA_DIR` and `out_dir`). A matching key's whole value is replaced, even
/// when it is an object or an array; null values are kept (nothing to hide). A string value that
/// carries a credential ("Bearer ...", "Basic ...") is replaced whatever its key. With
/// `scrub_free_text` (--censored), absolute paths and IPv4 addresses inside other string values
/// (error messages quote the file or peer they failed on) are replaced where they stand.
/// Threading: immutable after construction; `apply` may run on any thread.
class Censor {
public:
    /// The replacement text.
    static constexpr const char* kRedacted = "*CENSORED*";

    explicit Censor(std::vector<std::string> patterns, bool scrub_free_text = false);

    /// True when `key` matches a pattern.
    bool matches(std::string_view key) const;
    /// Censors `value` in place (recursively).
    void apply(nlohmann::json& value) const;

    const std::vector<std::string>& patterns() const { return patterns_; }

private:
    std::vector<std::string> patterns_;  ///< lower-cased
    bool scrub_free_text_ = false;
};

}  // namespace synergos::core
