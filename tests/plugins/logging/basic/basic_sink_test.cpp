// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
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

TEST_CASE("BasicSink escapes C1 controls and U+2028/U+2029 on readable and JSON lines",
          "[unit][logging]") {
    // A worker-sent string with a one-character CSI (U+009B) or a line separator must neither
    // drive the terminal nor split a record in a viewer.
    TempDir dir;
    sdk::testing::FakeHost host(dir.path().string());
    BasicSink sink(host,
                   options({{"output", dir.file("c1.log")}, {"json_file", dir.file("c1.jsonl")}}));
    REQUIRE(sink.start().is_ok());
    const std::string event =
        "clear\xc2\x9b"
        "2J now\xe2\x80\xa8next";
    const std::string fields =
        "{\"msg\":\"red\xc2\x9b"
        "31m\xe2\x80\xa9x\",\"k\xc2\x85\":1}";
    sink.write(make_record(event, fields));
    sink.stop();

    const std::string console = read_file(dir.file("c1.log"));
    for (const char* raw : {"\xc2\x9b", "\xc2\x85", "\xe2\x80\xa8", "\xe2\x80\xa9"}) {
        CAPTURE(raw);
        CHECK(console.find(raw) == std::string::npos);
    }
    CHECK_THAT(console, Catch::Contains("clear\\u009b2J now\\u2028next "
                                        "msg=\"red\\u009b31m\\u2029x\" k\\u0085=1"));

    const std::string json_text = read_file(dir.file("c1.jsonl"));
    for (const char* raw : {"\xc2\x9b", "\xc2\x85", "\xe2\x80\xa8", "\xe2\x80\xa9"}) {
        CAPTURE(raw);
        CHECK(json_text.find(raw) == std::string::npos);
    }
    const auto lines = read_lines(dir.file("c1.jsonl"));
    REQUIRE(lines.size() == 1);
    const auto record = nlohmann::json::parse(lines[0]);
    CHECK(record["event"] == event);  // escaped, not altered
    CHECK(record["fields"] == nlohmann::json::parse(fields));
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

namespace {

/// Reads what is in `fd` now, waiting at most `timeout_ms` for the first byte.
std::string read_available(int fd, int timeout_ms) {
    std::string text;
    char buf[65536];
    pollfd pfd{fd, POLLIN, 0};
    while (::poll(&pfd, 1, text.empty() ? timeout_ms : 0) > 0) {
        const ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n <= 0) {
            break;
        }
        text.append(buf, static_cast<std::size_t>(n));
    }
    return text;
}

/// Points fd 2 at another descriptor for the scope, then restores it.
class StderrRedirect {
public:
    explicit StderrRedirect(int fd) : saved_(::dup(STDERR_FILENO)) {
        ::dup2(fd, STDERR_FILENO);
    }
    StderrRedirect(const StderrRedirect&) = delete;
    StderrRedirect& operator=(const StderrRedirect&) = delete;
    ~StderrRedirect() {
        ::dup2(saved_, STDERR_FILENO);
        ::close(saved_);
    }

private:
    int saved_;
};

}  // namespace

TEST_CASE("BasicSink writes buffered file lines out 1 s after the last write-out by itself",
          "[unit][logging]") {
    // The option text promises it: lines must not wait for a next record that may never come.
    TempDir dir;
    const std::string path = dir.file("timer.log");
    sdk::testing::FakeHost host;
    BasicSink sink(host, options({{"output", path}}));
    // Before start: its clock for the 1 s starts there, so the bounds below hold however long
    // this thread waits between the two calls.
    const auto begin = std::chrono::steady_clock::now();
    REQUIRE(sink.start().is_ok());
    sink.write(make_record("lonely", "{}", sdk::Level::Info));  // below flush_level: buffered
    CHECK(read_file(path).empty());
    while (read_file(path).empty() &&
           std::chrono::steady_clock::now() - begin < std::chrono::seconds(10)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const auto waited = std::chrono::steady_clock::now() - begin;
    CHECK(read_lines(path).size() == 1);
    CHECK(waited >= std::chrono::milliseconds(900));
    CHECK(waited < std::chrono::seconds(5));
    sink.stop();
    CHECK(read_lines(path).size() == 1);
}

TEST_CASE("BasicSink never blocks callers on a console whose reader has stalled",
          "[unit][logging]") {
    // A pipe nobody reads: the pipe (64 KiB) and the backlog (1 MiB) fill, then lines are
    // dropped whole and counted; callers go on. Once the reader resumes it gets whole lines.
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const int reader = fds[0];
    const std::string how = GENERATE(as<std::string>{}, "path", "stderr");
    CAPTURE(how);
    std::unique_ptr<StderrRedirect> redirect;
    std::string output = "/proc/self/fd/" + std::to_string(fds[1]);
    if (how == "stderr") {
        redirect = std::make_unique<StderrRedirect>(fds[1]);  // the inherited, blocking stderr
        output = "stderr";
    }
    sdk::testing::FakeHost host;
    BasicSink sink(host, options({{"output", output}, {"color", "never"}}));
    REQUIRE(sink.start().is_ok());

    constexpr int kCalls = 20000;  // about 2.4 MB of lines
    const std::string pad(60, 'p');
    auto done = std::async(std::launch::async, [&] {
        for (int i = 0; i < kCalls; ++i) {
            sink.write(make_record("stalled",
                                   "{\"i\":" + std::to_string(i) + ",\"pad\":\"" + pad + "\"}"));
        }
    });
    const bool finished = done.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
    CHECK(finished);  // before the fix the writer hung in write(2)
    std::string text;
    while (done.wait_for(std::chrono::milliseconds(10)) != std::future_status::ready) {
        text += read_available(reader, 10);  // unblock a hung writer so the test can end
    }
    const auto stats = sink.stats();
    CHECK(stats.written + stats.dropped == kCalls);
    if (finished) {
        CHECK(stats.dropped > 0);
    }

    // The reader resumes: the backlog follows (retried by the timer thread), in whole lines.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::size_t lines = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        text += read_available(reader, 100);
        lines = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
        if (lines >= stats.written) {
            break;
        }
    }
    CHECK(lines == stats.written);
    std::size_t start = 0;
    std::size_t checked = 0;
    while (start < text.size()) {
        const auto end = text.find('\n', start);
        REQUIRE(end != std::string::npos);
        const std::string line = text.substr(start, end - start);
        // Every line is one whole record: prefix, then its fields, then nothing else.
        if (line.rfind("2024-05-01T12:34:56.789Z INFO  [director/dir-1] stalled i=", 0) != 0 ||
            line.find("pad=\"" + pad + "\"") != line.size() - pad.size() - 6) {
            FAIL_CHECK("torn line: " << line);
            break;
        }
        ++checked;
        start = end + 1;
    }
    CHECK(checked == lines);
    sink.stop();
    redirect.reset();
    ::close(fds[0]);
    ::close(fds[1]);
}

TEST_CASE("BasicSink survives a console reader that went away", "[unit][logging]") {
    // Writing to a pipe without a reader raises SIGPIPE, whose default action ends the process.
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    sdk::testing::FakeHost host;
    BasicSink sink(host, options({{"output", "/proc/self/fd/" + std::to_string(fds[1])}}));
    REQUIRE(sink.start().is_ok());
    sink.write(make_record("read"));
    CHECK(read_available(fds[0], 1000).find("read") != std::string::npos);
    ::close(fds[0]);  // the reader is gone
    sink.write(make_record("nobody reads this"));
    sink.write(make_record("nor this"));
    sink.stop();
    CHECK(sink.stats().failed >= 1);
    CHECK(sink.stats().written == 3);
    ::close(fds[1]);
}

TEST_CASE("BasicSink refuses a FIFO without a reader at start instead of hanging",
          "[unit][logging]") {
    TempDir dir;
    const std::string fifo = dir.file("log.fifo");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    sdk::testing::FakeHost host;
    BasicSink sink(host, options({{"output", fifo}}));
    auto started = std::async(std::launch::async, [&] { return sink.start(); });
    if (started.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
        FAIL_CHECK("start() hung opening a FIFO without a reader");
        const int unblock = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
        started.wait();
        ::close(unblock);
        return;
    }
    const auto status = started.get();
    REQUIRE_FALSE(status.is_ok());
    CHECK_THAT(status.message(), Catch::Contains(fifo) && Catch::Contains("needs a reader"));
}

TEST_CASE("BasicSink ends a line cut by a write error before the next record", "[unit][logging]") {
    // A file size limit stands in for a full disk: the write is cut after a few bytes, then
    // fails. The next record must start on a line of its own.
    TempDir dir;
    const std::string path = dir.file("cut.log");
    sdk::testing::FakeHost host;
    BasicSink sink(host, options({{"output", path}, {"buffered", "false"}}));
    REQUIRE(sink.start().is_ok());
    sink.write(make_record("first"));
    const auto size = std::filesystem::file_size(path);

    const auto old_handler = ::signal(SIGXFSZ, SIG_IGN);  // else exceeding the limit ends us
    rlimit old_limit{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    rlimit limit = old_limit;
    limit.rlim_cur = size + 40;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
    sink.write(make_record("second, cut after 40 bytes"));
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    ::signal(SIGXFSZ, old_handler);

    sink.write(make_record("third"));
    sink.stop();
    CHECK(sink.stats().failed == 1);
    const auto lines = read_lines(path);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == "2024-05-01T12:34:56.789Z INFO  [director/dir-1] first");
    const std::string second = "2024-05-01T12:34:56.789Z INFO  [director/dir-1] second, cut";
    CHECK(lines[1] == second.substr(0, 40));  // the cut line, on its own
    CHECK(lines[2] == "2024-05-01T12:34:56.789Z INFO  [director/dir-1] third");
}
