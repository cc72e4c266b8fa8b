// SPDX-License-Identifier: Apache-2.0
// Unit test of the example plugin through its _impl library and the SDK's FakeHost. Plain
// checks, no test framework, so the example needs nothing beyond the SDK package.
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <synergos/sdk/testing/fake_host.hpp>

#include "hello_storage.hpp"

namespace sdk = synergos::sdk;

namespace {

int failures = 0;

#define HELLO_CHECK(condition)                                                                 \
    do {                                                                                       \
        if (!(condition)) {                                                                    \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition); \
            ++failures;                                                                        \
        }                                                                                      \
    } while (false)

sdk::Options options(std::map<std::string, std::string> values) {
    return sdk::Options(std::move(values));
}

sdk::Key key(const std::string& collab, const std::string& project = {}) {
    sdk::Key out{{"collab_id", collab}};
    if (!project.empty()) {
        out.push_back({"project_id", project});
    }
    return out;
}

sdk::Mutation write(sdk::WriteMode mode, const std::string& kind, sdk::Key k,
                    std::string document = "{}") {
    sdk::Mutation m;
    m.mode = mode;
    m.kind = kind;
    m.key = std::move(k);
    m.document = std::move(document);
    return m;
}

void test_crud(hello::HelloStorage& store) {
    auto inserted =
        store.apply({write(sdk::WriteMode::Insert, "Project", key("c1", "p1"), "{\"a\":1}"),
                     write(sdk::WriteMode::Insert, "Project", key("c1", "p2")),
                     write(sdk::WriteMode::Insert, "Project", key("c2", "p1"))});
    HELLO_CHECK(inserted.has_value() && inserted->size() == 3);
    HELLO_CHECK(inserted.has_value() && (*inserted)[0].doc_id == 1 && (*inserted)[2].doc_id == 3);
    HELLO_CHECK(inserted.has_value() && (*inserted)[0].version == 1);

    auto got = store.get("Project", key("c1", "p1"));
    HELLO_CHECK(got.has_value() && got->document == "{\"a\":1}");
    HELLO_CHECK(store.get("Project", key("c9", "p1")).error().code == sdk::ErrorCode::NotFound);
    HELLO_CHECK(store.get("Nothing", key("c1")).error().code == sdk::ErrorCode::NotFound);

    auto duplicate = store.apply({write(sdk::WriteMode::Insert, "Project", key("c1", "p1"))});
    HELLO_CHECK(!duplicate.has_value() && duplicate.error().code == sdk::ErrorCode::AlreadyExists);

    auto updated =
        store.apply({write(sdk::WriteMode::Update, "Project", key("c1", "p1"), "{\"a\":2}")});
    HELLO_CHECK(updated.has_value() && (*updated)[0].version == 2 && (*updated)[0].doc_id == 1);
    auto missing = store.apply({write(sdk::WriteMode::Update, "Project", key("c7", "p1"))});
    HELLO_CHECK(!missing.has_value() && missing.error().code == sdk::ErrorCode::NotFound);

    auto upserted =
        store.apply({write(sdk::WriteMode::Upsert, "Project", key("c1", "p1"), "{\"a\":3}"),
                     write(sdk::WriteMode::Upsert, "Project", key("c3", "p1"))});
    HELLO_CHECK(upserted.has_value() && (*upserted)[0].version == 3 && (*upserted)[1].doc_id == 4);

    sdk::Query by_collab;
    by_collab.kind = "Project";
    by_collab.match = {{"collab_id", "c1"}};
    auto listed = store.list(by_collab);
    HELLO_CHECK(listed.has_value() && listed->size() == 2);
    HELLO_CHECK(listed.has_value() && (*listed)[0].doc_id == 1 && (*listed)[1].doc_id == 2);

    sdk::Query paged;
    paged.kind = "Project";
    paged.offset = 1;
    paged.limit = 2;
    auto page = store.list(paged);
    HELLO_CHECK(page.has_value() && page->size() == 2 && (*page)[0].doc_id == 2 &&
                (*page)[1].doc_id == 3);

    auto deleted = store.apply({write(sdk::WriteMode::Delete, "Project", key("c2", "p1"))});
    HELLO_CHECK(deleted.has_value() && (*deleted)[0].doc_id == 3);
    auto gone = store.apply({write(sdk::WriteMode::Delete, "Project", key("c2", "p1"))});
    HELLO_CHECK(!gone.has_value() && gone.error().code == sdk::ErrorCode::NotFound);

    auto where =
        store.apply({write(sdk::WriteMode::DeleteWhere, "Project", {{"collab_id", "c1"}})});
    HELLO_CHECK(where.has_value() && where->empty());
    auto rest = store.list(by_collab);
    HELLO_CHECK(rest.has_value() && rest->empty());
    // DeleteWhere never fails, even when nothing matches.
    HELLO_CHECK(store.apply({write(sdk::WriteMode::DeleteWhere, "Nothing", {})}).has_value());
}

void test_require(hello::HelloStorage& store) {
    HELLO_CHECK(store.apply({write(sdk::WriteMode::Insert, "Parent", key("q1"), "{\"p\":1}")})
                    .has_value());
    // Require yields the record found and lets the rest of the batch through.
    auto child = store.apply({write(sdk::WriteMode::Require, "Parent", key("q1"), ""),
                              write(sdk::WriteMode::Insert, "Child", key("q1", "k1"))});
    HELLO_CHECK(child.has_value() && child->size() == 2 && (*child)[0].kind == "Parent" &&
                (*child)[0].document == "{\"p\":1}" && (*child)[1].kind == "Child");
    // A missing one fails the batch: nothing after it is written.
    auto orphan = store.apply({write(sdk::WriteMode::Require, "Parent", key("q9"), ""),
                               write(sdk::WriteMode::Insert, "Child", key("q9", "k1"))});
    HELLO_CHECK(!orphan.has_value() && orphan.error().code == sdk::ErrorCode::NotFound);
    HELLO_CHECK(store.get("Child", key("q9", "k1")).error().code == sdk::ErrorCode::NotFound);
}

void test_batches_are_atomic(hello::HelloStorage& store) {
    auto seeded = store.apply({write(sdk::WriteMode::Insert, "Expt", key("c1"), "{\"v\":1}")});
    HELLO_CHECK(seeded.has_value());
    // The third mutation fails: the first two must leave no trace.
    auto failed = store.apply({write(sdk::WriteMode::Update, "Expt", key("c1"), "{\"v\":2}"),
                               write(sdk::WriteMode::Insert, "Run", key("r1")),
                               write(sdk::WriteMode::Delete, "Run", key("missing"))});
    HELLO_CHECK(!failed.has_value() && failed.error().code == sdk::ErrorCode::NotFound);
    HELLO_CHECK(!failed.has_value() &&
                failed.error().message.find("nothing was written") != std::string::npos);
    auto expt = store.get("Expt", key("c1"));
    HELLO_CHECK(expt.has_value() && expt->document == "{\"v\":1}" && expt->version == 1);
    HELLO_CHECK(store.get("Run", key("r1")).error().code == sdk::ErrorCode::NotFound);

    // Later mutations see earlier ones in the same batch.
    auto chained = store.apply({write(sdk::WriteMode::Insert, "Run", key("r2")),
                                write(sdk::WriteMode::Update, "Run", key("r2"), "{\"x\":1}"),
                                write(sdk::WriteMode::Delete, "Run", key("r2"))});
    HELLO_CHECK(chained.has_value() && chained->size() == 3 && (*chained)[2].version == 2);

    auto bad_document = store.apply({write(sdk::WriteMode::Insert, "Run", key("r3"), "[1]")});
    HELLO_CHECK(!bad_document.has_value() &&
                bad_document.error().code == sdk::ErrorCode::InvalidArgument);
    auto empty_key = store.apply({write(sdk::WriteMode::Insert, "Run", {})});
    HELLO_CHECK(!empty_key.has_value() &&
                empty_key.error().code == sdk::ErrorCode::InvalidArgument);
}

void test_limits_and_lifecycle(sdk::testing::FakeHost& host) {
    hello::HelloStorage store(host, options({{"max_records", "2"}}));
    HELLO_CHECK(store.get("A", key("x")).error().code == sdk::ErrorCode::FailedPrecondition);
    HELLO_CHECK(store.start().is_ok());
    HELLO_CHECK(store.schema_version() == 1);
    auto full = store.apply({write(sdk::WriteMode::Insert, "A", key("1")),
                             write(sdk::WriteMode::Insert, "A", key("2")),
                             write(sdk::WriteMode::Insert, "A", key("3"))});
    HELLO_CHECK(!full.has_value() && full.error().code == sdk::ErrorCode::ResourceExhausted);
    HELLO_CHECK(store
                    .apply({write(sdk::WriteMode::Insert, "A", key("1")),
                            write(sdk::WriteMode::Insert, "A", key("2"))})
                    .has_value());
    // Deleting frees room within the same batch.
    HELLO_CHECK(store
                    .apply({write(sdk::WriteMode::Delete, "A", key("1")),
                            write(sdk::WriteMode::Insert, "A", key("3"))})
                    .has_value());
    store.stop();
    HELLO_CHECK(!store.list(sdk::Query{"A", {}, 0, 0}).has_value());
}

void test_concurrent_writers(hello::HelloStorage& store) {
    constexpr int kThreads = 4;
    constexpr int kPerThread = 200;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&store, t] {
            for (int i = 0; i < kPerThread; ++i) {
                auto key_text = std::to_string(t) + "-" + std::to_string(i);
                (void)store.apply({write(sdk::WriteMode::Insert, "Load", key(key_text))});
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    auto all = store.list(sdk::Query{"Load", {}, 0, 0});
    HELLO_CHECK(all.has_value() && all->size() == kThreads * kPerThread);
    bool is_ordered = all.has_value();
    for (std::size_t i = 0; all.has_value() && i < all->size(); ++i) {
        is_ordered = is_ordered && (*all)[i].doc_id == static_cast<std::int64_t>(i + 1);
    }
    HELLO_CHECK(is_ordered);
}

}  // namespace

int main() {
    sdk::testing::FakeHost host;
    hello::HelloStorage store(host, options({{"max_records", "100000"}}));
    HELLO_CHECK(store.start().is_ok());
    HELLO_CHECK(host.captured().contains("hello storage started"));
    test_crud(store);
    test_require(store);
    test_batches_are_atomic(store);
    test_concurrent_writers(store);
    test_limits_and_lifecycle(host);
    store.stop();
    if (failures != 0) {
        std::fprintf(stderr, "hello_storage_test: %d check(s) failed\n", failures);
        return 1;
    }
    std::printf("hello_storage_test: all checks passed\n");
    return 0;
}
