// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file storage_backend.hpp
/// Plugin kind `storage`: the director's metadata store. Records are JSON documents of a kind
/// (table) under an ordered composite key; writes happen in atomic batches, so a cascade delete
/// or an archival is all or nothing. General enough for SQLite, PostgreSQL or others.

#include <cstdint>
#include <string>
#include <vector>

#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::sdk {

/// One field of a composite key.
struct KeyField {
    std::string name;   ///< e.g. "collab_id"
    std::string value;  ///< ids are strings
};

/// An ordered composite key, e.g. {collab_id: c1, project_id: p1}.
using Key = std::vector<KeyField>;

/// A stored record.
struct Record {
    std::string kind;       ///< table, e.g. "Project"
    Key key;
    std::string document;   ///< a JSON object (without key, doc_id, kind, relations)
    std::int64_t doc_id = 0;   ///< stable per kind, assigned on insert
    std::int64_t version = 0;  ///< incremented on each update (optimistic concurrency)
    std::int64_t created_at_ms = 0;  ///< UTC milliseconds since the epoch
    std::int64_t updated_at_ms = 0;
};

/// Selects records of a kind whose key fields equal every given field (a subset of the key).
struct Query {
    std::string kind;
    Key match;                 ///< empty: every record of the kind
    std::uint64_t limit = 0;   ///< 0: no limit
    std::uint64_t offset = 0;
};

/// What a mutation does.
enum class WriteMode : std::uint8_t {
    Insert = 1,   ///< fails the batch with AlreadyExists when the key exists
    Upsert,       ///< insert, or replace the document of the existing record
    Update,       ///< replace the document; fails the batch with NotFound when missing
    Delete,       ///< delete by exact key; fails the batch with NotFound when missing
    DeleteWhere,  ///< delete every record of `kind` whose key matches `key` (a subset); never fails
    /// (SDK 1.2) writes nothing: fails the batch with NotFound when the key is missing, so a
    /// child is written only if its parent exists at commit; yields the record found. The host
    /// emulates it (not atomically) for storage plugins built against SDK 1.0 or 1.1.
    Require,
};

/// One write in a batch.
struct Mutation {
    WriteMode mode = WriteMode::Insert;
    std::string kind;
    Key key;
    std::string document;  ///< JSON object; unused for deletes
};

/// (SDK 1.3) True for an `apply` error the batch itself causes (a key taken or missing, a bad
/// key or document): applying the same batch again fails the same way. False for the store's
/// own state (busy, timed out, failing), which a later attempt may not meet.
inline bool batch_refused(ErrorCode code) noexcept {
    return code == ErrorCode::AlreadyExists || code == ErrorCode::NotFound ||
           code == ErrorCode::InvalidArgument || code == ErrorCode::FailedPrecondition;
}

/// The storage backend.
/// Threading: every method may be called from any thread concurrently; `apply` batches are
/// serialisable. Durability: `apply` returns only after the batch is durable (a crash after
/// return never loses it; a crash before leaves none of it).
class BOOST_SYMBOL_VISIBLE StorageBackend : public PluginObject {
public:
    /// Opens the store and runs schema migrations.
    virtual Status start() noexcept = 0;
    /// The schema version in force after migrations.
    virtual int schema_version() const noexcept = 0;
    /// Reads one record by exact key; NotFound when missing.
    virtual Result<Record> get(const std::string& kind, const Key& key) noexcept = 0;
    /// Lists records, ordered by doc_id.
    virtual Result<std::vector<Record>> list(const Query& query) noexcept = 0;
    /// Applies every mutation atomically, in order. Returns, per mutation, the record written
    /// (for Insert/Upsert/Update), the record deleted (Delete) or found (Require); DeleteWhere
    /// yields nothing.
    virtual Result<std::vector<Record>> apply(const std::vector<Mutation>& batch) noexcept = 0;
    /// Closes the store.
    virtual void stop() noexcept = 0;
};

}  // namespace synergos::sdk
