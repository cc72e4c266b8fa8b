// SPDX-License-Identifier: Apache-2.0
// The align function's own rules: label order, model auto-fix and its option's range.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/sdk/testing/fake_host.hpp>

#include "align_function.hpp"

namespace {
namespace sdk = synergos::sdk;
using synergos::plugins::align::AlignFunction;
using synergos::plugins::align::auto_fix_model;
using synergos::plugins::align::sort_labels;
using nlohmann::json;
}  // namespace

TEST_CASE("Labels sort by their number and otherwise as strings", "[unit][ttp]") {
    CHECK(sort_labels({"target_10", "target_2", "target_1.5"}) ==
          std::vector<std::string>{"target_1.5", "target_2", "target_10"});
    CHECK(sort_labels({"target_b", "target_a"}) == std::vector<std::string>{"target_a", "target_b"});
    // "target_nan" is a name, not a number: NaN would break the ordering the sort needs (before,
    // undefined behaviour with many labels). With it, the labels sort as strings.
    std::vector<std::string> many;
    for (int i = 20; i >= 0; --i) {
        many.push_back("target_" + std::to_string(i));
    }
    many.push_back("target_nan");
    many.push_back("target_inf");
    auto sorted = sort_labels(many);
    REQUIRE(sorted.size() == many.size());
    CHECK(std::is_sorted(sorted.begin(), sorted.end()));
}

TEST_CASE("Auto-fix sets the first layer's inputs and the last Linear's outputs", "[unit][ttp]") {
    const json model = json::parse(R"([
        {"is_input": true, "l_type": "Linear", "structure": {"in_features": 4, "out_features": 8}, "activation": "relu"},
        {"is_input": false, "l_type": "Linear", "structure": {"in_features": 8, "out_features": 1}, "activation": "sigmoid"}])");
    const json fixed = auto_fix_model(model, 13, 5);
    CHECK(fixed[0]["structure"]["in_features"] == 13);
    CHECK(fixed[1]["structure"]["out_features"] == 5);
}

TEST_CASE("The align poll timeout outside 1 s to 7 days is refused naming the option", "[unit][ttp]") {
    sdk::testing::FakeHost host;
    const auto make = [&](const char* v) {
        return AlignFunction(host, sdk::Options(std::map<std::string, std::string>{{"poll_timeout_ms", v}}));
    };
    CHECK_THROWS_WITH(make("0"), Catch::Contains("ttp 'align': option 'poll_timeout_ms' must be"));
    CHECK_THROWS_WITH(make("9223372036854775807"), Catch::Contains("poll_timeout_ms"));
    CHECK_NOTHROW(make("600000"));
}

namespace {

/// A store holding one experiment; its reads fail with `error` when set.
class OneExperimentStore final : public sdk::StorageBackend {
public:
    sdk::Status start() noexcept override { return {}; }
    int schema_version() const noexcept override { return 1; }
    sdk::Result<sdk::Record> get(const std::string& kind, const sdk::Key& key) noexcept override {
        if (error) {
            return sdk::Error{*error, "storage 'test': busy"};
        }
        if (kind != "Experiment") {
            return sdk::Error{sdk::ErrorCode::NotFound, kind};
        }
        return sdk::Record{kind, key, document, 1, 2, 0, 0};
    }
    sdk::Result<std::vector<sdk::Record>> list(const sdk::Query&) noexcept override { return std::vector<sdk::Record>{}; }
    sdk::Result<std::vector<sdk::Record>> apply(const std::vector<sdk::Mutation>&) noexcept override {
        return sdk::Error{sdk::ErrorCode::Internal, "archive only returns its writes"};
    }
    void stop() noexcept override {}

    std::string document;
    std::optional<sdk::ErrorCode> error;
};

class StoreArchiveContext final : public sdk::ArchiveContext {
public:
    explicit StoreArchiveContext(sdk::StorageBackend& store) : store_(store) {}
    sdk::Logger& logger() noexcept override { return host_.logger(); }
    sdk::StorageBackend& storage() noexcept override { return store_; }
    sdk::Tracker* tracker() noexcept override { return nullptr; }
    std::string outputs_dir() const override { return "/nonexistent"; }

private:
    sdk::StorageBackend& store_;
    sdk::testing::FakeHost host_;
};

}  // namespace

TEST_CASE("Align's archival fixes the experiment's stored model, not the one it was submitted with",
          "[unit][ttp]") {
    sdk::testing::FakeHost host;
    AlignFunction fn(host, sdk::Options(std::map<std::string, std::string>{}));
    // Edited (two layers) while the workers were polled; the job carries the old one-layer model.
    const json edited = json::parse(R"([
        {"is_input": true, "l_type": "Linear", "structure": {"in_features": 4, "out_features": 8}, "activation": "relu"},
        {"is_input": false, "l_type": "Linear", "structure": {"in_features": 8, "out_features": 1}, "activation": "sigmoid"}])");
    const json submitted = json::parse(
        R"([{"is_input": true, "l_type": "Linear", "structure": {"in_features": 4, "out_features": 1}, "activation": "sigmoid"}])");
    OneExperimentStore store;
    store.document = json{{"model", edited}, {"note", "kept"}}.dump();
    const std::string job =
        json{{"job_id", "j1"}, {"process", "preprocess"}, {"keys", {"c", "p"}}, {"grid", 0}, {"parameters", json::object()}}
            .dump();
    const std::string outputs =
        json{{"superset", {{"X", {"a", "b", "c"}}, {"y", {"0", "1"}}, {"scaling", json::object()}}},
             {"spacers", json::object()},
             {"experiments",
              {{{"collab_id", "c"}, {"project_id", "p"}, {"expt_id", "e1"},
                {"updates", {{"model", auto_fix_model(submitted, 3, 2)}}}}}}}
            .dump();
    StoreArchiveContext ctx(store);
    auto batch = fn.archive(ctx, job, outputs);
    REQUIRE(batch);
    REQUIRE(batch->size() == 1);
    const json written = json::parse(batch->front().document);
    CHECK(batch->front().kind == "Experiment");
    CHECK(written["model"] == auto_fix_model(edited, 3, 2));  // before: the submitted model, fixed
    CHECK(written["model"].size() == 2);
    CHECK(written["note"] == "kept");

    // A read that fails for another reason than a deleted experiment fails the archival: the
    // alignment was archived without its fix, and trainings then failed on a shape mismatch.
    store.error = sdk::ErrorCode::Unavailable;
    auto failed = fn.archive(ctx, job, outputs);
    REQUIRE_FALSE(failed);
    CHECK(failed.error().code == sdk::ErrorCode::Unavailable);
}
