// SPDX-License-Identifier: Apache-2.0
// End-to-end tests of the sink against real sockets on 127.0.0.1 (see gelf_receiver.hpp).
#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <random>
#include <string>
#include <mutex>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/testing/fake_host.hpp>

#include "gelf_receiver.hpp"
#include "graylog_sink.hpp"

namespace sdk = synergos::sdk;
using nlohmann::json;
using synergos::plugins::graylog::GraylogSink;
using synergos::plugins::graylog::parse_graylog_config;
using synergos::test::Encoding;
using synergos::test::GelfMessage;
using synergos::test::TcpGelfReceiver;
using synergos::test::UdpGelfReceiver;

namespace {

sdk::LogRecord make_record(std::string_view event, std::string_view fields = "{}",
                           sdk::Level level = sdk::Level::Info) {
    sdk::LogRecord record;
    record.level = level;
    record.event = event;
    record.logger = "director/dir-1";
    record.host = "node-a";
    record.time = std::chrono::system_clock::now();
    record.location = {"/src/jobs/scheduler.cpp", 42, "schedule"};
    record.fields_json = fields;
    return record;
}

std::map<std::string, std::string> base_options(int port, std::string transport) {
    return {{"host", "127.0.0.1"},
            {"port", std::to_string(port)},
            {"transport", std::move(transport)},
            {"reconnect_min_ms", "20"},
            {"reconnect_max_ms", "200"}};
}

/// Checks one message against GELF 1.1, reporting each violation.
void check_gelf(const GelfMessage& message) {
    const auto problems = synergos::test::gelf_violations(message.json);
    CAPTURE(message.json.dump());
    for (const auto& problem : problems) {
        UNSCOPED_INFO(problem);
    }
    CHECK(problems.empty());
}

/// Letters and digits that deflate only a little, so compressed payloads still need chunks.
std::string noisy_text(std::size_t size, unsigned seed) {
    std::mt19937 rng(seed);
    static const char kAlphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::string text;
    for (std::size_t i = 0; i < size; ++i) {
        text.push_back(kAlphabet[rng() % (sizeof(kAlphabet) - 1)]);
    }
    return text;
}

/// Polls `done` until it holds or `within` passes; returns its last value.
template <typename Predicate>
bool eventually(Predicate done, std::chrono::seconds within = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

}  // namespace

TEST_CASE("GraylogSink sends valid GELF over UDP, chunked and compressed",
          "[integration][logging]") {
    UdpGelfReceiver receiver;
    sdk::testing::FakeHost host;
    const auto [compression, expected_encoding] = GENERATE(table<std::string, Encoding>({
        {"none", Encoding::Plain},
        {"zlib", Encoding::Zlib},
        {"gzip", Encoding::Gzip},
    }));
    CAPTURE(compression);
    auto options = base_options(receiver.port(), "udp");
    options["compression"] = compression;
    options["chunk_size"] = "512";
    GraylogSink sink(host, sdk::Options(options));
    REQUIRE(sink.start().is_ok());

    // A small record fits one datagram.
    sink.write(make_record("small", R"({"job_id":"j-1","id":5})"));
    sink.flush();
    auto small = receiver.receive();
    REQUIRE(small.has_value());
    check_gelf(*small);
    CHECK(small->chunks == 0);
    CHECK(small->encoding == expected_encoding);
    CHECK(small->json["short_message"] == "small");
    CHECK(small->json["_job_id"] == "j-1");
    CHECK(small->json["_field_id"] == 5);

    // Large records need many chunks even after compression; each one is sent and reassembled
    // in turn (flush waits until the sender has passed it to the socket).
    for (unsigned i = 0; i < 5; ++i) {
        const std::string payload = noisy_text(20000 + 3000 * i, i);
        const std::string fields = json{{"payload", payload}, {"index", i}}.dump();
        sink.write(make_record("large", fields, sdk::Level::Warn));
        sink.flush();
        auto large = receiver.receive();
        REQUIRE(large.has_value());
        check_gelf(*large);
        CHECK(large->chunks > 1);
        CHECK(large->chunks <= 128);
        CHECK(large->encoding == expected_encoding);
        CHECK(large->json["_payload"] == payload);
        CHECK(large->json["_index"] == i);
        CHECK(large->json["level"] == 4);
    }
    sink.stop();
    CHECK(sink.stats().written == 6);
    CHECK(sink.stats().dropped == 0);
    CHECK(sink.stats().failed == 0);
}

TEST_CASE("GraylogSink drops a UDP record that needs more than 128 chunks",
          "[integration][logging]") {
    UdpGelfReceiver receiver;
    sdk::testing::FakeHost host;
    auto options = base_options(receiver.port(), "udp");
    options["compression"] = "none";
    options["chunk_size"] = "64";  // 128 chunks hold 8192 bytes
    GraylogSink sink(host, sdk::Options(options));
    REQUIRE(sink.start().is_ok());
    sink.write(make_record("too big", json{{"payload", std::string(9000, 'x')}}.dump()));
    sink.write(make_record("after"));
    sink.flush();
    // The first message to arrive is the small one: the large one sent no datagram at all.
    auto next = receiver.receive();
    REQUIRE(next.has_value());
    CHECK(next->json["short_message"] == "after");
    sink.stop();
    CHECK(sink.stats().written == 1);
    CHECK(sink.stats().dropped == 1);
    CHECK_THAT(sink.last_error(), Catch::Contains("more than 128 chunks"));
}

TEST_CASE("GraylogSink sends NUL-delimited uncompressed GELF over TCP", "[integration][logging]") {
    TcpGelfReceiver receiver;
    sdk::testing::FakeHost host;
    auto options = base_options(receiver.port(), "tcp");
    options["compression"] = "gzip";  // ignored: GELF TCP is never compressed
    GraylogSink sink(host, sdk::Options(options));
    REQUIRE(sink.start().is_ok());
    REQUIRE(receiver.accept());

    constexpr int kCount = 300;
    for (int i = 0; i < kCount; ++i) {
        const std::string fields = json{{"seq", i},
                                        {"job", {{"id", "j-" + std::to_string(i)}}},
                                        {"exception", i % 50 == 0 ? "boom" : ""}}
                                       .dump();
        sink.write(
            make_record("tcp record", fields, i % 2 == 0 ? sdk::Level::Info : sdk::Level::Error));
    }
    for (int i = 0; i < kCount; ++i) {
        auto message = receiver.receive();
        REQUIRE(message.has_value());
        check_gelf(*message);
        CHECK(message->json["_seq"] == i);  // in order, none lost
        CHECK(message->json["_job_id"] == "j-" + std::to_string(i));
        CHECK(message->json["level"] == (i % 2 == 0 ? 6 : 3));
    }
    sink.stop();
    CHECK(sink.stats().written == kCount);
    CHECK(sink.stats().dropped == 0);
}

TEST_CASE("GraylogSink reconnects over TCP after Graylog closes the connection",
          "[integration][logging]") {
    TcpGelfReceiver receiver;
    sdk::testing::FakeHost host;
    GraylogSink sink(host, sdk::Options(base_options(receiver.port(), "tcp")));
    REQUIRE(sink.start().is_ok());
    REQUIRE(receiver.accept());
    sink.write(make_record("before", R"({"n":1})"));
    auto first = receiver.receive();
    REQUIRE(first.has_value());
    CHECK(first->json["short_message"] == "before");

    receiver.close_connection();  // Graylog restarts
    for (int i = 0; i < 20; ++i) {
        sink.write(make_record("after", json{{"n", i}}.dump()));
    }
    REQUIRE(receiver.accept());
    for (int i = 0; i < 20; ++i) {
        auto message = receiver.receive();
        REQUIRE(message.has_value());
        check_gelf(*message);
        CHECK(message->json["_n"] == i);
    }
    sink.stop();
    CHECK(sink.stats().written == 21);
    CHECK(sink.stats().dropped == 0);
    CHECK(sink.stats().failed >= 1);  // the closed connection
}

TEST_CASE("GraylogSink buffers while Graylog is down and reports the drops once it is back",
          "[integration][logging]") {
    TcpGelfReceiver receiver(false);  // bound, refusing connections
    sdk::testing::FakeHost host;
    auto options = base_options(receiver.port(), "tcp");
    options["buffer_records"] = "10";
    GraylogSink sink(host, sdk::Options(options));
    REQUIRE(sink.start().is_ok());
    for (int i = 0; i < 50; ++i) {
        sink.write(make_record("while down", json{{"n", i}}.dump()));
    }
    CHECK(sink.stats().dropped == 40);  // the buffer holds the first 10
    sink.flush();                       // returns at once: the sink knows Graylog is down
    CHECK(sink.stats().written == 0);

    receiver.listen();  // Graylog is back
    REQUIRE(receiver.accept());
    auto report = receiver.receive();
    REQUIRE(report.has_value());
    check_gelf(*report);
    CHECK(report->json["short_message"] == "graylog records dropped");
    CHECK(report->json["_dropped"] == 40);
    CHECK(report->json["_dropped_total"] == 40);
    CHECK(report->json["level"] == 4);
    CHECK(report->json["_logger"] == "test/test-node");
    for (int i = 0; i < 10; ++i) {
        auto message = receiver.receive();
        REQUIRE(message.has_value());
        check_gelf(*message);
        CHECK(message->json["_n"] == i);
    }
    sink.stop();
    CHECK(sink.stats().written == 10);
    CHECK(sink.stats().dropped == 40);
    CHECK(sink.drop_reports_sent() == 1);
}

TEST_CASE("GraylogSink says on the console when Graylog is unreachable and when it is back",
          "[integration][logging]") {
    // Its drop reports go to Graylog, which is down: nothing else tells the operator.
    TcpGelfReceiver receiver(false);  // bound, refusing connections
    sdk::testing::FakeHost host;
    std::mutex mutex;
    std::vector<std::string> lines;
    GraylogSink sink(host, sdk::Options(base_options(receiver.port(), "tcp")), [&](const std::string& line) {
        std::lock_guard<std::mutex> lock(mutex);
        lines.push_back(line);
    });
    REQUIRE(sink.start().is_ok());
    sink.write(make_record("while down"));
    const auto count = [&] {
        std::lock_guard<std::mutex> lock(mutex);
        return lines.size();
    };
    REQUIRE(eventually([&] { return count() >= 1; }));
    {
        std::lock_guard<std::mutex> lock(mutex);
        CHECK_THAT(lines[0], Catch::Contains("cannot send to 127.0.0.1:" + std::to_string(receiver.port()) + "/tcp"));
    }
    // Reconnection attempts keep failing (every 20-200 ms): still one line, not one per attempt.
    REQUIRE(eventually([&] { return sink.stats().failed >= 4; }));
    CHECK(count() == 1);
    receiver.listen();
    REQUIRE(receiver.accept());
    REQUIRE(receiver.receive().has_value());
    REQUIRE(eventually([&] { return count() >= 2; }));
    {
        std::lock_guard<std::mutex> lock(mutex);
        CHECK_THAT(lines[1], Catch::Contains("reachable again"));
    }
    sink.stop();
}

TEST_CASE("GraylogSink notices over UDP that nothing listens and when Graylog is back",
          "[integration][logging]") {
    // UDP is the default transport: without ICMP errors a Graylog that is down went unnoticed,
    // every record counted as written.
    const int port = synergos::test::unused_udp_port();
    sdk::testing::FakeHost host;
    std::mutex mutex;
    std::vector<std::string> lines;
    GraylogSink sink(host, sdk::Options(base_options(port, "udp")), [&](const std::string& line) {
        std::lock_guard<std::mutex> lock(mutex);
        lines.push_back(line);
    });
    const auto line = [&](std::size_t i) {
        std::lock_guard<std::mutex> lock(mutex);
        return i < lines.size() ? lines[i] : std::string();
    };
    REQUIRE(sink.start().is_ok());
    std::uint64_t writes = 0;
    const auto write_until = [&](auto done) {
        return eventually([&] {
            sink.write(make_record("tick", json{{"n", writes++}}.dump()));
            return done();
        });
    };

    SECTION("a single record") {
        sink.write(make_record("only one"));
        ++writes;
        REQUIRE(eventually([&] { return !line(0).empty(); }, std::chrono::seconds(5)));
        CHECK(sink.stats().failed >= 1);
        CHECK(sink.stats().dropped == 1);  // counted as lost, not as written
    }
    SECTION("a steady stream") {
        REQUIRE(write_until([&] { return sink.stats().dropped >= 1 && !line(0).empty(); }));
        CHECK(sink.stats().failed >= 1);
    }
    CHECK(sink.stats().written == 0);
    CHECK_THAT(line(0),
               Catch::Contains("cannot send to 127.0.0.1:" + std::to_string(port) + "/udp"));
    CHECK_THAT(line(0), Catch::Contains("port unreachable"));
    CHECK_THAT(sink.last_error(), Catch::Contains("port unreachable"));

    // Graylog is back on the same port: records arrive, with the drop report, and the console
    // says so once the link is confirmed.
    synergos::test::UdpGelfReceiver receiver(port);
    REQUIRE(write_until([&] { return line(1).find("reachable again") != std::string::npos; }));
    bool got_record = false;
    bool got_report = false;
    while (auto message = receiver.receive(std::chrono::milliseconds(500))) {
        check_gelf(*message);
        got_record = got_record || message->json["short_message"] == "tick";
        got_report = got_report || message->json["short_message"] == "graylog records dropped";
    }
    CHECK(got_record);
    if (sink.stats().dropped > 0) {
        CHECK(got_report);
    }
    sink.stop();
    CHECK(sink.stats().written + sink.stats().dropped == writes);
    // While it was down the records waited in the buffer: only probes were lost.
    CHECK(sink.stats().written > sink.stats().dropped);
}

TEST_CASE("GraylogSink reports drops at stop", "[integration][logging]") {
    UdpGelfReceiver receiver;
    sdk::testing::FakeHost host;
    auto options = base_options(receiver.port(), "udp");
    options["buffer_records"] = "5";
    options["drop_report_interval_ms"] = "3600000";  // no periodic report during the test
    GraylogSink sink(host, sdk::Options(options));
    // Records written before start wait in the buffer; the buffer holds 5 of these 12.
    for (int i = 0; i < 12; ++i) {
        sink.write(make_record("early", json{{"n", i}}.dump()));
    }
    REQUIRE(sink.start().is_ok());
    sink.stop();
    std::vector<json> received;
    for (int i = 0; i < 6; ++i) {
        auto message = receiver.receive();
        REQUIRE(message.has_value());
        check_gelf(*message);
        received.push_back(message->json);
    }
    for (int i = 0; i < 5; ++i) {
        CHECK(received[i]["_n"] == i);
    }
    CHECK(received[5]["short_message"] == "graylog records dropped");
    CHECK(received[5]["_dropped"] == 7);
    CHECK(sink.stats().written == 5);
    CHECK(sink.stats().dropped == 7);
    CHECK(sink.drop_reports_sent() == 1);
}

TEST_CASE("GraylogSink reports drops periodically while running", "[integration][logging]") {
    UdpGelfReceiver receiver;
    sdk::testing::FakeHost host;
    auto options = base_options(receiver.port(), "udp");
    options["buffer_records"] = "1";
    options["drop_report_interval_ms"] = "5";
    GraylogSink sink(host, sdk::Options(options));
    for (int i = 0; i < 4; ++i) {
        sink.write(make_record("early", json{{"n", i}}.dump()));  // 1 buffered, 3 dropped
    }
    REQUIRE(sink.start().is_ok());
    // Without stop(): the report comes from the sender's periodic check, before or after the
    // buffered record depending on when the sender first looks at the clock.
    std::vector<json> received;
    for (int i = 0; i < 2; ++i) {
        auto message = receiver.receive();
        REQUIRE(message.has_value());
        check_gelf(*message);
        received.push_back(message->json);
    }
    const bool report_first = received[0]["short_message"] == "graylog records dropped";
    const json& report = received[report_first ? 0 : 1];
    const json& record = received[report_first ? 1 : 0];
    CHECK(record["_n"] == 0);
    CHECK(report["short_message"] == "graylog records dropped");
    CHECK(report["_dropped"] == 3);
    CHECK(report["_buffer_records"] == 1);
    sink.stop();
    CHECK(sink.drop_reports_sent() == 1);  // nothing new to report at stop
}

TEST_CASE("GraylogSink takes 100000 calls without a listener and accounts for every record",
          "[integration][logging]") {
    sdk::testing::FakeHost host;
    const std::string transport = GENERATE(as<std::string>{}, "udp", "tcp");
    CAPTURE(transport);
    std::unique_ptr<TcpGelfReceiver> refusing;
    int port = 0;
    if (transport == "udp") {
        port = synergos::test::unused_udp_port();
    } else {
        refusing = std::make_unique<TcpGelfReceiver>(false);
        port = refusing->port();
    }
    auto options = base_options(port, transport);
    options["flush_timeout_ms"] = "500";
    GraylogSink sink(host, sdk::Options(options));
    REQUIRE(sink.start().is_ok());
    constexpr std::uint64_t kCalls = 100000;
    const std::string fields = R"({"job_id":"j-42","round":3,"loss":0.1234})";
    for (std::uint64_t i = 0; i < kCalls; ++i) {
        sink.write(make_record("no listener", fields));
    }
    sink.flush();
    sink.stop();
    const auto stats = sink.stats();
    CHECK(stats.written + stats.dropped == kCalls);
    CHECK(stats.failed >= 1);  // UDP too: the port-unreachable errors are noticed
    if (transport == "tcp") {
        CHECK(stats.written == 0);
        CHECK(stats.dropped == kCalls);
    } else {
        // Nothing reached anyone: a datagram sent counts as written only once no ICMP error
        // came back for it (at most a few whose error was still on its way at stop).
        CHECK(stats.written < 100);
    }
}

TEST_CASE("GraylogSink never blocks callers when Graylog accepts but does not read",
          "[integration][logging]") {
    TcpGelfReceiver receiver;  // listens, the kernel completes connections, nobody reads
    sdk::testing::FakeHost host;
    auto options = base_options(receiver.port(), "tcp");
    options["send_timeout_ms"] = "100";
    options["flush_timeout_ms"] = "200";
    options["buffer_records"] = "1000";
    GraylogSink sink(host, sdk::Options(options));
    REQUIRE(sink.start().is_ok());
    const std::string fields = json{{"pad", std::string(200, 'p')}}.dump();
    constexpr std::uint64_t kCalls = 100000;
    for (std::uint64_t i = 0; i < kCalls; ++i) {
        sink.write(make_record("stuck", fields));
    }
    sink.flush();  // bounded by flush_timeout_ms
    sink.stop();   // bounded by flush_timeout_ms
    const auto stats = sink.stats();
    CHECK(stats.written + stats.dropped == kCalls);
    CHECK(stats.dropped > 0);
}

TEST_CASE("GraylogSink writes from many threads and loses nothing when Graylog keeps up",
          "[integration][logging]") {
    TcpGelfReceiver receiver;
    sdk::testing::FakeHost host;
    GraylogSink sink(host, sdk::Options(base_options(receiver.port(), "tcp")));
    REQUIRE(sink.start().is_ok());
    REQUIRE(receiver.accept());
    constexpr int kThreads = 4;
    constexpr int kPerThread = 2000;  // 8000 < buffer_records: nothing can be dropped
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&sink, t]() {
            for (int i = 0; i < kPerThread; ++i) {
                sink.write(make_record("mt", json{{"t", t}, {"i", i}}.dump()));
            }
        });
    }
    std::vector<int> next(kThreads, 0);
    for (int n = 0; n < kThreads * kPerThread; ++n) {
        auto message = receiver.receive();
        REQUIRE(message.has_value());
        const int t = message->json["_t"];
        CHECK(message->json["_i"] == next.at(t));  // per-thread order is kept
        next.at(t) += 1;
    }
    for (auto& thread : threads) {
        thread.join();
    }
    sink.stop();
    CHECK(sink.stats().written == kThreads * kPerThread);
    CHECK(sink.stats().dropped == 0);
}

TEST_CASE("GraylogSink counts writes after stop as dropped and stops idempotently",
          "[integration][logging]") {
    UdpGelfReceiver receiver;
    sdk::testing::FakeHost host;
    GraylogSink sink(host, sdk::Options(base_options(receiver.port(), "udp")));
    REQUIRE(sink.start().is_ok());
    CHECK_FALSE(sink.start().is_ok());
    sink.stop();
    sink.stop();
    sink.write(make_record("late"));
    CHECK(sink.stats().dropped == 1);
    CHECK(sink.stats().written == 0);
}

TEST_CASE("GraylogSink refuses invalid options with an error naming the option",
          "[unit][logging]") {
    struct Case {
        std::map<std::string, std::string> values;
        std::string expected;
    };
    const auto c = GENERATE(values<Case>({
        {{{"transport", "http"}}, "option 'transport' is 'http'; use udp or tcp"},
        {{{"compression", "lz4"}}, "option 'compression' is 'lz4'"},
        {{{"port", "0"}}, "option 'port' is '0'; use an integer from 1 to 65535"},
        {{{"port", "12x"}}, "option 'port' is '12x'"},
        {{{"port", ""}}, "option 'port' is ''"},
        {{{"chunk_size", "70000"}}, "option 'chunk_size' is '70000'"},
        {{{"buffer_records", "0"}}, "option 'buffer_records' is '0'"},
        {{{"max_buffer_bytes", "1000"}},
         "option 'max_buffer_bytes' is '1000'; use an integer from 1048576 to 17179869184"},
        {{{"max_buffer_bytes", "64MiB"}}, "option 'max_buffer_bytes' is '64MiB'"},
        {{{"resolve_interval_ms", "0"}}, "option 'resolve_interval_ms' is '0'"},
        {{{"connect_timeout_ms", "-5"}}, "option 'connect_timeout_ms' is '-5'"},
        {{{"host", ""}}, "option 'host' is ''"},
        {{{"reconnect_min_ms", "5000"}, {"reconnect_max_ms", "100"}}, "option 'reconnect_min_ms'"},
    }));
    CAPTURE(c.expected);
    const auto config = parse_graylog_config(sdk::Options(c.values));
    REQUIRE_FALSE(config.has_value());
    CHECK(config.error().code == sdk::ErrorCode::InvalidArgument);
    CHECK_THAT(config.error().message, Catch::Contains(c.expected));
    sdk::testing::FakeHost host;
    CHECK_THROWS_WITH(GraylogSink(host, sdk::Options(c.values)), Catch::Contains(c.expected));
}

TEST_CASE("GraylogSink defaults match the documented defaults", "[unit][logging]") {
    const auto config = parse_graylog_config(sdk::Options());
    REQUIRE(config.has_value());
    CHECK(config->port == 12201);
    CHECK(config->chunk_size == 8154);
    CHECK(config->buffer_records == 65536);
    CHECK(config->max_buffer_bytes == 64 * 1024 * 1024);
    CHECK(config->resolve_interval == std::chrono::seconds(30));
    CHECK(config->transport == synergos::plugins::graylog::Transport::Udp);
    CHECK(config->compression == synergos::plugins::graylog::Compression::Zlib);
}

TEST_CASE("GraylogSink starts while Graylog's name does not resolve, warns and keeps looking",
          "[integration][logging]") {
    // A compose service that has not started yet: its name does not resolve. The node must start
    // anyway, buffer, and retry the lookup with back-off.
    sdk::testing::FakeHost host;
    const std::string transport = GENERATE(as<std::string>{}, "udp", "tcp");
    CAPTURE(transport);
    auto options = base_options(12201, transport);
    options["host"] = "graylog-not-started.invalid";  // RFC 6761: never resolves
    options["connect_timeout_ms"] = "300";
    options["flush_timeout_ms"] = "5000";  // a flush that waited would take this long
    GraylogSink sink(host, sdk::Options(options));
    REQUIRE(sink.start().is_ok());

    bool warned = false;
    for (const auto& line : host.captured().lines()) {
        if (line.level == sdk::Level::Warn &&
            line.event.find("address is not known yet") != std::string::npos &&
            line.fields_json.find("graylog-not-started.invalid") != std::string::npos) {
            warned = true;
        }
    }
    CHECK(warned);

    for (int i = 0; i < 3; ++i) {
        sink.write(make_record("while unresolved", json{{"n", i}}.dump()));
    }
    const auto before_flush = std::chrono::steady_clock::now();
    sink.flush();  // Graylog's address is unknown: nothing to wait for
    CHECK(std::chrono::steady_clock::now() - before_flush < std::chrono::seconds(2));
    // The sender thread keeps looking the name up (reconnect back-off 20-200 ms; a resolver
    // without a reachable server may take seconds per lookup).
    CHECK(eventually([&] { return sink.name_lookups() >= 3; }, std::chrono::seconds(30)));
    CHECK_THAT(sink.last_error(),
               Catch::Contains("cannot resolve 'graylog-not-started.invalid:12201'"));
    sink.stop();
    CHECK(sink.stats().written == 0);
    CHECK(sink.stats().dropped == 3);
    CHECK(sink.stats().failed >= 2);
}

TEST_CASE("GraylogSink looks Graylog's name up again after the connection breaks",
          "[integration][logging]") {
    // A restarted Graylog may come back at another address: a reconnection must not reuse the
    // address looked up at start.
    TcpGelfReceiver receiver;
    sdk::testing::FakeHost host;
    auto options = base_options(receiver.port(), "tcp");
    options["host"] = "localhost";
    GraylogSink sink(host, sdk::Options(options));
    REQUIRE(sink.start().is_ok());
    REQUIRE(receiver.accept());
    sink.write(make_record("first"));
    REQUIRE(receiver.receive().has_value());
    const std::uint64_t lookups = sink.name_lookups();
    CHECK(lookups == 1);

    receiver.close_connection();
    for (int i = 0; i < 5; ++i) {
        sink.write(make_record("after", json{{"n", i}}.dump()));
    }
    REQUIRE(receiver.accept());
    for (int i = 0; i < 5; ++i) {
        auto message = receiver.receive();
        REQUIRE(message.has_value());
        CHECK(message->json["_n"] == i);
    }
    CHECK(sink.name_lookups() > lookups);
    sink.stop();
    CHECK(sink.stats().written == 6);
}

TEST_CASE("GraylogSink looks the name up again every resolve_interval_ms over UDP",
          "[integration][logging]") {
    // UDP shows no error when Graylog moves; only a fresh lookup follows it.
    UdpGelfReceiver receiver;
    sdk::testing::FakeHost host;
    auto options = base_options(receiver.port(), "udp");
    options["host"] = "localhost";
    options["resolve_interval_ms"] = "10";
    GraylogSink sink(host, sdk::Options(options));
    REQUIRE(sink.start().is_ok());
    for (int i = 0; i < 20; ++i) {
        sink.write(make_record("tick", json{{"n", i}}.dump()));
        std::this_thread::sleep_for(std::chrono::milliseconds(15));
    }
    for (int i = 0; i < 20; ++i) {
        auto message = receiver.receive();
        REQUIRE(message.has_value());
        CHECK(message->json["_n"] == i);
    }
    CHECK(sink.name_lookups() >= 3);
    sink.stop();
    CHECK(sink.stats().written == 20);
    CHECK(sink.stats().dropped == 0);
}

TEST_CASE("GraylogSink bounds its buffer by max_buffer_bytes while Graylog is down",
          "[integration][logging]") {
    // Large records must not pile up gigabytes while Graylog is down: the byte budget drops the
    // newest, like a full buffer_records.
    TcpGelfReceiver receiver(false);  // bound, refusing connections
    sdk::testing::FakeHost host;
    auto options = base_options(receiver.port(), "tcp");
    options["max_buffer_bytes"] = "1048576";  // 1 MiB
    GraylogSink sink(host, sdk::Options(options));
    REQUIRE(sink.start().is_ok());
    // About 300 KB each (ten 30 000-byte strings, each under the 32 KiB value cap): 3 fit.
    json big;
    for (int k = 0; k < 10; ++k) {
        big["s" + std::to_string(k)] = std::string(30000, static_cast<char>('a' + k));
    }
    for (int i = 0; i < 10; ++i) {
        big["n"] = i;
        sink.write(make_record("large while down", big.dump()));
    }
    CHECK(sink.stats().dropped == 7);

    receiver.listen();  // Graylog is back: the report, then the three buffered records whole
    REQUIRE(receiver.accept());
    auto report = receiver.receive();
    REQUIRE(report.has_value());
    CHECK(report->json["short_message"] == "graylog records dropped");
    CHECK(report->json["_dropped"] == 7);
    CHECK(report->json["_max_buffer_bytes"] == 1048576);
    for (int i = 0; i < 3; ++i) {
        auto message = receiver.receive();
        REQUIRE(message.has_value());
        check_gelf(*message);
        CHECK(message->json["_n"] == i);
        CHECK(message->json["_s9"] == std::string(30000, 'j'));
    }
    sink.stop();
    CHECK(sink.stats().written == 3);
    CHECK(sink.stats().dropped == 7);
}

TEST_CASE("GraylogSink sends over-long values cut to 32 KiB with a marker",
          "[integration][logging]") {
    TcpGelfReceiver receiver;
    sdk::testing::FakeHost host;
    GraylogSink sink(host, sdk::Options(base_options(receiver.port(), "tcp")));
    REQUIRE(sink.start().is_ok());
    REQUIRE(receiver.accept());
    const std::string event(100000, 'e');
    const std::string fields = json{
        {"stack", std::string(2 * 1024 * 1024, 's')},
        {"payload", std::string(50000, 'p')},
        {"small", "ok"}}.dump();
    sink.write(make_record(event, fields, sdk::Level::Error));
    auto message = receiver.receive();
    REQUIRE(message.has_value());
    check_gelf(*message);
    const std::string marker = "...[truncated]";
    for (const char* key : {"short_message", "full_message", "_stack", "_payload"}) {
        CAPTURE(key);
        const auto value = message->json[key].get<std::string>();
        CHECK(value.size() == 32 * 1024);
        CHECK(value.substr(value.size() - marker.size()) == marker);
    }
    CHECK(message->json["_small"] == "ok");
    sink.stop();
    CHECK(sink.stats().written == 1);
}
