// SPDX-License-Identifier: Apache-2.0
#include <csignal>
#include <condition_variable>
#include <mutex>
#include <vector>

#include <catch2/catch.hpp>

#include <synergos/core/runtime/signals.hpp>

using synergos::core::SignalWatcher;

TEST_CASE("SignalWatcher reports each signal on its thread", "[unit][signals]") {
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<int> seen;
    {
        SignalWatcher watcher([&](int signal_number) {
            {
                std::lock_guard<std::mutex> lock(mutex);
                seen.push_back(signal_number);
            }
            changed.notify_all();
        });
        REQUIRE(::raise(SIGINT) == 0);
        REQUIRE(::raise(SIGTERM) == 0);
        std::unique_lock<std::mutex> lock(mutex);
        REQUIRE(changed.wait_for(lock, std::chrono::seconds(10), [&] { return seen.size() == 2; }));
    }
    CHECK(seen == std::vector<int>{SIGINT, SIGTERM});
}

TEST_CASE("Only one SignalWatcher may be active and the handlers come back after it",
          "[unit][signals]") {
    struct sigaction before {};
    REQUIRE(::sigaction(SIGTERM, nullptr, &before) == 0);
    {
        SignalWatcher first([](int) {});
        CHECK_THROWS_WITH(SignalWatcher([](int) {}), Catch::Contains("already active"));
        struct sigaction during {};
        REQUIRE(::sigaction(SIGTERM, nullptr, &during) == 0);
        CHECK(during.sa_handler != before.sa_handler);
    }
    struct sigaction after {};
    REQUIRE(::sigaction(SIGTERM, nullptr, &after) == 0);
    CHECK(after.sa_handler == before.sa_handler);
    SignalWatcher again([](int) {});  // a new one may start after the first ended
}
