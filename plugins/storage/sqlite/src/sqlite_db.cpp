// SPDX-License-Identifier: Apache-2.0
#include "sqlite_db.hpp"

#include <sqlite3.h>

namespace synergos::plugins::sqlite {
namespace {

sdk::Error sqlite_error(sqlite3* db, int rc, std::string_view what) {
    std::string message = "sqlite: ";
    message += what;
    message += ": ";
    message += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    const int primary = rc & 0xff;
    sdk::ErrorCode code = sdk::ErrorCode::Internal;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
        code = sdk::ErrorCode::Unavailable;
    } else if (primary == SQLITE_FULL) {
        code = sdk::ErrorCode::ResourceExhausted;
    } else if (primary == SQLITE_CONSTRAINT) {
        code = sdk::ErrorCode::AlreadyExists;
    }
    return sdk::Error{code, std::move(message)};
}

}  // namespace

Statement::~Statement() {
    if (stmt_ != nullptr) {
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
    }
}

void Statement::bind(int index, std::string_view text) noexcept {
    sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}

void Statement::bind(int index, std::int64_t value) noexcept {
    sqlite3_bind_int64(stmt_, index, value);
}

sdk::Result<bool> Statement::step() noexcept {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) {
        return true;
    }
    if (rc == SQLITE_DONE) {
        return false;
    }
    return sqlite_error(db_, rc, sqlite3_sql(stmt_));
}

sdk::Status Statement::run() noexcept {
    for (;;) {
        auto row = step();
        if (!row) {
            return row.error();
        }
        if (!*row) {
            return {};
        }
    }
}

std::int64_t Statement::column_int(int index) const noexcept {
    return sqlite3_column_int64(stmt_, index);
}

std::string Statement::column_text(int index) const {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, index));
    const int size = sqlite3_column_bytes(stmt_, index);
    return text != nullptr ? std::string(text, static_cast<std::size_t>(size)) : std::string();
}

Connection::~Connection() { close(); }

sdk::Status Connection::open(const std::string& path, bool create, int busy_timeout_ms) noexcept {
    close();
    path_ = path;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    if (create) {
        flags |= SQLITE_OPEN_CREATE;
    }
    const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) {
        sdk::Error error = sqlite_error(db_, rc, "cannot open '" + path + "'");
        close();
        return error;
    }
    sqlite3_busy_timeout(db_, busy_timeout_ms);
    sqlite3_extended_result_codes(db_, 1);
    return {};
}

bool Connection::in_transaction() const noexcept {
    return db_ != nullptr && sqlite3_get_autocommit(db_) == 0;
}

void Connection::close() noexcept {
    for (auto& [sql, stmt] : cache_) {
        sqlite3_finalize(stmt);
    }
    cache_.clear();
    if (db_ != nullptr) {
        sqlite3_close_v2(db_);
        db_ = nullptr;
    }
}

sdk::Status Connection::exec(const std::string& sql) noexcept {
    char* message = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message);
    if (rc != SQLITE_OK) {
        std::string text = message != nullptr ? message : sqlite3_errstr(rc);
        sqlite3_free(message);
        sdk::Error error = sqlite_error(nullptr, rc, sql);
        error.message = "sqlite: " + sql + ": " + text + " (in '" + path_ + "')";
        return error;
    }
    return {};
}

sdk::Result<Statement> Connection::prepare(const std::string& sql) noexcept {
    auto it = cache_.find(sql);
    if (it != cache_.end()) {
        return Statement(db_, it->second);
    }
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) {
        return sqlite_error(db_, rc, "prepare " + sql);
    }
    try {
        cache_.emplace(sql, stmt);
    } catch (...) {
        sqlite3_finalize(stmt);
        return sdk::Error{sdk::ErrorCode::ResourceExhausted, "sqlite: out of memory"};
    }
    return Statement(db_, stmt);
}

void Connection::set_checkpoint_policy(int passive_frames, int restart_frames,
                                       std::function<void()> hand_off) noexcept {
    passive_frames_ = passive_frames;
    restart_frames_ = restart_frames;
    hand_off_ = std::move(hand_off);
    sqlite3_wal_hook(db_, &Connection::on_wal_commit, this);
}

int Connection::on_wal_commit(void* self, sqlite3* /*db*/, const char* /*schema*/, int frames) {
    auto* conn = static_cast<Connection*>(self);
    conn->wal_frames_ = frames;
    if (frames < conn->checkpointed_frames_) {
        conn->checkpointed_frames_ = 0;  // the WAL started over
    }
    // Once per `passive_frames` new frames, not after every commit: while readers keep the WAL
    // from starting over it stays past the threshold, and a checkpoint (copy and fsync of the
    // database file) on every commit would double the cost of each write.
    if (frames - conn->checkpointed_frames_ >= conn->passive_frames_) {
        conn->hand_off_();
        conn->checkpointed_frames_ = frames;
    }
    return SQLITE_OK;
}

void Connection::restart_if_large(int wait_ms, int busy_timeout_ms) noexcept {
    if (restart_frames_ <= 0 || wal_frames_ < restart_frames_) {
        return;
    }
    sqlite3_busy_timeout(db_, wait_ms);
    const int rc =
        sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_RESTART, nullptr, nullptr);
    sqlite3_busy_timeout(db_, busy_timeout_ms);
    if (rc == SQLITE_OK) {
        wal_frames_ = 0;
        checkpointed_frames_ = 0;
    }
}

void Connection::checkpoint_passive() noexcept {
    sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
}

sdk::Status Connection::exec_cached(const std::string& sql) noexcept {
    auto stmt = prepare(sql);
    if (!stmt) {
        return stmt.error();
    }
    return stmt->run();
}

sdk::Result<std::int64_t> Connection::pragma_int(const std::string& name) noexcept {
    auto stmt = prepare("PRAGMA " + name);
    if (!stmt) {
        return stmt.error();
    }
    auto row = stmt->step();
    if (!row) {
        return row.error();
    }
    if (!*row) {
        return sdk::Error{sdk::ErrorCode::Internal, "sqlite: PRAGMA " + name + " returned no row"};
    }
    return stmt->column_int(0);
}

}  // namespace synergos::plugins::sqlite
