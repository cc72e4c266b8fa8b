// SPDX-License-Identifier: Apache-2.0
#include "storage_compat.hpp"

#include <algorithm>
#include <exception>
#include <optional>
#include <string>
#include <utility>

namespace synergos::core::runtime {
namespace {

bool contains(const sdk::Key& key, const sdk::KeyField& field) {
    return std::any_of(key.begin(), key.end(), [&](const sdk::KeyField& f) {
        return f.name == field.name && f.value == field.value;
    });
}

/// Same fields and values, in any order (the stores key records canonically).
bool same_key(const sdk::Key& a, const sdk::Key& b) {
    return a.size() == b.size() &&
           std::all_of(a.begin(), a.end(), [&](const sdk::KeyField& f) { return contains(b, f); });
}

/// Every field of `subset` is in `key` (how DeleteWhere matches).
bool matches(const sdk::Key& key, const sdk::Key& subset) {
    return std::all_of(subset.begin(), subset.end(),
                       [&](const sdk::KeyField& f) { return contains(key, f); });
}

}  // namespace

RequireEmulation::RequireEmulation(std::shared_ptr<sdk::StorageBackend> inner)
    : inner_(std::move(inner)) {}

sdk::Result<std::vector<sdk::Record>> RequireEmulation::apply(
    const std::vector<sdk::Mutation>& batch) noexcept {
    try {
        std::vector<sdk::Mutation> rest;
        rest.reserve(batch.size());
        // Per mutation that yields a record: where it comes from. A Require yields the record
        // found before the batch, or the one an earlier Insert/Upsert of the batch writes
        // (`from` = that mutation's place among the plugin's outputs); others their own output.
        struct Yield {
            std::optional<sdk::Record> found;
            std::size_t from = 0;
        };
        std::vector<Yield> yields;
        std::size_t outputs = 0;  // records the plugin returns for `rest` so far
        std::vector<std::size_t> output_of(batch.size(), 0);
        for (std::size_t i = 0; i < batch.size(); ++i) {
            const sdk::Mutation& m = batch[i];
            if (m.mode != sdk::WriteMode::Require) {
                rest.push_back(m);
                if (m.mode != sdk::WriteMode::DeleteWhere) {
                    output_of[i] = outputs;
                    yields.push_back({std::nullopt, outputs++});
                }
                continue;
            }
            // Present after the mutations before it: the store's state, then each earlier
            // write of the same kind in order.
            auto before = inner_->get(m.kind, m.key);
            if (!before && before.error().code != sdk::ErrorCode::NotFound) {
                return before.error();
            }
            bool present = before.has_value();
            std::optional<std::size_t> written_by;
            for (std::size_t j = 0; j < i; ++j) {
                const sdk::Mutation& w = batch[j];
                if (w.kind != m.kind) {
                    continue;
                }
                if ((w.mode == sdk::WriteMode::Insert || w.mode == sdk::WriteMode::Upsert) &&
                    same_key(w.key, m.key)) {
                    present = true;
                    written_by = output_of[j];
                } else if ((w.mode == sdk::WriteMode::Delete && same_key(w.key, m.key)) ||
                           (w.mode == sdk::WriteMode::DeleteWhere && matches(m.key, w.key))) {
                    present = false;
                    written_by.reset();
                }
            }
            if (!present) {
                return sdk::Error{sdk::ErrorCode::NotFound,
                                  "no record " + m.kind + " (mutation " + std::to_string(i) +
                                      "); nothing was written"};
            }
            if (written_by) {
                yields.push_back({std::nullopt, *written_by});
            } else {
                yields.push_back({std::move(*before), 0});
            }
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
        out.reserve(yields.size());
        for (auto& y : yields) {
            if (y.found) {
                out.push_back(std::move(*y.found));
            } else if (y.from < written.size()) {
                out.push_back(written[y.from]);
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
