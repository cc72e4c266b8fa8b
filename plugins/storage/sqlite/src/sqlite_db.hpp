// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file sqlite_db.hpp
/// Thin RAII wrappers over the SQLite C API: a connection with a cache of prepared statements,
/// and a statement cursor. Every failure becomes an `sdk::Error` naming the SQL and the file.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include <synergos/sdk/status.hpp>

struct sqlite3;
struct sqlite3_stmt;

namespace synergos::plugins::sqlite {

/// A prepared statement borrowed from a `Connection`'s cache. Reset on destruction, so the next
/// user starts from a clean state. Threading: used by the thread that holds the connection.
class Statement final {
public:
    Statement(sqlite3* db, sqlite3_stmt* stmt) noexcept : db_(db), stmt_(stmt) {}
    ~Statement();
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;
    Statement(Statement&& other) noexcept : db_(other.db_), stmt_(other.stmt_) {
        other.stmt_ = nullptr;
    }
    Statement& operator=(Statement&&) = delete;

    void bind(int index, std::string_view text) noexcept;
    void bind(int index, std::int64_t value) noexcept;

    /// Steps once: true when a row is available, false when done; an error otherwise.
    sdk::Result<bool> step() noexcept;
    /// Steps until done (for statements that return no rows).
    sdk::Status run() noexcept;

    std::int64_t column_int(int index) const noexcept;
    std::string column_text(int index) const;

private:
    sqlite3* db_;
    sqlite3_stmt* stmt_;
};

/// One SQLite connection. Not thread-safe: the owner serialises use (the storage class keeps
/// one writer and a pool of readers).
class Connection final {
public:
    Connection() = default;
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    /// Opens (creating when `create`) the file with the given busy timeout.
    sdk::Status open(const std::string& path, bool create, int busy_timeout_ms) noexcept;
    void close() noexcept;
    bool is_open() const noexcept { return db_ != nullptr; }
    /// True while a transaction is open (SQLite may end one by itself on some errors).
    bool in_transaction() const noexcept;

    /// Runs one or more statements without results (DDL, PRAGMA, BEGIN/COMMIT).
    sdk::Status exec(const std::string& sql) noexcept;
    /// Runs one statement without results through the statement cache (no parsing after the
    /// first time): for the BEGIN/COMMIT of every read.
    sdk::Status exec_cached(const std::string& sql) noexcept;
    /// A cached prepared statement for `sql`.
    sdk::Result<Statement> prepare(const std::string& sql) noexcept;
    /// Replaces SQLite's auto-checkpoint: a PASSIVE checkpoint after a commit once the WAL holds
    /// `passive_frames`; `restart_if_large()` then lets the WAL start over past `restart_frames`.
    /// A due PASSIVE checkpoint is not run here but announced through `hand_off` (it runs on
    /// another connection, off the committing thread); `hand_off` must not block.
    void set_checkpoint_policy(int passive_frames, int restart_frames,
                               std::function<void()> hand_off) noexcept;
    /// Under a steady stream of reads and writes PASSIVE checkpoints never complete and the WAL
    /// grows without bound: past the threshold, try a RESTART checkpoint, waiting at most
    /// `wait_ms` for readers to leave old snapshots (it is retried after a later commit).
    void restart_if_large(int wait_ms, int busy_timeout_ms) noexcept;
    /// The WAL is past `restart_frames`: `restart_if_large` would try a RESTART.
    bool restart_due() const noexcept { return restart_frames_ > 0 && wal_frames_ >= restart_frames_; }

    /// Copies what it can of the WAL into the database file without waiting for anyone.
    void checkpoint_passive() noexcept;

    /// The value of an integer PRAGMA (e.g. "user_version").
    sdk::Result<std::int64_t> pragma_int(const std::string& name) noexcept;

    const std::string& path() const noexcept { return path_; }

    /// Read-snapshot bookkeeping for pooled readers (owned by the storage class): whether a read
    /// transaction is open, the write generation it started at, and when.
    bool in_read_txn = false;
    std::uint64_t snapshot_generation = 0;
    std::chrono::steady_clock::time_point snapshot_began{};

private:
    static int on_wal_commit(void* self, sqlite3* db, const char* schema, int frames);

    sqlite3* db_ = nullptr;
    int passive_frames_ = 1000;
    int restart_frames_ = 0;
    int wal_frames_ = 0;
    int checkpointed_frames_ = 0;  // WAL size at the last passive checkpoint
    std::function<void()> hand_off_;
    std::string path_;
    // Hashed: ordered lookups compared long SQL texts with common prefixes on every statement.
    std::unordered_map<std::string, sqlite3_stmt*> cache_;
};

}  // namespace synergos::plugins::sqlite
