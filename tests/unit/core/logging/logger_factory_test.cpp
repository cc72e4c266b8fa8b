// SPDX-License-Identifier: Apache-2.0
#include <atomic>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <synergos/core/logging/logger_factory.hpp>

using nlohmann::json;
using synergos::core::Censor;
using synergos::core::LoggerFactory;
using synergos::sdk::Level;

namespace {

/// Console lines captured in memory.
struct Console {
    std::mutex mutex;
    std::vector<std::string> lines;
    LoggerFactory::ConsoleWriter writer() {
        return [this](std::string_view line) {
            std::lock_guard<std::mutex> lock(mutex);
            lines.emplace_back(line);
        };
    }
    std::vector<json> records() {
        std::lock_guard<std::mutex> lock(mutex);
        std::vector<json> out;
        for (const auto& line : lines) {
            out.push_back(json::parse(line));
        }
        return out;
    }
};

/// An in-test LogSink that copies every record (views are only valid during write).
class RecordingSink final : public synergos::sdk::LogSink {
public:
    struct Copy {
        Level level;
        std::string event;
        std::string logger;
        std::string fields;
        std::string file;
        int line;
    };
    synergos::sdk::Status start() noexcept override { return {}; }
    void write(const synergos::sdk::LogRecord& r) noexcept override {
        std::lock_guard<std::mutex> lock(mutex_);
        copies_.push_back({r.level, std::string(r.event), std::string(r.logger),
                           std::string(r.fields_json), r.location.file, r.location.line});
    }
    void flush() noexcept override {}
    void stop() noexcept override {}
    synergos::sdk::SinkStats stats() const noexcept override {
        std::lock_guard<std::mutex> lock(mutex_);
        return {copies_.size(), 0, 0};
    }
    std::vector<Copy> copies() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return copies_;
    }

private:
    mutable std::mutex mutex_;
    std::vector<Copy> copies_;
};

}  // namespace

TEST_CASE("Records reach the console as structured JSON lines until a sink is attached",
          "[unit][logging]") {
    Console console;
    LoggerFactory factory("director/dir-1", console.writer());
    auto& log = factory.logger("runtime");
    const int line = __LINE__ + 1;
    log.info("role started", {{"port", 5000}});

    const auto records = console.records();
    REQUIRE(records.size() == 1);
    const json& r = records[0];
    CHECK(r["event"] == "role started");
    CHECK(r["level"] == "info");
    CHECK(r["logger"] == "director/dir-1");
    CHECK(r["fields"]["module"] == "runtime");
    CHECK(r["fields"]["port"] == 5000);
    CHECK(r["file"] == "logger_factory_test.cpp");
    CHECK(r["line"] == line);
    CHECK_FALSE(r["host"].get<std::string>().empty());
    const std::regex iso(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");
    CHECK(std::regex_match(r["time"].get<std::string>(), iso));
}

TEST_CASE("The level filter drops records below it", "[unit][logging]") {
    Console console;
    LoggerFactory factory("ttp/t", console.writer());
    auto& log = factory.logger("core");
    log.debug("hidden");
    CHECK_FALSE(log.enabled(Level::Debug));
    factory.set_level(Level::Debug);  // what --debug does
    CHECK(log.enabled(Level::Debug));
    log.debug("shown");
    factory.set_level(Level::Error);
    log.warn("hidden too");
    log.error("shown too");
    const auto records = console.records();
    REQUIRE(records.size() == 2);
    CHECK(records[0]["event"] == "shown");
    CHECK(records[0]["level"] == "debug");
    CHECK(records[1]["event"] == "shown too");
}

TEST_CASE("An attached sink receives records instead of the console, detaching restores it",
          "[unit][logging]") {
    Console console;
    RecordingSink sink;
    LoggerFactory factory("worker/w1", console.writer());
    auto& plugin_log = factory.logger("plugin.logging.basic");
    plugin_log.info("before");
    factory.attach_sink(&sink);
    CHECK(factory.has_sink());
    // Through the SDK facade, as a plugin logs.
    synergos::sdk::Logger& facade = plugin_log;
    facade.log(Level::Warn, "through the sink", R"({"rows": 10})", {"f.cpp", 12, "fn"});
    CHECK(factory.detach_sink() == &sink);
    plugin_log.info("after");

    const auto copies = sink.copies();
    REQUIRE(copies.size() == 1);
    CHECK(copies[0].event == "through the sink");
    CHECK(copies[0].level == Level::Warn);
    CHECK(copies[0].logger == "worker/w1");
    CHECK(copies[0].file == "f.cpp");
    CHECK(copies[0].line == 12);
    const auto fields = json::parse(copies[0].fields);
    CHECK(fields["rows"] == 10);
    CHECK(fields["module"] == "plugin.logging.basic");

    const auto records = console.records();
    REQUIRE(records.size() == 2);
    CHECK(records[0]["event"] == "before");
    CHECK(records[1]["event"] == "after");
    CHECK(factory.console_records() == 2);
    CHECK(factory.sink_records() == 1);
}

TEST_CASE("Censoring applies to every record, nested, on console and sink", "[unit][logging]") {
    Console console;
    RecordingSink sink;
    LoggerFactory factory("director/d", console.writer());
    factory.set_censor(Censor({"*_dir", "host"}));
    auto& log = factory.logger("runtime");
    log.info("snapshot", {{"paths", {{"data_dir", "/srv"}}}, {"nodes", {{{"host", "h1"}}}}});
    factory.attach_sink(&sink);
    log.info("snapshot", {{"DATA_DIR", "/srv"}});
    factory.detach_sink();

    const auto records = console.records();
    REQUIRE(records.size() == 1);
    CHECK(records[0]["fields"]["paths"]["data_dir"] == Censor::kRedacted);
    CHECK(records[0]["fields"]["nodes"][0]["host"] == Censor::kRedacted);
    const auto copies = sink.copies();
    REQUIRE(copies.size() == 1);
    CHECK(json::parse(copies[0].fields)["DATA_DIR"] == Censor::kRedacted);

    factory.set_censor(std::nullopt);
    log.info("plain", {{"data_dir", "/srv"}});
    CHECK(console.records().back()["fields"]["data_dir"] == "/srv");
}

TEST_CASE("Malformed fields from a plugin keep the record and say why", "[unit][logging]") {
    Console console;
    LoggerFactory factory("director/d", console.writer());
    synergos::sdk::Logger& facade = factory.logger("plugin.mq.memory");
    facade.info("odd", "{not json");
    facade.info("array", "[1,2]");
    const auto records = console.records();
    REQUIRE(records.size() == 2);
    CHECK_THAT(records[0]["fields"]["fields_error"].get<std::string>(),
               Catch::Contains("not valid JSON"));
    CHECK(records[0]["fields"]["fields_text"] == "{not json");
    CHECK(records[1]["fields"]["value"] == json::array({1, 2}));
    factory.set_censor(Censor({"nothing"}));
    facade.info("odd", "{password: x");
    CHECK(console.records().back()["fields"]["fields_text"] == Censor::kRedacted);
}

TEST_CASE("Loggers are cached per component", "[unit][logging]") {
    Console console;
    LoggerFactory factory("director/d", console.writer());
    CHECK(&factory.logger("a") == &factory.logger("a"));
    CHECK(&factory.logger("a") != &factory.logger("b"));
}

TEST_CASE("Concurrent logging while the sink is swapped loses no record", "[unit][logging]") {
    Console console;
    RecordingSink sink;
    LoggerFactory factory("director/d", console.writer());
    constexpr int kThreads = 4;
    constexpr int kPerThread = 2000;
    std::atomic<int> running{kThreads};
    std::atomic<bool> go{false};  // the loggers start once a sink is attached: a swap overlaps them
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&factory, &running, &go, t] {
            auto& log = factory.logger("t" + std::to_string(t));
            while (!go.load()) {
                std::this_thread::yield();
            }
            for (int i = 0; i < kPerThread; ++i) {
                log.info("tick", {{"i", i}});
            }
            running.fetch_sub(1);
        });
    }
    int swaps = 0;
    do {
        factory.attach_sink(&sink);
        go = true;
        std::this_thread::yield();
        factory.detach_sink();
        ++swaps;
    } while (running.load() > 0);
    for (auto& t : threads) {
        t.join();
    }
    const auto total = console.records().size() + sink.copies().size();
    CHECK(total == static_cast<std::size_t>(kThreads * kPerThread));
    CHECK(swaps > 0);
}

TEST_CASE("ISO-8601 timestamps are UTC with milliseconds", "[unit][logging]") {
    using namespace std::chrono;
    const system_clock::time_point t{milliseconds(1'700'000'000'123)};
    CHECK(LoggerFactory::iso8601_utc(t) == "2023-11-14T22:13:20.123Z");
}
