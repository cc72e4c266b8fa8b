// SPDX-License-Identifier: Apache-2.0
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "storage_compat.hpp"

namespace {

using namespace synergos;  // NOLINT(google-build-using-namespace): test file
using core::runtime::RequireEmulation;
using core::runtime::with_require;

std::string id_of(const std::string& kind, const sdk::Key& key) {
    std::string out = kind;
    for (const auto& f : key) {
        out += "/" + f.name + "=" + f.value;
    }
    return out;
}

/// A storage plugin as built against SDK 1.1: it knows Insert and DeleteWhere here, and refuses
/// any other mode (Require among them) the way a plugin refuses a mode it does not know.
class OldStorage final : public sdk::StorageBackend {
public:
    sdk::Status start() noexcept override { return {}; }
    int schema_version() const noexcept override { return 1; }
    sdk::Result<sdk::Record> get(const std::string& kind, const sdk::Key& key) noexcept override {
        auto it = records.find(id_of(kind, key));
        if (it == records.end()) {
            return sdk::Error{sdk::ErrorCode::NotFound, "no record " + id_of(kind, key)};
        }
        return it->second;
    }
    sdk::Result<std::vector<sdk::Record>> list(const sdk::Query&) noexcept override {
        return std::vector<sdk::Record>{};
    }
    sdk::Result<std::vector<sdk::Record>> apply(
        const std::vector<sdk::Mutation>& batch) noexcept override {
        ++applies;
        std::vector<sdk::Record> out;
        for (const auto& m : batch) {
            if (m.mode == sdk::WriteMode::DeleteWhere) {
                continue;
            }
            if (m.mode != sdk::WriteMode::Insert) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument,
                                  "unknown write mode " + std::to_string(static_cast<int>(m.mode))};
            }
            out.push_back(sdk::Record{m.kind, m.key, m.document, ++last_doc_id, 1, 0, 0});
        }
        for (const auto& r : out) {
            records[id_of(r.kind, r.key)] = r;
        }
        return out;
    }
    void stop() noexcept override {}

    std::map<std::string, sdk::Record> records;
    std::int64_t last_doc_id = 0;
    int applies = 0;
};

const sdk::Key kParent{{"collab_id", "c"}};
const sdk::Key kChild{{"collab_id", "c"}, {"project_id", "p"}};

}  // namespace

TEST_CASE("storage plugins of SDK 1.2 get Require themselves and older ones through the host",
          "[unit][runtime]") {
    auto old = std::make_shared<OldStorage>();
    CHECK(with_require(old, 2).get() == old.get());
    CHECK(with_require(old, 3).get() == old.get());
    auto wrapped = with_require(old, 1);
    CHECK(wrapped.get() != old.get());
    CHECK(dynamic_cast<RequireEmulation*>(wrapped.get()) != nullptr);
    CHECK(dynamic_cast<RequireEmulation*>(with_require(old, 0).get()) != nullptr);
}

TEST_CASE("the host emulates Require for an SDK 1.1 storage plugin", "[unit][runtime]") {
    auto old = std::make_shared<OldStorage>();
    RequireEmulation store(old);
    // Without the host's help the plugin refuses the mode.
    REQUIRE_FALSE(old->apply({{sdk::WriteMode::Require, "Collaboration", kParent, ""}}).has_value());
    old->applies = 0;
    REQUIRE(store.apply({{sdk::WriteMode::Insert, "Collaboration", kParent, R"({"a":1})"}})
                .has_value());

    SECTION("a parent present: the records in mutation order, DeleteWhere yielding none") {
        auto made = store.apply({{sdk::WriteMode::Require, "Collaboration", kParent, ""},
                                 {sdk::WriteMode::DeleteWhere, "Tag", kChild, ""},
                                 {sdk::WriteMode::Insert, "Project", kChild, "{}"}});
        REQUIRE(made.has_value());
        REQUIRE(made->size() == 2);
        CHECK((*made)[0].kind == "Collaboration");
        CHECK((*made)[0].document == R"({"a":1})");
        CHECK((*made)[1].kind == "Project");
        CHECK(old->records.count(id_of("Project", kChild)) == 1);
    }
    SECTION("a parent missing: NotFound naming the mutation, and the plugin never called") {
        const int before = old->applies;
        auto orphan = store.apply({{sdk::WriteMode::Require, "Collaboration", {{"collab_id", "x"}}, ""},
                                   {sdk::WriteMode::Insert, "Project", kChild, "{}"}});
        REQUIRE_FALSE(orphan.has_value());
        CHECK(orphan.error().code == sdk::ErrorCode::NotFound);
        CHECK(orphan.error().message.find("mutation 0") != std::string::npos);
        CHECK(old->applies == before);
        CHECK(old->records.count(id_of("Project", kChild)) == 0);
    }
    SECTION("a Require sees the writes before it in its batch") {
        const int before = old->applies;
        // Deleted earlier in the batch: missing, and nothing is written.
        auto deleted = store.apply({{sdk::WriteMode::DeleteWhere, "Collaboration", kParent, ""},
                                    {sdk::WriteMode::Require, "Collaboration", kParent, ""},
                                    {sdk::WriteMode::Insert, "Project", kChild, "{}"}});
        REQUIRE_FALSE(deleted.has_value());
        CHECK(deleted.error().code == sdk::ErrorCode::NotFound);
        CHECK(deleted.error().message.find("mutation 1") != std::string::npos);
        CHECK(old->applies == before);
        CHECK(old->records.count(id_of("Project", kChild)) == 0);
        // Inserted earlier in the batch: present, and it yields the record written.
        const sdk::Key other{{"collab_id", "new"}};
        auto inserted = store.apply({{sdk::WriteMode::Insert, "Collaboration", other, R"({"n":2})"},
                                     {sdk::WriteMode::Require, "Collaboration", other, ""}});
        REQUIRE(inserted.has_value());
        REQUIRE(inserted->size() == 2);
        CHECK((*inserted)[1].document == R"({"n":2})");
        CHECK((*inserted)[1].doc_id == (*inserted)[0].doc_id);
    }
    SECTION("a batch of Requires only writes nothing") {
        const int before = old->applies;
        auto found = store.apply({{sdk::WriteMode::Require, "Collaboration", kParent, ""}});
        REQUIRE(found.has_value());
        CHECK(found->size() == 1);
        CHECK(old->applies == before);
    }
}
