// SPDX-License-Identifier: Apache-2.0
#include "write_queue.hpp"

#include <pthread.h>

#include <chrono>
#include <exception>
#include <iterator>
#include <string>
#include <utility>

namespace synergos::core::rest {
namespace {

/// How many records `apply` returns for a batch: one per mutation but DeleteWhere.
std::size_t outputs_of(const std::vector<sdk::Mutation>& batch) {
    std::size_t n = 0;
    for (const auto& m : batch) {
        n += m.mode == sdk::WriteMode::DeleteWhere ? 0 : 1;
    }
    return n;
}

void deliver(WriteQueue::Done& done, WriteQueue::Outcome outcome) noexcept {
    // Taken out first: each request is answered once, also when a later step of its group throws.
    WriteQueue::Done callback = std::move(done);
    done = nullptr;
    try {
        if (callback) {
            callback(std::move(outcome));
        }
    } catch (...) {
        // A callback must not take the writer down; the responder it dropped answers 500.
    }
}

}  // namespace

WriteQueue::WriteQueue(sdk::StorageBackend& backend, std::shared_ptr<WriteMetrics> metrics)
    : backend_(backend), metrics_(std::move(metrics)) {
    thread_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "rest-writer");  // for top/perf
        run();
    });
}

WriteQueue::~WriteQueue() { stop(); }

void WriteQueue::stop() noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) {
        thread_.join();
    }
}

void WriteQueue::submit(std::vector<sdk::Mutation> batch, Done done) {
    bool wake = false;
    bool refused = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) {
            refused = true;
        } else {
            queue_.push_back(Item{std::move(batch), std::move(done)});
            wake = waiting_;
            waiting_ = false;
        }
    }
    if (refused) {
        deliver(done, sdk::Error{sdk::ErrorCode::Unavailable, "storage writer is stopping"});
    } else if (wake) {
        cv_.notify_one();
    }
}

void WriteQueue::run() {
    std::vector<Item> group;
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            while (queue_.empty() && !stopping_) {
                waiting_ = true;
                // Idle wait for work; the timeout only re-checks the flags.
                cv_.wait_for(lock, std::chrono::seconds(1));
            }
            waiting_ = false;
            if (queue_.empty()) {
                return;  // stopping, nothing left
            }
            if (stopping_) {
                // Fail what never started rather than hold the shutdown for it.
                std::deque<Item> left = std::move(queue_);
                queue_.clear();
                lock.unlock();
                for (auto& item : left) {
                    deliver(item.done,
                            sdk::Error{sdk::ErrorCode::Unavailable, "storage writer is stopping"});
                }
                return;
            }
            while (!queue_.empty() && group.size() < kMaxWriteGroup) {
                group.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
        }
        if (metrics_) {
            metrics_->requests.fetch_add(group.size(), std::memory_order_relaxed);
        }
        try {
            apply_group(group);
        } catch (const std::exception& e) {
            // Out of memory joining the group, say: an uncaught exception here ended the process.
            for (auto& item : group) {
                deliver(item.done, sdk::Error{sdk::ErrorCode::Internal, std::string("storage writer: ") + e.what()});
            }
        }
        group.clear();
    }
}

void WriteQueue::apply_group(std::vector<Item>& group) {
    if (group.size() > 1) {
        std::vector<sdk::Mutation> combined;
        std::size_t outputs = 0;
        for (const auto& item : group) {
            combined.insert(combined.end(), item.batch.begin(), item.batch.end());
            outputs += outputs_of(item.batch);
        }
        auto applied = apply(combined);
        if (applied && applied->size() == outputs) {
            auto next = applied->begin();
            for (auto& item : group) {
                const auto n = static_cast<std::ptrdiff_t>(outputs_of(item.batch));
                std::vector<sdk::Record> mine(std::make_move_iterator(next),
                                              std::make_move_iterator(next + n));
                next += n;
                deliver(item.done, std::move(mine));
            }
            return;
        }
        if (applied) {
            // Committed, but the records do not line up with the batches (a backend breaking
            // apply's contract): applying them again would write twice, so all report it.
            const std::string message =
                "storage returned " + std::to_string(applied->size()) + " records for " +
                std::to_string(outputs) + " expected; the writes were committed once";
            for (auto& item : group) {
                deliver(item.done, sdk::Error{sdk::ErrorCode::Internal, message});
            }
            return;
        }
        // Nothing of the combined batch was written (apply is all or nothing). An error one
        // batch can cause (a conflict, a missing parent, a bad document) is found by applying
        // them one by one; a store that is busy, timed out or failing would fail each in turn,
        // every one waiting out its own timeout while every write behind them waits too.
        if (!sdk::batch_refused(applied.error().code)) {
            for (auto& item : group) {
                deliver(item.done, applied.error());
            }
            return;
        }
    }
    for (auto& item : group) {
        deliver(item.done, apply(item.batch));
    }
}

WriteQueue::Outcome WriteQueue::apply(const std::vector<sdk::Mutation>& batch) {
    const auto began = std::chrono::steady_clock::now();
    auto outcome = backend_.apply(batch);
    // Before any answer goes out: a client that reads the metrics after its answer sees its write.
    if (metrics_) {
        metrics_->commit_latency.observe(std::chrono::steady_clock::now() - began);
    }
    return outcome;
}

}  // namespace synergos::core::rest
