// SPDX-License-Identifier: Apache-2.0
#include "hello_storage.hpp"

#include <chrono>
#include <exception>
#include <stdexcept>
#include <utility>

namespace hello {
namespace sdk = synergos::sdk;

namespace {

const sdk::OptionSpec kOptions[] = {
    {"max_records", sdk::OptionType::Int, false, "100000",
     "records kept in memory over all kinds; writes beyond it fail with resource_exhausted", false},
};

/// An unambiguous text form of a key ("name=value" pairs with lengths), used as the index key.
std::string encode_key(const sdk::Key& key) {
    std::string out;
    for (const auto& field : key) {
        out += std::to_string(field.name.size()) + ":" + field.name + "=" +
               std::to_string(field.value.size()) + ":" + field.value + ";";
    }
    return out;
}

/// "Project{collab_id=c1, project_id=p1}" for error messages.
std::string describe(const std::string& kind, const sdk::Key& key) {
    std::string out = kind + "{";
    for (std::size_t i = 0; i < key.size(); ++i) {
        out += (i == 0 ? "" : ", ") + key[i].name + "=" + key[i].value;
    }
    return out + "}";
}

/// True when every field of `match` appears in `key` with the same value.
bool matches(const sdk::Key& key, const sdk::Key& match) {
    for (const auto& wanted : match) {
        bool is_found = false;
        for (const auto& field : key) {
            if (field.name == wanted.name && field.value == wanted.value) {
                is_found = true;
                break;
            }
        }
        if (!is_found) {
            return false;
        }
    }
    return true;
}

/// A shape check only (this example carries no JSON parser): `{ ... }` after trimming.
bool looks_like_json_object(const std::string& document) {
    const auto first = document.find_first_not_of(" \t\r\n");
    const auto last = document.find_last_not_of(" \t\r\n");
    return first != std::string::npos && document[first] == '{' && document[last] == '}';
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::uint64_t positive_max_records(const sdk::Options& options) {
    const std::int64_t value = options.get_int("max_records", 100000);
    if (value <= 0) {
        // The export macro's factory turns this into an error for the host.
        throw std::invalid_argument("hello storage: option 'max_records' must be positive, found " +
                                    std::to_string(value));
    }
    return static_cast<std::uint64_t>(value);
}

sdk::Error not_started() {
    return sdk::Error{sdk::ErrorCode::FailedPrecondition, "hello storage: not started"};
}

}  // namespace

const sdk::PluginDescriptor kHelloStorageDescriptor{
    sizeof(sdk::PluginDescriptor),
    "hello",
    sdk::PluginKind::Storage,
    "1.0.0",
    "in-memory storage: the SDK's example plugin (records do not survive a restart)",
    "Synergos SDK example",
    sdk::PluginStatus::Alpha,
    kOptions,
    sizeof(kOptions) / sizeof(kOptions[0])};

HelloStorage::HelloStorage(sdk::HostContext& host, const sdk::Options& options)
    : host_(host), max_records_(positive_max_records(options)) {}

sdk::Status HelloStorage::start() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    is_started_ = true;
    host_.logger().info("hello storage started", "{\"schema_version\":1}");
    return sdk::Status::ok();
}

int HelloStorage::schema_version() const noexcept {
    return 1;
}

sdk::Result<sdk::Record> HelloStorage::get(const std::string& kind, const sdk::Key& key) noexcept {
    try {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!is_started_) {
            return not_started();
        }
        auto table = tables_.find(kind);
        if (table != tables_.end()) {
            auto id = table->second.by_key.find(encode_key(key));
            if (id != table->second.by_key.end()) {
                return table->second.by_id.at(id->second);
            }
        }
        return sdk::Error{sdk::ErrorCode::NotFound,
                          "hello storage: " + describe(kind, key) + " not found"};
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal, std::string("hello storage: ") + e.what()};
    }
}

sdk::Result<std::vector<sdk::Record>> HelloStorage::list(const sdk::Query& query) noexcept {
    try {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!is_started_) {
            return not_started();
        }
        std::vector<sdk::Record> out;
        auto table = tables_.find(query.kind);
        if (table == tables_.end()) {
            return out;
        }
        std::uint64_t skipped = 0;
        for (const auto& [doc_id, record] : table->second.by_id) {
            if (!matches(record.key, query.match)) {
                continue;
            }
            if (skipped < query.offset) {
                ++skipped;
                continue;
            }
            if (query.limit != 0 && out.size() >= query.limit) {
                break;
            }
            out.push_back(record);
        }
        return out;
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal, std::string("hello storage: ") + e.what()};
    }
}

sdk::Result<std::vector<sdk::Record>> HelloStorage::apply(
    const std::vector<sdk::Mutation>& batch) noexcept {
    try {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!is_started_) {
            return not_started();
        }
        // All or nothing: mutate copies of the touched tables and swap them in only when every
        // mutation succeeded.
        std::map<std::string, Table> staged;
        std::uint64_t total = total_records_;
        std::vector<sdk::Record> out;
        const std::int64_t now = now_ms();
        for (std::size_t i = 0; i < batch.size(); ++i) {
            const sdk::Mutation& mutation = batch[i];
            auto table = staged.find(mutation.kind);
            if (table == staged.end()) {
                auto current = tables_.find(mutation.kind);
                table = staged
                            .emplace(mutation.kind,
                                     current == tables_.end() ? Table{} : current->second)
                            .first;
            }
            sdk::Status status = apply_one(mutation, table->second, now, out, total);
            if (!status.is_ok()) {
                return sdk::Error{status.code(), "hello storage: mutation " + std::to_string(i) +
                                                     " of the batch: " + status.message() +
                                                     "; nothing was written"};
            }
        }
        for (auto& [kind, table] : staged) {
            tables_[kind] = std::move(table);
        }
        total_records_ = total;
        return out;
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          std::string("hello storage: ") + e.what() + "; nothing was written"};
    }
}

sdk::Status HelloStorage::apply_one(const sdk::Mutation& mutation, Table& table, std::int64_t now,
                                    std::vector<sdk::Record>& out, std::uint64_t& total) const {
    if (mutation.kind.empty()) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument, "kind is empty");
    }
    if (mutation.mode == sdk::WriteMode::DeleteWhere) {
        for (auto it = table.by_id.begin(); it != table.by_id.end();) {
            if (matches(it->second.key, mutation.key)) {
                table.by_key.erase(encode_key(it->second.key));
                it = table.by_id.erase(it);
                --total;
            } else {
                ++it;
            }
        }
        return sdk::Status::ok();
    }
    const std::string what = describe(mutation.kind, mutation.key);
    if (mutation.key.empty()) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument, what + ": key is empty");
    }
    const std::string encoded = encode_key(mutation.key);
    auto existing = table.by_key.find(encoded);
    const bool is_present = existing != table.by_key.end();

    switch (mutation.mode) {
        case sdk::WriteMode::Delete: {
            if (!is_present) {
                return sdk::Status(sdk::ErrorCode::NotFound, what + " not found");
            }
            auto record = table.by_id.find(existing->second);
            out.push_back(std::move(record->second));
            table.by_id.erase(record);
            table.by_key.erase(existing);
            --total;
            return sdk::Status::ok();
        }
        case sdk::WriteMode::Require:
            if (!is_present) {
                return sdk::Status(sdk::ErrorCode::NotFound, what + " not found");
            }
            out.push_back(table.by_id.at(existing->second));
            return sdk::Status::ok();
        case sdk::WriteMode::Insert:
            if (is_present) {
                return sdk::Status(sdk::ErrorCode::AlreadyExists, what + " already exists");
            }
            break;
        case sdk::WriteMode::Update:
            if (!is_present) {
                return sdk::Status(sdk::ErrorCode::NotFound, what + " not found");
            }
            break;
        case sdk::WriteMode::Upsert:
            break;
        default:
            return sdk::Status(
                sdk::ErrorCode::InvalidArgument,
                what + ": unknown write mode " + std::to_string(static_cast<int>(mutation.mode)));
    }
    if (!looks_like_json_object(mutation.document)) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument,
                           what + ": document is not a JSON object");
    }
    if (is_present) {
        sdk::Record& record = table.by_id.at(existing->second);
        record.document = mutation.document;
        record.version += 1;
        record.updated_at_ms = now;
        out.push_back(record);
        return sdk::Status::ok();
    }
    if (total >= max_records_) {
        return sdk::Status(
            sdk::ErrorCode::ResourceExhausted,
            what + ": store is full (max_records " + std::to_string(max_records_) + ")");
    }
    sdk::Record record;
    record.kind = mutation.kind;
    record.key = mutation.key;
    record.document = mutation.document;
    record.doc_id = table.next_doc_id++;
    record.version = 1;
    record.created_at_ms = now;
    record.updated_at_ms = now;
    table.by_key.emplace(encoded, record.doc_id);
    out.push_back(record);
    table.by_id.emplace(record.doc_id, std::move(record));
    ++total;
    return sdk::Status::ok();
}

void HelloStorage::stop() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    is_started_ = false;
}

}  // namespace hello
