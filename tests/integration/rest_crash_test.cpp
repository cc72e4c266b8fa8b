// SPDX-License-Identifier: Apache-2.0
// Kills the REST server with SIGKILL in the middle of a stream of writes (single-record creates
// and cascade deletes from several clients at once), restarts it on the same data directory, and
// checks that every acknowledged write is there and the store is consistent.

#include <sqlite3.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/core/http/client.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "server_process.hpp"
#include "sqlite_storage.hpp"
#include "unit/core/rest/rest_fixture.hpp"

namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using synergos::core::http::HttpClient;
using synergos::testing::ServerProcess;
using synergos::testing::TempDir;

const std::string kProject = "/ttp/connect/collaborations/c/projects/p";

int post(HttpClient& client, std::uint16_t port, const std::string& path, const json& body) {
    auto res =
        client.request("POST", "127.0.0.1", port, path, body.dump(), "application/json", 10s);
    return res ? res->status : -1;
}

int send(HttpClient& client, std::uint16_t port, const std::string& method,
         const std::string& path) {
    auto res = client.request(method, "127.0.0.1", port, path, {}, "application/json", 10s);
    return res ? res->status : -1;
}

json model() {
    return json::array({{{"is_input", true},
                         {"l_type", "Linear"},
                         {"structure", {{"in_features", 4}}},
                         {"activation", nullptr}}});
}

/// What the writers got acknowledged before the crash.
struct Acks {
    std::mutex mutex;
    std::condition_variable cv;
    std::vector<std::string> runs;                 // "e/r"
    std::vector<std::string> deleted_experiments;  // cascade-deleted, acknowledged
    std::size_t total = 0;

    void add(std::vector<std::string>& list, std::string item) {
        std::lock_guard<std::mutex> lock(mutex);
        list.push_back(std::move(item));
        ++total;
        cv.notify_all();
    }
};

}  // namespace

TEST_CASE("every acknowledged write survives SIGKILL and the store stays consistent",
          "[integration][rest]") {
    TempDir dir;
    Acks acks;
    {
        ServerProcess server(dir.path);
        REQUIRE(server.port() != 0);
        HttpClient setup;
        const auto port = server.port();
        REQUIRE(post(setup, port, "/ttp/connect/collaborations", {{"collab_id", "c"}}) == 201);
        REQUIRE(post(setup, port, "/ttp/connect/collaborations/c/projects",
                     {{"project_id", "p"}, {"incentives", json::object()}}) == 201);
        constexpr int kWriters = 4;
        for (int w = 0; w < kWriters; ++w) {
            REQUIRE(post(setup, port, kProject + "/experiments",
                         {{"expt_id", "e" + std::to_string(w)}, {"model", model()}}) == 201);
        }

        std::atomic<bool> stop{false};
        std::vector<std::thread> writers;
        for (int w = 0; w < kWriters; ++w) {
            writers.emplace_back([&, w] {
                HttpClient client;
                const std::string expt = "e" + std::to_string(w);
                for (int i = 0; !stop && i < 100000; ++i) {
                    if (w == 0 && i % 4 == 3) {
                        // A multi-record change: an experiment with runs, then its cascade delete.
                        const std::string x = "x" + std::to_string(i);
                        if (post(client, port, kProject + "/experiments",
                                 {{"expt_id", x}, {"model", model()}}) != 201) {
                            return;
                        }
                        for (int k = 0; k < 3; ++k) {
                            if (post(client, port, kProject + "/experiments/" + x + "/runs",
                                     {{"run_id", "r" + std::to_string(k)}, {"rounds", k + 1}}) !=
                                201) {
                                return;
                            }
                        }
                        if (send(client, port, "DELETE", kProject + "/experiments/" + x) != 200) {
                            return;
                        }
                        acks.add(acks.deleted_experiments, x);
                        continue;
                    }
                    const std::string run = "r" + std::to_string(i);
                    const int status =
                        post(client, port, kProject + "/experiments/" + expt + "/runs",
                             {{"run_id", run}, {"rounds", i % 7 + 1}, {"lr", 0.01}});
                    if (status != 201) {
                        return;  // the server is gone
                    }
                    acks.add(acks.runs, expt + "/" + run);
                }
            });
        }
        {
            std::unique_lock<std::mutex> lock(acks.mutex);
            REQUIRE(acks.cv.wait_for(lock, 60s, [&] { return acks.total >= 300; }));
        }
        const int status = server.stop(SIGKILL);  // writes are still streaming
        stop = true;
        for (auto& t : writers) {
            t.join();
        }
        CHECK(WIFSIGNALED(status));
        CHECK(WTERMSIG(status) == SIGKILL);
    }
    INFO("acknowledged runs: " << acks.runs.size()
                               << ", cascade deletes: " << acks.deleted_experiments.size());
    REQUIRE(acks.runs.size() >= 200);

    // Restart on the same data directory: every acknowledged write is there.
    {
        ServerProcess server(dir.path);
        REQUIRE(server.port() != 0);
        HttpClient client;
        std::size_t missing = 0;
        for (const auto& id : acks.runs) {
            const auto slash = id.find('/');
            const std::string path =
                kProject + "/experiments/" + id.substr(0, slash) + "/runs/" + id.substr(slash + 1);
            if (send(client, server.port(), "GET", path) != 200) {
                ++missing;
            }
        }
        CHECK(missing == 0);
        for (const auto& x : acks.deleted_experiments) {
            CHECK(send(client, server.port(), "GET", kProject + "/experiments/" + x) == 404);
            CHECK(send(client, server.port(), "GET", kProject + "/experiments/" + x + "/runs/r0") ==
                  404);
        }
        // The API sees a consistent tree: the project's relations agree with the listings.
        auto project = client.request("GET", "127.0.0.1", server.port(), kProject);
        REQUIRE(project.has_value());
        const json relations = json::parse(project->body)["data"]["relations"];
        std::size_t listed_runs = 0;
        for (const auto& e : relations["Experiment"]) {
            const std::string expt = e["key"]["expt_id"];
            auto runs = client.request("GET", "127.0.0.1", server.port(),
                                       kProject + "/experiments/" + expt + "/runs");
            REQUIRE(runs.has_value());
            listed_runs += json::parse(runs->body)["data"].size();
        }
        CHECK(listed_runs == relations["Run"].size());
        CHECK(listed_runs >= acks.runs.size());
        CHECK(server.stop(SIGTERM) == 0);
    }

    // And the file itself: integrity, key index in step with records, no orphaned runs.
    const std::string file = dir.path + "/synergos.db";
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
    auto scalar = [&](const char* sql) {
        sqlite3_stmt* stmt = nullptr;
        REQUIRE(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK);
        REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
        std::string value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
        sqlite3_finalize(stmt);
        return value;
    };
    CHECK(scalar("PRAGMA integrity_check") == "ok");
    CHECK(scalar("SELECT count(*) FROM records r WHERE (SELECT count(*) FROM record_keys k WHERE "
                 "k.kind = r.kind AND k.doc_id = r.doc_id) != json_array_length(r.key_json)") ==
          "0");
    CHECK(scalar("SELECT count(*) FROM record_keys k WHERE NOT EXISTS (SELECT 1 FROM records r "
                 "WHERE r.kind = k.kind AND r.doc_id = k.doc_id)") == "0");
    sqlite3_close(db);

    synergos::sdk::testing::FakeHost host(dir.path);
    synergos::plugins::sqlite::SqliteStorage store(
        host, synergos::sdk::Options(std::map<std::string, std::string>{{"path", file}}));
    REQUIRE(store.start().is_ok());
    auto experiments = store.list({"Experiment", {}, 0, 0});
    auto runs = store.list({"Run", {}, 0, 0});
    REQUIRE(experiments.has_value());
    REQUIRE(runs.has_value());
    std::set<std::string> expt_ids;
    for (const auto& e : *experiments) {
        expt_ids.insert(e.key[2].value);
    }
    std::size_t orphans = 0;
    for (const auto& r : *runs) {
        orphans += expt_ids.count(r.key[2].value) == 0 ? 1 : 0;
    }
    CHECK(orphans == 0);
    std::set<std::int64_t> doc_ids;
    for (const auto& r : *runs) {
        doc_ids.insert(r.doc_id);
    }
    CHECK(doc_ids.size() == runs->size());
}

TEST_CASE("a write answered on one connection is seen at once by reads on the others",
          "[integration][rest]") {
    TempDir dir;
    // Several I/O threads: the writer's and the readers' connections are served by different
    // event loops, and reads are served from the store's and the routes' caches when they can.
    ServerProcess server(dir.path, {"--threads", "3"});
    REQUIRE(server.port() != 0);
    const auto port = server.port();
    HttpClient writer;
    std::vector<HttpClient> readers(2);
    auto get = [&](HttpClient& client, const std::string& path) {
        auto res = client.request("GET", "127.0.0.1", port, path, {}, "application/json", 10s);
        REQUIRE(res.has_value());
        return std::make_pair(res->status, json::parse(res->body, nullptr, false));
    };
    auto put = [&](const std::string& path, const json& body) {
        auto res = writer.request("PUT", "127.0.0.1", port, path, body.dump(), "application/json",
                                  10s);
        return res ? res->status : -1;
    };
    REQUIRE(post(writer, port, "/ttp/connect/collaborations", {{"collab_id", "c"}}) == 201);
    REQUIRE(post(writer, port, "/ttp/connect/collaborations/c/projects",
                 {{"project_id", "p"}, {"incentives", json::object()}}) == 201);
    REQUIRE(post(writer, port, kProject + "/experiments", {{"expt_id", "e"}, {"model", model()}}) ==
            201);
    const std::string experiment = kProject + "/experiments/e";
    for (int i = 0; i < 40; ++i) {
        for (auto& reader : readers) {  // fills the caches with the state before the write
            REQUIRE(get(reader, experiment).first == 200);
        }
        const std::string run = experiment + "/runs/r" + std::to_string(i);
        REQUIRE(post(writer, port, experiment + "/runs", {{"run_id", "r" + std::to_string(i)},
                                                          {"rounds", 1}}) == 201);
        for (auto& reader : readers) {
            auto [status, body] = get(reader, run);
            CHECK(status == 200);
            auto [expt_status, expt] = get(reader, experiment);
            REQUIRE(expt_status == 200);
            CHECK(expt["data"]["relations"]["Run"].size() == static_cast<std::size_t>(i + 1));
        }
        REQUIRE(put(run, {{"rounds", 2}}) == 200);
        for (auto& reader : readers) {
            auto [status, body] = get(reader, run);
            REQUIRE(status == 200);
            CHECK(body["data"]["rounds"] == 2);
        }
        if (i % 2 == 1) {
            REQUIRE(send(writer, port, "DELETE", run) == 200);
            for (auto& reader : readers) {
                CHECK(get(reader, run).first == 404);
                auto [expt_status, expt] = get(reader, experiment);
                REQUIRE(expt_status == 200);
                CHECK(expt["data"]["relations"]["Run"].size() == static_cast<std::size_t>(i));
            }
            REQUIRE(post(writer, port, experiment + "/runs",
                         {{"run_id", "r" + std::to_string(i)}, {"rounds", 3}}) == 201);
            for (auto& reader : readers) {
                auto [status, body] = get(reader, run);
                REQUIRE(status == 200);
                CHECK(body["data"]["rounds"] == 3);
            }
        }
    }
}
