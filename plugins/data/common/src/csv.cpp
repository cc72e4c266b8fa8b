// SPDX-License-Identifier: Apache-2.0
#include "csv.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <set>
#include <utility>

namespace synergos::plugins::data {

namespace {

sdk::Error csv_error(const std::string& label, std::size_t line, const std::string& what) {
    return {sdk::ErrorCode::InvalidArgument,
            "file " + label + ", line " + std::to_string(line) + ": " + what};
}

}  // namespace

sdk::Result<CsvTable> parse_csv(std::string text, const std::string& label) {
    CsvTable table;
    table.buffer = std::make_unique<std::string>(std::move(text));
    std::string& b = *table.buffer;
    std::size_t r = 0;
    if (b.size() >= 3 && b.compare(0, 3, "\xEF\xBB\xBF") == 0) {
        r = 3;
    }
    // Fields are compacted in place: `w` never passes `r`, so views stay valid.
    std::size_t w = r;
    std::size_t line = 1;
    std::vector<std::string_view> record;
    bool have_header = false;
    std::size_t width = 0;
    std::size_t padded = 0;  // empty fields added to short rows

    auto finish_record = [&](std::size_t record_line) -> sdk::Status {
        // A blank line is one empty unquoted field: skipped, as pandas does.
        if (record.size() == 1 && record[0].empty()) {
            record.clear();
            return sdk::Status::ok();
        }
        if (!have_header) {
            std::set<std::string_view> seen;
            for (std::string_view name : record) {
                if (name.empty()) {
                    return csv_error(label, record_line, "the header has an empty column name");
                }
                if (!seen.insert(name).second) {
                    return csv_error(label, record_line,
                                     "the header names column " + example(name) + " twice");
                }
            }
            table.header = record;
            width = record.size();
            have_header = true;
        } else {
            if (record.size() > width) {
                return csv_error(label, record_line,
                                 "row has " + std::to_string(record.size()) +
                                     " fields, the header has " + std::to_string(width));
            }
            // Padding costs 16 bytes per cell and nothing in the file: a small file of short
            // rows under a wide header would otherwise take memory without bound (a 211 KB file
            // took 4 GB). Legitimate short rows pad far less than the file's own size.
            padded += width - record.size();
            if (padded > b.size() + 4096) {
                return csv_error(label, record_line,
                                 "rows have far fewer fields than the header's " +
                                     std::to_string(width) + " (" + std::to_string(padded) +
                                     " missing so far, in a file of " + std::to_string(b.size()) +
                                     " bytes)");
            }
            table.cells.insert(table.cells.end(), record.begin(), record.end());
            table.cells.resize(table.cells.size() + (width - record.size()));
            ++table.rows;
        }
        record.clear();
        return sdk::Status::ok();
    };

    const std::size_t n = b.size();
    while (r < n) {
        const std::size_t record_line = line;
        // One record.
        while (true) {
            const std::size_t start = w;
            if (r < n && b[r] == '"') {
                ++r;
                bool closed = false;
                while (r < n) {
                    const char c = b[r];
                    if (c == '"') {
                        if (r + 1 < n && b[r + 1] == '"') {
                            b[w++] = '"';
                            r += 2;
                            continue;
                        }
                        ++r;
                        closed = true;
                        break;
                    }
                    if (c == '\n') {
                        ++line;
                    }
                    b[w++] = c;
                    ++r;
                }
                if (!closed) {
                    return csv_error(label, record_line, "unterminated quoted field");
                }
                // Characters between the closing quote and the delimiter are kept, as pandas does.
                while (r < n && b[r] != ',' && b[r] != '\n' && b[r] != '\r') {
                    b[w++] = b[r++];
                }
            } else {
                while (r < n && b[r] != ',' && b[r] != '\n' && b[r] != '\r') {
                    b[w++] = b[r++];
                }
            }
            record.emplace_back(b.data() + start, w - start);
            if (r < n && b[r] == ',') {
                ++r;
                continue;
            }
            // End of record: '\n', "\r\n", a lone '\r', or end of text.
            if (r < n && b[r] == '\r') {
                ++r;
            }
            if (r < n && b[r] == '\n') {
                ++r;
            }
            ++line;
            break;
        }
        sdk::Status st = finish_record(record_line);
        if (!st) {
            return st;
        }
    }
    if (!have_header) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, "file " + label + " has no header row"};
    }
    return table;
}

bool is_inside(const std::filesystem::path& root, const std::filesystem::path& real) {
    return std::mismatch(root.begin(), root.end(), real.begin(), real.end()).first == root.end();
}

sdk::Status require_inside(const std::filesystem::path& root, const std::filesystem::path& file) {
    std::error_code ec;
    const std::filesystem::path real = std::filesystem::canonical(file, ec);
    if (ec) {
        return sdk::Status::ok();  // missing: the reader says so
    }
    if (!is_inside(root, real)) {
        return {sdk::ErrorCode::InvalidArgument,
                "file " + file.string() + " resolves outside its dataset folder"};
    }
    return sdk::Status::ok();
}

std::string in_quotes(std::string_view s) { return "'" + std::string(s) + "'"; }

bool parse_number(std::string_view text, double& out) {
    if (!text.empty() && text.front() == '+') {
        text.remove_prefix(1);
    }
    if (text.empty()) {
        return false;
    }
    double d = 0.0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
    if (ec != std::errc() || ptr != text.data() + text.size() || !std::isfinite(d)) {
        return false;
    }
    out = d;
    return true;
}

std::string level_name(double v) {
    if (v == std::floor(v) && std::fabs(v) < 9.007199254740992e15) {
        return std::to_string(static_cast<long long>(v));
    }
    char buf[64];
    const auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
    return ec == std::errc() ? std::string(buf, ptr) : std::to_string(v);
}

std::string number_level_name(std::string_view text, double v) {
    // Every integer of at most 15 digits is exact as a double: level_name names it the same.
    constexpr std::size_t kExactDigits = 15;
    std::string_view t = text;
    bool negative = false;
    if (!t.empty() && (t.front() == '+' || t.front() == '-')) {
        negative = t.front() == '-';
        t.remove_prefix(1);
    }
    const std::size_t dot = t.find('.');
    std::string_view digits = t.substr(0, dot);
    const std::string_view fraction = dot == std::string_view::npos ? std::string_view() : t.substr(dot + 1);
    const auto all = [](std::string_view s, auto pred) {
        return std::all_of(s.begin(), s.end(), [&](char c) { return pred(c); });
    };
    if (digits.empty() || !all(digits, [](char c) { return c >= '0' && c <= '9'; }) ||
        !all(fraction, [](char c) { return c == '0'; })) {
        return level_name(v);  // not an integer literal (a fraction, an exponent)
    }
    while (digits.size() > 1 && digits.front() == '0') {
        digits.remove_prefix(1);
    }
    if (digits.size() <= kExactDigits) {
        return level_name(v);
    }
    return (negative ? "-" : "") + std::string(digits);
}

std::string example(std::string_view v) {
    constexpr std::size_t kMax = 40;
    if (v.size() <= kMax) {
        return in_quotes(v);
    }
    std::size_t n = kMax;
    while (n > 0 && (static_cast<unsigned char>(v[n]) & 0xC0U) == 0x80U) {
        --n;
    }
    return in_quotes(v.substr(0, n)) + "...";
}

}  // namespace synergos::plugins::data
