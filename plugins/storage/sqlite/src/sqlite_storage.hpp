// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file sqlite_storage.hpp
/// The `sqlite` storage plugin: records in one SQLite file (WAL, versioned schema migrated at
/// start-up). Writes use group commit: concurrent `apply` calls are folded into one transaction,
/// each batch inside its own SAVEPOINT, so a failing batch rolls back alone while the others share
/// one fsync. Reads use a small pool of read-only connections, so they never wait for a commit.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/storage_backend.hpp>

#include "sqlite_db.hpp"

namespace synergos::plugins::sqlite {

inline constexpr sdk::OptionSpec kOptions[] = {
    {"path", sdk::OptionType::Path, false, nullptr,
     "database file; default <data_dir>/synergos.db (parent folders are created)", false},
    {"busy_timeout_ms", sdk::OptionType::DurationMs, false, "5000",
     "how long a statement waits for a lock held by another process (0-3600000)", false},
    {"synchronous", sdk::OptionType::String, false, "FULL",
     "SQLite synchronous level: OFF, NORMAL, FULL or EXTRA (FULL: a commit survives power loss)",
     false},
    {"read_connections", sdk::OptionType::Int, false, "4",
     "read-only connections kept open for concurrent reads (1-64)", false},
    {"commit_timeout_ms", sdk::OptionType::DurationMs, false, "30000",
     "how long apply() waits for its group commit before reporting a timeout", false},
    {"wal_preallocate_mb", sdk::OptionType::Int, false, "64",
     "the WAL file is written out to this size at start (0-1024; 0: off) so commits overwrite "
     "instead of appending",
     false},
    {"checkpoint_frames", sdk::OptionType::Int, false, "250",
     "new WAL frames between two passive checkpoints (16-8192, below the 16384 frames that make "
     "the writer restart the WAL itself): fewer keep each database fsync "
     "short, so commits wait less behind it",
     false},
};

inline constexpr sdk::PluginDescriptor kDescriptor{
    sizeof(sdk::PluginDescriptor),
    "sqlite",
    sdk::PluginKind::Storage,
    "1.0.0",
    "metadata store in one SQLite file (WAL, migrations, group commit)",
    "Synergos Director project",
    sdk::PluginStatus::Stable,
    kOptions,
    sizeof(kOptions) / sizeof(kOptions[0]),
};

/// How long a pooled reader may reuse one snapshot when nothing was written by this process.
inline constexpr std::chrono::milliseconds kSnapshotMaxAge{50};

/// At most this many cached reads of each kind (get, list) are kept.
inline constexpr std::size_t kReadCacheEntries = 1024;

/// The longest `busy_timeout_ms` accepted (one hour; the readers' waits add a second to it).
inline constexpr std::int64_t kMaxBusyTimeoutMs = 3600 * 1000;

/// The schema version this build migrates to.
inline constexpr int kSchemaVersion = 3;

/// Storage backend on SQLite. Threading: every method may be called from any thread. stop() never
/// closes a connection a call is still using (a commit or a read it gave up waiting for closes its
/// connection when it ends); destroy the object only once every call has returned.
class SqliteStorage final : public sdk::StorageBackend {
public:
    SqliteStorage(sdk::HostContext& host, const sdk::Options& options);
    ~SqliteStorage() override;

    sdk::Status start() noexcept override;
    int schema_version() const noexcept override;
    sdk::Result<sdk::Record> get(const std::string& kind, const sdk::Key& key) noexcept override;
    sdk::Result<std::vector<sdk::Record>> list(const sdk::Query& query) noexcept override;
    sdk::Result<std::vector<sdk::Record>> apply(
        const std::vector<sdk::Mutation>& batch) noexcept override;
    void stop() noexcept override;

    /// The resolved database file.
    const std::string& path() const noexcept { return path_; }

private:
    struct Pending {
        const std::vector<sdk::Mutation>* batch = nullptr;
        // Per mutation, its key encoded once by the caller's thread: canonical id and as given.
        std::vector<std::string> key_ids;
        std::vector<std::string> key_ordered;
        std::optional<sdk::Result<std::vector<sdk::Record>>> result;
    };

    /// A read connection borrowed from the pool; returned on destruction.
    class ReadLease;

    sdk::Status migrate() noexcept;
    /// FailedPrecondition naming the file when its schema is newer than kSchemaVersion.
    sdk::Status refuse_newer_schema() noexcept;
    /// Writes the WAL file out with zeros to wal_preallocate_mb_ (see the option).
    sdk::Status preallocate_wal() noexcept;
    sdk::Result<Connection*> acquire_reader() noexcept;
    void release_reader(Connection* connection) noexcept;
    /// Puts borrowed readers back in the pool, or closes them when stop() retired them.
    void return_readers(Connection* const* connections, std::size_t count) noexcept;
    /// Ends the read transactions of idle readers (after a commit), so they never pin old
    /// WAL frames and block checkpoints. Called with no lock held.
    void refresh_idle_readers() noexcept;
    /// Runs every batch of `group` in one transaction; one outcome per batch, in order.
    std::vector<sdk::Result<std::vector<sdk::Record>>> commit_group(
        const std::vector<std::shared_ptr<Pending>>& group) noexcept;
    sdk::Result<std::vector<sdk::Record>> apply_batch(const Pending& pending) noexcept;

    sdk::HostContext& host_;
    std::string path_;
    int busy_timeout_ms_ = 5000;
    std::string synchronous_ = "FULL";
    int read_connections_ = 4;
    std::chrono::milliseconds commit_timeout_{30000};
    std::int64_t wal_preallocate_mb_ = 64;
    std::int64_t checkpoint_frames_ = 250;
    std::optional<sdk::Error> option_error_;

    int schema_version_ = 0;

    // Writer state: the queue of batches and the leader flag (leader/follower group commit).
    std::mutex write_mutex_;
    std::condition_variable write_cv_;
    std::deque<std::shared_ptr<Pending>> write_queue_;
    bool leader_active_ = false;
    std::map<std::string, std::int64_t> txn_doc_ids_;  // leader only: see commit_group
    bool started_ = false;
    Connection writer_;
    /// Tests only (SqliteStorageTestPeer in the tests): called under write_mutex_ each time a
    /// batch joins write_queue_, with the queue's new length.
    std::function<void(std::size_t)> on_queued_for_test_;
    friend struct SqliteStorageTestPeer;

    // Passive checkpoints run here, on their own connection, so a commit never waits for the
    // copy and fsync of the database file.
    void run_checkpointer() noexcept;
    void stop_checkpointer() noexcept;
    std::mutex checkpoint_mutex_;
    std::condition_variable checkpoint_cv_;
    bool checkpoint_due_ = false;
    bool checkpointer_stop_ = false;
    Connection checkpointer_conn_;
    std::thread checkpointer_;

    // Reader pool.
    std::mutex read_mutex_;
    std::condition_variable read_cv_;
    std::vector<std::unique_ptr<Connection>> readers_;
    std::vector<Connection*> free_readers_;
    // Readers still leased when stop() stopped waiting: closed by release_reader, not by stop(),
    // so no read ever runs on a freed connection.
    std::vector<std::unique_ptr<Connection>> retired_readers_;
    bool readers_open_ = false;
    // Results of recent reads, served again while they are exactly what a pooled reader's
    // snapshot would return: stamped with the generation and start of the snapshot they were
    // read from, valid while the generation is unchanged and for kSnapshotMaxAge (the same
    // rule as snapshot reuse). Bounded: cleared when it reaches kReadCacheEntries.
    struct CacheStamp {
        std::uint64_t generation = 0;
        std::chrono::steady_clock::time_point began{};
    };
    struct CachedGet {
        CacheStamp stamp;
        std::optional<sdk::Record> record;  // nullopt: NotFound
    };
    struct CachedList {
        CacheStamp stamp;
        std::vector<sdk::Record> records;
    };
    bool fresh(const CacheStamp& stamp) const noexcept;
    std::mutex cache_mutex_;
    std::unordered_map<std::string, CachedGet> get_cache_;
    std::unordered_map<std::string, CachedList> list_cache_;

    // Bumped after every local commit. A pooled reader keeps its read transaction (one snapshot,
    // no per-statement locking) while the generation is unchanged and the snapshot is younger
    // than kSnapshotMaxAge (which bounds staleness for writes by other processes).
    std::atomic<std::uint64_t> write_generation_{0};
    std::atomic<bool> restart_pending_{false};  ///< a RESTART checkpoint waits for readers
    std::atomic<bool> passive_running_{false};  ///< the checkpointer thread is checkpointing
};

}  // namespace synergos::plugins::sqlite
