// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file gelf.hpp
/// GELF 1.1 encoding of one `sdk::LogRecord`
/// (https://go2docs.graylog.org/current/getting_in_log_data/gelf.html).
///
/// Mapping (also in README.md):
///   version "1.1"; host = record host (or the machine's name); short_message = event;
///   full_message = the `exception` and/or `stack` field, only when one exists;
///   timestamp = seconds since the epoch with millisecond decimals; level = syslog severity;
///   `_logger`, `_level_name`, `_file`, `_line`, `_function`, `_facility` (empty ones left out);
///   then every field of `fields_json`, prefixed with `_`:
///   - nested objects are flattened, names joined with `_` ({"job":{"id":1}} -> `_job_id`);
///   - arrays are sent as their JSON text, booleans as "true"/"false", nulls are left out;
///   - characters outside [A-Za-z0-9_.-] in a name become `_`;
///   - a name that would be `_id` (forbidden by GELF) or that of a standard field above is sent
///     as `_field_<name>` (so `id` -> `_field_id`); a name already used gets `_2`, `_3`...
///   - a `fields_json` that is not a JSON object is sent as the string `_fields_raw`;
///   - every string value is cut to `kMaxValueBytes`, ending with `kTruncationMarker`.

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_set>

#include <synergos/sdk/log.hpp>

namespace synergos::plugins::graylog {

/// Longest text kept for one value (short_message, full_message, each field, host, logger, file,
/// function). A longer value is cut at a character boundary and ends with `kTruncationMarker`, so
/// the cut value, marker included, is at most this long.
inline constexpr std::size_t kMaxValueBytes = 32 * 1024;
/// Longest `fields_json` buffered after its strings were cut to `kMaxValueBytes`; a longer one
/// (say, a huge array of numbers) is cut as text and sent as `_fields_raw`.
inline constexpr std::size_t kMaxFieldsBytes = 1024 * 1024;
/// Ends every cut value.
inline constexpr std::string_view kTruncationMarker = "...[truncated]";

/// Length of the longest prefix of `text` of at most `limit` bytes that does not split a UTF-8
/// sequence.
std::size_t utf8_prefix_length(std::string_view text, std::size_t limit);

/// Appends `text`, or when it is longer than `cap` its first characters and the marker, so that
/// at most `cap` bytes are appended (`cap` must exceed the marker's length).
void append_capped(std::string& out, std::string_view text, std::size_t cap);

/// Copies the JSON text `json` to `out` with every string (keys too) longer than `cap` bytes as
/// written (escapes count as written) cut at a character and escape boundary and ended by the
/// marker. Valid JSON stays valid JSON with the same structure. Returns true when it cut.
bool cap_json_strings(std::string_view json, std::size_t cap, std::string& out);

/// Appends `text` as a quoted JSON string; invalid UTF-8 becomes U+FFFD, so the output is always
/// valid JSON that Graylog accepts. Text longer than `cap` bytes is cut (see `append_capped`).
void append_json_string(std::string& out, std::string_view text, std::size_t cap = kMaxValueBytes);

/// Replaces every character outside [A-Za-z0-9_.-] with `_` (GELF field names must match
/// `^[\w\.\-]*$`).
std::string sanitize_field_name(std::string_view name);

/// Turns records into GELF JSON documents.
/// Threading: not synchronised (keeps scratch state); the sink uses it from its sender thread only.
class GelfEncoder {
public:
    /// `facility` is sent as `_facility` when not empty; `default_host` is used for records
    /// without a host.
    GelfEncoder(std::string facility, std::string default_host);

    /// Replaces `out` with the GELF JSON of `record` (no delimiter, no NUL byte inside).
    void encode(const sdk::LogRecord& record, std::string& out);

private:
    class FieldWriter;

    std::string facility_;
    std::string default_host_;
    std::unordered_set<std::string> used_names_;
};

}  // namespace synergos::plugins::graylog
