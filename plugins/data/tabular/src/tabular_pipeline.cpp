// SPDX-License-Identifier: Apache-2.0
#include "tabular_pipeline.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "csv.hpp"

namespace synergos::plugins::tabular {

using data::CsvTable;
using data::example;
using data::level_name;
using data::number_level_name;
using data::parse_csv;
using data::parse_number;
using data::is_utf8;

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using sdk::Error;
using sdk::ErrorCode;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr std::int64_t kMaxSchemaBytes = std::int64_t{16} << 20;
constexpr std::string_view kTarget = "target";

Error invalid(std::string message) {
    return {ErrorCode::InvalidArgument, std::move(message)};
}

enum class Kind : std::uint8_t { Numeric, Categorical };

struct DtypeInfo {
    Kind kind = Kind::Numeric;
    bool integer = false;
    bool boolean = false;
    double min = 0.0;  ///< integer dtypes: the range a value must lie in
    double max = 0.0;
};

/// pandas dtype names accepted in schema.json.
std::optional<DtypeInfo> dtype_info(std::string_view d) {
    struct IntType {
        std::string_view name;
        double min;
        double max;
    };
    // The 64-bit maxima are 2^63 and 2^64, exclusive (exact doubles; INT64_MAX and UINT64_MAX
    // are not): see dtype_violation.
    constexpr double k63 = 9223372036854775808.0;
    constexpr double k64 = 18446744073709551616.0;
    static constexpr IntType kInts[] = {
        {"int", -k63, k63},           {"int8", -128.0, 127.0},
        {"int16", -32768.0, 32767.0}, {"int32", -2147483648.0, 2147483647.0},
        {"int64", -k63, k63},         {"Int8", -128.0, 127.0},
        {"Int16", -32768.0, 32767.0}, {"Int32", -2147483648.0, 2147483647.0},
        {"Int64", -k63, k63},         {"uint8", 0.0, 255.0},
        {"uint16", 0.0, 65535.0},     {"uint32", 0.0, 4294967295.0},
        {"uint64", 0.0, k64},         {"UInt8", 0.0, 255.0},
        {"UInt16", 0.0, 65535.0},     {"UInt32", 0.0, 4294967295.0},
        {"UInt64", 0.0, k64}};
    static constexpr std::string_view kFloats[] = {"float",   "float16", "float32", "float64",
                                                   "Float32", "Float64", "double"};
    static constexpr std::string_view kCats[] = {"category", "object", "string", "str"};
    for (const IntType& t : kInts) {
        if (d == t.name) {
            return DtypeInfo{Kind::Numeric, true, false, t.min, t.max};
        }
    }
    for (std::string_view s : kFloats) {
        if (d == s) {
            return DtypeInfo{Kind::Numeric, false, false, 0.0, 0.0};
        }
    }
    if (d == "bool" || d == "boolean") {
        return DtypeInfo{Kind::Numeric, true, true, 0.0, 1.0};
    }
    for (std::string_view s : kCats) {
        if (d == s) {
            return DtypeInfo{Kind::Categorical, false, false, 0.0, 0.0};
        }
    }
    return std::nullopt;
}

std::string_view trim(std::string_view v) {
    const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (!v.empty() && is_space(v.front())) {
        v.remove_prefix(1);
    }
    while (!v.empty() && is_space(v.back())) {
        v.remove_suffix(1);
    }
    return v;
}

/// pandas' default NA strings.
bool is_missing_token(std::string_view v) {
    static constexpr std::string_view kTokens[] = {
        "",     "#N/A",   "#N/A N/A", "#NA",  "-1.#IND", "-1.#QNAN", "-NaN",
        "-nan", "1.#IND", "1.#QNAN",  "<NA>", "N/A",     "NA",       "NULL",
        "NaN",  "None",   "n/a",      "nan",  "null"};
    for (std::string_view t : kTokens) {
        if (v == t) {
            return true;
        }
    }
    return false;
}

bool parse_bool(std::string_view v, double& out) {
    if (v == "True" || v == "true" || v == "TRUE") {
        out = 1.0;
        return true;
    }
    if (v == "False" || v == "false" || v == "FALSE") {
        out = 0.0;
        return true;
    }
    return false;
}

/// A numeric column refuses its data when more than this share of its non-empty cells do not
/// parse: the dtype, not the odd cell, is wrong (a few stray texts are imputed as missing).
constexpr double kMaxUnparseableShare = 0.5;

/// JSON-safe double (NaN/inf would make nlohmann emit null anyway; keep it explicit).
Json number(double v) {
    return std::isfinite(v) ? Json(v) : Json(nullptr);
}

struct ColumnDef {
    std::string name;
    std::string dtype;
    DtypeInfo info;
    std::string schema_file;
};

struct SourceFile {
    std::string path;
    CsvTable table;
    std::vector<std::ptrdiff_t> file_column;  ///< per global column: index in the file, or -1
};

/// One column over all rows of the split.
struct Column {
    ColumnDef def;
    std::vector<double> num;           ///< numeric columns: NaN = missing
    std::vector<std::int32_t> codes;   ///< categorical: index into `levels`, -1 = missing
    std::vector<std::string> levels;   ///< categorical level names (sorted at the end)
    std::vector<double> level_values;  ///< the number a level names, NaN for a text level
    std::vector<std::size_t> level_first_row;  ///< split row where each level is first seen
    std::int64_t missing = 0;
    std::int64_t parsed = 0;  ///< numeric columns: non-empty cells that parse
    std::int64_t unparseable = 0;
    std::string unparseable_example;  ///< the first unparseable cell, quoted for messages
    std::string unparseable_file;     ///< the file holding it
    std::int64_t imputed = 0;
    Json imputed_value;

    bool is_missing(std::size_t row) const {
        return def.info.kind == Kind::Numeric ? std::isnan(num[row]) : codes[row] < 0;
    }
    /// The numeric value of a present cell (numeric column, or a categorical number level).
    double value(std::size_t row) const {
        return def.info.kind == Kind::Numeric ? num[row]
                                              : level_values[static_cast<std::size_t>(codes[row])];
    }
};

/// The [min, max] of `feature` in a `scaling` option ({feature: [min, max]}), when valid.
std::optional<std::pair<double, double>> scaling_of(const Json& scaling, const std::string& feature) {
    if (!scaling.is_object()) {
        return std::nullopt;
    }
    const auto it = scaling.find(feature);
    if (it == scaling.end() || !it->is_array() || it->size() != 2 || !(*it)[0].is_number() ||
        !(*it)[1].is_number()) {
        return std::nullopt;
    }
    return std::make_pair((*it)[0].get<double>(), (*it)[1].get<double>());
}

sdk::Result<std::string> read_file(const fs::path& path, std::int64_t max_bytes) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
        return invalid("file " + path.string() + " does not exist or is not a regular file");
    }
    const auto size = fs::file_size(path, ec);
    if (ec) {
        return invalid("file " + path.string() + ": " + ec.message());
    }
    if (static_cast<std::uint64_t>(max_bytes) < size) {
        return Error{ErrorCode::ResourceExhausted,
                     "file " + path.string() + " has " + std::to_string(size) +
                         " bytes, more than the limit of " + std::to_string(max_bytes)};
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return invalid("file " + path.string() + " cannot be opened");
    }
    std::string text(size, '\0');
    in.read(text.data(), static_cast<std::streamsize>(size));
    if (static_cast<std::uint64_t>(in.gcount()) != size) {
        return invalid("file " + path.string() + " could not be read completely");
    }
    return text;
}

/// schema.json: column -> pandas dtype.
sdk::Result<std::vector<ColumnDef>> read_schema(const fs::path& dir) {
    const fs::path file = dir / "schema.json";
    auto text = read_file(file, kMaxSchemaBytes);
    if (!text) {
        return text.error();
    }
    const Json schema = Json::parse(*text, nullptr, false);
    if (schema.is_discarded() || !schema.is_object()) {
        return invalid("file " + file.string() + " is not a JSON object of column -> dtype");
    }
    std::vector<ColumnDef> defs;
    for (auto it = schema.begin(); it != schema.end(); ++it) {
        if (!it.value().is_string()) {
            return invalid("file " + file.string() + ", column " + example(it.key()) +
                           ": dtype is not a string");
        }
        const std::string dtype = it.value().get<std::string>();
        auto info = dtype_info(dtype);
        if (!info) {
            return invalid("file " + file.string() + ", column " + example(it.key()) +
                           ": unknown dtype " + example(dtype) +
                           " (use int32, int64, float64, bool, category, ...)");
        }
        defs.push_back(ColumnDef{it.key(), dtype, *info, file.string()});
    }
    return defs;
}

bool has_csv_extension(const fs::path& p) {
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return ext == ".csv";
}

/// True when `text` is an integer literal that fits a 64-bit integer (unsigned or signed); empty
/// when `text` is not a plain integer literal (then its double value is checked).
std::optional<bool> literal_fits_64(std::string_view text, bool is_unsigned) {
    if (!text.empty() && text.front() == '+') {
        text.remove_prefix(1);
    }
    const std::string_view digits =
        !text.empty() && text.front() == '-' ? text.substr(1) : text;
    if (digits.empty() || (is_unsigned && digits.size() != text.size()) ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return std::nullopt;
    }
    const char* end = text.data() + text.size();
    if (is_unsigned) {
        std::uint64_t u = 0;
        return std::from_chars(text.data(), end, u).ec == std::errc();
    }
    std::int64_t i = 0;
    return std::from_chars(text.data(), end, i).ec == std::errc();
}

/// Why `text` (parsed as the number `v`) does not fit the integer or bool dtype of `info`, or
/// empty.
std::string dtype_violation(const DtypeInfo& info, std::string_view text, double v) {
    if (info.boolean) {
        return v == 0.0 || v == 1.0
                   ? std::string()
                   : "which is not a boolean (true/false, True/False, TRUE/FALSE, 1/0)";
    }
    if (!info.integer) {
        return {};
    }
    if (v != std::floor(v)) {
        return "which is not an integer";
    }
    const bool wide = info.max > 4294967295.0;
    bool fits = v >= info.min && v <= info.max;
    if (wide) {
        // A double cannot tell INT64_MAX or UINT64_MAX from 2^63 or 2^64 (both round to it):
        // integer literals are checked exactly, other spellings (1e19) against [min, 2^N).
        const auto exact = literal_fits_64(text, info.min == 0.0);
        fits = exact ? *exact : v >= info.min && v < info.max;
    }
    if (!fits) {
        return "which is outside its range [" + level_name(info.min) + ", " +
               (wide ? level_name(info.max) + ")" : level_name(info.max) + "]");
    }
    return {};
}

/// Fills a numeric column from the files. A number the dtype cannot hold (3.7 in an int32
/// column, 2 in a bool one, -1 in a uint8 one) refuses the load: pandas refuses it too, and
/// training on it would hide a wrong schema.
sdk::Status fill_numeric(Column& col, std::size_t index, const std::vector<SourceFile>& files) {
    for (const SourceFile& f : files) {
        const std::ptrdiff_t fc = f.file_column[index];
        for (std::size_t r = 0; r < f.table.rows; ++r) {
            double v = kNaN;
            if (fc < 0) {
                ++col.missing;
            } else {
                const std::string_view cell = trim(f.table.at(r, static_cast<std::size_t>(fc)));
                if (is_missing_token(cell)) {
                    ++col.missing;
                } else if ((col.def.info.boolean && parse_bool(cell, v)) || parse_number(cell, v)) {
                    if (const std::string why = dtype_violation(col.def.info, cell, v); !why.empty()) {
                        return invalid("file " + f.path + ", row " + std::to_string(r + 1) +
                                       ": column " + example(col.def.name) + " is declared " +
                                       example(col.def.dtype) + " in " + col.def.schema_file +
                                       " but holds " + example(cell) + ", " + why);
                    }
                    ++col.parsed;
                } else {
                    if (col.unparseable++ == 0) {
                        col.unparseable_example = example(cell);
                        col.unparseable_file = f.path;
                    }
                    v = kNaN;
                }
            }
            col.num.push_back(v);
        }
    }
    return sdk::Status::ok();
}

/// Fills a categorical column. Every present value is a level, named by the value alone, so the
/// same raw value gets the same name in every split and at every participant: a value that reads
/// as a number is named by that number (`3.0` and `3` -> `3`, `2.50` -> `2.5`), any other by its
/// text as written. (Deciding per split whether a column's levels were numbers, by majority, named
/// `3.0` `grade_3` in one split and `grade_3.0` in another, and imputed the text values of a
/// mostly-numeric split as missing.) Levels sort numbers first by value, then texts bytewise.
sdk::Status fill_categorical(Column& col, std::size_t index, const std::vector<SourceFile>& files,
                             std::int64_t max_levels) {
    std::unordered_map<std::string, std::int32_t> index_of;
    std::string key;
    for (const SourceFile& f : files) {
        const std::ptrdiff_t fc = f.file_column[index];
        for (std::size_t r = 0; r < f.table.rows; ++r) {
            std::int32_t code = -1;
            const std::string_view cell =
                fc < 0 ? std::string_view() : trim(f.table.at(r, static_cast<std::size_t>(fc)));
            if (fc < 0 || is_missing_token(cell)) {
                ++col.missing;
            } else {
                double v = kNaN;
                if (parse_number(cell, v)) {
                    key = number_level_name(cell, v);
                } else {
                    key.assign(cell);
                }
                auto [it, inserted] =
                    index_of.emplace(key, static_cast<std::int32_t>(col.levels.size()));
                if (inserted) {
                    // Checked once per level (a number's name is ASCII).
                    if (std::isnan(v) && !is_utf8(key)) {
                        return invalid("file " + f.path + ": column " + example(col.def.name) +
                                       " holds a value that is not UTF-8 text (" +
                                       example(cell) + "); save the file as UTF-8");
                    }
                    if (static_cast<std::int64_t>(col.levels.size()) >= max_levels) {
                        return invalid("column " + example(col.def.name) + " has more than " +
                                       std::to_string(max_levels) +
                                       " distinct levels (option max_levels)");
                    }
                    col.levels.push_back(key);
                    col.level_values.push_back(v);
                    col.level_first_row.push_back(col.codes.size());
                }
                code = it->second;
            }
            col.codes.push_back(code);
        }
    }
    // Sort the levels and renumber the codes.
    std::vector<std::int32_t> order(col.levels.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
        const double va = col.level_values[static_cast<std::size_t>(a)];
        const double vb = col.level_values[static_cast<std::size_t>(b)];
        if (std::isnan(va) != std::isnan(vb)) {
            return !std::isnan(va);  // numbers first
        }
        if (!std::isnan(va)) {
            return va < vb;
        }
        return col.levels[static_cast<std::size_t>(a)] < col.levels[static_cast<std::size_t>(b)];
    });
    std::vector<std::int32_t> rank(order.size());
    std::vector<std::string> levels(order.size());
    std::vector<double> values(order.size());
    std::vector<std::size_t> first_rows(order.size());
    for (std::size_t i = 0; i < order.size(); ++i) {
        const auto old = static_cast<std::size_t>(order[i]);
        rank[old] = static_cast<std::int32_t>(i);
        levels[i] = std::move(col.levels[old]);
        values[i] = col.level_values[old];
        first_rows[i] = col.level_first_row[old];
    }
    col.levels = std::move(levels);
    col.level_values = std::move(values);
    col.level_first_row = std::move(first_rows);
    for (std::int32_t& c : col.codes) {
        if (c >= 0) {
            c = rank[static_cast<std::size_t>(c)];
        }
    }
    return sdk::Status::ok();
}

/// Keeps only the levels some row of `rows` holds, renumbering the codes (a level seen only in
/// rows dropped for a missing target made an all-zero one-hot feature and left the worker in
/// the metadata `labels`). Codes of the other rows are no longer used and become -1 when their
/// level goes.
void keep_levels_of(Column& col, const std::vector<std::size_t>& rows) {
    std::vector<char> used(col.levels.size(), 0);
    for (std::size_t r : rows) {
        if (col.codes[r] >= 0) {
            used[static_cast<std::size_t>(col.codes[r])] = 1;
        }
    }
    std::vector<std::int32_t> renumber(col.levels.size(), -1);
    std::size_t kept = 0;
    for (std::size_t l = 0; l < col.levels.size(); ++l) {
        if (used[l] == 0) {
            continue;
        }
        renumber[l] = static_cast<std::int32_t>(kept);
        if (kept != l) {  // a self-move would empty the string
            col.levels[kept] = std::move(col.levels[l]);
            col.level_values[kept] = col.level_values[l];
            col.level_first_row[kept] = col.level_first_row[l];
        }
        ++kept;
    }
    col.levels.resize(kept);
    col.level_values.resize(kept);
    col.level_first_row.resize(kept);
    for (std::int32_t& c : col.codes) {
        if (c >= 0) {
            c = renumber[static_cast<std::size_t>(c)];
        }
    }
}

/// Quantile with linear interpolation (pandas' default) over sorted values.
double quantile(const std::vector<double>& sorted, double p) {
    if (sorted.empty()) {
        return kNaN;
    }
    const double pos = p * static_cast<double>(sorted.size() - 1);
    const auto lo = static_cast<std::size_t>(std::floor(pos));
    const auto hi = std::min(lo + 1, sorted.size() - 1);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

/// Median (numeric, rounded for integer dtypes) or mode (categorical, first level on ties) of
/// the present values among `rows`; fills the missing cells.
void impute(Column& col, const std::vector<std::size_t>& rows) {
    if (col.def.info.kind == Kind::Numeric) {
        std::vector<double> present;
        present.reserve(rows.size());
        for (std::size_t r : rows) {
            if (!std::isnan(col.num[r])) {
                present.push_back(col.num[r]);
            }
        }
        if (present.size() == rows.size() || present.empty()) {
            return;
        }
        std::sort(present.begin(), present.end());
        double fill = quantile(present, 0.5);
        if (col.def.info.integer) {
            fill = std::round(fill);
        }
        for (std::size_t r : rows) {
            if (std::isnan(col.num[r])) {
                col.num[r] = fill;
                ++col.imputed;
            }
        }
        col.imputed_value = fill;
        return;
    }
    std::vector<std::int64_t> counts(col.levels.size(), 0);
    bool any_missing = false;
    for (std::size_t r : rows) {
        if (col.codes[r] >= 0) {
            ++counts[static_cast<std::size_t>(col.codes[r])];
        } else {
            any_missing = true;
        }
    }
    if (!any_missing || counts.empty()) {
        return;
    }
    const auto mode = static_cast<std::int32_t>(std::max_element(counts.begin(), counts.end()) -
                                                counts.begin());  // first max wins
    for (std::size_t r : rows) {
        if (col.codes[r] < 0) {
            col.codes[r] = mode;
            ++col.imputed;
        }
    }
    col.imputed_value = col.levels[static_cast<std::size_t>(mode)];
}

/// pandas-describe-like summary of a column over `rows`.
Json summarise(const Column& col, const std::vector<std::size_t>& rows) {
    Json s = Json::object();
    s["datatype"] = col.def.dtype;
    s["count"] = rows.size();
    if (col.def.info.kind == Kind::Numeric) {
        std::vector<double> v;
        v.reserve(rows.size());
        for (std::size_t r : rows) {
            v.push_back(col.num[r]);
        }
        std::sort(v.begin(), v.end());
        double mean = 0.0;
        for (double x : v) {
            mean += x;
        }
        mean = v.empty() ? kNaN : mean / static_cast<double>(v.size());
        double var = 0.0;
        for (double x : v) {
            var += (x - mean) * (x - mean);
        }
        const double stdev =
            v.size() > 1 ? std::sqrt(var / static_cast<double>(v.size() - 1)) : kNaN;
        s["mean"] = number(mean);
        s["std"] = number(stdev);
        s["min"] = number(v.empty() ? kNaN : v.front());
        s["25%"] = number(quantile(v, 0.25));
        s["50%"] = number(quantile(v, 0.5));
        s["75%"] = number(quantile(v, 0.75));
        s["max"] = number(v.empty() ? kNaN : v.back());
        return s;
    }
    std::vector<std::int64_t> counts(col.levels.size(), 0);
    for (std::size_t r : rows) {
        ++counts[static_cast<std::size_t>(col.codes[r])];
    }
    std::int64_t unique = 0;
    for (std::int64_t c : counts) {
        unique += c > 0 ? 1 : 0;
    }
    s["unique"] = unique;
    if (!counts.empty()) {
        const auto top = static_cast<std::size_t>(std::max_element(counts.begin(), counts.end()) -
                                                  counts.begin());
        s["top"] = col.levels[top];
        s["freq"] = counts[top];
    }
    s["labels"] = col.levels;
    return s;
}

struct Feature {
    std::string name;
    std::size_t column = 0;
    std::int32_t level = -1;  ///< one-hot level, or -1 for a numeric column
};

/// ResourceExhausted when `n` rows of `width` features and `lw` label columns, as floats, are
/// more than the option max_split_bytes; the message names the widest categorical columns.
sdk::Status check_split_size(std::size_t n, std::size_t width, std::size_t lw,
                             const std::vector<Column>& columns, std::size_t target_index,
                             const TabularLimits& limits) {
    const double bytes = static_cast<double>(n) *
                         (static_cast<double>(width) + static_cast<double>(lw)) *
                         static_cast<double>(sizeof(float));
    if (bytes <= static_cast<double>(limits.max_split_bytes)) {
        return sdk::Status::ok();
    }
    std::vector<const Column*> cats;
    for (std::size_t c = 0; c < columns.size(); ++c) {
        if (c != target_index && columns[c].def.info.kind == Kind::Categorical) {
            cats.push_back(&columns[c]);
        }
    }
    constexpr std::size_t kShown = 3;
    const std::size_t shown = std::min(kShown, cats.size());
    std::partial_sort(
        cats.begin(), cats.begin() + static_cast<std::ptrdiff_t>(shown), cats.end(),
        [](const Column* a, const Column* b) { return a->levels.size() > b->levels.size(); });
    std::string widest;
    for (std::size_t i = 0; i < shown; ++i) {
        widest += (i == 0 ? "" : ", ") + example(cats[i]->def.name) + " (" +
                  std::to_string(cats[i]->levels.size()) + " levels)";
    }
    if (cats.size() > shown) {
        widest += ", ... of " + std::to_string(cats.size()) + " categorical columns";
    }
    return Error{
        ErrorCode::ResourceExhausted,
        std::to_string(n) + " rows of " + std::to_string(width) +
            (width == 1 ? " feature" : " features") +
            (lw > 0 ? " and " + std::to_string(lw) + (lw == 1 ? " label column" : " label columns")
                    : std::string()) +
            " take " + std::to_string(static_cast<std::uint64_t>(bytes)) +
            " bytes as floats, more than " + std::to_string(limits.max_split_bytes) +
            " (option max_split_bytes); widest categorical columns: " +
            (widest.empty() ? std::string("none") : widest)};
}

sdk::Result<sdk::Dataset> load_impl(const sdk::DataRequest& request, const TabularLimits& limits) {
    if (request.action != "classify" && request.action != "regress") {
        return invalid("action " + example(request.action) + " is not 'classify' or 'regress'");
    }
    const Json options =
        Json::parse(request.options_json.empty() ? "{}" : request.options_json, nullptr, false);
    if (options.is_discarded() || !options.is_object()) {
        return invalid("options_json is not a JSON object");
    }
    if (request.directories.empty()) {
        return invalid("no dataset folder was given");
    }

    // 1. Read every folder's schema and CSV files.
    std::vector<SourceFile> files;
    std::map<std::string, ColumnDef> defs;
    for (const std::string& dir_text : request.directories) {
        const fs::path dir(dir_text);
        std::error_code ec;
        if (!fs::is_directory(dir, ec)) {
            return invalid("dataset folder " + dir_text + " does not exist");
        }
        const fs::path root = fs::canonical(dir, ec);
        if (ec) {
            return invalid("dataset folder " + dir_text + " cannot be resolved: " + ec.message());
        }
        if (auto st = data::require_inside(root, dir / "schema.json"); !st) {
            return st.error();
        }
        auto schema = read_schema(dir);
        if (!schema) {
            return schema.error();
        }
        std::vector<fs::path> csvs;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            if (it->is_regular_file(ec) && has_csv_extension(it->path())) {
                csvs.push_back(it->path());
            }
        }
        if (ec) {
            return invalid("dataset folder " + dir_text + " cannot be listed: " + ec.message());
        }
        if (csvs.empty()) {
            return invalid("dataset folder " + dir_text + " has no CSV file");
        }
        std::sort(csvs.begin(), csvs.end());
        // Hash sets: matching name lists against each other was quadratic (30,000 columns: 6 s).
        std::unordered_set<std::string_view> schema_names;
        schema_names.reserve(schema->size());
        for (const ColumnDef& def : *schema) {
            schema_names.insert(def.name);
        }
        for (const ColumnDef& def : *schema) {
            auto [it, inserted] = defs.emplace(def.name, def);
            if (!inserted && it->second.dtype != def.dtype) {
                return invalid("column " + example(def.name) + " has dtype " +
                               example(it->second.dtype) + " in " + it->second.schema_file +
                               " but " + example(def.dtype) + " in " + def.schema_file);
            }
        }
        for (const fs::path& csv : csvs) {
            if (auto st = data::require_inside(root, csv); !st) {
                return st.error();
            }
            auto text = read_file(csv, limits.max_file_bytes);
            if (!text) {
                return text.error();
            }
            auto table = parse_csv(std::move(*text), csv.string());
            if (!table) {
                return table.error();
            }
            const auto& header = table->header;
            const std::unordered_set<std::string_view> header_names(header.begin(), header.end());
            const auto has = [&](std::string_view name) { return header_names.count(name) != 0; };
            if (!has(kTarget)) {
                return invalid("file " + csv.string() + ": column 'target' is missing");
            }
            for (const ColumnDef& def : *schema) {
                if (!has(def.name)) {
                    return invalid("file " + csv.string() + ": column " + example(def.name) +
                                   " named in " + def.schema_file + " is missing");
                }
            }
            for (std::string_view name : header) {
                if (schema_names.count(name) == 0) {
                    return invalid("file " + csv.string() + ": column " + example(name) +
                                   " has no dtype in " + (dir / "schema.json").string());
                }
            }
            files.push_back(SourceFile{csv.string(), std::move(*table), {}});
        }
    }

    // 2. One column per name over all files (std::map: sorted by name); absent cells are missing.
    std::vector<Column> columns;
    for (const auto& [name, def] : defs) {
        Column c;
        c.def = def;
        columns.push_back(std::move(c));
    }
    std::unordered_map<std::string_view, std::size_t> column_of;
    column_of.reserve(columns.size());
    for (std::size_t c = 0; c < columns.size(); ++c) {
        column_of.emplace(columns[c].def.name, c);
    }
    std::size_t total_rows = 0;
    std::vector<std::string> file_names;
    std::vector<std::pair<std::size_t, std::string>> file_rows;  // first row, path: for errors
    for (SourceFile& f : files) {
        file_rows.emplace_back(total_rows, f.path);
        total_rows += f.table.rows;
        file_names.push_back(fs::path(f.path).filename().string());
        f.file_column.assign(columns.size(), -1);
        for (std::size_t i = 0; i < f.table.header.size(); ++i) {
            if (const auto it = column_of.find(f.table.header[i]); it != column_of.end()) {
                f.file_column[it->second] = static_cast<std::ptrdiff_t>(i);
            }
        }
    }
    if (total_rows == 0) {
        return invalid("dataset folders hold no data rows (" + files.front().path + " ...)");
    }
    std::size_t target_index = columns.size();
    for (std::size_t c = 0; c < columns.size(); ++c) {
        Column& col = columns[c];
        if (col.def.info.kind == Kind::Numeric) {
            col.num.reserve(total_rows);
            if (sdk::Status st = fill_numeric(col, c, files); !st) {
                return st;
            }
            // Mostly text under a numeric dtype is a wrong schema, not missing data: imputing
            // (or dropping the column) would train on made-up values without a word.
            const std::int64_t present = col.parsed + col.unparseable;
            if (col.unparseable > 0 && static_cast<double>(col.unparseable) >
                                           kMaxUnparseableShare * static_cast<double>(present)) {
                return invalid(
                    "file " + col.unparseable_file + ": column " + example(col.def.name) +
                    " is declared " + example(col.def.dtype) + " in " + col.def.schema_file +
                    " but " + std::to_string(col.unparseable) + " of its " +
                    std::to_string(present) + " non-empty values do not parse as " +
                    (col.def.info.boolean ? "booleans or numbers" : "numbers") + " (e.g. " +
                    col.unparseable_example + "); declare it 'category' or fix the values");
            }
        } else {
            col.codes.reserve(total_rows);
            sdk::Status st = fill_categorical(col, c, files, limits.max_levels);
            if (!st) {
                return st;
            }
        }
        if (col.def.name == kTarget) {
            target_index = c;
        }
    }
    files.clear();  // the raw text is no longer needed
    // "file F, row N" of a split row (1-based data row of its file).
    const auto where = [&file_rows](std::size_t row) {
        const auto file = std::prev(std::upper_bound(
            file_rows.begin(), file_rows.end(), row,
            [](std::size_t r, const auto& f) { return r < f.first; }));
        return "file " + file->second + ", row " + std::to_string(row - file->first + 1);
    };
    const Column* raw_target = &columns[target_index];
    if (request.action == "regress" && raw_target->def.info.kind == Kind::Categorical) {
        // Text levels sort last: one there means a class that is no number.
        if (!raw_target->levels.empty() && std::isnan(raw_target->level_values.back())) {
            return invalid(where(raw_target->level_first_row.back()) +
                           ": column 'target' holds text classes (" +
                           example(raw_target->levels.back()) +
                           "): regression needs a numeric target");
        }
    }

    // 3. Rows without a target are dropped: a label is never imputed.
    std::vector<std::size_t> kept;
    kept.reserve(total_rows);
    for (std::size_t r = 0; r < total_rows; ++r) {
        if (!raw_target->is_missing(r)) {
            kept.push_back(r);
        }
    }
    const std::int64_t rows_missing_target = static_cast<std::int64_t>(total_rows - kept.size());
    if (kept.empty()) {
        return invalid("column 'target' has no usable value in " + request.directories.front() +
                       (request.directories.size() > 1 ? " and the other folders" : ""));
    }

    // 4. Columns empty on every kept row are dropped; the others are imputed.
    Json dropped = Json::array();
    std::vector<Column> live;
    for (Column& col : columns) {
        bool any = false;
        for (std::size_t r : kept) {
            if (!col.is_missing(r)) {
                any = true;
                break;
            }
        }
        if (!any) {
            const std::string reason =
                col.unparseable == 0 ? std::string("all values missing")
                                     : "all values missing or unparseable as " + col.def.dtype +
                                           " (e.g. " + col.unparseable_example + ")";
            dropped.push_back({{"column", col.def.name}, {"reason", reason}});
            continue;
        }
        impute(col, kept);
        live.push_back(std::move(col));
    }
    columns = std::move(live);  // invalidates `raw_target`
    target_index = 0;
    while (columns[target_index].def.name != kTarget) {
        ++target_index;
    }
    const Column& target = columns[target_index];

    // 5. Duplicate rows (all columns, target included) are dropped, the first one kept.
    std::vector<std::size_t> rows;
    rows.reserve(kept.size());
    {
        std::unordered_set<std::string> seen;
        seen.reserve(kept.size());
        std::string key;
        for (std::size_t r : kept) {
            key.clear();
            for (const Column& col : columns) {
                if (col.def.info.kind == Kind::Numeric) {
                    double v = col.num[r] == 0.0 ? 0.0 : col.num[r];  // -0 == 0
                    key.append(reinterpret_cast<const char*>(&v), sizeof v);
                } else {
                    key.append(reinterpret_cast<const char*>(&col.codes[r]), sizeof(std::int32_t));
                }
            }
            if (seen.insert(key).second) {
                rows.push_back(r);
            }
        }
    }
    const std::int64_t duplicates = static_cast<std::int64_t>(kept.size() - rows.size());
    for (Column& col : columns) {
        if (col.def.info.kind == Kind::Categorical) {
            keep_levels_of(col, rows);
        }
    }

    // 6. Features: numeric columns as they are, categorical ones one-hot with every level,
    //    all sorted by name.
    // The one-hot width is bounded per column only (max_levels): bound the split as a whole
    // before building anything that size (the labels are counted again with their real width).
    {
        std::size_t planned = 0;
        for (std::size_t c = 0; c < columns.size(); ++c) {
            if (c != target_index) {
                planned += columns[c].def.info.kind == Kind::Numeric ? 1 : columns[c].levels.size();
            }
        }
        if (auto st = check_split_size(rows.size(), planned, request.action == "classify" ? 0 : 1,
                                       columns, target_index, limits);
            !st) {
            return st.error();
        }
    }
    std::vector<Feature> features;
    Json cat_vars = Json::array();
    Json num_vars = Json::array();
    for (std::size_t c = 0; c < columns.size(); ++c) {
        const Column& col = columns[c];
        if (c == target_index) {
            continue;
        }
        if (col.def.info.kind == Kind::Numeric) {
            features.push_back({col.def.name, c, -1});
            num_vars.push_back(col.def.name);
        } else {
            cat_vars.push_back(col.def.name);
            for (std::size_t l = 0; l < col.levels.size(); ++l) {
                features.push_back(
                    {col.def.name + "_" + col.levels[l], c, static_cast<std::int32_t>(l)});
            }
        }
    }
    std::sort(features.begin(), features.end(),
              [](const Feature& a, const Feature& b) { return a.name < b.name; });
    for (std::size_t i = 1; i < features.size(); ++i) {
        if (features[i].name == features[i - 1].name) {
            return invalid("feature name " + example(features[i].name) +
                           " is produced twice (a column and a one-hot level of another column)");
        }
    }

    // Federation-wide min-max bounds from the alignment (option `scaling`), when given.
    const Json scaling = options.value("scaling", Json(nullptr));
    const bool global_scaling = scaling.is_object();

    sdk::Dataset ds;
    const std::size_t n = rows.size();
    const std::size_t width = features.size();
    ds.rows = static_cast<std::int64_t>(n);
    ds.sample_shape = {static_cast<std::int64_t>(width)};
    ds.features.assign(n * width, 0.0f);
    for (std::size_t f = 0; f < width; ++f) {
        const Feature& feat = features[f];
        const Column& col = columns[feat.column];
        ds.feature_names.push_back(feat.name);
        if (feat.level >= 0) {
            // One-hot: min-max of a 0/1 column is itself, except a constant column -> 0 when the
            // split scales itself. Under federation-wide scaling a 0/1 column keeps its values.
            std::size_t ones = 0;
            for (std::size_t i = 0; i < n; ++i) {
                ones += col.codes[rows[i]] == feat.level ? 1 : 0;
            }
            if (ones == 0 || (ones == n && !global_scaling)) {
                continue;
            }
            for (std::size_t i = 0; i < n; ++i) {
                ds.features[i * width + f] = col.codes[rows[i]] == feat.level ? 1.0f : 0.0f;
            }
            continue;
        }
        double lo = std::numeric_limits<double>::infinity();
        double hi = -lo;
        if (const auto bound = scaling_of(scaling, feat.name)) {
            // The federation-wide range: every participant and split scales alike, so a model
            // sees the same feature values for the same raw values (values outside stay outside).
            lo = bound->first;
            hi = bound->second;
        } else {
            for (std::size_t r : rows) {
                lo = std::min(lo, col.num[r]);
                hi = std::max(hi, col.num[r]);
            }
        }
        // In halves: hi - lo overflows to infinity for a column spanning more than the largest
        // double. Halving is exact, so other columns scale to the same values.
        const double half_lo = lo / 2;
        const double half_span = hi / 2 - half_lo;
        if (!(half_span > 0.0)) {
            continue;  // constant column -> 0
        }
        for (std::size_t i = 0; i < n; ++i) {
            ds.features[i * width + f] =
                static_cast<float>((col.num[rows[i]] / 2 - half_lo) / half_span);
        }
    }

    // 7. Labels.
    Json classes = Json::array();
    if (request.action == "classify") {
        std::vector<std::int32_t> codes(n);
        std::vector<std::string> names;
        if (target.def.info.kind == Kind::Categorical) {
            names = target.levels;
            for (std::size_t i = 0; i < n; ++i) {
                codes[i] = target.codes[rows[i]];
            }
        } else {
            std::vector<double> values;
            for (std::size_t r : rows) {
                values.push_back(target.num[r]);
            }
            std::sort(values.begin(), values.end());
            values.erase(std::unique(values.begin(), values.end()), values.end());
            if (static_cast<std::int64_t>(values.size()) > limits.max_levels) {
                return invalid("column 'target' has more than " +
                               std::to_string(limits.max_levels) + " classes (option max_levels)");
            }
            for (double v : values) {
                names.push_back(level_name(v));
            }
            for (std::size_t i = 0; i < n; ++i) {
                codes[i] = static_cast<std::int32_t>(
                    std::lower_bound(values.begin(), values.end(), target.num[rows[i]]) -
                    values.begin());
            }
        }
        // Only classes present after cleaning are labels; alignment adds the others.
        std::vector<std::int64_t> counts(names.size(), 0);
        for (std::int32_t c : codes) {
            ++counts[static_cast<std::size_t>(c)];
        }
        std::vector<std::int32_t> remap(names.size(), -1);
        for (std::size_t k = 0; k < names.size(); ++k) {
            if (counts[k] > 0) {
                remap[k] = static_cast<std::int32_t>(ds.label_names.size());
                ds.label_names.push_back("target_" + names[k]);
                classes.push_back({{"class", names[k]}, {"count", counts[k]}});
            }
        }
        const std::size_t lw = ds.label_names.size();
        if (auto st = check_split_size(n, width, lw, columns, target_index, limits); !st) {
            return st.error();
        }
        ds.labels.assign(n * lw, 0.0f);
        for (std::size_t i = 0; i < n; ++i) {
            ds.labels[i * lw +
                      static_cast<std::size_t>(remap[static_cast<std::size_t>(codes[i])])] = 1.0f;
        }
    } else {
        ds.label_names = {"target"};
        ds.labels.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
            const double v = target.value(rows[i]);
            // Labels are float32: 1e39 became infinity (and the conversion is undefined).
            if (std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max())) {
                return invalid(where(rows[i]) + ": column 'target' value " + level_name(v) +
                               " is beyond the float32 range of labels (|value| > 3.4e38)");
            }
            ds.labels[i] = static_cast<float>(v);
        }
    }

    // 8. Descriptive schema and metadata (names, dtypes, counts and summaries only).
    Json schema = Json::object();
    Json summaries = Json::object();
    Json missing = Json::object();
    Json unparseable = Json::object();
    Json imputed = Json::object();
    for (const Column& col : columns) {
        schema[col.def.name] = col.def.dtype;
        summaries[col.def.name] = summarise(col, rows);
        if (col.missing > 0) {
            missing[col.def.name] = col.missing;
        }
        if (col.unparseable > 0) {
            unparseable[col.def.name] = col.unparseable;
        }
        if (col.imputed > 0) {
            imputed[col.def.name] = {
                {"count", col.imputed},
                {"strategy", col.def.info.kind == Kind::Numeric ? "median" : "mode"},
                {"value", col.imputed_value}};
        }
    }
    Json meta = Json::object();
    meta["_type"] = "tabular";
    meta["src_count"] = n;
    meta["rows_read"] = total_rows;
    meta["rows_missing_target"] = rows_missing_target;
    meta["duplicates_dropped"] = duplicates;
    meta["files"] = file_names;
    meta["dropped_columns"] = dropped;
    meta["missing_values"] = missing;
    meta["unparseable_values"] = unparseable;
    meta["imputed"] = imputed;
    meta["features"] = {{"cat_variables", cat_vars},
                        {"num_variables", num_vars},
                        {"misc_variables", Json::array()}};
    meta["columns"] = summaries;
    meta["feature_count"] = width;
    if (request.action == "classify") {
        meta["classes"] = classes;
    }
    ds.schema_json = schema.dump(-1, ' ', false, Json::error_handler_t::replace);
    ds.metadata_json = meta.dump(-1, ' ', false, Json::error_handler_t::replace);
    return ds;
}

}  // namespace

sdk::Result<sdk::Dataset> load_tabular(const sdk::DataRequest& request,
                                       const TabularLimits& limits) noexcept {
    try {
        return load_impl(request, limits);
    } catch (const std::bad_alloc&) {
        return Error{ErrorCode::ResourceExhausted, "tabular: out of memory while loading data"};
    } catch (const std::exception& e) {
        return Error{ErrorCode::Internal, std::string("tabular: ") + e.what()};
    } catch (...) {
        return Error{ErrorCode::Internal, "tabular: unknown failure"};
    }
}

TabularPipeline::TabularPipeline(sdk::HostContext& host, const sdk::Options& options)
    : host_(host) {
    limits_.max_file_bytes = options.get_int("max_file_bytes", limits_.max_file_bytes);
    limits_.max_levels = options.get_int("max_levels", limits_.max_levels);
    limits_.max_split_bytes = options.get_int("max_split_bytes", limits_.max_split_bytes);
    if (limits_.max_file_bytes <= 0 || limits_.max_levels <= 0 || limits_.max_split_bytes <= 0) {
        throw std::invalid_argument(
            "options max_file_bytes, max_levels and max_split_bytes must be positive");
    }
}

sdk::Result<sdk::Dataset> TabularPipeline::load(const sdk::DataRequest& request) noexcept {
    auto result = load_tabular(request, limits_);
    try {
        if (result) {
            host_.logger().debug("tabular: split loaded",
                                 Json{{"rows", result->rows},
                                      {"features", result->feature_names.size()},
                                      {"folders", request.directories.size()}}
                                     .dump());
        } else {
            host_.logger().warn("tabular: load refused",
                                Json{{"error", result.error().message}}.dump(
                                    -1, ' ', false, Json::error_handler_t::replace));
        }
    } catch (...) {
        // Logging is best effort; the result stands.
    }
    return result;
}

namespace {

constexpr sdk::OptionSpec kOptions[] = {
    {"max_file_bytes", sdk::OptionType::Int, false, "1073741824",
     "largest CSV file read, in bytes (larger files are refused)", false},
    {"max_levels", sdk::OptionType::Int, false, "1000",
     "most distinct levels of one categorical column or classes of the target", false},
    {"max_split_bytes", sdk::OptionType::Int, false, "4294967296",
     "most bytes one split's features and labels may take as 32-bit floats", false},
};

}  // namespace

const sdk::PluginDescriptor kTabularDescriptor{
    sizeof(sdk::PluginDescriptor),
    "tabular",
    sdk::PluginKind::Data,
    "0.1.0",
    "CSV files with schema.json dtypes: imputation, de-duplication, one-hot, min-max scaling",
    "Synergos",
    sdk::PluginStatus::Stable,
    kOptions,
    sizeof(kOptions) / sizeof(kOptions[0]),
};

}  // namespace synergos::plugins::tabular
