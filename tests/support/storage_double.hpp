// SPDX-License-Identifier: Apache-2.0
#pragma once

// The base of storage test doubles: forwards every call to a real store, so a double overrides
// only what it changes (usually `apply`).

#include <string>
#include <vector>

#include <synergos/sdk/storage_backend.hpp>

namespace synergos::testing {

class ForwardingStorage : public sdk::StorageBackend {
public:
    explicit ForwardingStorage(sdk::StorageBackend& inner) : inner_(inner) {}
    sdk::Status start() noexcept override { return inner_.start(); }
    int schema_version() const noexcept override { return inner_.schema_version(); }
    sdk::Result<sdk::Record> get(const std::string& kind, const sdk::Key& key) noexcept override {
        return inner_.get(kind, key);
    }
    sdk::Result<std::vector<sdk::Record>> list(const sdk::Query& query) noexcept override {
        return inner_.list(query);
    }
    sdk::Result<std::vector<sdk::Record>> apply(const std::vector<sdk::Mutation>& batch) noexcept override {
        return inner_.apply(batch);
    }
    void stop() noexcept override {}  // the real store is stopped by whoever started it

protected:
    sdk::StorageBackend& inner_;
};

}  // namespace synergos::testing
