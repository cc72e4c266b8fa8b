// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file hello_storage.hpp
/// An in-memory `StorageBackend`: the smallest complete storage plugin. Records live in the
/// process only (nothing survives a restart), which suits tests and demos, not a director.

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/storage_backend.hpp>

namespace hello {

/// Option table and descriptor, exported by src/plugin.cpp.
extern const synergos::sdk::PluginDescriptor kHelloStorageDescriptor;

/// The store. Threading: every method may be called from any thread; one mutex serialises
/// them, so each `apply` batch is atomic and batches are serialisable.
class HelloStorage final : public synergos::sdk::StorageBackend {
public:
    HelloStorage(synergos::sdk::HostContext& host, const synergos::sdk::Options& options);

    synergos::sdk::Status start() noexcept override;
    int schema_version() const noexcept override;
    synergos::sdk::Result<synergos::sdk::Record> get(
        const std::string& kind, const synergos::sdk::Key& key) noexcept override;
    synergos::sdk::Result<std::vector<synergos::sdk::Record>> list(
        const synergos::sdk::Query& query) noexcept override;
    synergos::sdk::Result<std::vector<synergos::sdk::Record>> apply(
        const std::vector<synergos::sdk::Mutation>& batch) noexcept override;
    void stop() noexcept override;

    /// The table of one kind: records by doc_id (so lists come out in doc_id order) plus an
    /// index from the encoded key to the doc_id.
    struct Table {
        std::map<std::int64_t, synergos::sdk::Record> by_id;
        std::map<std::string, std::int64_t> by_key;
        std::int64_t next_doc_id = 1;
    };

private:
    synergos::sdk::Status apply_one(const synergos::sdk::Mutation& mutation, Table& table,
                                    std::int64_t now_ms, std::vector<synergos::sdk::Record>& out,
                                    std::uint64_t& total_records) const;

    synergos::sdk::HostContext& host_;
    const std::uint64_t max_records_;
    mutable std::mutex mutex_;
    bool is_started_ = false;
    std::uint64_t total_records_ = 0;
    std::map<std::string, Table> tables_;
};

}  // namespace hello
