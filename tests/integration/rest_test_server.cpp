// SPDX-License-Identifier: Apache-2.0
// Test-only server: the connect routes on the sqlite storage plugin, in its own process, so tests
// can kill it with SIGKILL and benchmarks can load it. Prints "PORT <n>" on stdout once listening;
// SIGTERM or SIGINT stop it gracefully (exit 0).
//
//   synergos_rest_test_server --data DIR [--port 0] [--threads 2] [--handler-threads 16]
//                             [--read-connections 4] [--synchronous FULL] [--quiet]
//                             [--body-limit BYTES]

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <synergos/core/http/router.hpp>
#include <synergos/core/http/server.hpp>
#include <synergos/core/rest/connect_routes.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "sqlite_storage.hpp"

namespace {

/// Writes log lines to stderr (or nowhere when quiet).
class StderrLogger final : public synergos::sdk::Logger {
public:
    explicit StderrLogger(bool quiet) : quiet_(quiet) {}
    void log(synergos::sdk::Level level, std::string_view event, std::string_view fields,
             synergos::sdk::SourceLocation) noexcept override {
        if (!enabled(level)) {
            return;
        }
        std::lock_guard<std::mutex> lock(mutex_);
        std::fprintf(stderr, "[%s] %.*s %.*s\n", synergos::sdk::to_string(level),
                     static_cast<int>(event.size()), event.data(), static_cast<int>(fields.size()),
                     fields.data());
    }
    bool enabled(synergos::sdk::Level level) const noexcept override {
        return !quiet_ || level >= synergos::sdk::Level::Warn;
    }

private:
    bool quiet_;
    std::mutex mutex_;
};

int usage(const char* why) {
    std::fprintf(stderr, "rest_test_server: %s\n", why);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::string data_dir;
    std::string synchronous = "FULL";
    std::string read_connections = "4";
    synergos::core::http::ServerOptions options;
    options.port = 0;
    bool quiet = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        const char* value = nullptr;
        if (arg == "--quiet") {
            quiet = true;
            continue;
        }
        if ((value = next()) == nullptr) {
            return usage(("missing value for " + arg).c_str());
        }
        if (arg == "--data") {
            data_dir = value;
        } else if (arg == "--port") {
            options.port = static_cast<std::uint16_t>(std::atoi(value));
        } else if (arg == "--threads") {
            options.threads = std::atoi(value);
        } else if (arg == "--handler-threads") {
            options.handler_threads = std::atoi(value);
        } else if (arg == "--read-connections") {
            read_connections = value;
        } else if (arg == "--synchronous") {
            synchronous = value;
        } else if (arg == "--body-limit") {
            options.body_limit_bytes = static_cast<std::size_t>(std::atoll(value));
        } else {
            return usage(("unknown option " + arg).c_str());
        }
    }
    if (data_dir.empty()) {
        return usage("--data DIR is required");
    }
    options.access_log = !quiet;

    // Block the stop signals before any thread starts, then wait for them with sigwait.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    StderrLogger logger(quiet);
    synergos::sdk::testing::FakeHost host(data_dir);
    synergos::plugins::sqlite::SqliteStorage storage(
        host, synergos::sdk::Options({{"synchronous", synchronous},
                                      {"read_connections", read_connections},
                                      {"path", data_dir + "/synergos.db"}}));
    if (auto st = storage.start(); !st) {
        std::fprintf(stderr, "rest_test_server: %s\n", st.message().c_str());
        return 1;
    }
    synergos::core::http::Router router;
    // As the director: GET /metrics carries the writer's commits too (the REST bench reads it).
    auto write_metrics = std::make_shared<synergos::core::rest::WriteMetrics>();
    synergos::core::rest::register_connect_routes(router, storage, logger, write_metrics);
    options.metrics_sources.push_back([write_metrics](std::string& out) { write_metrics->append(out); });
    synergos::core::http::HttpServer server(options, router, logger);
    if (auto st = server.start(); !st) {
        std::fprintf(stderr, "rest_test_server: %s\n", st.message().c_str());
        return 1;
    }
    std::cout << "PORT " << server.bound_port() << std::endl;

    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    server.stop(std::chrono::seconds(5));
    storage.stop();
    return 0;
}
