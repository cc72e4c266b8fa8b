// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file text_format.hpp
/// Allocation-free text helpers for the basic sink: escaping for console and JSON output, a strict
/// scanner for the record's `fields_json` object, and a cached ISO-8601 timestamp formatter.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace synergos::plugins::basic {

/// Appends `text` for a console line: control characters and DEL become `\n`, `\t`, `\xHH`, and
/// the C1 controls U+0080-U+009F and U+2028/U+2029 become `\u009b`, `\u2028`..., so a record stays
/// on one line and cannot send terminal escape sequences. Other bytes (invalid UTF-8 included) are
/// copied.
void append_console_text(std::string& out, std::string_view text);

/// Appends `text` as the inside of a JSON string (no quotes): escapes what RFC 8259 requires plus
/// the C1 controls and U+2028/U+2029 (as `\u009b`...), and replaces invalid UTF-8 with U+FFFD, so
/// the output is always valid JSON and valid UTF-8 that no viewer splits or a terminal obeys.
void append_json_text(std::string& out, std::string_view text);

/// One member of a JSON object, as views into the scanned text.
/// `key` is the raw inside of the key string (escapes kept); `value` is the raw JSON value.
struct JsonMember {
    std::string_view key;
    std::string_view value;
};

/// Splits `text` into the members of a JSON object, validating it strictly (RFC 8259 grammar, UTF-8
/// inside strings, nesting at most 64 deep). Returns false, with `members` unspecified, when `text`
/// is not exactly one JSON object. Reuses the capacity of `members`.
bool split_json_object(std::string_view text, std::vector<JsonMember>& members);

/// Appends a JSON text that `split_json_object` has validated, without the whitespace outside
/// strings (so a pretty-printed value cannot break a one-record-per-line output) and with raw C1
/// controls and U+2028/U+2029 inside strings escaped as `\u009b`... (the same JSON value).
void append_compact_json(std::string& out, std::string_view valid_json);

/// Formats `2024-05-01T12:00:00.123Z` (UTC, milliseconds). Caches the part up to the seconds, which
/// changes once a second, so most calls only format the milliseconds.
/// Threading: not synchronised; the sink calls it under its own lock.
class TimestampFormatter {
public:
    void append(std::string& out, std::chrono::system_clock::time_point time);

private:
    std::int64_t cached_second_ = INT64_MIN;
    char cached_[24] = {};  // "YYYY-MM-DDTHH:MM:SS"
    std::size_t cached_size_ = 0;
};

}  // namespace synergos::plugins::basic
