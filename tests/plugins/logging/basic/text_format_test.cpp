// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "text_format.hpp"

using synergos::plugins::basic::append_compact_json;
using synergos::plugins::basic::append_console_text;
using synergos::plugins::basic::append_json_text;
using synergos::plugins::basic::JsonMember;
using synergos::plugins::basic::split_json_object;
using synergos::plugins::basic::TimestampFormatter;

TEST_CASE("split_json_object accepts valid objects and reports their members", "[unit][logging]") {
    std::vector<JsonMember> members;
    REQUIRE(split_json_object(R"({"a":1,"b":"x y","c":{"d":[1,2,{"e":null}]},"f":true})", members));
    REQUIRE(members.size() == 4);
    CHECK(members[0].key == "a");
    CHECK(members[0].value == "1");
    CHECK(members[1].value == "\"x y\"");
    CHECK(members[2].key == "c");
    CHECK(members[2].value == R"({"d":[1,2,{"e":null}]})");
    CHECK(members[3].value == "true");

    REQUIRE(split_json_object(" { } ", members));
    CHECK(members.empty());
    REQUIRE(split_json_object(R"({"k\"q":-0.5e+3, "u":"\u00e9\n", "s":"é"})", members));
    CHECK(members.size() == 3);
}

TEST_CASE("split_json_object rejects everything that is not one valid JSON object",
          "[unit][logging]") {
    std::vector<JsonMember> members;
    const std::string bad =
        GENERATE(as<std::string>{}, "", "[]", "1", "\"s\"", "{", "{\"a\"}", "{\"a\":}",
                 "{\"a\":1,}", "{\"a\":1} x", "{\"a\":01}", "{\"a\":1.}", "{\"a\":tru}", "{a:1}",
                 "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}", "{\"a\":\"line\nbreak\"}",
                 "{\"a\":\"\xff\"}", "{\"a\":[1,]}", "{\"a\":1}{\"b\":2}");
    CAPTURE(bad);
    CHECK_FALSE(split_json_object(bad, members));
}

TEST_CASE("split_json_object refuses nesting deeper than 64 without overflowing the stack",
          "[unit][logging]") {
    std::vector<JsonMember> members;
    std::string deep = "{\"a\":";
    for (int i = 0; i < 100000; ++i) {
        deep += '[';
    }
    CHECK_FALSE(split_json_object(deep, members));
    std::string ok = "{\"a\":" + std::string(60, '[') + std::string(60, ']') + "}";
    CHECK(split_json_object(ok, members));
}

TEST_CASE("append_json_text always yields valid JSON string content", "[unit][logging]") {
    static const char kInput[] = "quote\" back\\ nl\n tab\t ctl\x01 bad\xff\xfe ok\xc3\xa9 end";
    std::string out = "\"";
    append_json_text(out, std::string(kInput, sizeof(kInput) - 1));
    out += "\"";
    const auto parsed = nlohmann::json::parse(out);
    CHECK(parsed.get<std::string>() ==
          "quote\" back\\ nl\n tab\t ctl\x01 bad\xef\xbf\xbd\xef\xbf\xbd ok\xc3\xa9 end");
}

TEST_CASE("append_console_text keeps a record on one line and neutralises escape sequences",
          "[unit][logging]") {
    std::string out;
    append_console_text(out, "a\nb\tc\x1b[31md\x7f");
    CHECK(out == "a\\nb\\tc\\x1b[31md\\x7f");
}

TEST_CASE("append_console_text escapes C1 controls and line/paragraph separators",
          "[unit][logging]") {
    // U+009B is a one-character CSI; U+0085, U+2028 and U+2029 end lines in some viewers.
    std::string out;
    append_console_text(out,
                        "a\xc2\x9b"
                        "2Jb\xc2\x80\xc2\x9f\xc2\x85 \xe2\x80\xa8\xe2\x80\xa9 end");
    CHECK(out == "a\\u009b2Jb\\u0080\\u009f\\u0085 \\u2028\\u2029 end");
    // Other UTF-8 is kept; invalid bytes pass through as before.
    out.clear();
    append_console_text(out, "\xc2\xa0\xc3\xa9\xe2\x80\xa7\xe2\x80\xaa\xe2\x82\xac \xc2 \xe2\x80");
    CHECK(out == "\xc2\xa0\xc3\xa9\xe2\x80\xa7\xe2\x80\xaa\xe2\x82\xac \xc2 \xe2\x80");
}

TEST_CASE("append_json_text escapes C1 controls and U+2028/U+2029", "[unit][logging]") {
    std::string out;
    append_json_text(out,
                     "a\xc2\x9b"
                     "2J\xc2\x85\xe2\x80\xa8\xe2\x80\xa9\xc2\xa0\xe2\x80\xaa\xff");
    CHECK(out == "a\\u009b2J\\u0085\\u2028\\u2029\xc2\xa0\xe2\x80\xaa\xef\xbf\xbd");
    const auto parsed = nlohmann::json::parse("\"" + out + "\"");
    CHECK(parsed.get<std::string>() ==
          "a\xc2\x9b"
          "2J\xc2\x85\xe2\x80\xa8\xe2\x80\xa9\xc2\xa0\xe2\x80\xaa\xef\xbf\xbd");
}

TEST_CASE("append_compact_json escapes C1 controls and U+2028/U+2029 inside strings",
          "[unit][logging]") {
    // Valid JSON may carry these raw; the fields of both outputs go through this function.
    std::string out;
    append_compact_json(out, "{ \"k\\u0001\xc2\x9b\" : \"x\xc2\x9b[2J\xe2\x80\xa8y\xc3\xa9\" }");
    CHECK(out == "{\"k\\u0001\\u009b\":\"x\\u009b[2J\\u2028y\xc3\xa9\"}");
    CHECK(nlohmann::json::parse(out) ==
          nlohmann::json::parse("{\"k\\u0001\xc2\x9b\":\"x\xc2\x9b[2J\xe2\x80\xa8y\xc3\xa9\"}"));
}

TEST_CASE("append_compact_json removes whitespace outside strings only", "[unit][logging]") {
    std::string out;
    append_compact_json(out, "{ \"a b\" : [ 1 ,\n 2 ] , \"c\" : \"x \\\" y\" }");
    CHECK(out == "{\"a b\":[1,2],\"c\":\"x \\\" y\"}");
}

TEST_CASE("TimestampFormatter writes ISO-8601 UTC with milliseconds", "[unit][logging]") {
    using namespace std::chrono;
    TimestampFormatter formatter;
    std::string out;
    // 2024-02-29T23:59:59.999Z
    formatter.append(out, system_clock::time_point(milliseconds(1709251199999LL)));
    CHECK(out == "2024-02-29T23:59:59.999Z");
    out.clear();
    formatter.append(out, system_clock::time_point(milliseconds(1709251199005LL)));
    CHECK(out == "2024-02-29T23:59:59.005Z");
    out.clear();
    formatter.append(out, system_clock::time_point(milliseconds(1709251200000LL)));
    CHECK(out == "2024-03-01T00:00:00.000Z");
    out.clear();
    formatter.append(out, system_clock::time_point(milliseconds(-1)));
    CHECK(out == "1969-12-31T23:59:59.999Z");
}

TEST_CASE("escaping agrees with a byte-by-byte reference at every position", "[unit][logging]") {
    // The word-at-a-time fast paths must find a special byte wherever it sits in a word.
    auto reference_console = [](std::string_view text) {
        static const char kHexDigits[] = "0123456789abcdef";
        std::string out;
        for (std::size_t i = 0; i < text.size(); ++i) {
            const auto c = static_cast<unsigned char>(text[i]);
            const auto next = [&](std::size_t k) {
                return i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0;
            };
            if (c == 0xc2 && next(1) >= 0x80 && next(1) <= 0x9f) {  // C1 control
                out += "\\u00";
                out += kHexDigits[next(1) >> 4];
                out += kHexDigits[next(1) & 0xf];
                i += 1;
            } else if (c == 0xe2 && next(1) == 0x80 && (next(2) == 0xa8 || next(2) == 0xa9)) {
                out += next(2) == 0xa8 ? "\\u2028" : "\\u2029";
                i += 2;
            } else if (c == '\n') {
                out += "\\n";
            } else if (c == '\t') {
                out += "\\t";
            } else if (c == '\r') {
                out += "\\r";
            } else if (c < 0x20 || c == 0x7f) {
                out += "\\x";
                out += kHexDigits[c >> 4];
                out += kHexDigits[c & 0xf];
            } else {
                out += static_cast<char>(c);
            }
        }
        return out;
    };
    // Single bytes, then multi-byte sequences (escaped or kept) and truncated ones.
    const std::vector<std::string> specials = {
        "\n",           "\t",           "\x01",         "\x1f",     "\x7f",
        "\"",           "\\",           "\x80",         "\xc3\xa9", "\xc2\x80",
        "\xc2\x9b",     "\xc2\x9f",     "\xc2\xa0",     "\xc2",     "\xe2\x80\xa8",
        "\xe2\x80\xa9", "\xe2\x80\xa7", "\xe2\x80\xaa", "\xe2\x80", "\xe2\x82\xac"};
    auto valid_utf8 = [](const std::string& s) {
        return nlohmann::json::accept("\"" + s + "\"") || s == "\n" || s == "\t" || s == "\x01" ||
               s == "\x1f" || s == "\"" || s == "\\";
    };
    std::vector<JsonMember> members;
    for (std::size_t length = 0; length <= 24; ++length) {
        for (std::size_t at = 0; at < length; ++at) {
            for (const std::string& special : specials) {
                std::string text(length, 'a');
                text.replace(at, 1, special);
                CAPTURE(length, at, special);
                std::string console;
                append_console_text(console, text);
                CHECK(console == reference_console(text));

                std::string quoted = "\"";
                append_json_text(quoted, text);
                quoted += "\"";
                const auto parsed = nlohmann::json::parse(quoted);  // always valid JSON
                if (valid_utf8(special)) {
                    CHECK(parsed.get<std::string>() == text);
                }
                // The scanner accepts exactly the strings nlohmann accepts.
                const std::string object = "{\"k\":\"" + text + "\"}";
                const bool accepted = nlohmann::json::accept(object);
                CHECK(split_json_object(object, members) == accepted);
                if (accepted) {
                    // Compacting keeps the value and leaves no raw C1 or U+2028/U+2029.
                    std::string compact;
                    append_compact_json(compact, object);
                    CHECK(nlohmann::json::parse(compact) == nlohmann::json::parse(object));
                    CHECK(compact.find("\xc2\x9b") == std::string::npos);
                    CHECK(compact.find("\xe2\x80\xa8") == std::string::npos);
                }
            }
        }
    }
}
