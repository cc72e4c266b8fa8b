// SPDX-License-Identifier: Apache-2.0
// The evaluation archive (validate and predict): what its results must be written under.

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/sdk/testing/fake_host.hpp>

#include "evaluation.hpp"
#include "support/archive_context.hpp"

namespace {

namespace sdk = synergos::sdk;
using nlohmann::json;
using Fields = std::vector<std::pair<std::string, std::string>>;

Fields fields(const sdk::Key& key) {
    Fields out;
    for (const auto& f : key) {
        out.emplace_back(f.name, f.value);
    }
    return out;
}

}  // namespace

TEST_CASE("evaluation results are archived under their run and participant and a trial's under its "
          "experiment",
          "[unit][ttp]") {
    sdk::testing::FakeHost host;
    for (const synergos::plugins::ttp::EvaluationKind kind :
         {synergos::plugins::ttp::EvaluationKind{"validate", "evaluate", "Validation", false},
          synergos::plugins::ttp::EvaluationKind{"predict", "predict", "Prediction", false}}) {
        INFO(kind.process);
        synergos::plugins::ttp::EvaluationFunction fn(kind, host,
                                                      sdk::Options(std::map<std::string, std::string>{}));
        synergos::testing::NoStoreArchiveContext ctx;
        const json outputs = {
            {"w", {{kind.meta, {{"statistics", {{"accuracy", 0.5}}}, {"res_path", nullptr}}}}}};
        const auto archived = [&](const json& parameters) {
            const json job = {{"job_id", "j1"},
                              {"process", kind.process},
                              {"keys", {"c", "p", "e", "r"}},
                              {"grid", 0},
                              {"parameters", parameters}};
            auto batch = fn.archive(ctx, job.dump(), outputs.dump());
            INFO((batch ? std::string() : batch.error().message));
            REQUIRE(batch.has_value());
            REQUIRE(batch->size() == 3);
            CHECK(batch->at(0).mode == sdk::WriteMode::Require);
            CHECK(batch->at(1).mode == sdk::WriteMode::Require);
            CHECK(batch->at(1).kind == "Participant");
            CHECK(fields(batch->at(1).key) == Fields{{"participant_id", "w"}});
            CHECK(batch->at(2).kind == kind.record_kind);
            return batch->at(0);
        };
        // A run deleted while it was evaluated: the Require fails the archive, the job fails.
        const sdk::Mutation plain = archived(json::object());
        CHECK(plain.kind == "Run");
        CHECK(fields(plain.key) ==
              Fields{{"collab_id", "c"}, {"project_id", "p"}, {"expt_id", "e"}, {"run_id", "r"}});
        // An optimization's trial is validated before its Run record is written.
        const sdk::Mutation trial = archived({{"optimization", "opt-job"}});
        CHECK(trial.kind == "Experiment");
        CHECK(fields(trial.key) == Fields{{"collab_id", "c"}, {"project_id", "p"}, {"expt_id", "e"}});
    }
}

namespace {

/// Workers scripted per route suffix ("initialise", "evaluate", "terminate"): each call is
/// recorded and answered from `answers` (200 {} when none is set).
class ScriptedWorkers final : public sdk::WorkerClient {
public:
    sdk::Result<sdk::WorkerReply> call(const sdk::GridNode& node, const sdk::WorkerRequest& request) noexcept override {
        const std::string suffix = request.path.substr(request.path.rfind('/') + 1);
        calls.push_back(node.participant_id + " " + suffix);
        auto it = answers.find(node.participant_id + " " + suffix);  // one worker's own answer
        if (it == answers.end()) {
            it = answers.find(suffix);
        }
        sdk::WorkerReply reply;
        reply.status = it == answers.end() ? 200 : it->second.first;
        reply.json = it == answers.end() ? "{}" : it->second.second;
        return reply;
    }
    void call_all(const std::vector<sdk::GridNode>& nodes, const std::vector<sdk::WorkerRequest>& requests,
                  sdk::ReplyVisitor& visitor) noexcept override {
        for (std::size_t i = 0; i < nodes.size(); ++i) {
            visitor.on_reply(i, call(nodes[i], requests[i]));
        }
    }
    /// How many calls ended with `suffix`.
    std::size_t count(const std::string& suffix) const {
        std::size_t n = 0;
        for (const auto& c : calls) {
            n += c.size() >= suffix.size() && c.compare(c.size() - suffix.size(), suffix.size(), suffix) == 0;
        }
        return n;
    }
    std::map<std::string, std::pair<int, std::string>> answers;
    std::vector<std::string> calls;
};

/// A job context with two workers, a global model to evaluate, and a cancel switch.
class EvalCtx final : public sdk::JobContext {
public:
    EvalCtx() {
        sdk::Tensor t;
        t.name = "w";
        t.dtype = sdk::DType::F32;
        t.shape = {1};
        t.data.assign(4, 0);
        model_.tensors.push_back(std::move(t));
    }
    sdk::Logger& logger() noexcept override { return logger_; }
    const std::string& job_id() const noexcept override { return id_; }
    int grid() const noexcept override { return 0; }
    const std::vector<sdk::GridNode>& nodes() const noexcept override { return nodes_; }
    std::string outputs_dir() const override { return "/nonexistent"; }
    bool is_cancelled() const noexcept override { return cancelled; }
    void report_progress(std::string_view) noexcept override {}
    sdk::WorkerClient& workers() noexcept override { return workers_; }
    sdk::Result<sdk::Aggregator*> aggregator(const std::string&) noexcept override {
        return sdk::Error{sdk::ErrorCode::Unimplemented, "not here"};
    }
    sdk::Result<std::string> submit_job(std::string_view) noexcept override {
        return sdk::Error{sdk::ErrorCode::Unimplemented, "not here"};
    }
    sdk::Result<std::string> wait_job(const std::string&, std::chrono::milliseconds) noexcept override {
        return sdk::Error{sdk::ErrorCode::Unimplemented, "not here"};
    }
    sdk::Status write_tensors(const std::string&, const sdk::TensorMap&, std::string_view) noexcept override {
        return sdk::Status::ok();
    }
    sdk::Result<sdk::TensorMap> read_tensors(const std::string&) noexcept override { return model_; }
    sdk::Status write_file(const std::string&, std::string_view) noexcept override { return sdk::Status::ok(); }

    bool cancelled = false;
    ScriptedWorkers workers_;

private:
    sdk::testing::CapturingLogger logger_;
    std::string id_ = "j1";
    std::vector<sdk::GridNode> nodes_{{"a", "127.0.0.1", 1}, {"b", "127.0.0.1", 2}};
    sdk::TensorMap model_;
};

const std::string kJob = json{{"job_id", "j1"},
                              {"process", "validate"},
                              {"keys", {"c", "p", "e", "r"}},
                              {"grid", 0},
                              {"parameters", {{"tags", {{"a", {{"train", json::array()}}}, {"b", {{"train", json::array()}}}}}}}}
                             .dump();

synergos::plugins::ttp::EvaluationFunction validate_fn(sdk::HostContext& host,
                                                       std::map<std::string, std::string> options = {}) {
    return synergos::plugins::ttp::EvaluationFunction({"validate", "evaluate", "Validation", false}, host,
                                                      sdk::Options(std::move(options)));
}

}  // namespace

TEST_CASE("A validation drops the run it loaded on every worker however it ends", "[unit][ttp]") {
    sdk::testing::FakeHost host;
    auto fn = validate_fn(host);
    EvalCtx ctx;
    ctx.workers_.answers["evaluate"] = {200, R"({"statistics": {"accuracy": 1}, "rows": 3})"};
    auto ok = fn.execute(ctx, kJob);
    REQUIRE(ok);
    CHECK(json::parse(*ok).size() == 2);
    // Before, only training terminated its run: each validation left a model and its data
    // loaded on every worker (an optimization's trials, one each).
    CHECK(ctx.workers_.count("terminate") == 2);

    EvalCtx failing;
    failing.workers_.answers["evaluate"] = {500, R"({"message": "disk full"})"};
    auto failed = fn.execute(failing, kJob);
    REQUIRE_FALSE(failed);
    CHECK(failing.workers_.count("terminate") == 2);
}

TEST_CASE("A cancelled validation stops before calling the workers", "[unit][ttp]") {
    sdk::testing::FakeHost host;
    auto fn = validate_fn(host);
    EvalCtx ctx;
    ctx.cancelled = true;
    auto stopped = fn.execute(ctx, kJob);
    REQUIRE_FALSE(stopped);
    CHECK(stopped.error().code == sdk::ErrorCode::Cancelled);
    CHECK(ctx.workers_.count("initialise") == 0);
    CHECK(ctx.workers_.count("evaluate") == 0);
}

TEST_CASE("A worker reply a validation cannot read fails the job instead of dropping the worker",
          "[unit][ttp]") {
    sdk::testing::FakeHost host;
    auto fn = validate_fn(host);
    EvalCtx ctx;
    // Before, the exception was swallowed: the job succeeded without this worker's results.
    ctx.workers_.answers["evaluate"] = {200, R"({"statistics": {}, "rows": null})"};
    auto r = fn.execute(ctx, kJob);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message, Catch::Contains("the reply of worker 'a'") && Catch::Contains("evaluate"));
    // The same reply on every attempt: permanent, not retried (it was Internal, retried).
    CHECK(r.error().code == sdk::ErrorCode::InvalidArgument);
    for (const char* rows : {"1e20", "\"12\"", "2.5"}) {
        EvalCtx bad;
        bad.workers_.answers["evaluate"] = {200, std::string(R"({"statistics": {}, "rows": )") + rows + "}"};
        auto refused = fn.execute(bad, kJob);
        INFO(rows);
        REQUIRE_FALSE(refused);
        CHECK(refused.error().code == sdk::ErrorCode::InvalidArgument);
        CHECK_THAT(refused.error().message, Catch::Contains("'rows'"));
    }

    // An error body whose message is not a string is still reported with the worker's status.
    EvalCtx odd;
    odd.workers_.answers["initialise"] = {400, R"({"message": {"nested": true}})"};
    auto refused = fn.execute(odd, kJob);
    REQUIRE_FALSE(refused);
    CHECK_THAT(refused.error().message, Catch::Contains("answered 400"));
}

TEST_CASE("A worker that lost the run (409) makes a validation retryable", "[unit][ttp]") {
    sdk::testing::FakeHost host;
    auto fn = validate_fn(host);
    EvalCtx ctx;
    ctx.workers_.answers["evaluate"] = {409, R"({"message": "run not initialised"})"};
    auto r = fn.execute(ctx, kJob);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == sdk::ErrorCode::Unavailable);
}

TEST_CASE("A validation reports every worker's failure and is not retried when one is permanent",
          "[unit][ttp]") {
    sdk::testing::FakeHost host;
    auto fn = validate_fn(host);
    EvalCtx ctx;
    ctx.workers_.answers["a evaluate"] = {503, R"({"message": "worker busy"})"};
    ctx.workers_.answers["b evaluate"] = {400, R"({"message": "bad tags"})"};
    auto r = fn.execute(ctx, kJob);
    REQUIRE_FALSE(r);
    // Before: the first failure's text with the transient code, so the job was retried into
    // the same permanent refusal, and worker 'b' was never named.
    CHECK(r.error().code == sdk::ErrorCode::InvalidArgument);
    CHECK_THAT(r.error().message, Catch::Contains("worker busy") && Catch::Contains("bad tags"));
}

TEST_CASE("A validation of named participants refuses one without a node instead of skipping it",
          "[unit][ttp]") {
    sdk::testing::FakeHost host;
    auto fn = validate_fn(host);
    EvalCtx ctx;
    json job = json::parse(kJob);
    job["parameters"]["participants"] = {"a", "zz"};
    auto r = fn.execute(ctx, job.dump());
    REQUIRE_FALSE(r);
    CHECK(r.error().code == sdk::ErrorCode::InvalidArgument);
    CHECK_THAT(r.error().message, Catch::Contains("'zz' has no node on grid 0"));
    CHECK(ctx.workers_.count("initialise") == 0);
}

TEST_CASE("A worker-call timeout outside 1 s to 7 days is refused naming the option", "[unit][ttp]") {
    sdk::testing::FakeHost host;
    for (const char* bad : {"0", "999", "604800001"}) {
        INFO(bad);
        CHECK_THROWS_WITH(validate_fn(host, {{"timeout_ms", bad}}),
                          Catch::Contains("ttp 'validate': option 'timeout_ms' must be"));
    }
    CHECK_NOTHROW(validate_fn(host, {{"timeout_ms", "1000"}}));
}
