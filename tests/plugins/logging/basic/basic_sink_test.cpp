// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/testing/fake_host.hpp>

#include "basic_sink.hpp"
#include "temp_dir.hpp"

namespace sdk = synergos::sdk;
using synergos::plugins::basic::BasicSink;
using synergos::plugins::basic::parse_basic_config;
using synergos::test::read_file;
using synergos::test::read_lines;
using synergos::test::TempDir;

namespace {

// 2024-05-01T12:34:56.789Z
const auto kTime =
    std::chrono::system_clock::time_point(std::chrono::milliseconds(1714566896789LL));

sdk::LogRecord make_record(std::string_view event, std::string_view fields = "{}",
                           sdk::Level level = sdk::Level::Info) {
    sdk::LogRecord record;
    record.level = level;
    record.event = event;
    record.logger = "director/dir-1";
    record.host = "node-a";
    record.time = kTime;
    record.location = {"/src/core/jobs/scheduler.cpp", 42, "schedule"};
    record.fields_json = fields;
    return record;
}

sdk::Options options(std::map<std::string, std::string> values) {
    return sdk::Options(std::move(values));
}

}  // namespace

TEST_CASE("BasicSink writes readable lines with level, logger, event, fields and location",
          "[unit][logging]") {
    TempDir dir;
    const std::string path = dir.file("console.log");
    sdk::testing::FakeHost host(dir.path().string());
    BasicSink sink(host, options({{"output", path}, {"show_location", "true"}}));
    REQUIRE(sink.start().is_ok());
    CHECK_FALSE(sink.uses_color());  // auto colour: a regular file is not a terminal

    sink.write(make_record("job started", R"({"job_id":"j-1","round":3,"cfg":{ "lr" : 0.1 }})"));
    sink.write(make_record("two\nlines", "{}", sdk::Level::Error));
    sink.write(make_record("bad fields", "{not json"));
    sink.stop();

    const auto lines = read_lines(path);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == R"(2024-05-01T12:34:56.789Z INFO  [director/dir-1] job started )"
                      R"(job_id="j-1" round=3 cfg={"lr":0.1} (scheduler.cpp:42))");
    CHECK(lines[1] ==
          R"(2024-05-01T12:34:56.789Z ERROR [director/dir-1] two\nlines (scheduler.cpp:42))");
    CHECK(lines[2] == R"(2024-05-01T12:34:56.789Z INFO  [director/dir-1] bad fields )"
                      R"(fields={not json (scheduler.cpp:42))");
    CHECK(sink.stats().written == 3);
    CHECK(sink.stats().dropped == 0);
    CHECK(sink.stats().failed == 0);
}

TEST_CASE("BasicSink writes one valid JSON object per line to json_file", "[unit][logging]") {
    TempDir dir;
    const std::string json_path = dir.file("records.jsonl");
    sdk::testing::FakeHost host(dir.path().string());
    BasicSink sink(host, options({{"output", "none"}, {"json_file", json_path}}));
    REQUIRE(sink.start().is_ok());

    sink.write(make_record("job started", "{\n  \"job_id\": \"j-1\",\n  \"round\": 3\n}"));
    static const char kBadUtf8[] = "bad \xff utf8 \"quoted\"";
    sink.write(make_record(kBadUtf8, "{}", sdk::Level::Warn));
    sink.write(make_record("broken fields", "{\"a\":"));
    sdk::LogRecord bare;
    bare.event = "no location";
    bare.time = kTime;
    sink.write(bare);
    sink.stop();

    const auto lines = read_lines(json_path);
    REQUIRE(lines.size() == 4);
    std::vector<nlohmann::json> records;
    for (const auto& line : lines) {
        records.push_back(nlohmann::json::parse(line));  // throws on invalid JSON or UTF-8
    }
    CHECK(records[0]["time"] == "2024-05-01T12:34:56.789Z");
    CHECK(records[0]["level"] == "info");
    CHECK(records[0]["logger"] == "director/dir-1");
    CHECK(records[0]["host"] == "node-a");
    CHECK(records[0]["event"] == "job started");
    CHECK(records[0]["file"] == "/src/core/jobs/scheduler.cpp");
    CHECK(records[0]["line"] == 42);
    CHECK(records[0]["function"] == "schedule");
    CHECK(records[0]["fields"] == nlohmann::json({{"job_id", "j-1"}, {"round", 3}}));

    CHECK(records[1]["level"] == "warn");
    CHECK(records[1]["event"] == "bad \xef\xbf\xbd utf8 \"quoted\"");
    CHECK_FALSE(records[1].contains("fields"));

    CHECK(records[2]["fields_raw"] == "{\"a\":");
    CHECK_FALSE(records[2].contains("fields"));

    // No blank fields: an unknown logger, host or location is left out.
    CHECK(records[3] ==
          nlohmann::json(
              {{"time", "2024-05-01T12:34:56.789Z"}, {"level", "info"}, {"event", "no location"}}));
}

TEST_CASE("BasicSink writes readable and JSON lines side by side", "[unit][logging]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path().string());
    BasicSink sink(host,
                   options({{"output", dir.file("a.log")}, {"json_file", dir.file("a.jsonl")}}));
    REQUIRE(sink.start().is_ok());
    for (int i = 0; i < 10; ++i) {
        sink.write(make_record("tick", "{\"i\":" + std::to_string(i) + "}"));
    }
    sink.stop();
    CHECK(read_lines(dir.file("a.log")).size() == 10);
    const auto json_lines = read_lines(dir.file("a.jsonl"));
    REQUIRE(json_lines.size() == 10);
    CHECK(nlohmann::json::parse(json_lines[9])["fields"]["i"] == 9);
    CHECK(sink.stats().written == 10);
}

TEST_CASE("BasicSink buffers file output until flush_level, flush() or stop()", "[unit][logging]") {
    TempDir dir;
    const std::string path = dir.file("buffered.log");
    sdk::testing::FakeHost host(dir.path().string());

    SECTION("buffered") {
        BasicSink sink(host, options({{"output", path}}));
        REQUIRE(sink.start().is_ok());
        sink.write(make_record("first", "{}", sdk::Level::Info));
        CHECK(read_file(path).empty());
        sink.flush();
        CHECK(read_lines(path).size() == 1);
        sink.write(make_record("second", "{}", sdk::Level::Info));
        sink.write(make_record("third", "{}", sdk::Level::Warn));  // at flush_level: written out
        CHECK(read_lines(path).size() == 3);
        sink.write(make_record("fourth", "{}", sdk::Level::Debug));
        sink.stop();
        CHECK(read_lines(path).size() == 4);
    }
    SECTION("unbuffered") {
        BasicSink sink(host, options({{"output", path}, {"buffered", "false"}}));
        REQUIRE(sink.start().is_ok());
        sink.write(make_record("first", "{}", sdk::Level::Debug));
        CHECK(read_lines(path).size() == 1);
        sink.stop();
    }
    SECTION("flush_level") {
        BasicSink sink(host, options({{"output", path}, {"flush_level", "debug"}}));
        REQUIRE(sink.start().is_ok());
        sink.write(make_record("trace", "{}", sdk::Level::Trace));
        CHECK(read_file(path).empty());
        sink.write(make_record("debug", "{}", sdk::Level::Debug));
        CHECK(read_lines(path).size() == 2);
        sink.stop();
    }
}

TEST_CASE("BasicSink colours only on a terminal unless told otherwise", "[unit][logging]") {
    // A pseudo-terminal stands in for the console; its slave is given as the output path.
    const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
    REQUIRE(master >= 0);
    REQUIRE(::grantpt(master) == 0);
    REQUIRE(::unlockpt(master) == 0);
    const std::string slave = ::ptsname(master);
    sdk::testing::FakeHost host;

    auto read_master = [master]() {
        std::string text;
        char buf[4096];
        // Wait (bounded) for the line to arrive through the terminal.
        while (text.find('\n') == std::string::npos) {
            pollfd pfd{master, POLLIN, 0};
            if (::poll(&pfd, 1, 5000) <= 0) {
                break;
            }
            const ssize_t n = ::read(master, buf, sizeof(buf));
            if (n <= 0) {
                break;
            }
            text.append(buf, static_cast<std::size_t>(n));
        }
        return text;
    };

    const std::string color = GENERATE(as<std::string>{}, "auto", "never");
    CAPTURE(color);
    BasicSink sink(host, options({{"output", slave}, {"color", color}}));
    REQUIRE(sink.start().is_ok());
    const bool expect_color = color == "auto" && std::getenv("NO_COLOR") == nullptr;
    CHECK(sink.uses_color() == expect_color);
    sink.write(make_record("hello tty", "{}", sdk::Level::Warn));
    const std::string text = read_master();
    CHECK(text.find("hello tty") != std::string::npos);
    CHECK((text.find("\x1b[33mWARN \x1b[0m") != std::string::npos) == expect_color);
    sink.stop();
    ::close(master);
}

TEST_CASE("BasicSink colours a file when color is always", "[unit][logging]") {
    TempDir dir;
    const std::string path = dir.file("color.log");
    sdk::testing::FakeHost host;
    BasicSink sink(host, options({{"output", path}, {"color", "always"}}));
    REQUIRE(sink.start().is_ok());
    sink.write(make_record("red", "{}", sdk::Level::Error));
    sink.stop();
    CHECK(read_file(path).find("\x1b[31mERROR\x1b[0m [director/dir-1] red") != std::string::npos);
}

TEST_CASE("BasicSink refuses invalid options with an error naming the option", "[unit][logging]") {
    struct Case {
        std::map<std::string, std::string> values;
        std::string expected;
    };
    const auto c = GENERATE(values<Case>({
        {{{"color", "rainbow"}}, "option 'color' is 'rainbow'"},
        {{{"output", ""}}, "option 'output' is empty"},
        {{{"flush_level", "loud"}}, "option 'flush_level' is 'loud'"},
        {{{"buffered", "maybe"}}, "option 'buffered' is 'maybe'"},
        {{{"output", "stderr"}, {"json_file", "stderr"}}, "both name 'stderr'"},
    }));
    CAPTURE(c.expected);
    const auto config = parse_basic_config(sdk::Options(c.values));
    REQUIRE_FALSE(config.has_value());
    CHECK(config.error().code == sdk::ErrorCode::InvalidArgument);
    CHECK_THAT(config.error().message, Catch::Contains(c.expected));

    sdk::testing::FakeHost host;
    CHECK_THROWS_WITH(BasicSink(host, sdk::Options(c.values)), Catch::Contains(c.expected));
}

TEST_CASE("BasicSink start fails with the path when a file cannot be opened, creating nothing",
          "[unit][logging]") {
    TempDir dir;
    const std::string good = dir.file("ok.log");
    const std::string bad = dir.file("missing/dir/records.jsonl");
    sdk::testing::FakeHost host;
    BasicSink sink(host, options({{"output", good}, {"json_file", bad}}));
    const auto status = sink.start();
    REQUIRE_FALSE(status.is_ok());
    CHECK(status.code() == sdk::ErrorCode::Unavailable);
    CHECK_THAT(status.message(), Catch::Contains(bad));
    CHECK_FALSE(std::filesystem::exists(dir.file("missing")));

    // Records after a failed start are counted as dropped, not lost silently.
    sink.write(make_record("nowhere"));
    CHECK(sink.stats().dropped == 1);
    CHECK(sink.stats().written == 0);
}

TEST_CASE("BasicSink counts writes before start and after stop as dropped", "[unit][logging]") {
    TempDir dir;
    sdk::testing::FakeHost host;
    BasicSink sink(host, options({{"output", dir.file("x.log")}}));
    sink.write(make_record("early"));
    REQUIRE(sink.start().is_ok());
    CHECK_FALSE(sink.start().is_ok());
    sink.write(make_record("on time"));
    sink.stop();
    sink.stop();  // idempotent
    sink.write(make_record("late"));
    CHECK(sink.stats().written == 1);
    CHECK(sink.stats().dropped == 2);
    CHECK(read_lines(dir.file("x.log")).size() == 1);
}

TEST_CASE("BasicSink keeps lines whole when many threads log at once", "[unit][logging]") {
    TempDir dir;
    const std::string path = dir.file("threads.jsonl");
    sdk::testing::FakeHost host;
    BasicSink sink(host, options({{"output", "none"}, {"json_file", path}}));
    REQUIRE(sink.start().is_ok());
    constexpr int kThreads = 4;
    constexpr int kPerThread = 5000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&sink, t]() {
            const std::string fields =
                "{\"thread\":" + std::to_string(t) + ",\"pad\":\"" + std::string(200, 'x') + "\"}";
            for (int i = 0; i < kPerThread; ++i) {
                sink.write(make_record("concurrent", fields));
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    sink.stop();
    const auto lines = read_lines(path);
    REQUIRE(lines.size() == kThreads * kPerThread);
    std::vector<int> per_thread(kThreads, 0);
    for (const auto& line : lines) {
        const auto record = nlohmann::json::parse(line);
        per_thread.at(record["fields"]["thread"].get<int>()) += 1;
    }
    CHECK(per_thread == std::vector<int>(kThreads, kPerThread));
    CHECK(sink.stats().written == kThreads * kPerThread);
}

TEST_CASE("BasicSink counts a failed write", "[unit][logging]") {
    // /dev/full accepts open() and fails every write with ENOSPC.
    if (::access("/dev/full", W_OK) != 0) {
        FAIL("/dev/full is needed for this test");
    }
    sdk::testing::FakeHost host;
    BasicSink sink(host, options({{"output", "/dev/full"}, {"buffered", "false"}}));
    REQUIRE(sink.start().is_ok());
    sink.write(make_record("disk full"));
    sink.write(make_record("still full"));
    sink.stop();
    CHECK(sink.stats().failed == 2);
}
