// SPDX-License-Identifier: Apache-2.0
#include "text_format.hpp"

#include <time.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>

namespace synergos::plugins::basic {

namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr int kMaxDepth = 64;

// Word-at-a-time tests (SWAR) let the hot loops skip eight ordinary bytes per step. They may
// report a byte that is not special (a borrow from a lower byte), never miss one: the caller
// then looks at those eight bytes one by one.
constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
constexpr std::uint64_t kHighs = 0x8080808080808080ULL;

inline std::uint64_t load_word(const char* p) {
    std::uint64_t word;
    std::memcpy(&word, p, sizeof(word));
    return word;
}
inline bool has_byte_below(std::uint64_t word, unsigned char limit) {
    return ((word - kOnes * limit) & ~word & kHighs) != 0;
}
inline bool has_byte(std::uint64_t word, unsigned char value) {
    return has_byte_below(word ^ (kOnes * value), 1);
}
/// Control characters, DEL, and the lead bytes of C1 controls (C2) and U+2028/U+2029 (E2):
/// what a console line must look at.
inline bool may_have_control(std::uint64_t word) {
    return has_byte_below(word, 0x20) || has_byte(word, 0x7f) || has_byte(word, 0xc2) ||
           has_byte(word, 0xe2);
}
/// Anything but printable ASCII other than '"' and '\\': what a JSON string must look at.
inline bool may_need_json_care(std::uint64_t word) {
    return (word & kHighs) != 0 || has_byte_below(word, 0x20) || has_byte(word, '"') ||
           has_byte(word, '\\');
}

/// Byte classes, looked up once per byte in the loops below.
constexpr unsigned char kJsonPlain = 1;    // inside a JSON string: printable ASCII but '"' and '\\'
constexpr unsigned char kConsoleSafe = 2;  // on a console line: no controls, DEL, C2 or E2 lead
constexpr std::array<unsigned char, 256> make_byte_classes() {
    std::array<unsigned char, 256> classes{};
    for (int c = 0; c < 256; ++c) {
        unsigned char bits = 0;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            bits |= kJsonPlain;
        }
        if (c >= 0x20 && c != 0x7f && c != 0xc2 && c != 0xe2) {
            bits |= kConsoleSafe;
        }
        classes[static_cast<std::size_t>(c)] = bits;
    }
    return classes;
}
constexpr std::array<unsigned char, 256> kByteClasses = make_byte_classes();

inline bool is(unsigned char byte_class, char c) {
    return (kByteClasses[static_cast<unsigned char>(c)] & byte_class) != 0;
}

/// Length of the valid UTF-8 sequence starting at `p`, or 0 when it is invalid (overlong forms,
/// surrogates and code points above U+10FFFF are invalid).
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
        if (c == 0xe0) {
            min_second = 0xa0;
        } else if (c == 0xed) {
            max_second = 0x9f;
        }
    } else if (c >= 0xf0 && c <= 0xf4) {
        length = 4;
        if (c == 0xf0) {
            min_second = 0x90;
        } else if (c == 0xf4) {
            max_second = 0x8f;
        }
    } else {
        return 0;
    }
    if (static_cast<std::size_t>(end - p) < length) {
        return 0;
    }
    if (p[1] < min_second || p[1] > max_second) {
        return 0;
    }
    for (std::size_t i = 2; i < length; ++i) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }
    return length;
}

/// Length of the UTF-8 sequence at `p` that must be escaped as `\uXXXX` even in valid text, or 0:
/// C1 controls U+0080-U+009F (C2 80..C2 9F; U+009B is a CSI terminals act on) and U+2028/U+2029
/// (E2 80 A8/A9), which viewers and JavaScript treat as line ends. Sets `code` to the code point.
std::size_t unsafe_code_point(const unsigned char* p, const unsigned char* end, unsigned& code) {
    if (p[0] == 0xc2 && end - p >= 2 && p[1] >= 0x80 && p[1] <= 0x9f) {
        code = p[1];
        return 2;
    }
    if (p[0] == 0xe2 && end - p >= 3 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
        code = p[2] == 0xa8 ? 0x2028 : 0x2029;
        return 3;
    }
    return 0;
}

void append_unicode_escape(std::string& out, unsigned code) {
    const char escape[6] = {'\\',
                            'u',
                            kHex[(code >> 12) & 0xf],
                            kHex[(code >> 8) & 0xf],
                            kHex[(code >> 4) & 0xf],
                            kHex[code & 0xf]};
    out.append(escape, sizeof(escape));
}

/// A recursive-descent validator over one JSON text; positions are byte offsets.
class Scanner {
public:
    explicit Scanner(std::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

    void skip_ws() {
        while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) {
            ++p_;
        }
    }
    bool at_end() const { return p_ == end_; }
    bool consume(char c) {
        if (p_ < end_ && *p_ == c) {
            ++p_;
            return true;
        }
        return false;
    }
    const char* position() const { return p_; }

    bool string() {
        if (!consume('"')) {
            return false;
        }
        while (true) {
            while (end_ - p_ >= 8 && !may_need_json_care(load_word(p_))) {
                p_ += 8;
            }
            while (p_ < end_ && is(kJsonPlain, *p_)) {
                ++p_;
            }
            if (p_ == end_) {
                return false;
            }
            const auto c = static_cast<unsigned char>(*p_);
            if (c == '"') {
                ++p_;
                return true;
            }
            if (c < 0x20) {
                return false;
            }
            if (c == '\\') {
                ++p_;
                if (p_ == end_) {
                    return false;
                }
                const char e = *p_++;
                if (e == 'u') {
                    for (int i = 0; i < 4; ++i) {
                        if (p_ == end_ || *p_ == '\0' ||
                            std::strchr("0123456789abcdefABCDEF", *p_) == nullptr) {
                            return false;
                        }
                        ++p_;
                    }
                } else if (e == '\0' || std::strchr("\"\\/bfnrt", e) == nullptr) {
                    return false;
                }
                continue;
            }
            const std::size_t n =
                utf8_sequence_length(reinterpret_cast<const unsigned char*>(p_),
                                     reinterpret_cast<const unsigned char*>(end_));
            if (n == 0) {
                return false;
            }
            p_ += n;
        }
        return false;
    }

    bool value(int depth) {
        if (p_ == end_) {
            return false;
        }
        switch (*p_) {
            case '{':
                return object(depth + 1, nullptr);
            case '[':
                return array(depth + 1);
            case '"':
                return string();
            case 't':
                return literal("true");
            case 'f':
                return literal("false");
            case 'n':
                return literal("null");
            default:
                return number();
        }
    }

    /// Parses an object; when `members` is given, records each top-level member.
    bool object(int depth, std::vector<JsonMember>* members) {
        if (depth > kMaxDepth || !consume('{')) {
            return false;
        }
        skip_ws();
        if (consume('}')) {
            return true;
        }
        while (true) {
            skip_ws();
            const char* key_begin = p_;
            if (!string()) {
                return false;
            }
            const char* key_end = p_;
            skip_ws();
            if (!consume(':')) {
                return false;
            }
            skip_ws();
            const char* value_begin = p_;
            if (!value(depth)) {
                return false;
            }
            if (members != nullptr) {
                members->push_back(
                    {std::string_view(key_begin + 1,
                                      static_cast<std::size_t>(key_end - key_begin - 2)),
                     std::string_view(value_begin, static_cast<std::size_t>(p_ - value_begin))});
            }
            skip_ws();
            if (consume('}')) {
                return true;
            }
            if (!consume(',')) {
                return false;
            }
        }
    }

private:
    bool array(int depth) {
        if (depth > kMaxDepth || !consume('[')) {
            return false;
        }
        skip_ws();
        if (consume(']')) {
            return true;
        }
        while (true) {
            skip_ws();
            if (!value(depth)) {
                return false;
            }
            skip_ws();
            if (consume(']')) {
                return true;
            }
            if (!consume(',')) {
                return false;
            }
        }
    }

    bool literal(const char* word) {
        const std::size_t n = std::strlen(word);
        if (static_cast<std::size_t>(end_ - p_) < n || std::memcmp(p_, word, n) != 0) {
            return false;
        }
        p_ += n;
        return true;
    }

    bool digits() {
        const char* start = p_;
        while (p_ < end_ && *p_ >= '0' && *p_ <= '9') {
            ++p_;
        }
        return p_ != start;
    }

    bool number() {
        consume('-');
        if (consume('0')) {
            // a leading zero stands alone
        } else if (!digits()) {
            return false;
        }
        if (consume('.') && !digits()) {
            return false;
        }
        if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
            ++p_;
            if (!consume('+')) {
                consume('-');
            }
            if (!digits()) {
                return false;
            }
        }
        return true;
    }

    const char* p_;
    const char* end_;
};

void append_hex_escape(std::string& out, const char* prefix, unsigned char c) {
    out.append(prefix);
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
}

}  // namespace

void append_console_text(std::string& out, std::string_view text) {
    const char* data = text.data();
    const std::size_t size = text.size();
    std::size_t i = 0;
    std::size_t run_start = 0;
    while (true) {
        while (size - i >= 8 && !may_have_control(load_word(data + i))) {
            i += 8;
        }
        while (i < size && is(kConsoleSafe, data[i])) {
            ++i;
        }
        if (i == size) {
            break;
        }
        const auto c = static_cast<unsigned char>(data[i]);
        if (c >= 0x80) {
            // A C2 or E2 lead byte: escape the sequence when it is unsafe, else keep it.
            unsigned code = 0;
            const auto* p = reinterpret_cast<const unsigned char*>(data + i);
            const std::size_t n =
                unsafe_code_point(p, reinterpret_cast<const unsigned char*>(data + size), code);
            if (n == 0) {
                ++i;
                continue;
            }
            out.append(data + run_start, i - run_start);
            append_unicode_escape(out, code);
            i += n;
            run_start = i;
            continue;
        }
        out.append(data + run_start, i - run_start);
        if (c == '\n') {
            out.append("\\n");
        } else if (c == '\t') {
            out.append("\\t");
        } else if (c == '\r') {
            out.append("\\r");
        } else {
            append_hex_escape(out, "\\x", c);
        }
        run_start = ++i;
    }
    out.append(data + run_start, size - run_start);
}

void append_json_text(std::string& out, std::string_view text) {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const auto* end = p + text.size();
    const auto* run_start = p;
    auto flush_run = [&](const unsigned char* upto) {
        out.append(reinterpret_cast<const char*>(run_start),
                   static_cast<std::size_t>(upto - run_start));
    };
    while (p < end) {
        while (end - p >= 8 && !may_need_json_care(load_word(reinterpret_cast<const char*>(p)))) {
            p += 8;
        }
        while (p < end && (kByteClasses[*p] & kJsonPlain) != 0) {
            ++p;
        }
        if (p == end) {
            break;
        }
        const unsigned char c = *p;
        if (c >= 0x80) {
            unsigned code = 0;
            if (const std::size_t n = unsafe_code_point(p, end, code); n != 0) {
                flush_run(p);
                append_unicode_escape(out, code);
                p += n;
                run_start = p;
                continue;
            }
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
            case '\b':
                out.append("\\b");
                break;
            case '\f':
                out.append("\\f");
                break;
            default:
                append_hex_escape(out, "\\u00", c);
                break;
        }
        run_start = ++p;
    }
    flush_run(end);
}

bool split_json_object(std::string_view text, std::vector<JsonMember>& members) {
    members.clear();
    Scanner scanner(text);
    scanner.skip_ws();
    if (!scanner.object(0, &members)) {
        return false;
    }
    scanner.skip_ws();
    return scanner.at_end();
}

void append_compact_json(std::string& out, std::string_view valid_json) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(valid_json.data());
    const auto* end = bytes + valid_json.size();
    bool in_string = false;
    std::size_t run_start = 0;
    for (std::size_t i = 0; i < valid_json.size(); ++i) {
        const char c = valid_json[i];
        if (in_string) {
            if (c == '\\') {
                ++i;  // the escaped character cannot end the string
            } else if (c == '"') {
                in_string = false;
            } else if (c == '\xc2' || c == '\xe2') {
                // Valid JSON may hold C1 controls and U+2028/U+2029 raw: escape them, as above.
                unsigned code = 0;
                if (const std::size_t n = unsafe_code_point(bytes + i, end, code); n != 0) {
                    out.append(valid_json.data() + run_start, i - run_start);
                    append_unicode_escape(out, code);
                    i += n - 1;
                    run_start = i + 1;
                }
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            out.append(valid_json.data() + run_start, i - run_start);
            run_start = i + 1;
        }
    }
    out.append(valid_json.data() + run_start, valid_json.size() - run_start);
}

void TimestampFormatter::append(std::string& out, std::chrono::system_clock::time_point time) {
    using namespace std::chrono;
    const auto ms_total = duration_cast<milliseconds>(time.time_since_epoch()).count();
    // Floor division so times before 1970 still format correctly.
    std::int64_t second = ms_total / 1000;
    std::int64_t ms = ms_total % 1000;
    if (ms < 0) {
        ms += 1000;
        second -= 1;
    }
    if (second != cached_second_) {
        const auto t = static_cast<time_t>(second);
        struct tm tm_utc {};
        if (gmtime_r(&t, &tm_utc) == nullptr) {
            tm_utc = {};
        }
        const int n = std::snprintf(cached_, sizeof(cached_), "%04d-%02d-%02dT%02d:%02d:%02d",
                                    tm_utc.tm_year + 1900, tm_utc.tm_mon + 1, tm_utc.tm_mday,
                                    tm_utc.tm_hour, tm_utc.tm_min, tm_utc.tm_sec);
        cached_size_ = n > 0 ? std::min(static_cast<std::size_t>(n), sizeof(cached_) - 1) : 0;
        cached_second_ = second;
    }
    out.append(cached_, cached_size_);
    const char millis[5] = {'.', static_cast<char>('0' + ms / 100),
                            static_cast<char>('0' + ms / 10 % 10), static_cast<char>('0' + ms % 10),
                            'Z'};
    out.append(millis, sizeof(millis));
}

}  // namespace synergos::plugins::basic
