// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "gelf.hpp"
#include "gelf_receiver.hpp"

namespace sdk = synergos::sdk;
using nlohmann::json;
using synergos::plugins::graylog::GelfEncoder;
using synergos::plugins::graylog::sanitize_field_name;
using synergos::test::gelf_violations;

namespace {

// 2024-05-01T12:34:56.789Z
const auto kTime =
    std::chrono::system_clock::time_point(std::chrono::milliseconds(1714566896789LL));

sdk::LogRecord record_with(std::string_view fields, sdk::Level level = sdk::Level::Info) {
    sdk::LogRecord record;
    record.level = level;
    record.event = "job started";
    record.logger = "director/dir-1";
    record.host = "node-a";
    record.time = kTime;
    record.location = {"/src/jobs/scheduler.cpp", 42, "schedule"};
    record.fields_json = fields;
    return record;
}

json encode(const sdk::LogRecord& record, std::string facility = "synergos") {
    GelfEncoder encoder(std::move(facility), "fallback-host");
    std::string out;
    encoder.encode(record, out);
    REQUIRE(out.find('\0') == std::string::npos);
    const auto message = json::parse(out);
    const auto problems = gelf_violations(message);
    CAPTURE(out);
    CHECK(problems.empty());
    for (const auto& problem : problems) {
        UNSCOPED_INFO(problem);
    }
    return message;
}

}  // namespace

TEST_CASE("GelfEncoder maps a record to the GELF 1.1 fields", "[unit][logging]") {
    const auto message = encode(record_with(R"({"job_id":"j-1","round":3,"loss":0.25})"));
    CHECK(message == json{{"version", "1.1"},
                          {"host", "node-a"},
                          {"short_message", "job started"},
                          {"level", 6},
                          {"_logger", "director/dir-1"},
                          {"_level_name", "info"},
                          {"_file", "/src/jobs/scheduler.cpp"},
                          {"_line", 42},
                          {"_function", "schedule"},
                          {"_facility", "synergos"},
                          {"_job_id", "j-1"},
                          {"_round", 3},
                          {"_loss", 0.25},
                          {"timestamp", 1714566896.789}});
}

TEST_CASE("GelfEncoder writes the timestamp as seconds with millisecond decimals",
          "[unit][logging]") {
    GelfEncoder encoder("", "h");
    std::string out;
    auto record = record_with("{}");
    record.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1714566896005LL));
    encoder.encode(record, out);
    CHECK(out.find("\"timestamp\":1714566896.005,") != std::string::npos);
}

TEST_CASE("GelfEncoder sends syslog levels and level names", "[unit][logging]") {
    const auto [level, syslog, name] = GENERATE(table<sdk::Level, int, std::string>({
        {sdk::Level::Trace, 7, "trace"},
        {sdk::Level::Debug, 7, "debug"},
        {sdk::Level::Info, 6, "info"},
        {sdk::Level::Warn, 4, "warn"},
        {sdk::Level::Error, 3, "error"},
        {sdk::Level::Critical, 2, "critical"},
    }));
    const auto message = encode(record_with("{}", level));
    CHECK(message["level"] == syslog);
    CHECK(message["_level_name"] == name);
}

TEST_CASE("GelfEncoder never sends _id and renames fields that clash with its own",
          "[unit][logging]") {
    const auto message = encode(record_with(R"({"id":7,"logger":"mine","line":"l","file":"f",)"
                                            R"("function":"fn","facility":"x","level_name":"q"})"));
    CHECK_FALSE(message.contains("_id"));
    CHECK(message["_field_id"] == 7);
    CHECK(message["_field_logger"] == "mine");
    CHECK(message["_field_line"] == "l");
    CHECK(message["_field_file"] == "f");
    CHECK(message["_field_function"] == "fn");
    CHECK(message["_field_facility"] == "x");
    CHECK(message["_field_level_name"] == "q");
    CHECK(message["_logger"] == "director/dir-1");  // the encoder's own fields are intact
    CHECK(message["_line"] == 42);
}

TEST_CASE("GelfEncoder flattens objects, serialises arrays and sanitises names",
          "[unit][logging]") {
    const auto message = encode(record_with(R"({
        "job": {"id": "j-9", "spec": {"rounds": 5}},
        "tags": ["a", 1, {"b": null}],
        "ok": true, "bad": false, "nothing": null,
        "key with spaces/and:colons": "v",
        "ünï": 1,
        "dotted.name-ok_1": 2,
        "": "empty key",
        "a_b": "plain",
        "a": {"b": "nested"}
    })"));
    CHECK(message["_job_id"] == "j-9");
    CHECK(message["_job_spec_rounds"] == 5);
    CHECK(message["_tags"] == R"(["a",1,{"b":null}])");
    CHECK(message["_ok"] == "true");
    CHECK(message["_bad"] == "false");
    CHECK_FALSE(message.contains("_nothing"));
    CHECK(message["_key_with_spaces_and_colons"] == "v");
    CHECK(message["___n__"] == 1);  // each byte of the two-byte letters is replaced
    CHECK(message["_dotted.name-ok_1"] == 2);
    CHECK(message["_field"] == "empty key");
    // "a_b" and {"a":{"b":..}} flatten to the same name: the second one gets a suffix.
    CHECK(message["_a_b"] == "nested");
    CHECK(message["_a_b_2"] == "plain");
}

TEST_CASE("GelfEncoder puts exception and stack into full_message", "[unit][logging]") {
    SECTION("both") {
        const auto message =
            encode(record_with(R"j({"exception":"boom","stack":"at f()\nat g()"})j"));
        CHECK(message["full_message"] == "boom\nat f()\nat g()");
        CHECK(message["_exception"] == "boom");
    }
    SECTION("only stack, not a string") {
        const auto message = encode(record_with(R"({"stack":["f","g"]})"));
        CHECK(message["full_message"] == R"(["f","g"])");
    }
    SECTION("neither") {
        const auto message = encode(record_with(R"({"error":"x"})"));
        CHECK_FALSE(message.contains("full_message"));
    }
}

TEST_CASE("GelfEncoder keeps bad fields_json as _fields_raw and always emits valid JSON",
          "[unit][logging]") {
    SECTION("not JSON") {
        const auto message = encode(record_with("{broken"));
        CHECK(message["_fields_raw"] == "{broken");
    }
    SECTION("not an object") {
        const auto message = encode(record_with("[1,2]"));
        CHECK(message["_fields_raw"] == "[1,2]");
    }
    SECTION("nested too deep to parse safely") {
        const std::string deep =
            "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
        const auto message = encode(record_with(deep));
        // Sent raw, and like every value cut to 32 KiB with the marker at the end.
        const auto raw = message["_fields_raw"].get<std::string>();
        CHECK(raw.size() == synergos::plugins::graylog::kMaxValueBytes);
        CHECK(raw.compare(0, 50, deep, 0, 50) == 0);
        CHECK(raw.substr(raw.size() - 14) == "...[truncated]");
    }
    SECTION("invalid UTF-8 everywhere") {
        static const char kBad[] = "bad \xff\xfe text";
        auto record = record_with("{\"k\":\"\xff\"}");
        record.event = kBad;
        record.logger = kBad;
        const auto message = encode(record);
        CHECK(message["short_message"] == "bad \xef\xbf\xbd\xef\xbf\xbd text");
        CHECK(message.contains("_fields_raw"));
    }
}

TEST_CASE("GelfEncoder fills in required fields the record lacks", "[unit][logging]") {
    sdk::LogRecord record;
    record.time = kTime;
    const auto message = encode(record, "");
    CHECK(message["host"] == "fallback-host");
    CHECK(message["short_message"] == "(empty)");
    // No blank additional fields.
    CHECK_FALSE(message.contains("_logger"));
    CHECK_FALSE(message.contains("_file"));
    CHECK_FALSE(message.contains("_line"));
    CHECK_FALSE(message.contains("_function"));
    CHECK_FALSE(message.contains("_facility"));
}

TEST_CASE("sanitize_field_name keeps only [A-Za-z0-9_.-]", "[unit][logging]") {
    CHECK(sanitize_field_name("ok.Name-1_x") == "ok.Name-1_x");
    CHECK(sanitize_field_name("a b/c:d\"e") == "a_b_c_d_e");
}

TEST_CASE("append_json_string escapes a special byte wherever it sits", "[unit][logging]") {
    using synergos::plugins::graylog::append_json_string;
    const std::string specials = std::string("\n\t\x01\x1f\"\\\x80\xc3\xa9\x7f", 11);
    for (std::size_t length = 1; length <= 24; ++length) {
        for (std::size_t at = 0; at < length; ++at) {
            for (const char special : specials) {
                std::string text(length, 'a');
                text[at] = special;
                CAPTURE(length, at, static_cast<int>(static_cast<unsigned char>(special)));
                std::string quoted;
                append_json_string(quoted, text);
                const auto parsed = json::parse(quoted);  // always valid JSON and UTF-8
                if (static_cast<unsigned char>(special) < 0x80) {
                    CHECK(parsed.get<std::string>() == text);
                } else if (special == '\x80') {
                    CHECK(parsed.get<std::string>().find("\xef\xbf\xbd") != std::string::npos);
                }
            }
        }
    }
}

TEST_CASE("GelfEncoder cuts every value longer than 32 KiB and marks the cut", "[unit][logging]") {
    using synergos::plugins::graylog::kMaxValueBytes;
    const std::string marker = "...[truncated]";
    // Two-byte characters, so a cut at an odd offset would split one.
    std::string long_text;
    while (long_text.size() < 100000) {
        long_text += "\xc3\xa9";
    }
    const std::string fields = json{
        {"stack", long_text},
        {"payload", std::string(40000, 'p')},
        {"list", std::vector<std::string>(5000, "item")},
        {"small", "ok"}}.dump();
    auto record = record_with(fields);
    record.event = long_text;
    record.logger = long_text;
    const auto message = encode(record);  // valid GELF and valid UTF-8
    for (const char* key :
         {"short_message", "full_message", "_logger", "_stack", "_payload", "_list"}) {
        CAPTURE(key);
        const auto value = message[key].get<std::string>();
        CHECK(value.size() <= kMaxValueBytes);
        CHECK(value.size() >= kMaxValueBytes - 4);
        CHECK(value.substr(value.size() - marker.size()) == marker);
    }
    CHECK(message["short_message"].get<std::string>().compare(0, 10, long_text, 0, 10) == 0);
    CHECK(message["_small"] == "ok");
    // A value at the cap is kept whole.
    const auto exact = encode(record_with(json{{"v", std::string(kMaxValueBytes, 'x')}}.dump()));
    CHECK(exact["_v"] == std::string(kMaxValueBytes, 'x'));
}

TEST_CASE("cap_json_strings cuts long strings at character and escape boundaries",
          "[unit][logging]") {
    using synergos::plugins::graylog::cap_json_strings;
    const std::string marker = "...[truncated]";
    constexpr std::size_t kCap = 64;
    // Units of 1 to 12 bytes at every offset around the cut.
    const std::vector<std::string> units = {
        "a",        "\\n",          "\\u00e9",          "\\ud83d\\ude00",
        "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\\\""};
    for (const auto& unit : units) {
        for (std::size_t pad = 0; pad < 16; ++pad) {
            std::string value(pad, 'x');
            while (value.size() < 3 * kCap) {
                value += unit;
            }
            const std::string input = "{\"short\":\"ok\",\"" + value + "\":[\"" + value +
                                      "\",1,{\"k\":\"" + value + "\"}],\"n\":2}";
            CAPTURE(unit, pad);
            std::string out;
            CHECK(cap_json_strings(input, kCap, out));
            const auto parsed = json::parse(out);  // still valid JSON, same shape
            REQUIRE(parsed.size() == 3);
            CHECK(parsed["short"] == "ok");
            CHECK(parsed["n"] == 2);
            for (const auto& [key, element] : parsed.items()) {
                if (key == "short" || key == "n") {
                    continue;
                }
                const auto& text = element[0].get_ref<const std::string&>();
                CHECK(text.substr(text.size() - marker.size()) == marker);
                CHECK(element[2]["k"] == text);
                CHECK(key.substr(key.size() - marker.size()) == marker);
            }
            // No string in the output is longer than the cap as written.
            std::size_t run = 0;
            bool in_string = false;
            for (std::size_t i = 0; i < out.size(); ++i) {
                if (in_string && out[i] == '\\') {
                    run += 2;
                    ++i;
                } else if (out[i] == '"') {
                    CHECK(run <= kCap);
                    in_string = !in_string;
                    run = 0;
                } else if (in_string) {
                    ++run;
                }
            }
        }
    }
    std::string out;
    CHECK_FALSE(cap_json_strings(R"({"a":"short","b":[1,2]})", kCap, out));
    CHECK(out == R"({"a":"short","b":[1,2]})");
}
