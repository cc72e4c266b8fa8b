// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <synergos/sdk/status.hpp>
#include <synergos/sdk/text.hpp>

namespace synergos::plugins::data {

/// A parsed CSV file. Fields are views into `*buffer` (quoted fields are unescaped in place), so
/// a table costs one copy of the file plus 16 bytes per cell. The text lives on the heap behind a
/// pointer so the views survive moves of the table (a short std::string keeps its characters
/// inside the object, and moving it would leave the views dangling).
/// Shape: `header.size()` columns; `cells` is row-major with that width. Rows with fewer fields
/// than the header are padded with empty fields (pandas reads them as missing).
struct CsvTable {
    std::unique_ptr<std::string> buffer;
    std::vector<std::string_view> header;
    std::vector<std::string_view> cells;
    std::size_t rows = 0;

    std::string_view at(std::size_t row, std::size_t column) const {
        return cells[row * header.size() + column];
    }
};

/// Parses RFC 4180 CSV (`"` quoting with `""` escapes, quoted newlines, LF or CRLF line ends,
/// blank lines skipped, a UTF-8 byte-order mark ignored). The first record is the header.
/// Errors (InvalidArgument naming `label` and the line): no header, an empty or duplicate column
/// name, a row with more fields than the header, an unterminated quote.
/// Also refused: rows so much shorter than the header that padding them would take more cells
/// than the file has bytes (plus 4096).
sdk::Result<CsvTable> parse_csv(std::string text, const std::string& label);

/// Level and class names must be UTF-8: they travel as JSON to the TTP, which would see them
/// with replacement characters and never match them again.
using sdk::is_utf8;

/// A finite decimal number using the whole text (a leading `+` allowed).
bool parse_number(std::string_view text, double& out);

/// The name of a number level: an integer when integral ("3.0" -> "3"), else the shortest
/// decimal that round-trips.
std::string level_name(double v);

/// The name of the level written `text`, which parse_number read as `v`: level_name(v), except
/// that an integer literal of more digits than a double holds exactly is named by its digits
/// (through the double, 123456789012345678 and 123456789012345679 were one level, named after
/// neither; pandas keeps them apart as int64).
std::string number_level_name(std::string_view text, double v);

/// `s` in single quotes, for messages.
std::string in_quotes(std::string_view s);

/// User text quoted in a message: at most 40 bytes, cut at a UTF-8 character boundary (a cell
/// can be megabytes, and the message is logged and sent on).
std::string example(std::string_view v);

/// True when `real` (a canonical path) is `root` or below it.
bool is_inside(const std::filesystem::path& root, const std::filesystem::path& real);

/// InvalidArgument when `file` exists and, following symbolic links, lies outside `root` (a
/// canonical dataset folder); OK when it is inside or does not exist (its reader reports that).
/// Data files are read only from inside their dataset folder, whatever links it holds.
sdk::Status require_inside(const std::filesystem::path& root, const std::filesystem::path& file);

}  // namespace synergos::plugins::data
