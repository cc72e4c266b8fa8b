// SPDX-License-Identifier: Apache-2.0
#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <vector>

#include <catch2/catch.hpp>

#include "rest_fixture.hpp"
#include "support/storage_double.hpp"
#include "write_queue.hpp"

namespace {

using namespace std::chrono_literals;
namespace sdk = synergos::sdk;
using synergos::core::rest::WriteQueue;

/// Forwards to the real store, counts apply() calls and can hold the first one until released,
/// so a test knows that later submits queue up behind it.
class HeldBackend final : public synergos::testing::ForwardingStorage {
public:
    explicit HeldBackend(sdk::StorageBackend& inner) : ForwardingStorage(inner) {}
    sdk::Result<std::vector<sdk::Record>> apply(
        const std::vector<sdk::Mutation>& batch) noexcept override {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            sizes_.push_back(batch.size());
            if (sizes_.size() == 1) {
                entered_ = true;
                cv_.notify_all();
                cv_.wait_for(lock, 10s, [&] { return released_; });
            }
        }
        if (busy_ && sizes().size() > 1) {
            return sdk::Error{sdk::ErrorCode::Unavailable, "storage 'sqlite': database is locked"};
        }
        auto applied = inner_.apply(batch);
        if (applied && report_delete_where_) {
            // A backend misreading the contract: one record per DeleteWhere too.
            for (const auto& m : batch) {
                if (m.mode == sdk::WriteMode::DeleteWhere) {
                    applied->push_back(sdk::Record{m.kind, m.key, "{}", 0, 1, 0, 0});
                }
            }
        }
        return applied;
    }

    /// Makes apply() return a record for each DeleteWhere as well.
    void report_delete_where() { report_delete_where_ = true; }
    /// Makes every apply() after the first fail as a store that stays locked does.
    void stay_busy() { busy_ = true; }

    bool wait_entered() {
        std::unique_lock<std::mutex> lock(mutex_);
        return cv_.wait_for(lock, 5s, [&] { return entered_; });
    }
    void release() {
        std::lock_guard<std::mutex> lock(mutex_);
        released_ = true;
        cv_.notify_all();
    }
    std::vector<std::size_t> sizes() {
        std::lock_guard<std::mutex> lock(mutex_);
        return sizes_;
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<std::size_t> sizes_;
    bool entered_ = false;
    bool released_ = false;
    bool report_delete_where_ = false;
    std::atomic<bool> busy_{false};
};

/// A started sqlite store in a temporary folder, stopped at the end (synchronous NORMAL: these
/// tests are about grouping, not about the fsync).
struct Store {
    synergos::testing::TempDir dir;
    sdk::testing::FakeHost host{dir.path};
    synergos::plugins::sqlite::SqliteStorage storage{
        host, sdk::Options(std::map<std::string, std::string>{{"synchronous", "NORMAL"}})};
    Store() { REQUIRE(storage.start().is_ok()); }
    ~Store() { storage.stop(); }
};

sdk::Mutation insert_run(const std::string& run) {
    return {sdk::WriteMode::Insert,
            "Run",
            {{"collab_id", "c"}, {"project_id", "p"}, {"expt_id", "e"}, {"run_id", run}},
            "{\"rounds\":2}"};
}

}  // namespace

TEST_CASE("WriteQueue commits queued batches as one and gives a conflicting batch its own outcome",
          "[unit][rest]") {
    Store store;
    auto& storage = store.storage;
    REQUIRE(storage.apply({insert_run("taken")}).has_value());
    HeldBackend held(storage);
    std::vector<std::future<WriteQueue::Outcome>> outcomes;
    {
        WriteQueue queue(held);
        auto submit = [&](std::vector<sdk::Mutation> batch) {
            auto promise = std::make_shared<std::promise<WriteQueue::Outcome>>();
            outcomes.push_back(promise->get_future());
            queue.submit(std::move(batch), [promise](WriteQueue::Outcome outcome) {
                promise->set_value(std::move(outcome));
            });
        };
        submit({insert_run("first")});
        REQUIRE(held.wait_entered());
        // Queued behind the held first write: 20 inserts, one duplicate, one cascade delete
        // (two mutations, one output) of the run the first write creates.
        for (int i = 0; i < 10; ++i) {
            submit({insert_run("r" + std::to_string(i))});
        }
        submit({insert_run("taken")});
        submit({{sdk::WriteMode::DeleteWhere, "Model", insert_run("first").key, {}},
                {sdk::WriteMode::Delete, "Run", insert_run("first").key, {}}});
        for (int i = 10; i < 20; ++i) {
            submit({insert_run("r" + std::to_string(i))});
        }
        held.release();
        for (auto& outcome : outcomes) {
            REQUIRE(outcome.wait_for(10s) == std::future_status::ready);
        }
    }
    std::vector<WriteQueue::Outcome> results;
    for (auto& outcome : outcomes) {
        results.push_back(outcome.get());
    }
    REQUIRE(results.size() == 23);
    REQUIRE(results[0].has_value());
    for (int i = 1; i <= 10; ++i) {
        REQUIRE(results[i].has_value());
        REQUIRE(results[i]->size() == 1);
        CHECK(results[i]->front().key.back().value == "r" + std::to_string(i - 1));
    }
    REQUIRE_FALSE(results[11].has_value());
    CHECK(results[11].error().code == sdk::ErrorCode::AlreadyExists);
    REQUIRE(results[12].has_value());
    REQUIRE(results[12]->size() == 1);  // the deleted run; DeleteWhere yields nothing
    CHECK(results[12]->front().key.back().value == "first");
    for (int i = 13; i < 23; ++i) {
        REQUIRE(results[i].has_value());
        CHECK(results[i]->front().key.back().value == "r" + std::to_string(i - 3));
    }
    // First alone (held), then the 22 queued ones combined (fails on the duplicate: nothing of
    // it written), then each of them alone.
    const auto sizes = held.sizes();
    REQUIRE(sizes.size() == 2 + 22);
    CHECK(sizes[0] == 1);
    CHECK(sizes[1] == 23);  // 20 inserts + 1 duplicate + 2 cascade mutations
    auto runs = storage.list({"Run", {}, 0, 0});
    REQUIRE(runs.has_value());
    CHECK(runs->size() == 21);  // taken + r0..r19; first created and deleted
}

TEST_CASE("WriteQueue gives a whole group the store's own failure instead of retrying each write",
          "[unit][rest]") {
    Store store;
    auto& storage = store.storage;
    HeldBackend held(storage);
    held.stay_busy();
    std::vector<std::future<WriteQueue::Outcome>> outcomes;
    {
        WriteQueue queue(held);
        for (int i = 0; i < 11; ++i) {
            auto promise = std::make_shared<std::promise<WriteQueue::Outcome>>();
            outcomes.push_back(promise->get_future());
            queue.submit({insert_run("b" + std::to_string(i))},
                         [promise](WriteQueue::Outcome o) { promise->set_value(std::move(o)); });
            if (i == 0) {
                REQUIRE(held.wait_entered());
            }
        }
        held.release();
        for (auto& outcome : outcomes) {
            REQUIRE(outcome.wait_for(10s) == std::future_status::ready);
        }
    }
    CHECK(outcomes[0].get().has_value());
    for (std::size_t i = 1; i < outcomes.size(); ++i) {
        auto result = outcomes[i].get();
        REQUIRE_FALSE(result.has_value());
        CHECK(result.error().code == sdk::ErrorCode::Unavailable);
    }
    // The held write, then the ten queued ones once together. Before, each was then tried
    // again alone: with a store that times out, every write behind them waited ten timeouts.
    CHECK(held.sizes() == std::vector<std::size_t>{1, 10});
}

TEST_CASE("WriteQueue commits a group without a conflict in one apply", "[unit][rest]") {
    Store store;
    auto& storage = store.storage;
    HeldBackend held(storage);
    std::vector<std::future<WriteQueue::Outcome>> outcomes;
    {
        WriteQueue queue(held);
        for (int i = 0; i < 31; ++i) {
            auto promise = std::make_shared<std::promise<WriteQueue::Outcome>>();
            outcomes.push_back(promise->get_future());
            queue.submit({insert_run("g" + std::to_string(i))},
                         [promise](WriteQueue::Outcome o) { promise->set_value(std::move(o)); });
            if (i == 0) {
                REQUIRE(held.wait_entered());
            }
        }
        held.release();
        for (auto& outcome : outcomes) {
            REQUIRE(outcome.wait_for(10s) == std::future_status::ready);
        }
    }
    std::set<std::int64_t> doc_ids;
    for (auto& outcome : outcomes) {
        auto result = outcome.get();
        REQUIRE(result.has_value());
        doc_ids.insert(result->front().doc_id);
    }
    CHECK(doc_ids.size() == 31);
    CHECK(held.sizes() == std::vector<std::size_t>{1, 30});
}

TEST_CASE("WriteQueue never applies a committed group again when the backend's answer does not "
          "line up with its batches",
          "[unit][rest]") {
    Store store;
    auto& storage = store.storage;
    HeldBackend held(storage);
    held.report_delete_where();
    std::vector<std::future<WriteQueue::Outcome>> outcomes;
    {
        WriteQueue queue(held);
        auto submit = [&](std::vector<sdk::Mutation> batch) {
            auto promise = std::make_shared<std::promise<WriteQueue::Outcome>>();
            outcomes.push_back(promise->get_future());
            queue.submit(std::move(batch), [promise](WriteQueue::Outcome outcome) {
                promise->set_value(std::move(outcome));
            });
        };
        submit({insert_run("first")});
        REQUIRE(held.wait_entered());
        submit({insert_run("second")});
        submit({{sdk::WriteMode::DeleteWhere, "Model", insert_run("first").key, {}},
                {sdk::WriteMode::Delete, "Run", insert_run("first").key, {}}});
        held.release();
        for (auto& outcome : outcomes) {
            REQUIRE(outcome.wait_for(10s) == std::future_status::ready);
        }
    }
    REQUIRE(outcomes[0].get().has_value());
    // The group was committed once; its outcomes cannot be told apart, so both report an
    // internal error rather than a made-up conflict from applying them a second time.
    for (std::size_t i = 1; i < outcomes.size(); ++i) {
        auto result = outcomes[i].get();
        REQUIRE_FALSE(result.has_value());
        CHECK(result.error().code == sdk::ErrorCode::Internal);
    }
    CHECK(held.sizes() == std::vector<std::size_t>{1, 3});
    auto runs = storage.list({"Run", {}, 0, 0});
    REQUIRE(runs.has_value());
    REQUIRE(runs->size() == 1);
    CHECK(runs->front().key.back().value == "second");
}

TEST_CASE("WriteQueue::stop waits for the group being committed, fails the queued writes and "
          "refuses later ones",
          "[unit][rest]") {
    Store store;
    auto& storage = store.storage;
    HeldBackend held(storage);
    WriteQueue queue(held);
    std::vector<std::future<WriteQueue::Outcome>> outcomes;
    auto submit = [&](const std::string& run) {
        auto promise = std::make_shared<std::promise<WriteQueue::Outcome>>();
        outcomes.push_back(promise->get_future());
        queue.submit({insert_run(run)},
                     [promise](WriteQueue::Outcome o) { promise->set_value(std::move(o)); });
    };
    submit("committing");
    REQUIRE(held.wait_entered());
    submit("queued");
    // The director stops the writer before the store: stop() must not return while a commit
    // still runs on the store (it did only when the routes were destroyed, after the store).
    auto stopped = std::async(std::launch::async, [&] { queue.stop(); });
    CHECK(stopped.wait_for(300ms) == std::future_status::timeout);
    held.release();
    REQUIRE(stopped.wait_for(10s) == std::future_status::ready);
    REQUIRE(outcomes[0].wait_for(0s) == std::future_status::ready);
    CHECK(outcomes[0].get().has_value());
    REQUIRE(outcomes[1].wait_for(0s) == std::future_status::ready);
    auto queued = outcomes[1].get();
    REQUIRE_FALSE(queued.has_value());
    CHECK(queued.error().code == sdk::ErrorCode::Unavailable);
    submit("after");
    REQUIRE(outcomes[2].wait_for(0s) == std::future_status::ready);
    CHECK(outcomes[2].get().error().code == sdk::ErrorCode::Unavailable);
    CHECK(held.sizes() == std::vector<std::size_t>{1});
}
