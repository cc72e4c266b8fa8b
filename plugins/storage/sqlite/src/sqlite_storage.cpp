// SPDX-License-Identifier: Apache-2.0
#include "sqlite_storage.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/text.hpp>

namespace synergos::plugins::sqlite {
namespace {

using sdk::ErrorCode;
using sdk::is_utf8;
using Json = nlohmann::json;

/// Each entry migrates from version (index) to version (index + 1), inside one transaction.
constexpr const char* kMigrations[] = {
    // 0 -> 1: records, their key fields (for subset matching) and per-kind doc_id sequences.
    "CREATE TABLE records ("
    "  kind TEXT NOT NULL,"
    "  key_id TEXT NOT NULL,"
    "  key_json TEXT NOT NULL,"
    "  doc_id INTEGER NOT NULL,"
    "  document TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  created_at_ms INTEGER NOT NULL,"
    "  updated_at_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (kind, key_id)) WITHOUT ROWID;"
    "CREATE UNIQUE INDEX records_by_doc_id ON records (kind, doc_id);"
    "CREATE TABLE record_keys ("
    "  kind TEXT NOT NULL, key_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,"
    "  PRIMARY KEY (kind, key_id, name)) WITHOUT ROWID;"
    "CREATE TABLE sequences (kind TEXT PRIMARY KEY, last_doc_id INTEGER NOT NULL) WITHOUT ROWID;",
    // 1 -> 2: index for "every record of a kind whose key field equals a value" (relations,
    // cascades), and a row recording when the store was created.
    "CREATE INDEX record_keys_by_value ON record_keys (kind, name, value, key_id);"
    "CREATE TABLE store_info (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
    "INSERT INTO store_info (name, value) VALUES ('created_by', 'synergos storage sqlite');",
    // 2 -> 3: the key fields in one B-tree, ordered for lookups by value (relations, cascades),
    // instead of a table plus an index, and naming their record by doc_id (an integer) rather
    // than by its whole key text: about a third of the pages written per created record. Deletes
    // find the rows from the key and the doc_id.
    "CREATE TABLE record_keys_v3 ("
    "  kind TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, doc_id INTEGER NOT NULL,"
    "  PRIMARY KEY (kind, name, value, doc_id)) WITHOUT ROWID;"
    "INSERT INTO record_keys_v3 (kind, name, value, doc_id)"
    "  SELECT k.kind, k.name, k.value, r.doc_id FROM record_keys k"
    "  JOIN records r ON r.kind = k.kind AND r.key_id = k.key_id;"
    "DROP TABLE record_keys;"
    "ALTER TABLE record_keys_v3 RENAME TO record_keys;",
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == kSchemaVersion);

/// Per connection: a 16 MiB page cache (the default 2 MiB makes a store of a few hundred
/// thousand records read its B-tree pages from the OS on every statement), and temporary data
/// in memory: a savepoint over a write group keeps its statement journal there instead of
/// creating, writing and deleting a file at every commit (a quarter of the writer's time).
/// No memory map: a reader whose snapshot sees a changed file drops its whole mapping, so with
/// steady writes every read began with an munmap and page faults.
constexpr const char* kCachePragmas =
    "PRAGMA cache_size=-16384; PRAGMA mmap_size=0; PRAGMA temp_store=MEMORY;";

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

sdk::Error not_started() {
    return sdk::Error{ErrorCode::FailedPrecondition, "storage 'sqlite' is not started"};
}

bool is_valid_kind(const std::string& kind) {
    if (kind.empty() || kind.size() > 64) {
        return false;
    }
    return std::all_of(kind.begin(), kind.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
    });
}

std::string describe(const std::string& kind, const sdk::Key& key) {
    std::string out = kind + " {";
    for (std::size_t i = 0; i < key.size(); ++i) {
        out += (i == 0 ? "" : ", ") + key[i].name + ": " + key[i].value;
    }
    return out + "}";
}

/// Canonical identity of a key (field order does not matter) and its ordered form.
struct EncodedKey {
    std::string id;
    std::string ordered;
};

/// Appends `text` as a JSON string, escaped exactly as nlohmann's dump() does.
void append_json_string(std::string& out, std::string_view text) {
    static constexpr char kHex[] = "0123456789abcdef";
    out.push_back('"');
    std::size_t plain = 0;  // start of the run of characters copied as they are
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        out.append(text.data() + plain, i - plain);
        plain = i + 1;
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\f':
                out += "\\f";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                out += "\\u00";
                out.push_back(kHex[c >> 4]);
                out.push_back(kHex[c & 0xf]);
        }
    }
    out.append(text.data() + plain, text.size() - plain);
    out.push_back('"');
}

/// Checks kind and key field names (and, for records, that the key is not empty).
sdk::Status check_key(const std::string& kind, const sdk::Key& key, bool allow_empty) {
    if (!is_valid_kind(kind)) {
        return sdk::Status(ErrorCode::InvalidArgument,
                           "storage: kind '" + kind + "' must match [A-Za-z0-9_]{1,64}");
    }
    if (key.empty() && !allow_empty) {
        return sdk::Status(ErrorCode::InvalidArgument, "storage: key of " + kind + " is empty");
    }
    for (std::size_t i = 0; i < key.size(); ++i) {
        if (key[i].name.empty()) {
            return sdk::Status(ErrorCode::InvalidArgument,
                               "storage: a key field of " + kind + " has no name");
        }
        if (!is_utf8(key[i].name) || !is_utf8(key[i].value)) {
            return sdk::Status(ErrorCode::InvalidArgument,
                               "storage: key of " + kind + " is not valid UTF-8");
        }
        for (std::size_t j = 0; j < i; ++j) {
            if (key[j].name == key[i].name) {
                return sdk::Status(
                    ErrorCode::InvalidArgument,
                    "storage: key field '" + key[i].name + "' of " + kind + " repeats");
            }
        }
    }
    return {};
}

std::string encode_pairs(const std::vector<const sdk::KeyField*>& fields) {
    std::string out = "[";
    for (std::size_t i = 0; i < fields.size(); ++i) {
        out += i == 0 ? "[" : ",[";
        append_json_string(out, fields[i]->name);
        out.push_back(',');
        append_json_string(out, fields[i]->value);
        out.push_back(']');
    }
    out.push_back(']');
    return out;
}

sdk::Result<EncodedKey> encode_key(const std::string& kind, const sdk::Key& key, bool allow_empty) {
    if (auto st = check_key(kind, key, allow_empty); !st) {
        return st.error();
    }
    std::vector<const sdk::KeyField*> fields;
    fields.reserve(key.size());
    for (const auto& field : key) {
        fields.push_back(&field);
    }
    EncodedKey encoded;
    encoded.ordered = encode_pairs(fields);
    std::sort(fields.begin(), fields.end(), [](const sdk::KeyField* a, const sdk::KeyField* b) {
        return a->name != b->name ? a->name < b->name : a->value < b->value;
    });
    encoded.id = encode_pairs(fields);
    return encoded;
}

sdk::Key decode_key(const std::string& text) {
    sdk::Key key;
    const Json parsed = Json::parse(text, nullptr, false);
    if (!parsed.is_array()) {
        return key;
    }
    for (const auto& pair : parsed) {
        if (pair.is_array() && pair.size() == 2 && pair[0].is_string() && pair[1].is_string()) {
            key.push_back({pair[0].get<std::string>(), pair[1].get<std::string>()});
        }
    }
    return key;
}

/// Builds "records whose key contains every `match` field" as SQL; binds start at `first`.
std::string match_clause(std::size_t fields, int first) {
    if (fields == 0) {
        return "";
    }
    std::string sql = " AND r.doc_id IN (SELECT k0.doc_id FROM record_keys k0";
    for (std::size_t i = 1; i < fields; ++i) {
        const std::string k = "k" + std::to_string(i);
        sql += " JOIN record_keys " + k + " ON " + k + ".kind = k0.kind AND " + k +
               ".name = ?" + std::to_string(first + 2 * i) + " AND " + k + ".value = ?" +
               std::to_string(first + 2 * i + 1) + " AND " + k + ".doc_id = k0.doc_id";
    }
    sql += " WHERE k0.kind = ?1 AND k0.name = ?" + std::to_string(first) + " AND k0.value = ?" +
           std::to_string(first + 1) + ")";
    return sql;
}

std::string build_list_sql(std::size_t fields);

std::string build_delete_where_sql(std::size_t fields) {
    return "SELECT r.key_id, r.doc_id FROM records r WHERE r.kind = ?1" + match_clause(fields, 2);
}

/// `Build(fields)`, built once per field count (keys have few fields; the list and DeleteWhere
/// statements run on every read of relations and every create).
template <std::string (*Build)(std::size_t)>
const std::string& sql_for_fields(std::size_t fields) {
    constexpr std::size_t kCached = 8;
    // Never destroyed: threads still running at exit may use it (static destruction order).
    static const std::vector<std::string>& kSql = *new std::vector<std::string>([] {
        std::vector<std::string> all;
        for (std::size_t n = 0; n < kCached; ++n) {
            all.push_back(Build(n));
        }
        return all;
    }());
    if (fields < kCached) {
        return kSql[fields];
    }
    thread_local std::string uncached;
    uncached = Build(fields);
    return uncached;
}

constexpr const char* kSelectColumns =
    "SELECT r.key_json, r.doc_id, r.document, r.version, r.created_at_ms, r.updated_at_ms "
    "FROM records r WHERE r.kind = ?1";

std::string build_list_sql(std::size_t fields) {
    return std::string(kSelectColumns) + match_clause(fields, 2) + " ORDER BY r.doc_id LIMIT ?" +
           std::to_string(2 + 2 * fields) + " OFFSET ?" + std::to_string(3 + 2 * fields);
}

/// `known`: the key as the caller gave it, with its encoding; used instead of decoding the
/// stored one when they are the same text.
struct KnownKey {
    const sdk::Key* key = nullptr;
    const std::string* ordered = nullptr;
};

sdk::Record read_row(const Statement& stmt, const std::string& kind, KnownKey known = {}) {
    sdk::Record record;
    record.kind = kind;
    const std::string stored = stmt.column_text(0);
    if (known.key != nullptr && known.ordered != nullptr && stored == *known.ordered) {
        record.key = *known.key;
    } else {
        record.key = decode_key(stored);
    }
    record.doc_id = stmt.column_int(1);
    record.document = stmt.column_text(2);
    record.version = stmt.column_int(3);
    record.created_at_ms = stmt.column_int(4);
    record.updated_at_ms = stmt.column_int(5);
    return record;
}

sdk::Result<std::optional<sdk::Record>> find(Connection& db, const std::string& kind,
                                             const std::string& key_id, KnownKey known = {}) {
    // Never destroyed: a store used by a thread still running at exit (static destruction).
    static const std::string& sql = *new std::string(std::string(kSelectColumns) + " AND r.key_id = ?2");
    auto stmt = db.prepare(sql);
    if (!stmt) {
        return stmt.error();
    }
    stmt->bind(1, kind);
    stmt->bind(2, key_id);
    auto row = stmt->step();
    if (!row) {
        return row.error();
    }
    if (!*row) {
        return std::optional<sdk::Record>();
    }
    return std::optional<sdk::Record>(read_row(*stmt, kind, known));
}

sdk::Status delete_by_id(Connection& db, const std::string& kind, const std::string& key_id,
                         std::int64_t doc_id) {
    auto stmt = db.prepare("DELETE FROM records WHERE kind = ?1 AND key_id = ?2");
    if (!stmt) {
        return stmt.error();
    }
    stmt->bind(1, kind);
    stmt->bind(2, key_id);
    if (auto st = stmt->run(); !st) {
        return st;
    }
    // key_id is the canonical key: its fields, with the doc_id, are the rows' primary keys.
    for (const auto& field : decode_key(key_id)) {
        auto row = db.prepare(
            "DELETE FROM record_keys WHERE kind = ?1 AND name = ?2 AND value = ?3 AND doc_id = ?4");
        if (!row) {
            return row.error();
        }
        row->bind(1, kind);
        row->bind(2, field.name);
        row->bind(3, field.value);
        row->bind(4, doc_id);
        if (auto st = row->run(); !st) {
            return st;
        }
    }
    return {};
}

sdk::Status check_document(const sdk::Mutation& m) {
    // Fast path without building the document (this runs on the single writer thread): valid
    // JSON whose first character is '{' is an object. Anything else is parsed for the message.
    const auto first = m.document.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && m.document[first] == '{' && Json::accept(m.document)) {
        return {};
    }
    try {
        const Json parsed = Json::parse(m.document);
        if (!parsed.is_object()) {
            return sdk::Status(
                ErrorCode::InvalidArgument,
                "storage: document of " + describe(m.kind, m.key) + " is not a JSON object");
        }
    } catch (const std::exception& e) {
        return sdk::Status(
            ErrorCode::InvalidArgument,
            "storage: document of " + describe(m.kind, m.key) + " is not valid JSON: " + e.what());
    }
    return {};
}

std::string upper(std::string text) {
    for (auto& c : text) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return text;
}

}  // namespace

class SqliteStorage::ReadLease {
public:
    ReadLease(SqliteStorage& owner, Connection* connection) : owner_(owner), conn_(connection) {}
    ~ReadLease() { owner_.release_reader(conn_); }
    ReadLease(const ReadLease&) = delete;
    ReadLease& operator=(const ReadLease&) = delete;
    Connection& operator*() const { return *conn_; }

private:
    SqliteStorage& owner_;
    Connection* conn_;
};

SqliteStorage::SqliteStorage(sdk::HostContext& host, const sdk::Options& options) : host_(host) {
    path_ = options.get_string("path");
    if (path_.empty()) {
        path_ = host.data_dir() + "/synergos.db";
    }
    // Range-checked before it becomes an int: 4294967297 ms was truncated to 1 ms.
    const std::int64_t busy_timeout = options.get_int("busy_timeout_ms", 5000);
    busy_timeout_ms_ = busy_timeout >= 0 && busy_timeout <= kMaxBusyTimeoutMs ? static_cast<int>(busy_timeout) : -1;
    synchronous_ = upper(options.get_string("synchronous", "FULL"));
    read_connections_ = static_cast<int>(options.get_int("read_connections", 4));
    commit_timeout_ = std::chrono::milliseconds(options.get_int("commit_timeout_ms", 30000));
    wal_preallocate_mb_ = options.get_int("wal_preallocate_mb", 64);
    checkpoint_frames_ = options.get_int("checkpoint_frames", 250);
    if (synchronous_ != "OFF" && synchronous_ != "NORMAL" && synchronous_ != "FULL" &&
        synchronous_ != "EXTRA") {
        option_error_ = sdk::Error{ErrorCode::InvalidArgument,
                                   "storage 'sqlite': option 'synchronous' must be OFF, NORMAL, "
                                   "FULL or EXTRA, not '" +
                                       synchronous_ + "'"};
    } else if (read_connections_ < 1 || read_connections_ > 64) {
        option_error_ = sdk::Error{ErrorCode::InvalidArgument,
                                   "storage 'sqlite': option 'read_connections' must be 1-64"};
    } else if (wal_preallocate_mb_ < 0 || wal_preallocate_mb_ > 1024) {
        option_error_ = sdk::Error{ErrorCode::InvalidArgument,
                                   "storage 'sqlite': option 'wal_preallocate_mb' must be 0-1024"};
    } else if (checkpoint_frames_ < 16 || checkpoint_frames_ > 8192) {
        option_error_ = sdk::Error{ErrorCode::InvalidArgument,
                                   "storage 'sqlite': option 'checkpoint_frames' must be 16-8192"};
    } else if (busy_timeout_ms_ < 0) {
        option_error_ = sdk::Error{ErrorCode::InvalidArgument,
                                   "storage 'sqlite': option 'busy_timeout_ms' must be 0-" +
                                       std::to_string(kMaxBusyTimeoutMs) + " (1 hour)"};
    } else if (commit_timeout_.count() <= 0) {
        option_error_ = sdk::Error{ErrorCode::InvalidArgument,
                                   "storage 'sqlite': option 'commit_timeout_ms' must be positive"};
    }
}

SqliteStorage::~SqliteStorage() { stop(); }

sdk::Status SqliteStorage::start() noexcept {
    try {
        if (option_error_) {
            return *option_error_;
        }
        std::lock_guard<std::mutex> lock(write_mutex_);
        if (started_) {
            return {};
        }
        if (leader_active_) {
            // stop() gave up waiting for this commit: it still uses writer_, which we would reopen.
            return sdk::Status(ErrorCode::Unavailable,
                               "storage 'sqlite': a commit from before stop() is still running; "
                               "start again once it has ended");
        }
        const std::filesystem::path file(path_);
        std::error_code ec;
        if (file.has_parent_path()) {
            std::filesystem::create_directories(file.parent_path(), ec);
            if (ec) {
                return sdk::Status(ErrorCode::Unavailable,
                                   "storage 'sqlite': cannot create folder '" +
                                       file.parent_path().string() + "': " + ec.message());
            }
        }
        if (auto st = writer_.open(path_, true, busy_timeout_ms_); !st) {
            return st;
        }
        // A file from a newer version is refused before anything (even its journal mode) is
        // changed.
        if (auto st = refuse_newer_schema(); !st) {
            writer_.close();
            return st;
        }
        {
            // Scoped: the statement must be reset before the migrations' transactions.
            auto mode = writer_.prepare("PRAGMA journal_mode=WAL");
            if (!mode) {
                return mode.error();
            }
            auto row = mode->step();
            if (!row || !*row || upper(mode->column_text(0)) != "WAL") {
                return sdk::Status(ErrorCode::Unavailable,
                                   "storage 'sqlite': cannot switch '" + path_ + "' to WAL mode");
            }
        }
        if (auto st = writer_.exec("PRAGMA synchronous=" + synchronous_); !st) {
            return st;
        }
        if (auto st = migrate(); !st) {
            writer_.close();
            return st;
        }
        (void)writer_.exec(kCachePragmas);
        // ~4 MB passive, ~64 MB forces the WAL to start over (4 KiB pages).
        // A connection knows the file is in WAL mode (and can checkpoint it) once it has read it.
        if (auto st = checkpointer_conn_.open(path_, false, busy_timeout_ms_); !st) {
            writer_.close();
            return st;
        }
        if (auto read = checkpointer_conn_.pragma_int("schema_version"); !read) {
            checkpointer_conn_.close();
            writer_.close();
            return read.error();
        }
        (void)writer_.exec("PRAGMA journal_size_limit=" +
                           std::to_string(std::max<std::int64_t>(wal_preallocate_mb_, 64) << 20));
        if (auto st = preallocate_wal(); !st) {
            // Only slower commits follow: go on, and say why.
            host_.logger().warn("storage sqlite: WAL not preallocated",
                                Json{{"path", path_}, {"error", st.message()}}.dump());
        }
        checkpointer_stop_ = false;
        checkpointer_ = std::thread([this] { run_checkpointer(); });
        // A passive checkpoint copies the frames to the database file and fsyncs it; a commit's
        // WAL fdatasync issued meanwhile waits behind that flush. Frequent small checkpoints
        // keep the wait short: at 1000 frames 0.9-1.8% of REST create commits took over
        // 2.5 ms, at 250 0.4-0.5% (bench/rest/run_bench.sh, alternating runs).
        writer_.set_checkpoint_policy(static_cast<int>(checkpoint_frames_), 16384, [this] {
            {
                std::lock_guard<std::mutex> lock(checkpoint_mutex_);
                checkpoint_due_ = true;
            }
            checkpoint_cv_.notify_one();
        });
        {
            std::lock_guard<std::mutex> read_lock(read_mutex_);
            for (int i = 0; i < read_connections_; ++i) {
                auto conn = std::make_unique<Connection>();
                if (auto st = conn->open(path_, false, busy_timeout_ms_); !st) {
                    readers_.clear();
                    free_readers_.clear();
                    stop_checkpointer();
                    writer_.close();
                    return st;
                }
                (void)conn->exec("PRAGMA query_only=1");
                (void)conn->exec(kCachePragmas);
                free_readers_.push_back(conn.get());
                readers_.push_back(std::move(conn));
            }
            readers_open_ = true;
        }
        started_ = true;
        host_.logger().info("storage sqlite started", Json{{"path", path_},
                                                           {"schema_version", schema_version_},
                                                           {"synchronous", synchronous_}}
                                                          .dump());
        return {};
    } catch (const std::exception& e) {
        return sdk::Status(ErrorCode::Internal, std::string("storage 'sqlite': ") + e.what());
    }
}

// With synchronous=FULL every commit ends in an fdatasync of the WAL. While the WAL grows, that
// fdatasync must also commit the file's new size to the filesystem journal, which on ext4 waits
// behind every other process's journal commit (the broker's fsyncs among them): measured here,
// about 1 ms more per commit. Written out once (zeros: beyond the last valid frame SQLite reads
// them as the end of the log, as it does the old frames of a WAL that started over), commits
// only overwrite. Blocks are written, not fallocate'd: an unwritten extent changes metadata on
// its first write just the same. The size matches journal_size_limit, so the WAL never takes
// more room than it could anyway.
sdk::Status SqliteStorage::preallocate_wal() noexcept {
    if (wal_preallocate_mb_ == 0) {
        return {};
    }
    // Under the WAL's write lock: another process sharing the file cannot append frames (or
    // start the WAL over) between our size check and the zeros.
    if (auto st = writer_.exec("BEGIN IMMEDIATE"); !st) {
        return st;
    }
    struct Rollback {
        Connection& c;
        ~Rollback() { (void)c.exec("ROLLBACK"); }
    } rollback{writer_};
    const std::string wal = path_ + "-wal";
    const int fd = ::open(wal.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return sdk::Status(ErrorCode::Unavailable, "cannot open '" + wal + "': " + std::strerror(errno));
    }
    struct stat info {};
    sdk::Status status;
    const off_t target = static_cast<off_t>(wal_preallocate_mb_) << 20;
    if (::fstat(fd, &info) == 0 && info.st_size < target) {
        const std::vector<char> zeros(1 << 20, 0);
        off_t at = info.st_size;
        while (at < target && status) {
            const auto n = static_cast<std::size_t>(std::min<off_t>(target - at, 1 << 20));
            const ssize_t written = ::pwrite(fd, zeros.data(), n, at);
            if (written <= 0) {
                status = sdk::Status(ErrorCode::Unavailable,
                                     "writing '" + wal + "': " + std::strerror(errno));
            } else {
                at += written;
            }
        }
        if (status && ::fdatasync(fd) != 0) {
            status = sdk::Status(ErrorCode::Unavailable, "syncing '" + wal + "': " + std::strerror(errno));
        }
    }
    ::close(fd);
    return status;
}

sdk::Status SqliteStorage::refuse_newer_schema() noexcept {
    auto version = writer_.pragma_int("user_version");
    if (!version) {
        return version.error();
    }
    if (*version > kSchemaVersion) {
        return sdk::Status(ErrorCode::FailedPrecondition,
                           "storage 'sqlite': '" + path_ + "' has schema version " +
                               std::to_string(*version) + ", newer than this plugin's " +
                               std::to_string(kSchemaVersion) + "; upgrade synergos");
    }
    return {};
}

sdk::Status SqliteStorage::migrate() noexcept {
    // start() has refused a newer schema already, on this connection.
    auto version = writer_.pragma_int("user_version");
    if (!version) {
        return version.error();
    }
    for (auto v = *version; v < kSchemaVersion; ++v) {
        if (auto st = writer_.exec("BEGIN IMMEDIATE"); !st) {
            return st;
        }
        auto st = writer_.exec(kMigrations[v]);
        if (st) {
            st = writer_.exec("PRAGMA user_version=" + std::to_string(v + 1));
        }
        if (st) {
            st = writer_.exec("COMMIT");
        }
        if (!st) {
            (void)writer_.exec("ROLLBACK");
            return sdk::Status(st.code(), "storage 'sqlite': migration to schema version " +
                                              std::to_string(v + 1) + " failed: " + st.message());
        }
        host_.logger().info("storage sqlite migrated",
                            Json{{"path", path_}, {"schema_version", v + 1}}.dump());
    }
    schema_version_ = kSchemaVersion;
    return {};
}

int SqliteStorage::schema_version() const noexcept { return schema_version_; }

void SqliteStorage::run_checkpointer() noexcept {
    pthread_setname_np(pthread_self(), "sqlite-ckpt");  // for top/perf
    std::unique_lock<std::mutex> lock(checkpoint_mutex_);
    for (;;) {
        // Idle wait for work; the timeout only re-checks the flags.
        checkpoint_cv_.wait_for(lock, std::chrono::seconds(1),
                                [&] { return checkpoint_due_ || checkpointer_stop_; });
        if (checkpointer_stop_) {
            return;
        }
        if (!checkpoint_due_) {
            continue;
        }
        checkpoint_due_ = false;
        lock.unlock();
        passive_running_.store(true);
        checkpointer_conn_.checkpoint_passive();
        passive_running_.store(false);
        lock.lock();
    }
}

void SqliteStorage::stop_checkpointer() noexcept {
    {
        std::lock_guard<std::mutex> lock(checkpoint_mutex_);
        checkpointer_stop_ = true;
    }
    checkpoint_cv_.notify_all();
    if (checkpointer_.joinable()) {
        checkpointer_.join();
    }
    checkpointer_conn_.close();
}

sdk::Result<Connection*> SqliteStorage::acquire_reader() noexcept {
    std::unique_lock<std::mutex> lock(read_mutex_);
    const bool ready = read_cv_.wait_for(lock, std::chrono::milliseconds(busy_timeout_ms_ + 1000),
                                         [&] { return !readers_open_ || !free_readers_.empty(); });
    if (!readers_open_) {
        return not_started();
    }
    if (!ready) {
        return sdk::Error{ErrorCode::Timeout, "storage 'sqlite': no read connection free in time"};
    }
    Connection* conn = free_readers_.back();
    free_readers_.pop_back();
    lock.unlock();
    // Reuse the open snapshot when nothing was committed since it began (see the header).
    const auto generation = write_generation_.load();
    const auto now = std::chrono::steady_clock::now();
    if (conn->in_read_txn &&
        (conn->snapshot_generation != generation || now - conn->snapshot_began > kSnapshotMaxAge)) {
        (void)conn->exec_cached("COMMIT");
        conn->in_read_txn = false;
    }
    if (!conn->in_read_txn && conn->exec_cached("BEGIN")) {
        conn->in_read_txn = true;
        conn->snapshot_generation = generation;
        conn->snapshot_began = now;
    }
    return conn;
}

void SqliteStorage::refresh_idle_readers() noexcept {
    // Take the idle readers out of the pool while ending their snapshots, so reads on other
    // threads never wait for these COMMITs behind the pool's lock.
    std::vector<Connection*> stale;
    {
        std::lock_guard<std::mutex> lock(read_mutex_);
        for (auto it = free_readers_.begin(); it != free_readers_.end();) {
            if ((*it)->in_read_txn) {
                stale.push_back(*it);
                it = free_readers_.erase(it);
            } else {
                ++it;
            }
        }
    }
    if (stale.empty()) {
        return;
    }
    for (Connection* conn : stale) {
        (void)conn->exec_cached("COMMIT");
        conn->in_read_txn = false;
    }
    return_readers(stale.data(), stale.size());
}

void SqliteStorage::release_reader(Connection* connection) noexcept {
    if (connection->in_read_txn && (connection->snapshot_generation != write_generation_.load() ||
                                    restart_pending_.load())) {
        (void)connection->exec_cached("COMMIT");  // stale: do not pin old WAL frames while idle
        connection->in_read_txn = false;
    }
    return_readers(&connection, 1);  // no allocation: this runs after every read
}

void SqliteStorage::return_readers(Connection* const* connections, std::size_t count) noexcept {
    std::vector<std::unique_ptr<Connection>> closing;
    bool stopping = false;
    {
        std::lock_guard<std::mutex> lock(read_mutex_);
        for (std::size_t i = 0; i < count; ++i) {
            Connection* conn = connections[i];
            auto retired = std::find_if(retired_readers_.begin(), retired_readers_.end(),
                                        [&](const auto& r) { return r.get() == conn; });
            if (retired != retired_readers_.end()) {
                // stop() left it open because we were using it: ours to close now.
                closing.push_back(std::move(*retired));
                retired_readers_.erase(retired);
            } else {
                free_readers_.push_back(conn);
            }
        }
        stopping = !readers_open_;
    }
    // While stopping, stop() waits on the same condition as readers: wake it too.
    if (stopping || count > 1) {
        read_cv_.notify_all();
    } else {
        read_cv_.notify_one();
    }
    closing.clear();  // closes outside the pool's lock
}

bool SqliteStorage::fresh(const CacheStamp& stamp) const noexcept {
    return stamp.generation == write_generation_.load() &&
           std::chrono::steady_clock::now() - stamp.began <= kSnapshotMaxAge;
}

sdk::Result<sdk::Record> SqliteStorage::get(const std::string& kind, const sdk::Key& key) noexcept {
    try {
        auto encoded = encode_key(kind, key, false);
        if (!encoded) {
            return encoded.error();
        }
        std::string cache_key = kind;
        cache_key.push_back('\0');
        cache_key += encoded->id;
        {
            std::lock_guard<std::mutex> lock(cache_mutex_);
            if (auto it = get_cache_.find(cache_key);
                it != get_cache_.end() && fresh(it->second.stamp)) {
                if (!it->second.record) {
                    return sdk::Error{ErrorCode::NotFound, "no record " + describe(kind, key)};
                }
                return *it->second.record;
            }
        }
        auto conn = acquire_reader();
        if (!conn) {
            return conn.error();
        }
        std::optional<sdk::Record> record;
        CacheStamp stamp;
        bool cacheable = false;
        {
            ReadLease lease(*this, *conn);
            auto found = find(*lease, kind, encoded->id, KnownKey{&key, &encoded->ordered});
            if (!found) {
                return found.error();
            }
            record = std::move(*found);
            // Only a read inside a tracked snapshot has a known age and generation.
            cacheable = (*lease).in_read_txn;
            stamp = {(*lease).snapshot_generation, (*lease).snapshot_began};
        }
        if (cacheable) {
            std::lock_guard<std::mutex> lock(cache_mutex_);
            if (get_cache_.size() >= kReadCacheEntries) {
                get_cache_.clear();
            }
            get_cache_.insert_or_assign(std::move(cache_key), CachedGet{stamp, record});
        }
        if (!record) {
            return sdk::Error{ErrorCode::NotFound, "no record " + describe(kind, key)};
        }
        return std::move(*record);
    } catch (const std::exception& e) {
        return sdk::Error{ErrorCode::Internal, std::string("storage 'sqlite': ") + e.what()};
    }
}

sdk::Result<std::vector<sdk::Record>> SqliteStorage::list(const sdk::Query& query) noexcept {
    try {
        if (auto st = check_key(query.kind, query.match, true); !st) {
            return st.error();
        }
        // Names and values are length-prefixed: they may hold any character, NUL included, so a
        // separator alone would let two different queries share an entry.
        std::string cache_key = query.kind;
        for (const auto& field : query.match) {
            cache_key.push_back('\0');
            cache_key += std::to_string(field.name.size());
            cache_key.push_back(':');
            cache_key += field.name;
            cache_key += std::to_string(field.value.size());
            cache_key.push_back(':');
            cache_key += field.value;
        }
        cache_key.push_back('\1');
        cache_key += std::to_string(query.limit);
        cache_key.push_back(',');
        cache_key += std::to_string(query.offset);
        {
            std::lock_guard<std::mutex> lock(cache_mutex_);
            if (auto it = list_cache_.find(cache_key);
                it != list_cache_.end() && fresh(it->second.stamp)) {
                return it->second.records;
            }
        }
        auto conn = acquire_reader();
        if (!conn) {
            return conn.error();
        }
        std::vector<sdk::Record> out;
        CacheStamp stamp;
        bool cacheable = false;
        {
            ReadLease lease(*this, *conn);
            auto stmt = (*lease).prepare(sql_for_fields<build_list_sql>(query.match.size()));
            if (!stmt) {
                return stmt.error();
            }
            stmt->bind(1, query.kind);
            int index = 2;
            // Last field first: the join starts from the first field bound, and a key's last
            // field is its most specific (a run id, not the collaboration every record shares).
            for (auto field = query.match.rbegin(); field != query.match.rend(); ++field) {
                stmt->bind(index++, field->name);
                stmt->bind(index++, field->value);
            }
            // Past INT64_MAX a cast turned them negative, which SQLite reads as none: an offset
            // that large returned the first page instead of nothing.
            constexpr auto kMax = static_cast<std::uint64_t>(INT64_MAX);
            if (query.offset > kMax) {
                return std::vector<sdk::Record>{};
            }
            stmt->bind(index++, query.limit == 0 || query.limit > kMax
                                    ? std::int64_t{-1}
                                    : static_cast<std::int64_t>(query.limit));
            stmt->bind(index, static_cast<std::int64_t>(query.offset));
            for (;;) {
                auto row = stmt->step();
                if (!row) {
                    return row.error();
                }
                if (!*row) {
                    break;
                }
                out.push_back(read_row(*stmt, query.kind));
            }
            cacheable = (*lease).in_read_txn;
            stamp = {(*lease).snapshot_generation, (*lease).snapshot_began};
        }
        // Large listings are not worth keeping (and would make the cache costly to copy).
        if (cacheable && out.size() <= 64) {
            std::lock_guard<std::mutex> lock(cache_mutex_);
            if (list_cache_.size() >= kReadCacheEntries) {
                list_cache_.clear();
            }
            list_cache_.insert_or_assign(std::move(cache_key), CachedList{stamp, out});
        }
        return out;
    } catch (const std::exception& e) {
        return sdk::Error{ErrorCode::Internal, std::string("storage 'sqlite': ") + e.what()};
    }
}

sdk::Result<std::vector<sdk::Record>> SqliteStorage::apply(
    const std::vector<sdk::Mutation>& batch) noexcept {
    try {
        // Reject malformed mutations before they join a group; encode each key once, here,
        // rather than on the single writer thread.
        auto pending = std::make_shared<Pending>();
        pending->batch = &batch;
        pending->key_ids.reserve(batch.size());
        pending->key_ordered.reserve(batch.size());
        for (const auto& m : batch) {
            if (m.mode < sdk::WriteMode::Insert || m.mode > sdk::WriteMode::Require) {
                return sdk::Error{ErrorCode::InvalidArgument,
                                  "storage 'sqlite': unknown write mode " +
                                      std::to_string(static_cast<int>(m.mode))};
            }
            auto encoded = encode_key(m.kind, m.key, m.mode == sdk::WriteMode::DeleteWhere);
            if (!encoded) {
                return encoded.error();
            }
            if (m.mode == sdk::WriteMode::Insert || m.mode == sdk::WriteMode::Upsert ||
                m.mode == sdk::WriteMode::Update) {
                if (auto st = check_document(m); !st) {
                    return st.error();
                }
            }
            pending->key_ids.push_back(std::move(encoded->id));
            pending->key_ordered.push_back(std::move(encoded->ordered));
        }
        const auto deadline = std::chrono::steady_clock::now() + commit_timeout_;
        std::unique_lock<std::mutex> lock(write_mutex_);
        if (!started_) {
            return not_started();
        }
        write_queue_.push_back(pending);
        if (on_queued_for_test_) {
            on_queued_for_test_(write_queue_.size());
        }
        while (!pending->result) {
            if (!leader_active_) {
                if (!started_) {
                    // stop() answers every queued batch, so this is not expected; never commit
                    // on the connection stop() closed.
                    auto it = std::find(write_queue_.begin(), write_queue_.end(), pending);
                    if (it != write_queue_.end()) {
                        write_queue_.erase(it);
                    }
                    return not_started();
                }
                // Become the leader: commit everything queued so far in one transaction.
                leader_active_ = true;
                std::vector<std::shared_ptr<Pending>> group(write_queue_.begin(),
                                                            write_queue_.end());
                write_queue_.clear();
                lock.unlock();
                auto results = commit_group(group);
                // Readers must start a new snapshot before anyone learns of this commit.
                write_generation_.fetch_add(1);
                refresh_idle_readers();
                // Not while a PASSIVE checkpoint runs: the RESTART would wait for it to copy
                // and sync everything; a later commit tries again.
                if (writer_.restart_due() && !passive_running_.load()) {
                    // A RESTART waits for every reader to leave the WAL, and a reader released
                    // while nothing is committed keeps its snapshot (and its place in the WAL):
                    // readers leased in the meantime would hold it for its whole wait (20 ms
                    // stalls of every write, once per commit past the threshold, under a steady
                    // stream of reads). While it runs, a released reader ends its snapshot.
                    restart_pending_.store(true);
                    writer_.restart_if_large(20, busy_timeout_ms_);
                    restart_pending_.store(false);
                }
                lock.lock();
                // Publish outcomes only now, under the lock: a follower must never see its
                // result before the transaction that holds it is committed.
                for (std::size_t i = 0; i < group.size(); ++i) {
                    group[i]->result.emplace(std::move(results[i]));
                }
                leader_active_ = false;
                if (!started_) {
                    // stop() stopped waiting for this commit and left the connection to us.
                    writer_.close();
                }
                write_cv_.notify_all();
                continue;
            }
            if (write_cv_.wait_until(lock, deadline, [&] {
                    return pending->result.has_value() || !leader_active_;
                })) {
                continue;  // answered, or the leader's place is free
            }
            // Still queued: withdraw it so it never commits after we report the timeout.
            auto it = std::find(write_queue_.begin(), write_queue_.end(), pending);
            if (it != write_queue_.end()) {
                write_queue_.erase(it);
                return sdk::Error{ErrorCode::Timeout,
                                  "storage 'sqlite': the write was not started within " +
                                      std::to_string(commit_timeout_.count()) + " ms"};
            }
            // Being committed by the leader right now: its outcome is coming, and reporting a
            // timeout could hide a commit. Past the deadline a wait_until returns at once (a busy
            // loop): wait for the outcome itself, in bounded steps that say why we are waiting.
            while (!write_cv_.wait_for(lock, commit_timeout_,
                                       [&] { return pending->result.has_value(); })) {
                host_.logger().warn(
                    "storage sqlite: a write is still waiting for its group commit",
                    Json{{"path", path_}, {"waited_past_deadline_ms", commit_timeout_.count()}}
                        .dump());
            }
        }
        return std::move(*pending->result);
    } catch (const std::exception& e) {
        return sdk::Error{ErrorCode::Internal, std::string("storage 'sqlite': ") + e.what()};
    }
}

std::vector<sdk::Result<std::vector<sdk::Record>>> SqliteStorage::commit_group(
    const std::vector<std::shared_ptr<Pending>>& group) noexcept {
    std::vector<sdk::Result<std::vector<sdk::Record>>> results;
    results.reserve(group.size());
    if (auto st = writer_.exec_cached("BEGIN IMMEDIATE"); !st) {
        for (std::size_t i = 0; i < group.size(); ++i) {
            results.emplace_back(st.error());
        }
        return results;
    }
    txn_doc_ids_.clear();
    bool any_ok = false;
    for (const auto& p : group) {
        if (auto st = writer_.exec_cached("SAVEPOINT batch"); !st) {
            results.emplace_back(st.error());  // no way to roll back only this batch
            continue;
        }
        auto result = apply_batch(*p);
        if (result) {
            (void)writer_.exec_cached("RELEASE batch");
            any_ok = true;
        } else {
            (void)writer_.exec("ROLLBACK TO batch");
            (void)writer_.exec("RELEASE batch");
        }
        results.push_back(std::move(result));
        if (!writer_.in_transaction()) {
            // SQLite ended the whole transaction (some errors do, e.g. I/O, full disk, a
            // trigger's RAISE(ROLLBACK)): what was applied is gone, and the batches left would
            // otherwise run one statement at a time in autocommit mode.
            const sdk::Error gone{ErrorCode::Unavailable,
                                  "storage 'sqlite': the transaction was rolled back by an error "
                                  "in a batch committed with this one; nothing was written"};
            for (auto& r : results) {
                if (r.has_value()) {
                    r = gone;
                }
            }
            while (results.size() < group.size()) {
                results.emplace_back(gone);
            }
            return results;
        }
    }
    if (!any_ok) {
        (void)writer_.exec("ROLLBACK");
        return results;
    }
    // The last doc_id handed out per kind (numbers of rolled-back batches stay unused).
    sdk::Status st;
    for (const auto& [kind, last] : txn_doc_ids_) {
        auto seq = writer_.prepare(
            "INSERT INTO sequences (kind, last_doc_id) VALUES (?1, ?2) ON CONFLICT (kind) "
            "DO UPDATE SET last_doc_id = max(last_doc_id, excluded.last_doc_id)");
        if (!seq) {
            st = seq.error();
            break;
        }
        seq->bind(1, kind);
        seq->bind(2, last);
        if (st = seq->run(); !st) {
            break;
        }
    }
    if (st) {
        st = writer_.exec_cached("COMMIT");
    }
    if (!st) {
        (void)writer_.exec("ROLLBACK");
        for (auto& r : results) {
            if (r.has_value()) {
                r = sdk::Error{st.code(), "storage 'sqlite': commit failed: " + st.message()};
            }
        }
    }
    return results;
}

sdk::Result<std::vector<sdk::Record>> SqliteStorage::apply_batch(const Pending& pending) noexcept {
    try {
        const std::vector<sdk::Mutation>& batch = *pending.batch;
        std::vector<sdk::Record> out;
        const std::int64_t now = now_ms();
        for (std::size_t i = 0; i < batch.size(); ++i) {
            const sdk::Mutation& m = batch[i];
            const auto where = [i] { return " (mutation " + std::to_string(i) + ")"; };
            const std::string& key_id = pending.key_ids[i];
            const std::string& key_ordered = pending.key_ordered[i];
            if (m.mode == sdk::WriteMode::DeleteWhere) {
                if (!m.key.empty()) {
                    // Usually nothing matches (a create clearing what a deleted predecessor
                    // left): one probe of the most specific field says so without the join.
                    auto probe = writer_.prepare(
                        "SELECT 1 FROM record_keys WHERE kind = ?1 AND name = ?2 AND value = ?3 "
                        "LIMIT 1");
                    if (!probe) {
                        return probe.error();
                    }
                    probe->bind(1, m.kind);
                    probe->bind(2, m.key.back().name);
                    probe->bind(3, m.key.back().value);
                    auto row = probe->step();
                    if (!row) {
                        return row.error();
                    }
                    if (!*row) {
                        continue;
                    }
                }
                auto select = writer_.prepare(sql_for_fields<build_delete_where_sql>(m.key.size()));
                if (!select) {
                    return select.error();
                }
                select->bind(1, m.kind);
                int index = 2;
                for (auto field = m.key.rbegin(); field != m.key.rend(); ++field) {  // see list
                    select->bind(index++, field->name);
                    select->bind(index++, field->value);
                }
                std::vector<std::pair<std::string, std::int64_t>> doomed;
                for (;;) {
                    auto row = select->step();
                    if (!row) {
                        return row.error();
                    }
                    if (!*row) {
                        break;
                    }
                    doomed.emplace_back(select->column_text(0), select->column_int(1));
                }
                for (const auto& [key_id, doc_id] : doomed) {
                    if (auto st = delete_by_id(writer_, m.kind, key_id, doc_id); !st) {
                        return st.error();
                    }
                }
                continue;
            }
            // An insert needs no lookup: the primary key refuses a duplicate (below).
            sdk::Result<std::optional<sdk::Record>> existing = std::optional<sdk::Record>();
            if (m.mode != sdk::WriteMode::Insert) {
                existing = find(writer_, m.kind, key_id, KnownKey{&m.key, &key_ordered});
            }
            if (!existing) {
                return existing.error();
            }
            switch (m.mode) {
                case sdk::WriteMode::Insert:
                case sdk::WriteMode::Upsert:
                case sdk::WriteMode::Update: {
                    if (existing->has_value()) {
                        if (m.mode == sdk::WriteMode::Insert) {
                            return sdk::Error{ErrorCode::AlreadyExists,
                                              describe(m.kind, m.key) + " already exists" + where()};
                        }
                        auto stmt = writer_.prepare(
                            "UPDATE records SET document = ?3, version = version + 1, "
                            "updated_at_ms = ?4 WHERE kind = ?1 AND key_id = ?2");
                        if (!stmt) {
                            return stmt.error();
                        }
                        stmt->bind(1, m.kind);
                        stmt->bind(2, key_id);
                        stmt->bind(3, m.document);
                        stmt->bind(4, now);
                        if (auto st = stmt->run(); !st) {
                            return st.error();
                        }
                        sdk::Record record = std::move(**existing);
                        record.document = m.document;
                        record.version += 1;
                        record.updated_at_ms = now;
                        out.push_back(std::move(record));
                        break;
                    }
                    if (m.mode == sdk::WriteMode::Update) {
                        return sdk::Error{ErrorCode::NotFound,
                                          "no record " + describe(m.kind, m.key) + where()};
                    }
                    // doc_ids come from a per-transaction counter, read once per kind and
                    // written back once before COMMIT (see commit_group).
                    auto next = txn_doc_ids_.find(m.kind);
                    if (next == txn_doc_ids_.end()) {
                        auto seq =
                            writer_.prepare("SELECT last_doc_id FROM sequences WHERE kind = ?1");
                        if (!seq) {
                            return seq.error();
                        }
                        seq->bind(1, m.kind);
                        auto row = seq->step();
                        if (!row) {
                            return row.error();
                        }
                        next = txn_doc_ids_.emplace(m.kind, *row ? seq->column_int(0) : 0).first;
                    }
                    const std::int64_t doc_id = ++next->second;
                    auto insert = writer_.prepare(
                        "INSERT INTO records (kind, key_id, key_json, doc_id, document, version, "
                        "created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6)");
                    if (!insert) {
                        return insert.error();
                    }
                    insert->bind(1, m.kind);
                    insert->bind(2, key_id);
                    insert->bind(3, key_ordered);
                    insert->bind(4, doc_id);
                    insert->bind(5, m.document);
                    insert->bind(6, now);
                    if (auto st = insert->run(); !st) {
                        if (st.code() == ErrorCode::AlreadyExists) {
                            return sdk::Error{ErrorCode::AlreadyExists, describe(m.kind, m.key) +
                                                                            " already exists" +
                                                                            where()};
                        }
                        return st.error();
                    }
                    for (const auto& field : m.key) {
                        auto key_row = writer_.prepare(
                            "INSERT INTO record_keys (kind, name, value, doc_id) "
                            "VALUES (?1, ?2, ?3, ?4)");
                        if (!key_row) {
                            return key_row.error();
                        }
                        key_row->bind(1, m.kind);
                        key_row->bind(2, field.name);
                        key_row->bind(3, field.value);
                        key_row->bind(4, doc_id);
                        if (auto st = key_row->run(); !st) {
                            return st.error();
                        }
                    }
                    out.push_back(sdk::Record{m.kind, m.key, m.document, doc_id, 1, now, now});
                    break;
                }
                case sdk::WriteMode::Delete: {
                    if (!existing->has_value()) {
                        return sdk::Error{ErrorCode::NotFound,
                                          "no record " + describe(m.kind, m.key) + where()};
                    }
                    if (auto st = delete_by_id(writer_, m.kind, key_id, (*existing)->doc_id);
                        !st) {
                        return st.error();
                    }
                    out.push_back(std::move(**existing));
                    break;
                }
                case sdk::WriteMode::Require: {
                    // Inside the write transaction: the record exists at this commit.
                    if (!existing->has_value()) {
                        return sdk::Error{ErrorCode::NotFound,
                                          "no record " + describe(m.kind, m.key) + where()};
                    }
                    out.push_back(std::move(**existing));
                    break;
                }
                case sdk::WriteMode::DeleteWhere:
                    break;
            }
        }
        return out;
    } catch (const std::exception& e) {
        return sdk::Error{ErrorCode::Internal, std::string("storage 'sqlite': ") + e.what()};
    }
}

void SqliteStorage::stop() noexcept {
    {
        std::unique_lock<std::mutex> lock(write_mutex_);
        if (!started_) {
            return;
        }
        started_ = false;
        // Let an in-flight group commit finish; queued followers are served by it or fail.
        const bool idle =
            write_cv_.wait_for(lock, commit_timeout_, [&] { return !leader_active_; });
        for (auto& p : write_queue_) {
            p->result.emplace(not_started());
        }
        write_queue_.clear();
        write_cv_.notify_all();
        stop_checkpointer();
        if (idle) {
            writer_.close();
        } else {
            // Closing it now would free it under the commit: the leader closes it when done
            // (it sees started_ false), and start() refuses until then.
            host_.logger().warn("storage sqlite: stop did not wait for a running commit",
                                Json{{"path", path_},
                                     {"waited_ms", commit_timeout_.count()}}
                                    .dump());
        }
    }
    std::vector<std::unique_ptr<Connection>> closing;
    std::size_t busy = 0;
    {
        std::unique_lock<std::mutex> lock(read_mutex_);
        readers_open_ = false;
        read_cv_.notify_all();
        read_cv_.wait_for(lock, std::chrono::milliseconds(busy_timeout_ms_ + 1000),
                          [&] { return free_readers_.size() == readers_.size(); });
        for (auto& conn : readers_) {
            if (std::find(free_readers_.begin(), free_readers_.end(), conn.get()) !=
                free_readers_.end()) {
                closing.push_back(std::move(conn));
            } else {
                // Still leased: its read would run on a freed connection; the lease closes it.
                retired_readers_.push_back(std::move(conn));
                ++busy;
            }
        }
        free_readers_.clear();
        readers_.clear();
    }
    closing.clear();
    if (busy > 0) {
        host_.logger().warn("storage sqlite: stop did not wait for running reads",
                            Json{{"path", path_}, {"reads", busy}}.dump());
    }
    write_generation_.fetch_add(1);  // no cached read is served after stop
    std::lock_guard<std::mutex> cache_lock(cache_mutex_);
    get_cache_.clear();
    list_cache_.clear();
}

}  // namespace synergos::plugins::sqlite
