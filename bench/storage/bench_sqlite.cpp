// SPDX-License-Identifier: Apache-2.0
// bench_sqlite: what the sqlite storage plugin costs the REST writer, against baselines measured
// in the same run on the same disk:
//   writes: microseconds per created run, in group commits of G creates ([Require experiment,
//           Insert run] each, as the connect routes submit them), next to bare SQLite inserting
//           the same documents into a plain keyed table in the same groups (WAL, same
//           synchronous setting);
//   reads:  a run's relation list (its Models) among N Models of the same collaboration, next
//           to a get of one record by exact key.
// Usage: bench_sqlite [--groups G] [--creates N] [--siblings N] [--synchronous FULL|NORMAL]
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <synergos/sdk/testing/fake_host.hpp>

#include "sqlite_storage.hpp"

namespace {

namespace fs = std::filesystem;
namespace sdk = synergos::sdk;
using Clock = std::chrono::steady_clock;

const char* kDocument =
    R"({"rounds":2,"epochs":1,"lr":0.001,"algorithm":"FedProx","batch_size":32,"seed":42})";

struct Settings {
    int groups_of = 28;
    int creates = 50000;
    int siblings = 20000;
    std::string synchronous = "FULL";
};

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string temp_dir(const char* name) {
    std::string pattern = (fs::temp_directory_path() / name).string() + "-XXXXXX";
    return mkdtemp(pattern.data());
}

sdk::Key run_key(int i) {
    return {{"collab_id", "bench"}, {"project_id", "p"}, {"expt_id", "e"},
            {"run_id", "run_" + std::to_string(i)}};
}

/// Plugin: microseconds per create.
double plugin_writes(const Settings& s) {
    const std::string dir = temp_dir("synergos-bench-sqlite");
    double us = 0;
    {
        sdk::testing::FakeHost host(dir);
        synergos::plugins::sqlite::SqliteStorage store(
            host, sdk::Options(std::map<std::string, std::string>{{"synchronous", s.synchronous}}));
        if (!store.start()) {
            std::fprintf(stderr, "bench_sqlite: the store did not start\n");
            std::exit(2);
        }
        const sdk::Key expt{{"collab_id", "bench"}, {"project_id", "p"}, {"expt_id", "e"}};
        (void)store.apply({{sdk::WriteMode::Insert, "Experiment", expt, "{}"}});
        const auto t0 = Clock::now();
        for (int n = 0; n < s.creates;) {
            std::vector<sdk::Mutation> batch;
            for (int i = 0; i < s.groups_of && n < s.creates; ++i, ++n) {
                batch.push_back({sdk::WriteMode::Require, "Experiment", expt, {}});
                batch.push_back({sdk::WriteMode::Insert, "Run", run_key(n), kDocument});
            }
            if (auto r = store.apply(batch); !r) {
                std::fprintf(stderr, "bench_sqlite: %s\n", r.error().message.c_str());
                std::exit(2);
            }
        }
        us = seconds_since(t0) * 1e6 / s.creates;
        store.stop();
    }
    fs::remove_all(dir);
    return us;
}

/// Bare SQLite: the same documents under the same keys, one keyed table, same groups.
double bare_writes(const Settings& s) {
    const std::string dir = temp_dir("synergos-bench-sqlite-bare");
    sqlite3* db = nullptr;
    if (sqlite3_open((dir + "/bare.db").c_str(), &db) != SQLITE_OK) {
        std::exit(2);
    }
    const std::string setup = "PRAGMA journal_mode=WAL; PRAGMA synchronous=" + s.synchronous +
                              "; CREATE TABLE runs (key TEXT PRIMARY KEY, document TEXT) "
                              "WITHOUT ROWID;";
    sqlite3_exec(db, setup.c_str(), nullptr, nullptr, nullptr);
    sqlite3_stmt* insert = nullptr;
    sqlite3_prepare_v2(db, "INSERT INTO runs (key, document) VALUES (?1, ?2)", -1, &insert, nullptr);
    const auto t0 = Clock::now();
    for (int n = 0; n < s.creates;) {
        sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
        for (int i = 0; i < s.groups_of && n < s.creates; ++i, ++n) {
            const std::string key = "bench/p/e/run_" + std::to_string(n);
            sqlite3_bind_text(insert, 1, key.c_str(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
            sqlite3_bind_text(insert, 2, kDocument, -1, SQLITE_STATIC);
            if (sqlite3_step(insert) != SQLITE_DONE) {
                std::fprintf(stderr, "bench_sqlite: bare insert: %s\n", sqlite3_errmsg(db));
                std::exit(2);
            }
            sqlite3_reset(insert);
        }
        sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    }
    const double us = seconds_since(t0) * 1e6 / s.creates;
    sqlite3_finalize(insert);
    sqlite3_close(db);
    fs::remove_all(dir);
    return us;
}

/// Microseconds per relation list among `siblings` Models, and per exact get, same store.
std::pair<double, double> reads(const Settings& s) {
    const std::string dir = temp_dir("synergos-bench-sqlite-reads");
    std::pair<double, double> out;
    {
        sdk::testing::FakeHost host(dir);
        synergos::plugins::sqlite::SqliteStorage store(
            host, sdk::Options(std::map<std::string, std::string>{{"synchronous", "OFF"}}));
        if (!store.start()) {
            std::exit(2);
        }
        std::vector<sdk::Mutation> batch;
        for (int i = 0; i < s.siblings; ++i) {
            batch.push_back({sdk::WriteMode::Insert, "Model", run_key(i), "{}"});
        }
        (void)store.apply(batch);
        // Different keys each time: the plugin serves a repeated read from its cache.
        const int rounds = 2000;
        auto t0 = Clock::now();
        std::size_t found = 0;
        for (int i = 0; i < rounds; ++i) {
            auto listed = store.list({"Model", run_key(i % s.siblings), 0, 0});
            found += listed ? listed->size() : 0;
        }
        out.first = seconds_since(t0) * 1e6 / rounds;
        t0 = Clock::now();
        for (int i = 0; i < rounds; ++i) {
            found += store.get("Model", run_key((i + rounds) % s.siblings)) ? 1 : 0;
        }
        out.second = seconds_since(t0) * 1e6 / rounds;
        if (found != static_cast<std::size_t>(2 * rounds)) {
            std::fprintf(stderr, "bench_sqlite: reads found %zu of %d\n", found, 2 * rounds);
            std::exit(2);
        }
        store.stop();
    }
    fs::remove_all(dir);
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    Settings s;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        if (flag == "--groups") {
            s.groups_of = std::max(1, std::atoi(argv[i + 1]));
        } else if (flag == "--creates") {
            s.creates = std::max(1, std::atoi(argv[i + 1]));
        } else if (flag == "--siblings") {
            s.siblings = std::max(1, std::atoi(argv[i + 1]));
        } else if (flag == "--synchronous") {
            s.synchronous = argv[i + 1];
        } else {
            std::fprintf(stderr, "usage: bench_sqlite [--groups G] [--creates N] [--siblings N] "
                                 "[--synchronous FULL|NORMAL]\n");
            return 2;
        }
    }
    // Alternate, so a burst of background load does not land on one side only.
    std::vector<double> plugin, bare;
    for (int round = 0; round < 3; ++round) {
        bare.push_back(bare_writes(s));
        plugin.push_back(plugin_writes(s));
    }
    std::sort(plugin.begin(), plugin.end());
    std::sort(bare.begin(), bare.end());
    const auto [list_us, get_us] = reads(s);
    std::printf("bench_sqlite: synchronous=%s, %d creates in groups of %d, medians of 3 rounds\n",
                s.synchronous.c_str(), s.creates, s.groups_of);
    std::printf("  plugin create (Require experiment + Insert run)  %8.1f us  (%.0f creates/s)\n",
                plugin[1], 1e6 / plugin[1]);
    std::printf("  bare SQLite insert of the same documents          %8.1f us  (%.0f inserts/s)\n",
                bare[1], 1e6 / bare[1]);
    std::printf("  ratio plugin/bare: %.2f (the plugin also writes key rows, a doc_id index and "
                "sequences)\n", plugin[1] / bare[1]);
    std::printf("  a run's Models among %d of its collaboration: list %.1f us, exact get %.1f us "
                "(ratio %.2f)\n", s.siblings, list_us, get_us, list_us / get_us);
    return 0;
}
