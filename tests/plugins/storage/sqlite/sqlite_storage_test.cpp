// SPDX-License-Identifier: Apache-2.0
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <time.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/dll/import.hpp>
#include <boost/dll/shared_library.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/sdk/export.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "sqlite_storage.hpp"

namespace synergos::plugins::sqlite {
/// Test access to the write queue (see SqliteStorage::on_queued_for_test_).
struct SqliteStorageTestPeer {
    static void on_queued(SqliteStorage& store, std::function<void(std::size_t)> hook) {
        std::lock_guard<std::mutex> lock(store.write_mutex_);
        store.on_queued_for_test_ = std::move(hook);
    }
};
}  // namespace synergos::plugins::sqlite

namespace {

namespace fs = std::filesystem;
using synergos::plugins::sqlite::SqliteStorage;
using namespace synergos;  // NOLINT(google-build-using-namespace): test file

struct TempDir {
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "synergos-sqlite-XXXXXX").string();
        path = mkdtemp(pattern.data());
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string path;
};

sdk::Options opts(std::map<std::string, std::string> values) {
    return sdk::Options(std::move(values));
}

sdk::Key project_key(const std::string& c, const std::string& p) {
    return {{"collab_id", c}, {"project_id", p}};
}

sdk::Mutation insert(const std::string& kind, sdk::Key key, std::string doc = "{}") {
    return {sdk::WriteMode::Insert, kind, std::move(key), std::move(doc)};
}

std::string journal_mode(const std::string& file) {
    sqlite3* db = nullptr;
    sqlite3_open(file.c_str(), &db);
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr);
    std::string mode;
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        mode = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return mode;
}

void set_user_version(const std::string& file, int version) {
    sqlite3* db = nullptr;
    sqlite3_open(file.c_str(), &db);
    sqlite3_exec(db, ("PRAGMA user_version=" + std::to_string(version)).c_str(), nullptr, nullptr,
                 nullptr);
    sqlite3_close(db);
}

/// Holds a connection of the storage inside SQLite, at the start of a chosen statement, so a
/// read or a commit stays in progress for as long as a test needs. Installed on every connection
/// opened while it exists (sqlite3_auto_extension; the plugin and the test share libsqlite3).
class StatementHold {
public:
    StatementHold() { sqlite3_auto_extension(reinterpret_cast<void (*)()>(&install)); }
    ~StatementHold() {
        release();
        sqlite3_cancel_auto_extension(reinterpret_cast<void (*)()>(&install));
        std::lock_guard<std::mutex> lock(state().mutex);
        state().match.clear();
    }
    StatementHold(const StatementHold&) = delete;
    StatementHold& operator=(const StatementHold&) = delete;

    /// The next statement whose SQL starts with `prefix` waits at its first step until
    /// release(), or by itself for at most `max_hold`.
    void arm(std::string prefix, std::chrono::milliseconds max_hold) {
        std::lock_guard<std::mutex> lock(state().mutex);
        state().match = std::move(prefix);
        state().max_hold = max_hold;
        state().entered = false;
    }
    bool wait_entered(std::chrono::seconds timeout) {
        std::unique_lock<std::mutex> lock(state().mutex);
        return state().cv.wait_for(lock, timeout, [] { return state().entered; });
    }
    /// Ends every hold begun so far.
    void release() {
        {
            std::lock_guard<std::mutex> lock(state().mutex);
            state().released = state().holds;
        }
        state().cv.notify_all();
    }
    /// The thread that ran the last held statement.
    std::thread::id holder() {
        std::lock_guard<std::mutex> lock(state().mutex);
        return state().holder;
    }

private:
    struct State {
        std::mutex mutex;
        std::condition_variable cv;
        std::string match;  // empty: hold nothing
        std::chrono::milliseconds max_hold{0};
        bool entered = false;
        int holds = 0;
        int released = 0;
        std::thread::id holder;
    };
    static State& state() {
        static State* s = new State;  // never destroyed: connections may outlive a test
        return *s;
    }
    static int install(sqlite3* db, const char**, const void*) {
        sqlite3_trace_v2(db, SQLITE_TRACE_STMT, &on_statement, nullptr);
        return SQLITE_OK;
    }
    static int on_statement(unsigned, void*, void* stmt, void*) {
        const char* sql = sqlite3_sql(static_cast<sqlite3_stmt*>(stmt));
        std::unique_lock<std::mutex> lock(state().mutex);
        if (sql == nullptr || state().match.empty() ||
            std::string_view(sql).substr(0, state().match.size()) != state().match) {
            return 0;
        }
        state().match.clear();  // one statement per arm()
        const int hold = ++state().holds;
        state().entered = true;
        state().holder = std::this_thread::get_id();
        state().cv.notify_all();
        state().cv.wait_for(lock, state().max_hold, [&] { return state().released >= hold; });
        return 0;
    }
};

/// File descriptors this process holds on `file` or its -wal and -shm companions.
int open_descriptors(const std::string& file) {
    const std::string target = fs::canonical(file).string();
    int count = 0;
    for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        const auto link = fs::read_symlink(entry.path(), ec);
        if (!ec && link.string().rfind(target, 0) == 0) {
            ++count;
        }
    }
    return count;
}

double thread_cpu_ms() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

}  // namespace

TEST_CASE("sqlite storage creates its file under the data directory in WAL mode",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    SqliteStorage store(host, sdk::Options{});
    REQUIRE(store.start().is_ok());
    CHECK(store.path() == dir.path + "/data/synergos.db");
    CHECK(fs::exists(store.path()));
    CHECK(store.schema_version() == synergos::plugins::sqlite::kSchemaVersion);
    CHECK(journal_mode(store.path()) == "wal");
    CHECK(host.captured().contains("storage sqlite migrated"));
}

TEST_CASE("sqlite storage inserts, reads, lists, updates and deletes records", "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    SqliteStorage store(host, sdk::Options{});
    REQUIRE(store.start().is_ok());

    auto written = store.apply({insert("Project", project_key("c1", "p1"), R"({"action":"x"})"),
                                insert("Project", project_key("c1", "p2")),
                                insert("Collaboration", {{"collab_id", "c1"}})});
    REQUIRE(written.has_value());
    REQUIRE(written->size() == 3);
    CHECK((*written)[0].doc_id == 1);
    CHECK((*written)[1].doc_id == 2);
    CHECK((*written)[2].doc_id == 1);  // doc ids count per kind

    auto got = store.get("Project", project_key("c1", "p1"));
    REQUIRE(got.has_value());
    CHECK(got->document == R"({"action":"x"})");
    CHECK(got->version == 1);
    CHECK(got->key.size() == 2);
    CHECK(got->key[0].name == "collab_id");

    // Key field order does not change identity.
    auto reversed = store.get("Project", {{"project_id", "p1"}, {"collab_id", "c1"}});
    REQUIRE(reversed.has_value());
    CHECK(reversed->doc_id == 1);

    auto listed = store.list({"Project", {{"collab_id", "c1"}}, 0, 0});
    REQUIRE(listed.has_value());
    REQUIRE(listed->size() == 2);
    CHECK((*listed)[0].doc_id == 1);
    auto paged = store.list({"Project", {}, 1, 1});
    REQUIRE(paged.has_value());
    REQUIRE(paged->size() == 1);
    CHECK((*paged)[0].doc_id == 2);

    auto updated = store.apply(
        {{sdk::WriteMode::Update, "Project", project_key("c1", "p1"), R"({"action":"y"})"}});
    REQUIRE(updated.has_value());
    CHECK((*updated)[0].version == 2);
    CHECK(store.get("Project", project_key("c1", "p1"))->document == R"({"action":"y"})");

    auto deleted = store.apply({{sdk::WriteMode::Delete, "Project", project_key("c1", "p1"), ""}});
    REQUIRE(deleted.has_value());
    CHECK((*deleted)[0].document == R"({"action":"y"})");
    auto missing = store.get("Project", project_key("c1", "p1"));
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code == sdk::ErrorCode::NotFound);
    CHECK(missing.error().message.find("Project") != std::string::npos);

    // A deleted id is not reused.
    auto again = store.apply({insert("Project", project_key("c1", "p3"))});
    REQUIRE(again.has_value());
    CHECK((*again)[0].doc_id == 3);
}

TEST_CASE("sqlite storage applies a batch all or nothing", "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    SqliteStorage store(host, sdk::Options{});
    REQUIRE(store.start().is_ok());
    REQUIRE(store.apply({insert("Project", project_key("c1", "p1"))}).has_value());

    SECTION("insert over an existing key") {
        auto result = store.apply({insert("Project", project_key("c1", "p2")),
                                   insert("Project", project_key("c1", "p1"))});
        REQUIRE_FALSE(result.has_value());
        CHECK(result.error().code == sdk::ErrorCode::AlreadyExists);
    }
    SECTION("update of a missing record") {
        auto result =
            store.apply({insert("Project", project_key("c1", "p2")),
                         {sdk::WriteMode::Update, "Project", project_key("c9", "p9"), "{}"}});
        REQUIRE_FALSE(result.has_value());
        CHECK(result.error().code == sdk::ErrorCode::NotFound);
    }
    SECTION("delete of a missing record") {
        auto result =
            store.apply({insert("Project", project_key("c1", "p2")),
                         {sdk::WriteMode::Delete, "Project", project_key("c9", "p9"), ""}});
        REQUIRE_FALSE(result.has_value());
        CHECK(result.error().code == sdk::ErrorCode::NotFound);
    }
    SECTION("a document that is not a JSON object") {
        auto result = store.apply({insert("Project", project_key("c1", "p2")),
                                   insert("Project", project_key("c1", "p3"), "[1,2]")});
        REQUIRE_FALSE(result.has_value());
        CHECK(result.error().code == sdk::ErrorCode::InvalidArgument);
    }
    SECTION("a malformed kind or key") {
        auto bad_kind = store.apply({insert("Pro ject", project_key("c1", "p2"))});
        REQUIRE_FALSE(bad_kind.has_value());
        CHECK(bad_kind.error().message.find("kind") != std::string::npos);
        auto repeated = store.apply({insert("Project", {{"a", "1"}, {"a", "2"}})});
        REQUIRE_FALSE(repeated.has_value());
        CHECK(repeated.error().code == sdk::ErrorCode::InvalidArgument);
    }
    auto all = store.list({"Project", {}, 0, 0});
    REQUIRE(all.has_value());
    CHECK(all->size() == 1);
}

TEST_CASE("sqlite storage writes a child only while its Required parent exists",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    SqliteStorage store(host, sdk::Options{});
    REQUIRE(store.start().is_ok());
    REQUIRE(store.apply({insert("Project", project_key("c1", "p1"), R"({"a":1})")}).has_value());
    const sdk::Key run{{"collab_id", "c1"}, {"project_id", "p1"}, {"run_id", "r1"}};
    const sdk::Mutation require_p1{sdk::WriteMode::Require, "Project", project_key("c1", "p1"), ""};

    auto made = store.apply({require_p1, insert("Run", run)});
    REQUIRE(made.has_value());
    REQUIRE(made->size() == 2);
    CHECK((*made)[0].kind == "Project");
    CHECK((*made)[0].document == R"({"a":1})");
    CHECK((*made)[1].kind == "Run");

    // The parent gone: the batch fails with NotFound and writes nothing.
    REQUIRE(store.apply({{sdk::WriteMode::Delete, "Project", project_key("c1", "p1"), ""}})
                .has_value());
    const sdk::Key run2{{"collab_id", "c1"}, {"project_id", "p1"}, {"run_id", "r2"}};
    auto orphan = store.apply({require_p1, insert("Run", run2)});
    REQUIRE_FALSE(orphan.has_value());
    CHECK(orphan.error().code == sdk::ErrorCode::NotFound);
    CHECK(orphan.error().message.find("Project") != std::string::npos);
    CHECK(store.get("Run", run2).error().code == sdk::ErrorCode::NotFound);

    // A write mode this plugin does not know is refused, naming it.
    auto unknown = store.apply({{static_cast<sdk::WriteMode>(42), "Run", run2, "{}"}});
    REQUIRE_FALSE(unknown.has_value());
    CHECK(unknown.error().code == sdk::ErrorCode::InvalidArgument);
    CHECK(unknown.error().message.find("42") != std::string::npos);
}

TEST_CASE("sqlite storage deletes by key subset, scoped by every given field", "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    SqliteStorage store(host, sdk::Options{});
    REQUIRE(store.start().is_ok());
    auto run_key = [](const std::string& c, const std::string& p, const std::string& r) {
        return sdk::Key{{"collab_id", c}, {"project_id", p}, {"expt_id", "e"}, {"run_id", r}};
    };
    REQUIRE(store
                .apply({insert("Run", run_key("A", "p1", "r1")),
                        insert("Run", run_key("A", "p1", "r2")),
                        insert("Run", run_key("B", "p1", "r1")),
                        insert("Run", run_key("A", "p2", "r1"))})
                .has_value());
    auto result = store.apply({{sdk::WriteMode::DeleteWhere, "Run", project_key("A", "p1"), ""}});
    REQUIRE(result.has_value());
    CHECK(result->empty());
    auto left = store.list({"Run", {}, 0, 0});
    REQUIRE(left.has_value());
    REQUIRE(left->size() == 2);
    CHECK(store.get("Run", run_key("B", "p1", "r1")).has_value());
    CHECK(store.get("Run", run_key("A", "p2", "r1")).has_value());
    CHECK(store.list({"Run", {{"project_id", "p1"}}, 0, 0})->size() == 1);
    // Matching nothing is not an error.
    CHECK(
        store.apply({{sdk::WriteMode::DeleteWhere, "Run", {{"collab_id", "Z"}}, ""}}).has_value());
}

TEST_CASE("sqlite storage keeps data across restarts and refuses a newer schema",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    const std::string file = dir.path + "/nested/folder/store.db";
    sdk::Options options = opts({{"path", file}});
    {
        SqliteStorage store(host, options);
        REQUIRE(store.start().is_ok());
        REQUIRE(
            store.apply({insert("Project", project_key("c1", "p1"), R"({"n":1})")}).has_value());
        store.stop();
        CHECK_FALSE(store.get("Project", project_key("c1", "p1")).has_value());
    }
    {
        SqliteStorage store(host, options);
        REQUIRE(store.start().is_ok());
        auto got = store.get("Project", project_key("c1", "p1"));
        REQUIRE(got.has_value());
        CHECK(got->document == R"({"n":1})");
    }
    set_user_version(file, synergos::plugins::sqlite::kSchemaVersion + 1);
    SqliteStorage newer(host, options);
    auto st = newer.start();
    REQUIRE_FALSE(st.is_ok());
    CHECK(st.code() == sdk::ErrorCode::FailedPrecondition);
    CHECK(st.message().find("schema version") != std::string::npos);
    CHECK(st.message().find(file) != std::string::npos);
}

TEST_CASE("sqlite storage refuses a file from a newer version without changing it",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    const std::string file = dir.path + "/future.db";
    {
        // A newer synergos's file, still in rollback-journal mode.
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
        REQUIRE(sqlite3_exec(db, "CREATE TABLE future (x INTEGER)", nullptr, nullptr, nullptr) ==
                SQLITE_OK);
        sqlite3_close(db);
    }
    set_user_version(file, synergos::plugins::sqlite::kSchemaVersion + 1);
    REQUIRE(journal_mode(file) == "delete");
    SqliteStorage store(host, opts({{"path", file}}));
    auto st = store.start();
    REQUIRE_FALSE(st.is_ok());
    CHECK(st.code() == sdk::ErrorCode::FailedPrecondition);
    CHECK(st.message().find(file) != std::string::npos);
    CHECK(journal_mode(file) == "delete");  // not switched to WAL
    CHECK_FALSE(fs::exists(file + "-wal"));
}

TEST_CASE("sqlite storage migrates a version-1 file to the current schema", "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    const std::string file = dir.path + "/v1.db";
    {
        // Build a version-1 file by hand (tables only, no lookup index yet).
        sqlite3* db = nullptr;
        sqlite3_open(file.c_str(), &db);
        sqlite3_exec(
            db,
            "CREATE TABLE records (kind TEXT NOT NULL, key_id TEXT NOT NULL, key_json TEXT "
            "NOT NULL, doc_id INTEGER NOT NULL, document TEXT NOT NULL, version INTEGER NOT "
            "NULL, created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL, PRIMARY "
            "KEY (kind, key_id)) WITHOUT ROWID;"
            "CREATE UNIQUE INDEX records_by_doc_id ON records (kind, doc_id);"
            "CREATE TABLE record_keys (kind TEXT NOT NULL, key_id TEXT NOT NULL, name TEXT "
            "NOT NULL, value TEXT NOT NULL, PRIMARY KEY (kind, key_id, name)) WITHOUT ROWID;"
            "CREATE TABLE sequences (kind TEXT PRIMARY KEY, last_doc_id INTEGER NOT NULL) "
            "WITHOUT ROWID;"
            "PRAGMA user_version=1;",
            nullptr, nullptr, nullptr);
        sqlite3_close(db);
    }
    SqliteStorage store(host, opts({{"path", file}}));
    REQUIRE(store.start().is_ok());
    CHECK(store.schema_version() == synergos::plugins::sqlite::kSchemaVersion);
    CHECK(store.apply({insert("Project", project_key("c", "p"))}).has_value());
    CHECK(store.list({"Project", {{"collab_id", "c"}}, 0, 0})->size() == 1);
}

TEST_CASE("sqlite storage migrates a version-2 file with records, keeping lookups by key fields",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    const std::string file = dir.path + "/v2.db";
    {
        // A version-2 file by hand: key rows in a table keyed by (kind, key_id, name) plus an
        // index by value; two projects of collaboration c and one of d.
        sqlite3* db = nullptr;
        sqlite3_open(file.c_str(), &db);
        std::string sql =
            "CREATE TABLE records (kind TEXT NOT NULL, key_id TEXT NOT NULL, key_json TEXT "
            "NOT NULL, doc_id INTEGER NOT NULL, document TEXT NOT NULL, version INTEGER NOT "
            "NULL, created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL, PRIMARY "
            "KEY (kind, key_id)) WITHOUT ROWID;"
            "CREATE UNIQUE INDEX records_by_doc_id ON records (kind, doc_id);"
            "CREATE TABLE record_keys (kind TEXT NOT NULL, key_id TEXT NOT NULL, name TEXT "
            "NOT NULL, value TEXT NOT NULL, PRIMARY KEY (kind, key_id, name)) WITHOUT ROWID;"
            "CREATE TABLE sequences (kind TEXT PRIMARY KEY, last_doc_id INTEGER NOT NULL) "
            "WITHOUT ROWID;"
            "CREATE INDEX record_keys_by_value ON record_keys (kind, name, value, key_id);"
            "CREATE TABLE store_info (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
            "INSERT INTO sequences VALUES ('Project', 3);";
        int doc_id = 0;
        for (const auto& [c, p] : std::vector<std::pair<std::string, std::string>>{
                 {"c", "p1"}, {"c", "p2"}, {"d", "p1"}}) {
            const std::string key = R"([["collab_id",")" + c + R"("],["project_id",")" + p + R"("]])";
            const std::string id = std::to_string(++doc_id);
            sql += "INSERT INTO records VALUES ('Project', '" + key + "', '" + key + "', " + id +
                   ", '{\"n\":" + id + "}', 1, 0, 0);";
            sql += "INSERT INTO record_keys VALUES ('Project', '" + key + "', 'collab_id', '" + c +
                   "'), ('Project', '" + key + "', 'project_id', '" + p + "');";
        }
        sql += "PRAGMA user_version=2;";
        REQUIRE(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(db);
    }
    SqliteStorage store(host, opts({{"path", file}}));
    REQUIRE(store.start().is_ok());
    CHECK(store.schema_version() == synergos::plugins::sqlite::kSchemaVersion);
    CHECK(store.list({"Project", {{"collab_id", "c"}}, 0, 0})->size() == 2);
    CHECK(store.list({"Project", {{"project_id", "p1"}}, 0, 0})->size() == 2);
    auto d = store.list({"Project", {{"collab_id", "d"}, {"project_id", "p1"}}, 0, 0});
    REQUIRE(d->size() == 1);
    CHECK(d->front().document == R"({"n":3})");
    // Deletes remove the key rows too: the same key can be created again, and is listed once.
    REQUIRE(store.apply({{sdk::WriteMode::DeleteWhere, "Project", {{"collab_id", "c"}}, {}}})
                .has_value());
    CHECK(store.list({"Project", {{"project_id", "p1"}}, 0, 0})->size() == 1);
    REQUIRE(store.apply({insert("Project", project_key("c", "p1"))}).has_value());
    auto again = store.list({"Project", {{"collab_id", "c"}}, 0, 0});
    REQUIRE(again->size() == 1);
    CHECK(again->front().doc_id == 4);
    REQUIRE(store.apply({{sdk::WriteMode::Delete, "Project", project_key("d", "p1"), {}}})
                .has_value());
    store.stop();
    sqlite3* db = nullptr;
    sqlite3_open(file.c_str(), &db);
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM record_keys", -1, &stmt, nullptr);
    REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
    CHECK(sqlite3_column_int(stmt, 0) == 2);  // only c/p1's two fields are left
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

TEST_CASE("sqlite storage rejects bad options with the option's name", "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    SqliteStorage store(host, opts({{"synchronous", "sometimes"}}));
    auto st = store.start();
    REQUIRE_FALSE(st.is_ok());
    CHECK(st.message().find("synchronous") != std::string::npos);
    CHECK_FALSE(store.get("Project", project_key("c", "p")).has_value());
}

TEST_CASE("sqlite storage writes its WAL out at start, and a crash leaves every commit readable",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    const std::string file = dir.path + "/store.db";
    {
        SqliteStorage store(host, opts({{"path", file}, {"wal_preallocate_mb", "8"}}));
        REQUIRE(store.start().is_ok());
        CHECK(fs::file_size(file + "-wal") >= 8u << 20);
    }
    // A process killed after its commits leaves a WAL of valid frames followed by zeros.
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        SqliteStorage store(
            host, opts({{"path", file}, {"wal_preallocate_mb", "8"}, {"checkpoint_frames", "8192"}}));
        if (!store.start().is_ok()) {
            _exit(2);
        }
        for (int i = 0; i < 200; ++i) {
            if (!store.apply({insert("Project", project_key("c", "p" + std::to_string(i)))})) {
                _exit(3);
            }
        }
        _exit(0);  // no stop: nothing checkpointed, the WAL stays as it is
    }
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    CHECK(fs::file_size(file + "-wal") >= 8u << 20);
    SqliteStorage store(host, opts({{"path", file}, {"wal_preallocate_mb", "8"}}));
    REQUIRE(store.start().is_ok());
    for (int i = 0; i < 200; ++i) {
        CHECK(store.get("Project", project_key("c", "p" + std::to_string(i))).has_value());
    }
    auto listed = store.list({"Project", {}, 0, 0});
    REQUIRE(listed.has_value());
    CHECK(listed->size() == 200);
    SqliteStorage bad(host, opts({{"path", file + "2"}, {"wal_preallocate_mb", "2048"}}));
    auto st = bad.start();
    REQUIRE_FALSE(st.is_ok());
    CHECK(st.message().find("wal_preallocate_mb") != std::string::npos);
}

TEST_CASE("sqlite storage checkpoints the WAL into the database every checkpoint_frames frames",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    // The database file grows only when a checkpoint copies pages into it.
    const auto grows = [&](const std::string& frames) {
        const std::string file = dir.path + "/ckpt-" + frames + ".db";
        SqliteStorage store(host, opts({{"path", file}, {"checkpoint_frames", frames}}));
        REQUIRE(store.start().is_ok());
        const auto before = fs::file_size(file);
        for (int i = 0; i < 60; ++i) {  // each commit adds a few frames
            REQUIRE(store.apply({insert("Project", project_key("c", "p" + std::to_string(i)))}));
        }
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (fs::file_size(file) == before && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return fs::file_size(file) > before;
    };
    CHECK(grows("16"));
    CHECK_FALSE(grows("8192"));
    // Past 16384 frames the writer restarts the WAL itself, copying on the commit path: an
    // option that high would bring back the stall it exists to avoid.
    for (const char* wrong : {"8", "9000"}) {
        SqliteStorage bad(host, opts({{"path", dir.path + "/bad.db"}, {"checkpoint_frames", wrong}}));
        auto st = bad.start();
        REQUIRE_FALSE(st.is_ok());
        CHECK(st.message().find("checkpoint_frames") != std::string::npos);
    }
}

TEST_CASE("sqlite storage serves concurrent writers and readers with group commit",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    SqliteStorage store(host, opts({{"synchronous", "NORMAL"}}));
    REQUIRE(store.start().is_ok());
    constexpr int kThreads = 8;
    constexpr int kPerThread = 40;
    std::atomic<int> failures{0};
    std::atomic<int> invisible{0};
    std::atomic<int> expected_conflicts{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) {
                const std::string id = std::to_string(t) + "-" + std::to_string(i);
                auto ok = store.apply({insert("Run", {{"collab_id", "c"}, {"run_id", id}}),
                                       insert("Model", {{"collab_id", "c"}, {"run_id", id}})});
                if (!ok) {
                    ++failures;
                }
                // A write is visible to every reader as soon as apply returns.
                if (!store.get("Model", {{"collab_id", "c"}, {"run_id", id}})) {
                    ++invisible;
                }
                // Every fifth write is a batch that must fail alone (duplicate within itself).
                if (i % 5 == 0) {
                    auto bad =
                        store.apply({insert("Tag", {{"id", id}}), insert("Tag", {{"id", id}})});
                    if (!bad && bad.error().code == sdk::ErrorCode::AlreadyExists) {
                        ++expected_conflicts;
                    }
                }
                if (!store.list({"Run", {{"collab_id", "c"}}, 5, 0})) {
                    ++failures;
                }
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    CHECK(failures == 0);
    CHECK(invisible == 0);
    CHECK(expected_conflicts == kThreads * kPerThread / 5);
    auto runs = store.list({"Run", {}, 0, 0});
    auto models = store.list({"Model", {}, 0, 0});
    REQUIRE(runs.has_value());
    REQUIRE(models.has_value());
    CHECK(runs->size() == kThreads * kPerThread);
    CHECK(models->size() == kThreads * kPerThread);
    CHECK(store.list({"Tag", {}, 0, 0})->empty());
    std::set<std::int64_t> ids;
    for (const auto& r : *runs) {
        ids.insert(r.doc_id);
    }
    CHECK(ids.size() == runs->size());
}

TEST_CASE("sqlite storage: a batch that ends the whole transaction fails its group, never "
          "leaves later batches to autocommit",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    std::string file;
    {
        SqliteStorage first(host, opts({{"synchronous", "NORMAL"}}));
        file = first.path();
        REQUIRE(first.start().is_ok());  // creates the schema
    }
    {
        // A trigger that rolls back the whole transaction, as SQLite itself may on I/O errors,
        // a full disk or no memory: the batches grouped with it must not be half applied.
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
        REQUIRE(sqlite3_exec(db,
                             "CREATE TRIGGER boom BEFORE INSERT ON records WHEN NEW.kind = 'Boom' "
                             "BEGIN SELECT RAISE(ROLLBACK, 'boom'); END;",
                             nullptr, nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(db);
    }
    SqliteStorage store(host, opts({{"synchronous", "NORMAL"}}));
    REQUIRE(store.start().is_ok());
    constexpr int kThreads = 6;
    constexpr int kPerThread = 60;
    struct Outcome {
        std::string id;
        bool ok = false;
    };
    std::vector<std::vector<Outcome>> outcomes(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) {
                const std::string id = std::to_string(t) + "-" + std::to_string(i);
                const sdk::Key key{{"collab_id", "c"}, {"run_id", id}};
                std::vector<sdk::Mutation> batch{insert("Run", key), insert("Model", key)};
                if (i % 4 == t % 4) {
                    batch.push_back(insert("Boom", {{"id", id}}));
                }
                outcomes[t].push_back({id, store.apply(batch).has_value()});
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    // Every batch is all or nothing, and its outcome says which.
    int wrong = 0;
    for (const auto& per_thread : outcomes) {
        for (const auto& o : per_thread) {
            const bool run = store.get("Run", {{"collab_id", "c"}, {"run_id", o.id}}).has_value();
            const bool model =
                store.get("Model", {{"collab_id", "c"}, {"run_id", o.id}}).has_value();
            if (run != o.ok || model != o.ok) {
                ++wrong;
                UNSCOPED_INFO("batch " << o.id << " reported " << o.ok << ", run " << run
                                       << ", model " << model);
            }
        }
    }
    CHECK(wrong == 0);
    CHECK(store.list({"Boom", {}, 0, 0})->empty());
}

TEST_CASE("the sqlite plugin library loads and works through its exported factory",
          "[integration][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    const std::string library =
        std::string(SYNERGOS_TEST_PLUGIN_DIR) + "/libsynergos-storage-sqlite.so";
    REQUIRE(fs::exists(library));
    boost::dll::shared_library lib(library);
    auto& descriptor = lib.get_alias<const sdk::PluginDescriptor>("synergos_plugin_descriptor");
    CHECK(std::string(descriptor.name) == "sqlite");
    CHECK(descriptor.kind == sdk::PluginKind::Storage);
    auto& create =
        lib.get_alias<sdk::Factory<sdk::StorageBackend>>("synergos_plugin_create_storage");
    auto made = create(host, sdk::Options{});
    REQUIRE(made.has_value());
    std::unique_ptr<sdk::StorageBackend> store = std::move(*made);
    REQUIRE(store->start().is_ok());
    REQUIRE(store->apply({insert("Participant", {{"participant_id", "w1"}}, R"({"id":"w1"})")})
                .has_value());
    CHECK(store->get("Participant", {{"participant_id", "w1"}})->document == R"({"id":"w1"})");
    store->stop();
    store.reset();
}

TEST_CASE("sqlite storage keys hold any UTF-8 text and refuse invalid UTF-8", "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    SqliteStorage store(host, sdk::Options{});
    REQUIRE(store.start().is_ok());
    const std::string odd = "q\"uote\\back\nline\x01\xc3\xa9\xe2\x82\xac";
    REQUIRE(store.apply({insert("Project", project_key(odd, "p"))}).has_value());
    auto got = store.get("Project", {{"project_id", "p"}, {"collab_id", odd}});
    REQUIRE(got.has_value());
    CHECK(got->key[0].value == odd);
    CHECK(store.list({"Project", {{"collab_id", odd}}, 0, 0})->size() == 1);
    // The stored key is the JSON text nlohmann would write, so files stay readable by tools.
    sqlite3* db = nullptr;
    sqlite3_open(store.path().c_str(), &db);
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db, "SELECT key_json FROM records", -1, &stmt, nullptr);
    REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
    const std::string key_json = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    CHECK(key_json == nlohmann::json::array({nlohmann::json::array({"collab_id", odd}),
                                             nlohmann::json::array({"project_id", "p"})})
                          .dump());
    for (const std::string& bad : {std::string("\xff"), std::string("\xc0\xaf"),
                                   std::string("\xed\xa0\x80"), std::string("\xe2\x82")}) {
        auto result = store.apply({insert("Project", project_key(bad, "p"))});
        REQUIRE_FALSE(result.has_value());
        CHECK(result.error().message.find("UTF-8") != std::string::npos);
    }
}

TEST_CASE("sqlite storage sees writes made through another connection to the same file",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    SqliteStorage reader(host, sdk::Options{});
    REQUIRE(reader.start().is_ok());
    // Warm every pooled reader's snapshot.
    for (int i = 0; i < 8; ++i) {
        CHECK_FALSE(reader.get("Project", project_key("c", "p")).has_value());
    }
    SqliteStorage other(host, sdk::Options{});  // stands for another process on the same file
    REQUIRE(other.start().is_ok());
    REQUIRE(other.apply({insert("Project", project_key("c", "p"))}).has_value());
    // Snapshots are reused for at most kSnapshotMaxAge when this instance has not written.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    bool seen = false;
    while (!seen && std::chrono::steady_clock::now() < deadline) {
        seen = reader.get("Project", project_key("c", "p")).has_value();
    }
    CHECK(seen);
    // Its own writes are visible at once.
    REQUIRE(reader.apply({insert("Project", project_key("c", "q"))}).has_value());
    CHECK(reader.get("Project", project_key("c", "q")).has_value());
    CHECK(reader.list({"Project", {{"collab_id", "c"}}, 0, 0})->size() == 2);
}

TEST_CASE("sqlite storage: repeated reads are served again only while nothing was written",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    SqliteStorage store(host, sdk::Options{});
    REQUIRE(store.start().is_ok());
    REQUIRE(store.apply({insert("Project", project_key("c", "p"), R"({"v":1})")}).has_value());
    const sdk::Query by_collab{"Project", {{"collab_id", "c"}}, 0, 0};
    for (int i = 0; i < 3; ++i) {  // the later ones come from the read cache
        auto got = store.get("Project", project_key("c", "p"));
        REQUIRE(got.has_value());
        CHECK(got->document == R"({"v":1})");
        CHECK(store.list(by_collab)->size() == 1);
        CHECK(store.get("Project", project_key("c", "none")).error().code ==
              sdk::ErrorCode::NotFound);
    }
    // Every kind of write is seen by the very next read (update, insert, delete).
    REQUIRE(store.apply({{sdk::WriteMode::Update, "Project", project_key("c", "p"), R"({"v":2})"}})
                .has_value());
    CHECK(store.get("Project", project_key("c", "p"))->document == R"({"v":2})");
    CHECK(store.list(by_collab)->front().version == 2);
    REQUIRE(store.apply({insert("Project", project_key("c", "none"))}).has_value());
    CHECK(store.get("Project", project_key("c", "none")).has_value());
    CHECK(store.list(by_collab)->size() == 2);
    REQUIRE(store.apply({{sdk::WriteMode::Delete, "Project", project_key("c", "p"), {}}})
                .has_value());
    CHECK(store.get("Project", project_key("c", "p")).error().code == sdk::ErrorCode::NotFound);
    CHECK(store.list(by_collab)->size() == 1);
    // Nothing is served from the cache once the store is stopped.
    store.stop();
    auto after = store.get("Project", project_key("c", "none"));
    REQUIRE_FALSE(after.has_value());
    CHECK(after.error().code == sdk::ErrorCode::FailedPrecondition);
    CHECK_FALSE(store.list(by_collab).has_value());
}

TEST_CASE("sqlite storage: the read cache never answers one query with another's result",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    SqliteStorage store(host, sdk::Options{});
    REQUIRE(store.start().is_ok());
    REQUIRE(store.apply({insert("Project", project_key("c", "p"))}).has_value());
    // Key values may hold any UTF-8, NUL included: these two queries must not share an entry.
    const std::string glued = std::string("c") + '\0' + "project_id" + '\0' + "p";
    const sdk::Query one_field{"Project", {{"collab_id", glued}}, 0, 0};
    const sdk::Query two_fields{"Project", project_key("c", "p"), 0, 0};
    for (int i = 0; i < 2; ++i) {  // both orders of filling the cache
        auto none = store.list(i == 0 ? one_field : two_fields);
        auto some = store.list(i == 0 ? two_fields : one_field);
        REQUIRE(none.has_value());
        REQUIRE(some.has_value());
        CHECK((i == 0 ? none : some)->empty());
        CHECK((i == 0 ? some : none)->size() == 1);
        REQUIRE(store.apply({insert("Project", project_key("c", "other" + std::to_string(i)))})
                    .has_value());  // a write: the next round starts with an empty cache
    }
}

TEST_CASE("sqlite storage never hands out a doc_id twice, across failed batches, deletes and restarts",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    std::set<std::int64_t> seen;  // Run doc_ids (they count per kind)
    auto take = [&](const sdk::Result<std::vector<sdk::Record>>& written) {
        REQUIRE(written.has_value());
        for (const auto& r : *written) {
            CHECK(seen.insert(r.doc_id).second);
        }
    };
    {
        SqliteStorage store(host, sdk::Options{});
        REQUIRE(store.start().is_ok());
        take(store.apply({insert("Run", project_key("c", "1")), insert("Run", project_key("c", "2"))}));
        REQUIRE(store.apply({insert("Project", project_key("c", "1"))}).has_value());
        // A failing batch (duplicate) writes nothing, the sequence included.
        auto failed = store.apply({insert("Run", project_key("c", "3")),
                                   insert("Run", project_key("c", "1"))});
        REQUIRE_FALSE(failed.has_value());
        CHECK(failed.error().code == sdk::ErrorCode::AlreadyExists);
        take(store.apply({insert("Run", project_key("c", "3"))}));
        REQUIRE(store.apply({{sdk::WriteMode::Delete, "Run", project_key("c", "3"), {}}})
                    .has_value());
        store.stop();
    }
    SqliteStorage store(host, sdk::Options{});
    REQUIRE(store.start().is_ok());
    auto again = store.apply({insert("Run", project_key("c", "3"))});
    REQUIRE(again.has_value());
    CHECK(seen == std::set<std::int64_t>{1, 2, 3});
    CHECK(again->front().doc_id == 4);  // 3 was deleted: never reused
    CHECK(store.apply({insert("Project", project_key("c", "2"))})->front().doc_id == 2);
}

TEST_CASE("sqlite storage checkpoints the WAL into the database file as writes go on",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    SqliteStorage store(host, opts({{"synchronous", "NORMAL"}}));
    REQUIRE(store.start().is_ok());
    const std::string file = store.path();
    const auto initial = fs::file_size(file);
    // Well over 1000 WAL frames (4 KiB pages): ~2000 records of 3 KiB each.
    const std::string doc = "{\"pad\":\"" + std::string(3000, 'x') + "\"}";
    for (int batch = 0; batch < 40; ++batch) {
        std::vector<sdk::Mutation> writes;
        for (int i = 0; i < 50; ++i) {
            writes.push_back(insert("Run", project_key("c", std::to_string(batch * 50 + i)), doc));
        }
        REQUIRE(store.apply(writes).has_value());
    }
    // The checkpointer copies pages into the main file: it grows well past its initial size.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (fs::file_size(file) < initial + 2 * 1024 * 1024 &&
           std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(fs::file_size(file) >= initial + 2 * 1024 * 1024);
    CHECK(store.list({"Run", {{"collab_id", "c"}}, 0, 0})->size() == 2000);
    store.stop();
}

TEST_CASE("sqlite storage stop never closes the connection of a read still running",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    StatementHold hold;
    // busy_timeout_ms 0: stop waits 1 s for leased readers.
    SqliteStorage store(host, opts({{"busy_timeout_ms", "0"}, {"synchronous", "NORMAL"},
                                    {"wal_preallocate_mb", "0"}}));
    REQUIRE(store.start().is_ok());
    const std::string file = store.path();
    REQUIRE(store.apply({insert("Project", project_key("c1", "p1"), R"({"a":1})")}).has_value());

    hold.arm("SELECT r.key_json", std::chrono::seconds(10));
    std::optional<sdk::Result<sdk::Record>> got;
    std::thread reader([&] { got.emplace(store.get("Project", project_key("c1", "p1"))); });
    REQUIRE(hold.wait_entered(std::chrono::seconds(10)));
    store.stop();  // gives up on the read after its bound: must leave its connection open
    CHECK(host.captured().contains("stop did not wait for running reads"));
    hold.release();
    reader.join();
    REQUIRE(got.has_value());
    REQUIRE(got->has_value());
    CHECK((*got)->document == R"({"a":1})");
    // The read closed its connection when it ended: nothing of the store is left open.
    CHECK(open_descriptors(file) == 0);

    // After stop every operation fails cleanly.
    auto read = store.get("Project", project_key("c1", "p1"));
    REQUIRE_FALSE(read.has_value());
    CHECK(read.error().code == sdk::ErrorCode::FailedPrecondition);
    auto listed = store.list({"Project", {}, 0, 0});
    REQUIRE_FALSE(listed.has_value());
    CHECK(listed.error().code == sdk::ErrorCode::FailedPrecondition);
    auto written = store.apply({insert("Project", project_key("c1", "p2"))});
    REQUIRE_FALSE(written.has_value());
    CHECK(written.error().code == sdk::ErrorCode::FailedPrecondition);
}

TEST_CASE("sqlite storage stop never closes the connection of a commit still running",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    StatementHold hold;
    const auto options = opts({{"commit_timeout_ms", "200"}, {"synchronous", "NORMAL"},
                               {"wal_preallocate_mb", "0"}});
    SqliteStorage store(host, options);
    REQUIRE(store.start().is_ok());
    const std::string file = store.path();

    hold.arm("SAVEPOINT batch", std::chrono::seconds(10));  // inside the group's transaction
    std::optional<sdk::Result<std::vector<sdk::Record>>> committed;
    std::thread writer(
        [&] { committed.emplace(store.apply({insert("Project", project_key("c1", "p1"))})); });
    REQUIRE(hold.wait_entered(std::chrono::seconds(10)));
    store.stop();  // gives up on the commit after commit_timeout_ms: must leave it the writer
    CHECK(host.captured().contains("stop did not wait for a running commit"));
    auto late = store.apply({insert("Project", project_key("c1", "p2"))});
    REQUIRE_FALSE(late.has_value());
    CHECK(late.error().code == sdk::ErrorCode::FailedPrecondition);
    // Reopening would replace the connection under the commit.
    auto restarted = store.start();
    REQUIRE_FALSE(restarted.is_ok());
    CHECK(restarted.code() == sdk::ErrorCode::Unavailable);
    hold.release();
    writer.join();
    REQUIRE(committed.has_value());
    REQUIRE(committed->has_value());
    // The commit closed the writer when it ended.
    CHECK(open_descriptors(file) == 0);

    SqliteStorage reopened(host, options);
    REQUIRE(reopened.start().is_ok());
    CHECK(reopened.get("Project", project_key("c1", "p1")).has_value());
    reopened.stop();
    REQUIRE(store.start().is_ok());  // once the commit has ended
    CHECK(store.get("Project", project_key("c1", "p1")).has_value());
}

TEST_CASE("sqlite storage: a write past its deadline waits for its group commit without spinning",
          "[unit][storage]") {
    using synergos::plugins::sqlite::SqliteStorageTestPeer;
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    StatementHold hold;
    SqliteStorage store(host, opts({{"commit_timeout_ms", "300"}, {"synchronous", "NORMAL"},
                                    {"wal_preallocate_mb", "0"}}));
    REQUIRE(store.start().is_ok());

    // A first commit, held until two writers have queued behind it.
    hold.arm("SAVEPOINT batch", std::chrono::seconds(10));
    std::thread first([&] { (void)store.apply({insert("Run", {{"run_id", "0"}})}); });
    REQUIRE(hold.wait_entered(std::chrono::seconds(10)));
    std::mutex mutex;
    std::condition_variable cv;
    std::size_t queued = 0;
    SqliteStorageTestPeer::on_queued(store, [&](std::size_t n) {
        {
            std::lock_guard<std::mutex> lock(mutex);
            queued = n;
        }
        cv.notify_all();
    });
    struct Writer {
        std::thread::id id;
        double cpu_ms = 0;
        std::optional<sdk::Result<std::vector<sdk::Record>>> result;
    };
    Writer writers[2];
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) {
        threads.emplace_back([&, i] {
            writers[i].id = std::this_thread::get_id();
            const double before = thread_cpu_ms();
            writers[i].result.emplace(store.apply({insert("Run", {{"run_id", std::to_string(i + 1)}})}));
            writers[i].cpu_ms = thread_cpu_ms() - before;
        });
    }
    {
        std::unique_lock<std::mutex> lock(mutex);
        REQUIRE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return queued == 2; }));
    }
    // Both join the next group; its commit is held 1 s, well past their 300 ms deadline.
    hold.arm("SAVEPOINT batch", std::chrono::milliseconds(1000));
    hold.release();
    first.join();
    REQUIRE(hold.wait_entered(std::chrono::seconds(10)));
    const std::thread::id leader = hold.holder();
    for (auto& thread : threads) {
        thread.join();
    }
    const Writer& follower = writers[0].id == leader ? writers[1] : writers[0];
    REQUIRE((writers[0].id == leader || writers[1].id == leader));
    for (const auto& w : writers) {
        REQUIRE(w.result.has_value());
        CHECK(w.result->has_value());  // the outcome, not a timeout: the batch did commit
    }
    // Blocked, the follower uses a few ms of CPU; spinning from its deadline to the end of the
    // commit it burnt about 700 ms.
    INFO("follower CPU " << follower.cpu_ms << " ms");
    CHECK(follower.cpu_ms < 200);
}

TEST_CASE("sqlite storage: a list limit or offset past INT64_MAX means no limit and nothing",
          "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    SqliteStorage store(host, opts({{"synchronous", "NORMAL"}, {"wal_preallocate_mb", "0"}}));
    REQUIRE(store.start().is_ok());
    REQUIRE(store.apply({insert("Run", {{"run_id", "a"}}), insert("Run", {{"run_id", "b"}})}));
    constexpr std::uint64_t kHuge = std::numeric_limits<std::uint64_t>::max();
    // Before, the offset became -1, which SQLite reads as no offset: the first page came back.
    auto past_end = store.list({"Run", {}, 0, kHuge});
    REQUIRE(past_end);
    CHECK(past_end->empty());
    auto unbounded = store.list({"Run", {}, kHuge, 0});
    REQUIRE(unbounded);
    CHECK(unbounded->size() == 2);
    auto second = store.list({"Run", {}, kHuge, 1});
    REQUIRE(second);
    CHECK(second->size() == 1);
    store.stop();
}

TEST_CASE("sqlite storage refuses a busy_timeout_ms outside 0 to one hour, naming it", "[unit][storage]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    // 2^32 + 1 ms was cut to 1 ms by the cast to int and accepted.
    for (const char* wrong : {"4294967297", "-1", "3600001"}) {
        SqliteStorage bad(host, opts({{"path", dir.path + "/bad.db"}, {"busy_timeout_ms", wrong}}));
        const auto st = bad.start();
        INFO(wrong);
        REQUIRE_FALSE(st.is_ok());
        CHECK(st.code() == sdk::ErrorCode::InvalidArgument);
        CHECK(st.message().find("busy_timeout_ms") != std::string::npos);
    }
    SqliteStorage ok(host, opts({{"path", dir.path + "/ok.db"}, {"busy_timeout_ms", "3600000"},
                                 {"wal_preallocate_mb", "0"}}));
    CHECK(ok.start().is_ok());
    ok.stop();
}
