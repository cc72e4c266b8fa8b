// SPDX-License-Identifier: Apache-2.0
// Acceptance: the store written by the tracker is read back by an independent reader
// (read_mlflow_store.py, Python standard library only, applying MLflow FileStore's read rules),
// which must find the experiments, runs, params and per-round metrics where MLflow puts them.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include <synergos/sdk/testing/fake_host.hpp>

#include "mlflow_tracker.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace sdk = synergos::sdk;
namespace mlflow = synergos::plugins::mlflow;
using synergos::test::mlflow::spit;
using synergos::test::mlflow::TempDir;

namespace {

sdk::Options opts(std::map<std::string, std::string> values) {
    return sdk::Options(std::move(values));
}

struct ReaderOutput {
    int exit_code = -1;
    std::string out;
};

/// Runs the reader on `root` (stderr goes to the test log).
ReaderOutput read_store(const fs::path& root) {
    const std::string command =
        std::string(SYNERGOS_TEST_PYTHON) + " '" + SYNERGOS_TEST_SOURCE_DIR +
        "/tests/plugins/tracking/mlflow/read_mlflow_store.py' '" + root.string() + "'";
    ReaderOutput result;
    FILE* pipe = ::popen(command.c_str(), "r");
    REQUIRE(pipe != nullptr);
    char buffer[4096];
    std::size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
        result.out.append(buffer, n);
    }
    const int status = ::pclose(pipe);
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return result;
}

const nlohmann::json* find_by(const nlohmann::json& list, const char* field,
                              const std::string& value) {
    for (const auto& item : list) {
        if (item.at(field) == value) {
            return &item;
        }
    }
    return nullptr;
}

}  // namespace

TEST_CASE("an independent reader finds experiments, runs, params and per-round metrics",
          "[integration][mlflow]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path().string());
    mlflow::MlflowTracker tracker(host, opts({{"user", "director"}}));
    REQUIRE(tracker.start().is_ok());

    // What the director does on validation archival: one MLflow experiment per Synergos
    // experiment, one run per Synergos run, params once, metrics per round and per class.
    const std::string experiment = tracker.ensure_experiment("c1_>_p1_>_e1").value();
    const std::string other = tracker.ensure_experiment("c1_>_p1_>_e2 'quoted' \xc3\xa9").value();
    const std::string run = tracker.ensure_run(experiment, "r1", {}).value();
    const std::string run2 = tracker.ensure_run(experiment, "r2", {}).value();
    REQUIRE(tracker
                .log_params(run, {{"rounds", "3"},
                                  {"lr", "0.001"},
                                  {"algorithm", "FedAvg"},
                                  {"model/structure", "[{\"l\": 1}]"}})
                .is_ok());
    for (int round = 0; round < 3; ++round) {
        REQUIRE(tracker
                    .log_metrics(
                        run,
                        {{"global_train_loss", 1.0 / (round + 1), round, 1700000000000 + round},
                         {"global_evaluate_loss", 0.1 * (3 - round), round, 1700000000000 + round}})
                    .is_ok());
    }
    REQUIRE(tracker
                .log_metrics(run, {{"accuracy_class_0", 0.625, 1, 1700000000100},
                                   {"accuracy_class_1", 0.625, 2, 1700000000100},
                                   {"R2", -0.5, 0, 1700000000100},
                                   {"hosp:a.evaluate.accuracy", 0.875, 0, 1700000000100}})
                .is_ok());
    spit(dir.path() / "outputs" / "model.safetensors", "w");
    REQUIRE(tracker.log_artifact(run, (dir.path() / "outputs").string(), "").is_ok());
    REQUIRE(tracker.end_run(run, "FINISHED").is_ok());

    const ReaderOutput read = read_store(dir.path() / "mlflow");
    REQUIRE(read.exit_code == 0);
    const auto store = nlohmann::json::parse(read.out);
    const auto& experiments = store.at("experiments");
    REQUIRE(experiments.size() == 3);

    const auto* def = find_by(experiments, "experiment_id", "0");
    REQUIRE(def != nullptr);
    CHECK(def->at("name") == "Default");
    CHECK(def->at("runs").empty());

    const auto* second = find_by(experiments, "experiment_id", other);
    REQUIRE(second != nullptr);
    CHECK(second->at("name") == "c1_>_p1_>_e2 'quoted' \xc3\xa9");

    const auto* first = find_by(experiments, "name", "c1_>_p1_>_e1");
    REQUIRE(first != nullptr);
    CHECK(first->at("experiment_id") == experiment);
    CHECK(first->at("lifecycle_stage") == "active");
    CHECK(first->at("artifact_location") ==
          "file://" + (dir.path() / "mlflow" / experiment).string());
    REQUIRE(first->at("runs").size() == 2);

    const auto* r1 = find_by(first->at("runs"), "run_id", run);
    REQUIRE(r1 != nullptr);
    CHECK(r1->at("run_name") == "r1");
    CHECK(r1->at("status") == 3);
    CHECK(r1->at("end_time").is_number_integer());
    CHECK(r1->at("user_id") == "director");
    CHECK(r1->at("tags").at("mlflow.runName") == "r1");
    CHECK(r1->at("params") == nlohmann::json{{"rounds", "3"},
                                             {"lr", "0.001"},
                                             {"algorithm", "FedAvg"},
                                             {"model/structure", "[{\"l\": 1}]"}});
    const auto& train = r1->at("metrics").at("global_train_loss");
    REQUIRE(train.size() == 3);
    for (int round = 0; round < 3; ++round) {
        CHECK(train[round][0] == 1700000000000 + round);
        CHECK(train[round][1].get<double>() == 1.0 / (round + 1));  // exact round trip
        CHECK(train[round][2] == round);
    }
    CHECK(r1->at("metrics").at("global_evaluate_loss").size() == 3);
    CHECK(r1->at("metrics").at("accuracy_class_1")[0][2] == 2);
    CHECK(r1->at("metrics").at("R2")[0][3] == "-0.5");
    CHECK(r1->at("metrics").at("hosp:a.evaluate.accuracy")[0][3] == "0.875");
    CHECK(r1->at("artifacts") == nlohmann::json::array({"model.safetensors"}));
    CHECK(r1->at("stray_files").empty());

    const auto* r2 = find_by(first->at("runs"), "run_id", run2);
    REQUIRE(r2 != nullptr);
    CHECK(r2->at("status") == 1);
    CHECK(r2->at("end_time").is_null());
    CHECK(r2->at("metrics").empty());
}

TEST_CASE("the independent reader refuses a store MLflow would refuse", "[integration][mlflow]") {
    // Guards the guard: a reader that accepted anything would prove nothing.
    TempDir dir;
    sdk::testing::FakeHost host(dir.path().string());
    mlflow::MlflowTracker tracker(host, opts({}));
    REQUIRE(tracker.start().is_ok());
    const std::string experiment = tracker.ensure_experiment("e").value();
    const std::string run = tracker.ensure_run(experiment, "r", {}).value();
    REQUIRE(read_store(dir.path() / "mlflow").exit_code == 0);
    const fs::path metrics = dir.path() / "mlflow" / experiment / run / "metrics";
    SECTION("a metric line with four fields") {
        spit(metrics / "bad", "1 2 3 4\n");
    }
    SECTION("a metric key MLflow would refuse") {
        spit(metrics / "a@b", "1 2 3\n");
    }
    SECTION("a torn metric line") {
        spit(metrics / "torn", "1 2");
    }
    CHECK(read_store(dir.path() / "mlflow").exit_code == 1);
}
