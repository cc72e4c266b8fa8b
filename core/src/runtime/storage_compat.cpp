// SPDX-License-Identifier: Apache-2.0
#include "storage_compat.hpp"

#include <exception>
#include <optional>
#include <string>
#include <utility>

namespace synergos::core::runtime {

RequireEmulation::RequireEmulation(std::shared_ptr<sdk::StorageBackend> inner)
    : inner_(std::move(inner)) {}

sdk::Result<std::vector<sdk::Record>> RequireEmulation::apply(
    const std::vector<sdk::Mutation>& batch) noexcept {
    try {
        std::vector<sdk::Mutation> rest;
        rest.reserve(batch.size());
        // Per mutation of `batch` that yields a record: the one found by a Require, or nullopt
        // for one the plugin returns.
        std::vector<std::optional<sdk::Record>> found;
        bool wrote = false;
        for (std::size_t i = 0; i < batch.size(); ++i) {
            const sdk::Mutation& m = batch[i];
            if (m.mode == sdk::WriteMode::Require && wrote) {
                // Checked before any write, it could see what an earlier mutation deletes.
                return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                  "storage plugin built against SDK < 1.2: a Require after a "
                                  "write in one batch cannot be emulated (mutation " +
                                      std::to_string(i) + "); nothing was written"};
            }
            if (m.mode != sdk::WriteMode::Require) {
                wrote = true;
                rest.push_back(m);
                if (m.mode != sdk::WriteMode::DeleteWhere) {
                    found.emplace_back();
                }
                continue;
            }
            auto record = inner_->get(m.kind, m.key);
            if (!record) {
                auto error = record.error();
                error.message += " (mutation " + std::to_string(i) + ")";
                return error;  // nothing written yet
            }
            found.emplace_back(std::move(*record));
        }
        std::vector<sdk::Record> written;
        if (!rest.empty()) {
            auto applied = inner_->apply(rest);
            if (!applied) {
                return applied.error();
            }
            written = std::move(*applied);
        }
        std::vector<sdk::Record> out;
        out.reserve(found.size());
        std::size_t next = 0;
        for (auto& f : found) {
            if (f) {
                out.push_back(std::move(*f));
            } else if (next < written.size()) {
                out.push_back(std::move(written[next++]));
            }
        }
        return out;
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal, std::string("storage: ") + e.what()};
    }
}

std::shared_ptr<sdk::StorageBackend> with_require(std::shared_ptr<sdk::StorageBackend> storage,
                                                  int abi_minor) {
    if (abi_minor >= 2) {
        return storage;
    }
    return std::make_shared<RequireEmulation>(std::move(storage));
}

}  // namespace synergos::core::runtime
