// SPDX-License-Identifier: Apache-2.0
// What the TTP functions track after archival (ttp::tracking_run, then log_metrics), against
// the real MLflow tracker over a temp folder: a run trained again after its settings changed,
// a redelivered training, and participant ids with a colon.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/testing/fake_host.hpp>
#include <synergos/sdk/ttp_function.hpp>

#include "evaluation.hpp"
#if defined(SYNERGOS_TEST_HAVE_TRAIN)
#include "train_function.hpp"
#endif
#include "mlflow_tracker.hpp"
#include "temp_dir.hpp"
#include "ttp_common.hpp"

namespace fs = std::filesystem;
namespace sdk = synergos::sdk;
namespace mlflow = synergos::plugins::mlflow;
namespace ttp = synergos::plugins::ttp;
using Catch::Matchers::Contains;
using nlohmann::json;
using synergos::test::mlflow::slurp;
using synergos::test::mlflow::TempDir;

namespace {

struct Fixture {
    TempDir dir;
    sdk::testing::FakeHost host{dir.path().string()};
    fs::path root = dir.path() / "mlflow";
    mlflow::MlflowTracker tracker{host, sdk::Options(std::map<std::string, std::string>{})};

    Fixture() { REQUIRE(tracker.start().is_ok()); }

    /// The folder of an MLflow run id (in whichever experiment holds it).
    fs::path run_dir(const std::string& run_id) const {
        for (const auto& experiment : fs::directory_iterator(root)) {
            if (fs::exists(experiment.path() / run_id / "meta.yaml")) {
                return experiment.path() / run_id;
            }
        }
        FAIL("no run " << run_id);
        return {};
    }
};

ttp::Job job(const std::string& job_id, const std::string& process) {
    ttp::Job j;
    j.job_id = job_id;
    j.process = process;
    j.keys = {"c", "p", "e", "r1"};
    return j;
}

/// What train's after_archive logs: the global loss and each participant's local loss per round.
sdk::Status log_training(sdk::Tracker& tracker, const std::string& run, int rounds) {
    std::vector<sdk::MetricPoint> points;
    for (int r = 0; r < rounds; ++r) {
        points.push_back({"global_train_loss", 1.0 / (r + 1), r, 1000 + r});
        points.push_back({"hosp:a_local_loss", 2.0 / (r + 1), r, 1000 + r});
    }
    return tracker.log_metrics(run, points);
}

class TrackingArchiveContext final : public sdk::ArchiveContext {
public:
    TrackingArchiveContext(sdk::HostContext& host, sdk::Tracker& tracker)
        : host_(host), tracker_(tracker) {}
    sdk::Logger& logger() noexcept override { return host_.logger(); }
    sdk::StorageBackend& storage() noexcept override { std::abort(); }  // not read here
    sdk::Tracker* tracker() noexcept override { return &tracker_; }
    std::string outputs_dir() const override { return "/nonexistent"; }

private:
    sdk::HostContext& host_;
    sdk::Tracker& tracker_;
};

}  // namespace

TEST_CASE("a run trained again after its settings changed is tracked in a new MLflow run",
          "[integration][mlflow]") {
    Fixture f;
    const std::vector<std::string> participants{"hosp:a", "b"};
    auto first = ttp::tracking_run(f.tracker, job("j1", "train"), {{"rounds", 2}}, participants);
    REQUIRE(first.has_value());
    REQUIRE(log_training(f.tracker, *first, 2).is_ok());

    // PUT .../runs/r1 {"rounds": 5}, then train again.
    auto second = ttp::tracking_run(f.tracker, job("j2", "train"), {{"rounds", 5}}, participants);
    INFO((second ? std::string() : second.error().message));
    REQUIRE(second.has_value());
    CHECK(*second != *first);
    REQUIRE(log_training(f.tracker, *second, 5).is_ok());

    const fs::path first_dir = f.run_dir(*first);
    const fs::path second_dir = f.run_dir(*second);
    CHECK(slurp(first_dir / "params" / "rounds") == "2");
    CHECK(slurp(second_dir / "params" / "rounds") == "5");
    CHECK(slurp(second_dir / "tags" / "mlflow.runName") == "r1");
    CHECK(slurp(second_dir / "tags" / "synergos.attempt") == "2");
    CHECK(slurp(second_dir / "tags" / "synergos.training_job") == "j2");
    // One point per round in each run: the second training did not repeat the first's steps.
    CHECK(slurp(first_dir / "metrics" / "global_train_loss") == "1000 1.0 0\n1001 0.5 1\n");
    CHECK(slurp(second_dir / "metrics" / "hosp:a_local_loss") ==
          "1000 2.0 0\n1001 1.0 1\n1002 0.6666666666666666 2\n1003 0.5 3\n1004 0.4 4\n");

    SECTION("a redelivered training keeps its own run") {
        auto again =
            ttp::tracking_run(f.tracker, job("j1", "train"), {{"rounds", 2}}, participants);
        REQUIRE(again.has_value());
        CHECK(*again == *first);
    }
    SECTION("an evaluation tracks into the latest training's run, even if settings changed since") {
        auto same =
            ttp::tracking_run(f.tracker, job("v1", "validate"), {{"rounds", 5}}, participants);
        REQUIRE(same.has_value());
        CHECK(*same == *second);
        CHECK_FALSE(fs::exists(second_dir / "tags" / "synergos.params_error"));

        // PUT {"rounds": 7} without training: the params conflict no longer stops the metrics.
        auto changed =
            ttp::tracking_run(f.tracker, job("v2", "validate"), {{"rounds", 7}}, participants);
        REQUIRE(changed.has_value());
        CHECK(*changed == *second);
        CHECK(slurp(second_dir / "params" / "rounds") == "5");
        CHECK_THAT(slurp(second_dir / "tags" / "synergos.params_error"),
                   Contains("'rounds'") && Contains("'7'"));
    }
}

TEST_CASE("evaluation metrics of a participant id with a colon reach MLflow",
          "[integration][mlflow]") {
    Fixture f;
    ttp::EvaluationFunction validate({"validate", "evaluate", "Validation", true}, f.host,
                                     sdk::Options(std::map<std::string, std::string>{}));
    TrackingArchiveContext ctx(f.host, f.tracker);
    const json job_message = {{"job_id", "v1"},
                              {"process", "validate"},
                              {"keys", {"c", "p", "e", "r1"}},
                              {"grid", 0},
                              {"parameters", {{"run", {{"rounds", 2}}}}}};
    const json outputs = {
        {"hosp:a", {{"evaluate", {{"statistics", {{"accuracy", 0.875}, {"f1", {0.5, 0.25}}}}}}}},
        {"b", {{"evaluate", {{"statistics", {{"accuracy", 0.75}}}}}}}};
    const auto status = validate.after_archive(ctx, job_message.dump(), outputs.dump());
    INFO(status.message());
    REQUIRE(status.is_ok());
    auto run = f.tracker.ensure_run(f.tracker.ensure_experiment("c_>_p_>_e").value(), "r1", {});
    REQUIRE(run.has_value());
    const fs::path metrics = f.run_dir(*run) / "metrics";
    CHECK(slurp(metrics / "hosp:a.evaluate.accuracy").find(" 0.875 0\n") != std::string::npos);
    CHECK(slurp(metrics / "hosp:a.evaluate.f1_class_1").find(" 0.25 2\n") != std::string::npos);
    CHECK(slurp(metrics / "b.evaluate.accuracy").find(" 0.75 0\n") != std::string::npos);
    CHECK(slurp(f.run_dir(*run) / "tags" / "synergos.participants") == "b,hosp:a");
}

#if defined(SYNERGOS_TEST_HAVE_TRAIN)
TEST_CASE("a training's MLflow run ends FINISHED once its results are logged",
          "[integration][mlflow]") {
    Fixture f;
    synergos::plugins::train::TrainFunction train(f.host,
                                                  sdk::Options(std::map<std::string, std::string>{}));
    TrackingArchiveContext ctx(f.host, f.tracker);
    const json job_message = {{"job_id", "t1"},
                              {"process", "train"},
                              {"keys", {"c", "p", "e", "r1"}},
                              {"grid", 0},
                              {"parameters", {{"run", {{"rounds", 2}}}}}};
    const json outputs = {{"history", {{"train", {{"0", 1.0}, {"1", 0.5}}}}},
                          {"local_0", {{"origin", "a"}}}};
    const auto status = train.after_archive(ctx, job_message.dump(), outputs.dump());
    INFO(status.message());
    REQUIRE(status.is_ok());
    auto run = f.tracker.ensure_run(f.tracker.ensure_experiment("c_>_p_>_e").value(), "r1", {});
    REQUIRE(run.has_value());
    const std::string meta = slurp(f.run_dir(*run) / "meta.yaml");
    INFO(meta);
    // MLflow's RunStatus: 1 RUNNING, 3 FINISHED. Before, every run read RUNNING forever.
    CHECK(meta.find("status: 3") != std::string::npos);
    CHECK(meta.find("end_time: null") == std::string::npos);
    CHECK(slurp(f.run_dir(*run) / "metrics" / "global_train_loss").find(" 0.5 1\n") !=
          std::string::npos);
}

TEST_CASE("a training that failed or was cancelled ends its MLflow run FAILED or KILLED with why",
          "[integration][mlflow]") {
    Fixture f;
    synergos::plugins::train::TrainFunction train(f.host,
                                                  sdk::Options(std::map<std::string, std::string>{}));
    sdk::JobEndObserver* observer = &train;  // what the director finds with dynamic_cast
    TrackingArchiveContext ctx(f.host, f.tracker);
    const auto run_of = [&](const std::string& run_name) {
        auto run = f.tracker.ensure_run(f.tracker.ensure_experiment("c_>_p_>_e").value(), run_name, {});
        REQUIRE(run.has_value());
        return f.run_dir(*run);
    };
    const auto job_message = [](const std::string& job_id, const std::string& run) {
        return json{{"job_id", job_id},
                    {"process", "train"},
                    {"keys", {"c", "p", "e", run}},
                    {"grid", 1},
                    {"grids", json::array({json::array({{{"participant_id", "x"}}}),
                                           json::array({{{"participant_id", "hosp:a"}},
                                                        {{"participant_id", "b"}}})})},
                    {"parameters", {{"run", {{"rounds", 2}}}}}}
            .dump();
    };
    // MLflow's RunStatus: 4 FAILED, 5 KILLED. Before, such a training had no run at all.
    auto status = observer->after_unsuccessful(ctx, job_message("t1", "r1"), "failed",
                                               "round 1 failed: worker 'b' unreachable");
    INFO(status.message());
    REQUIRE(status.is_ok());
    const fs::path failed = run_of("r1");
    CHECK(slurp(failed / "meta.yaml").find("status: 4") != std::string::npos);
    CHECK(slurp(failed / "tags" / "synergos.outcome") == "failed");
    CHECK(slurp(failed / "tags" / "synergos.reason") == "round 1 failed: worker 'b' unreachable");
    CHECK(slurp(failed / "tags" / "synergos.participants") == "hosp:a,b");  // its grid's
    CHECK(slurp(failed / "params" / "rounds") == "2");

    status = observer->after_unsuccessful(ctx, job_message("t2", "r2"), "cancelled",
                                          std::string(3000, 'x') + "\xff");
    INFO(status.message());
    REQUIRE(status.is_ok());
    const fs::path cancelled = run_of("r2");
    CHECK(slurp(cancelled / "meta.yaml").find("status: 5") != std::string::npos);
    CHECK(slurp(cancelled / "tags" / "synergos.reason") == std::string(2000, 'x'));  // cut
}
#endif
