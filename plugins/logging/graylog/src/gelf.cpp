// SPDX-License-Identifier: Apache-2.0
#include "gelf.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>

#include <nlohmann/json.hpp>

namespace synergos::plugins::graylog {

namespace {

constexpr char kHex[] = "0123456789abcdef";
/// Deeper objects are sent as one JSON string instead of being flattened further.
constexpr int kMaxFlattenDepth = 16;
/// fields_json nested deeper than this is sent raw: parsing and dumping it would recurse deeply.
constexpr int kMaxParseDepth = 64;

/// Names of the additional fields the encoder writes itself; a record field with one of these
/// names (or `id`) is renamed to `field_<name>`.
constexpr std::string_view kReservedNames[] = {"id",   "logger",   "level_name", "file",
                                               "line", "function", "facility"};

/// True unless all eight bytes of the word at `p` are printable ASCII other than '"' and '\\'
/// (word-at-a-time test; a rare false "true" only costs a byte-by-byte look).
bool may_need_escaping(const unsigned char* p) {
    constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
    constexpr std::uint64_t kHighs = 0x8080808080808080ULL;
    std::uint64_t word;
    std::memcpy(&word, p, sizeof(word));
    auto has_below = [](std::uint64_t w, std::uint64_t limit) {
        return ((w - kOnes * limit) & ~w & kHighs) != 0;
    };
    return (word & kHighs) != 0 || has_below(word, 0x20) || has_below(word ^ (kOnes * '"'), 1) ||
           has_below(word ^ (kOnes * '\\'), 1);
}

std::size_t utf8_sequence_length(const unsigned char* p, const unsigned char* end) {
    const unsigned char c = p[0];
    if (c < 0x80) {
        return 1;
    }
    std::size_t length = 0;
    unsigned char min_second = 0x80;
    unsigned char max_second = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        length = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        length = 3;
        min_second = c == 0xe0 ? 0xa0 : 0x80;
        max_second = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        length = 4;
        min_second = c == 0xf0 ? 0x90 : 0x80;
        max_second = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (static_cast<std::size_t>(end - p) < length || p[1] < min_second || p[1] > max_second) {
        return 0;
    }
    for (std::size_t i = 2; i < length; ++i) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }
    return length;
}

void append_int(std::string& out, long long value) {
    char digits[24];
    const auto result = std::to_chars(digits, digits + sizeof(digits), value);
    out.append(digits, result.ptr);
}

bool is_reserved(std::string_view name) {
    for (auto reserved : kReservedNames) {
        if (name == reserved) {
            return true;
        }
    }
    return false;
}

std::string dump(const nlohmann::json& value) {
    return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// True when `json` nests arrays/objects at most `limit` deep (strings are skipped).
bool nesting_within(std::string_view json, int limit) {
    int depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < json.size(); ++i) {
        const char c = json[i];
        if (in_string) {
            if (c == '\\') {
                ++i;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > limit) {
                return false;
            }
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    return true;
}

}  // namespace

std::size_t utf8_prefix_length(std::string_view text, std::size_t limit) {
    if (text.size() <= limit) {
        return text.size();
    }
    std::size_t end = limit;
    // Step back over continuation bytes (at most 3) to the start of the cut sequence.
    for (int i = 0; i < 3 && end > 0 && (static_cast<unsigned char>(text[end]) & 0xc0) == 0x80;
         ++i) {
        --end;
    }
    return end;
}

void append_capped(std::string& out, std::string_view text, std::size_t cap) {
    if (text.size() <= cap) {
        out.append(text);
        return;
    }
    out.append(text.substr(0, utf8_prefix_length(text, cap - kTruncationMarker.size())));
    out.append(kTruncationMarker);
}

bool cap_json_strings(std::string_view json, std::size_t cap, std::string& out) {
    out.clear();
    out.reserve(std::min(json.size(), kMaxFieldsBytes + kMaxValueBytes));
    const std::size_t keep = cap - kTruncationMarker.size();
    const std::size_t n = json.size();
    bool cut = false;
    std::size_t i = 0;
    while (i < n) {
        if (json[i] != '"') {
            const std::size_t quote = std::min(json.find('"', i), n);
            out.append(json.substr(i, quote - i));
            i = quote;
            continue;
        }
        out.push_back('"');
        const std::size_t start = ++i;
        std::size_t boundary = start;  // end of the last whole unit within `keep`
        bool closed = false;
        // Walk whole units (a character or an escape) while they still fit in `keep`.
        while (i < n && i - start <= cap) {
            const auto b = static_cast<unsigned char>(json[i]);
            if (b == '"') {
                closed = true;
                break;
            }
            std::size_t unit = 1;
            if (b == '\\') {
                unit = 2;
                if (i + 1 < n && json[i + 1] == 'u') {
                    unit = 6;
                    // A high surrogate and its low half stay together: a lone one is invalid.
                    if (i + 7 < n && (json[i + 2] == 'd' || json[i + 2] == 'D') &&
                        json[i + 3] != '\0' && std::strchr("89abAB", json[i + 3]) != nullptr &&
                        json[i + 6] == '\\' && json[i + 7] == 'u') {
                        unit = 12;
                    }
                }
            } else if (b >= 0xc0) {
                unit = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
            }
            unit = std::min(unit, n - i);
            if (i + unit - start <= keep) {
                boundary = i + unit;
            }
            i += unit;
        }
        if (!closed) {
            // Past the cap (or at the end): find the closing quote, one not escaped.
            while (i < n) {
                if (json[i] == '\\') {
                    i += 2;
                } else if (json[i] == '"') {
                    closed = true;
                    break;
                } else {
                    const std::size_t next = json.find_first_of("\"\\", i);
                    i = next == std::string_view::npos ? n : next;
                }
            }
            i = std::min(i, n);
        }
        if (i - start > cap) {
            out.append(json.substr(start, boundary - start));
            out.append(kTruncationMarker);
            cut = true;
        } else {
            out.append(json.substr(start, i - start));
        }
        if (closed) {
            out.push_back('"');
            ++i;
        }
    }
    return cut;
}

void append_json_string(std::string& out, std::string_view text, std::size_t cap) {
    std::string_view marker;
    if (text.size() > cap) {
        text = text.substr(0, utf8_prefix_length(text, cap - kTruncationMarker.size()));
        marker = kTruncationMarker;
    }
    out.push_back('"');
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const auto* end = p + text.size();
    const auto* run_start = p;
    auto flush_run = [&](const unsigned char* upto) {
        out.append(reinterpret_cast<const char*>(run_start),
                   static_cast<std::size_t>(upto - run_start));
    };
    auto is_plain = [](unsigned char c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; };
    while (p < end) {
        while (end - p >= 8 && !may_need_escaping(p)) {
            p += 8;
        }
        while (p < end && is_plain(*p)) {
            ++p;
        }
        if (p == end) {
            break;
        }
        const unsigned char c = *p;
        if (c >= 0x80) {
            const std::size_t n = utf8_sequence_length(p, end);
            if (n != 0) {
                p += n;
                continue;
            }
            flush_run(p);
            out.append("\xef\xbf\xbd");  // U+FFFD for a byte that is not valid UTF-8
            run_start = ++p;
            continue;
        }
        flush_run(p);
        switch (c) {
            case '"':
                out.append("\\\"");
                break;
            case '\\':
                out.append("\\\\");
                break;
            case '\n':
                out.append("\\n");
                break;
            case '\r':
                out.append("\\r");
                break;
            case '\t':
                out.append("\\t");
                break;
            default:
                out.append("\\u00");
                out.push_back(kHex[c >> 4]);
                out.push_back(kHex[c & 0xf]);
                break;
        }
        run_start = ++p;
    }
    flush_run(end);
    out.append(marker);
    out.push_back('"');
}

std::string sanitize_field_name(std::string_view name) {
    std::string out(name);
    for (char& c : out) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        if (!ok) {
            c = '_';
        }
    }
    return out;
}

/// Writes additional fields, keeping names unique and valid.
class GelfEncoder::FieldWriter {
public:
    FieldWriter(std::string& out, std::unordered_set<std::string>& used) : out_(out), used_(used) {}

    /// Claims a name for a field the encoder writes itself (never renamed).
    void claim(std::string_view name) { used_.emplace(name); }

    /// Writes `"_<name>":` for a record field, renaming reserved or duplicate names.
    void key(std::string_view raw_name) {
        std::string name = sanitize_field_name(raw_name);
        if (name.empty() || is_reserved(name)) {
            name.insert(0, name.empty() ? "field" : "field_");
        }
        if (!used_.insert(name).second) {
            for (int suffix = 2;; ++suffix) {
                std::string candidate = name + "_" + std::to_string(suffix);
                if (used_.insert(candidate).second) {
                    name = std::move(candidate);
                    break;
                }
            }
        }
        out_.append(",\"_");
        out_.append(name);
        out_.append("\":");
    }

    /// Writes one field of `fields_json`, flattening objects.
    void value(const std::string& name, const nlohmann::json& value, int depth) {
        using Type = nlohmann::json::value_t;
        switch (value.type()) {
            case Type::object:
                if (depth >= kMaxFlattenDepth) {
                    key(name);
                    append_json_string(out_, dump(value));
                    return;
                }
                for (const auto& [child_key, child] : value.items()) {
                    this->value(name + "_" + child_key, child, depth + 1);
                }
                return;
            case Type::array:
                key(name);
                append_json_string(out_, dump(value));
                return;
            case Type::string:
                key(name);
                append_json_string(out_, value.get_ref<const std::string&>());
                return;
            case Type::boolean:
                key(name);
                out_.append(value.get<bool>() ? "\"true\"" : "\"false\"");
                return;
            case Type::number_integer:
            case Type::number_unsigned:
            case Type::number_float:
                key(name);
                out_.append(dump(value));
                return;
            case Type::null:
            case Type::binary:
            case Type::discarded:
                return;  // nothing to show
        }
    }

private:
    std::string& out_;
    std::unordered_set<std::string>& used_;
};

GelfEncoder::GelfEncoder(std::string facility, std::string default_host)
    : facility_(std::move(facility)), default_host_(std::move(default_host)) {
    if (default_host_.empty()) {
        default_host_ = "unknown";
    }
}

void GelfEncoder::encode(const sdk::LogRecord& record, std::string& out) {
    out.clear();
    used_names_.clear();
    FieldWriter fields(out, used_names_);

    nlohmann::json parsed;
    bool parsed_ok = false;
    const bool has_fields = !record.fields_json.empty() && record.fields_json != "{}";
    if (has_fields && nesting_within(record.fields_json, kMaxParseDepth)) {
        parsed = nlohmann::json::parse(record.fields_json, nullptr, false);
        parsed_ok = parsed.is_object();
    }

    out.append("{\"version\":\"1.1\",\"host\":");
    append_json_string(out, record.host.empty() ? std::string_view(default_host_) : record.host);
    out.append(",\"short_message\":");
    // GELF requires a non-empty short_message.
    append_json_string(out, record.event.empty() ? std::string_view("(empty)") : record.event);

    if (parsed_ok) {
        std::string full;
        for (const char* name : {"exception", "stack"}) {
            const auto it = parsed.find(name);
            if (it == parsed.end() || it->is_null()) {
                continue;
            }
            if (!full.empty()) {
                full.push_back('\n');
            }
            full += it->is_string() ? it->get_ref<const std::string&>() : dump(*it);
        }
        if (!full.empty()) {
            out.append(",\"full_message\":");
            append_json_string(out, full);
        }
    }

    using namespace std::chrono;
    const auto ms_total = duration_cast<milliseconds>(record.time.time_since_epoch()).count();
    std::int64_t seconds = ms_total / 1000;
    std::int64_t millis = ms_total % 1000;
    if (millis < 0) {
        millis += 1000;
        seconds -= 1;
    }
    out.append(",\"timestamp\":");
    append_int(out, seconds);
    const char decimals[4] = {'.', static_cast<char>('0' + millis / 100),
                              static_cast<char>('0' + millis / 10 % 10),
                              static_cast<char>('0' + millis % 10)};
    out.append(decimals, sizeof(decimals));
    out.append(",\"level\":");
    append_int(out, sdk::to_syslog(record.level));

    auto standard = [&](std::string_view name, std::string_view value) {
        fields.claim(name);
        if (value.empty()) {
            return;  // no blank fields
        }
        out.append(",\"_");
        out.append(name);
        out.append("\":");
        append_json_string(out, value);
    };
    standard("logger", record.logger);
    standard("level_name", sdk::to_string(record.level));
    standard("file", record.location.file != nullptr ? record.location.file : "");
    fields.claim("line");
    if (record.location.line > 0) {
        out.append(",\"_line\":");
        append_int(out, record.location.line);
    }
    standard("function", record.location.function != nullptr ? record.location.function : "");
    standard("facility", facility_);

    if (parsed_ok) {
        for (const auto& [name, value] : parsed.items()) {
            fields.value(name, value, 0);
        }
    } else if (has_fields) {
        fields.key("fields_raw");
        append_json_string(out, record.fields_json);
    }
    out.push_back('}');
}

}  // namespace synergos::plugins::graylog
