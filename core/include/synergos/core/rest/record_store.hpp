// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file record_store.hpp
/// The Synergos record model on top of `sdk::StorageBackend`: the key schema of each kind, which
/// kinds relate to which (scoped by the full key: a project's relations are the records whose key
/// contains both its collab_id and its project_id), cascades, and the marshalling of records into
/// the original API's output shapes (`doc_id` as a string, `kind`, `key`, `relations`, and only
/// the fields of the kind's output model, nulls and empty objects omitted). The connect routes use
/// it, and the later train/evaluate routes reuse it for Alignment, Model, Validation, Prediction.

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/status.hpp>
#include <synergos/sdk/storage_backend.hpp>

namespace synergos::core::rest {

/// What the store knows about one kind.
struct KindSpec {
    std::string name;                     ///< e.g. "Project"
    std::vector<std::string> key_fields;  ///< ordered, e.g. {"collab_id", "project_id"}
    std::vector<std::string> relations;   ///< kinds listed under `relations` when read
    std::vector<std::string> cascade;     ///< kinds deleted with a record (matched by its key)
    bool has_relations_field = true;      ///< false: no `relations` key in the output (Tag...)
};

/// Path parameters or any name -> value map.
using Params = std::map<std::string, std::string>;

/// Records of related kinds, by kind.
using Relations = std::map<std::string, std::vector<sdk::Record>>;

/// Threading: stateless apart from the backend reference; safe from any thread.
class RecordStore {
public:
    explicit RecordStore(sdk::StorageBackend& backend) : backend_(backend) {}

    /// The spec of a built-in kind (Collaboration, Project, Experiment, Run, Participant,
    /// Registration, Tag, Alignment, Model, Validation, Prediction, MLFlow, Job), or nullptr.
    static const KindSpec* spec(std::string_view kind) noexcept;

    /// The key of `kind` built from `params` (every key field must be present).
    static sdk::Result<sdk::Key> make_key(std::string_view kind, const Params& params);
    /// The key fields of `kind` that `params` has (for listing by a partial key).
    static sdk::Key partial_key(std::string_view kind, const Params& params);
    /// A key as a JSON object {field: value}.
    static nlohmann::json key_json(const sdk::Key& key);

    sdk::Result<sdk::Record> get(std::string_view kind, const sdk::Key& key);
    sdk::Result<std::vector<sdk::Record>> list(std::string_view kind, const sdk::Key& match);
    /// True when the record exists; an error only when the store fails.
    sdk::Result<bool> exists(std::string_view kind, const sdk::Key& key);

    /// The related records of `record` (its spec's `relations`), each scoped by its full key.
    sdk::Result<Relations> relations_of(const sdk::Record& record);

    /// The record in its kind's output model, with `relations` when given.
    static nlohmann::json marshal(const sdk::Record& record, const Relations* relations);
    /// A record's relations when nothing is related to it: each related kind, empty.
    static Relations no_relations(std::string_view kind);
    /// The raw stored document plus `doc_id` (integer), `kind`, `key`, `created_at`
    /// ("YYYY-MM-DD HH:MM:SS N") and raw `relations` (the experiments-POST shape).
    static nlohmann::json raw(const sdk::Record& record, const Relations* relations);

    /// Reads a record and marshals it with its relations (the GET shape of the original).
    sdk::Result<nlohmann::json> read(std::string_view kind, const sdk::Key& key);
    /// Marshals a record already in hand with its relations (e.g. one `apply` returned).
    sdk::Result<nlohmann::json> read(const sdk::Record& record);
    /// Lists and marshals records with their relations.
    sdk::Result<nlohmann::json> read_list(std::string_view kind, const sdk::Key& match);

    /// The batch that deletes a record and, first, every record of its cascade kinds whose key
    /// contains the record's full key. Apply it as one batch: all or nothing.
    static std::vector<sdk::Mutation> cascade_delete(std::string_view kind, const sdk::Key& key);

    sdk::StorageBackend& backend() noexcept { return backend_; }

private:
    sdk::StorageBackend& backend_;
};

/// "YYYY-MM-DD HH:MM:SS N" (UTC, seconds) as the original serialised datetimes.
std::string format_created_at(std::int64_t epoch_ms);

}  // namespace synergos::core::rest
