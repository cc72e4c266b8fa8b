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
        std::string out;
        for (const char ch : text) {
            const auto c = static_cast<unsigned char>(ch);
            if (c == '\n') {
                out += "\\n";
            } else if (c == '\t') {
                out += "\\t";
            } else if (c == '\r') {
                out += "\\r";
            } else if (c < 0x20 || c == 0x7f) {
                static const char kHexDigits[] = "0123456789abcdef";
                out += "\\x";
                out += kHexDigits[c >> 4];
                out += kHexDigits[c & 0xf];
            } else {
                out += ch;
            }
        }
        return out;
    };
    const std::string specials = std::string("\n\t\x01\x1f\x7f\"\\\x80\xc3\xa9", 11);
    std::vector<JsonMember> members;
    for (std::size_t length = 0; length <= 24; ++length) {
        for (std::size_t at = 0; at < length; ++at) {
            for (const char special : specials) {
                std::string text(length, 'a');
                text[at] = special;
                CAPTURE(length, at, static_cast<int>(static_cast<unsigned char>(special)));
                std::string console;
                append_console_text(console, text);
                CHECK(console == reference_console(text));

                std::string quoted = "\"";
                append_json_text(quoted, text);
                quoted += "\"";
                const auto parsed = nlohmann::json::parse(quoted);  // always valid JSON
                if (static_cast<unsigned char>(special) < 0x80) {
                    CHECK(parsed.get<std::string>() == text);
                }
                // The scanner accepts exactly the strings nlohmann accepts.
                const std::string object = "{\"k\":\"" + text + "\"}";
                CHECK(split_json_object(object, members) == nlohmann::json::accept(object));
            }
        }
    }
}
