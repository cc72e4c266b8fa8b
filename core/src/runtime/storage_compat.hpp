// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <vector>

#include <synergos/sdk/storage_backend.hpp>

namespace synergos::core::runtime {

/// Wraps a storage plugin built against SDK 1.0 or 1.1, which does not know `WriteMode::Require`
/// (1.2): the host checks each Require with `get` just before handing the rest of the batch to
/// the plugin, taking the batch's own earlier writes of that kind into account (an Insert
/// before it makes it present, a Delete or a matching DeleteWhere absent), and puts the records
/// found back in their places. Not atomic against other writers (an old plugin offers no way to
/// make it so); everything else passes through unchanged.
class RequireEmulation final : public sdk::StorageBackend {
public:
    explicit RequireEmulation(std::shared_ptr<sdk::StorageBackend> inner);

    sdk::Status start() noexcept override { return inner_->start(); }
    int schema_version() const noexcept override { return inner_->schema_version(); }
    sdk::Result<sdk::Record> get(const std::string& kind, const sdk::Key& key) noexcept override {
        return inner_->get(kind, key);
    }
    sdk::Result<std::vector<sdk::Record>> list(const sdk::Query& query) noexcept override {
        return inner_->list(query);
    }
    sdk::Result<std::vector<sdk::Record>> apply(
        const std::vector<sdk::Mutation>& batch) noexcept override;
    void stop() noexcept override { inner_->stop(); }

private:
    std::shared_ptr<sdk::StorageBackend> inner_;
};

/// The plugin itself when it was built against SDK 1.2 or later, else it wrapped as above.
std::shared_ptr<sdk::StorageBackend> with_require(std::shared_ptr<sdk::StorageBackend> storage,
                                                  int abi_minor);

}  // namespace synergos::core::runtime
