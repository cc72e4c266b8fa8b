// SPDX-License-Identifier: Apache-2.0
// The tracker against real files in a temp folder. Expectations about the layout are written
// from MLflow's file_store.py, and read back here with plain file reads (and yaml-cpp for
// meta.yaml), not through the store's own parser.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <yaml-cpp/yaml.h>

#include <synergos/sdk/testing/fake_host.hpp>

#include "mlflow_tracker.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace sdk = synergos::sdk;
namespace mlflow = synergos::plugins::mlflow;
using Catch::Matchers::Contains;
using synergos::test::mlflow::slurp;
using synergos::test::mlflow::spit;
using synergos::test::mlflow::TempDir;

namespace {

sdk::Options opts(std::map<std::string, std::string> values) {
    return sdk::Options(std::move(values));
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// A started tracker over `<dir>/mlflow` (the fake host's MLflow directory).
struct Fixture {
    TempDir dir;
    sdk::testing::FakeHost host{dir.path().string()};
    fs::path root = dir.path() / "mlflow";
    mlflow::MlflowTracker tracker{host, opts({{"user", "tester"}})};

    Fixture() { REQUIRE(tracker.start().is_ok()); }

    std::string experiment(const std::string& name) {
        auto id = tracker.ensure_experiment(name);
        REQUIRE(id.has_value());
        return *id;
    }
    std::string run(const std::string& experiment_id, const std::string& name) {
        auto id = tracker.ensure_run(experiment_id, name, {});
        REQUIRE(id.has_value());
        return *id;
    }
    fs::path run_dir(const std::string& experiment_id, const std::string& run_id) const {
        return root / experiment_id / run_id;
    }
};

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < text.size()) {
        const std::size_t end = text.find('\n', start);
        REQUIRE(end != std::string::npos);  // every line ends with a newline
        out.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

/// Every regular file below `dir`, as relative paths.
std::set<std::string> files_below(const fs::path& dir) {
    std::set<std::string> out;
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
        if (entry.is_regular_file()) {
            out.insert(entry.path().lexically_relative(dir).string());
        }
    }
    return out;
}

/// Caps the size any file of this process may grow to (RLIMIT_FSIZE) while alive: a write that
/// crosses the cap is cut short and the next one fails with EFBIG, as on a full disk.
/// SIGXFSZ, which would end the process, is ignored meanwhile.
class FileSizeCap {
public:
    explicit FileSizeCap(rlim_t bytes) {
        REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved_) == 0);
        struct sigaction ignore {};
        ignore.sa_handler = SIG_IGN;
        REQUIRE(::sigaction(SIGXFSZ, &ignore, &saved_action_) == 0);
        rlimit capped = saved_;
        capped.rlim_cur = bytes;
        REQUIRE(::setrlimit(RLIMIT_FSIZE, &capped) == 0);
    }
    ~FileSizeCap() {
        ::setrlimit(RLIMIT_FSIZE, &saved_);
        ::sigaction(SIGXFSZ, &saved_action_, nullptr);
    }
    FileSizeCap(const FileSizeCap&) = delete;
    FileSizeCap& operator=(const FileSizeCap&) = delete;

private:
    rlimit saved_{};
    struct sigaction saved_action_ {};
};

std::string tag_of(const fs::path& run_dir, const std::string& key) {
    return slurp(run_dir / "tags" / key);
}

/// ensure_run as tracking_run calls it: a training tags its job id, an evaluation does not.
std::string ensure_job_run(mlflow::MlflowTracker& tracker, const std::string& experiment,
                           const std::string& name, const std::string& training_job) {
    sdk::StringPairs tags{{"synergos.run_id", name}};
    if (!training_job.empty()) {
        tags.emplace_back("synergos.training_job", training_job);
    }
    auto id = tracker.ensure_run(experiment, name, tags);
    REQUIRE(id.has_value());
    return *id;
}

}  // namespace

TEST_CASE("start lays out the root, the Default experiment 0 and .trash", "[unit][mlflow]") {
    Fixture f;
    CHECK(fs::is_directory(f.root / ".trash"));
    const YAML::Node meta = YAML::LoadFile((f.root / "0" / "meta.yaml").string());
    CHECK(meta["name"].as<std::string>() == "Default");
    CHECK(meta["experiment_id"].as<std::string>() == "0");
    CHECK(meta["experiment_id"].Tag() == "!");  // a quoted string, as MLflow writes it
    CHECK(meta["lifecycle_stage"].as<std::string>() == "active");
    CHECK(meta["artifact_location"].as<std::string>() == "file://" + (f.root / "0").string());
    CHECK(meta["creation_time"].as<std::int64_t>() > 1600000000000);
    CHECK(meta["last_update_time"].as<std::int64_t>() == meta["creation_time"].as<std::int64_t>());
    CHECK(f.tracker.root() == f.root.string());
}

TEST_CASE("calls before start are refused", "[unit][mlflow]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path().string());
    mlflow::MlflowTracker tracker(host, opts({{"root", (dir.path() / "m").string()}}));
    auto id = tracker.ensure_experiment("x");
    REQUIRE_FALSE(id.has_value());
    CHECK(id.error().code == sdk::ErrorCode::FailedPrecondition);
    CHECK_FALSE(fs::exists(dir.path() / "m"));
}

TEST_CASE("option root overrides the host's MLflow directory", "[unit][mlflow]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path().string());
    mlflow::MlflowTracker tracker(host, opts({{"root", (dir.path() / "other").string()}}));
    REQUIRE(tracker.start().is_ok());
    CHECK(fs::exists(dir.path() / "other" / "0" / "meta.yaml"));
    CHECK_FALSE(fs::exists(dir.path() / "mlflow"));
}

TEST_CASE("a root that is a file is refused with its path", "[unit][mlflow]") {
    TempDir dir;
    spit(dir.path() / "file", "x");
    sdk::testing::FakeHost host(dir.path().string());
    mlflow::MlflowTracker tracker(host, opts({{"root", (dir.path() / "file").string()}}));
    const auto status = tracker.start();
    REQUIRE_FALSE(status.is_ok());
    CHECK_THAT(status.message(), Contains((dir.path() / "file").string()));
}

TEST_CASE("experiments get increasing integer ids and are found again by name", "[unit][mlflow]") {
    Fixture f;
    const std::string a = f.experiment("collab_>_project_>_expt_a");
    const std::string b = f.experiment("collab_>_project_>_expt_b");
    CHECK(a == "1");
    CHECK(b == "2");
    CHECK(f.experiment("collab_>_project_>_expt_a") == "1");
    const YAML::Node meta = YAML::LoadFile((f.root / "1" / "meta.yaml").string());
    CHECK(meta["name"].as<std::string>() == "collab_>_project_>_expt_a");
    CHECK(meta["experiment_id"].as<std::string>() == "1");
    CHECK(meta["artifact_location"].as<std::string>() == "file://" + (f.root / "1").string());

    SECTION("a second tracker over the same folder finds them") {
        sdk::testing::FakeHost host(f.dir.path().string());
        mlflow::MlflowTracker again(host, opts({}));
        REQUIRE(again.start().is_ok());
        CHECK(again.ensure_experiment("collab_>_project_>_expt_b").value_or("") == "2");
        CHECK(again.ensure_experiment("new").value_or("") == "3");
    }
    SECTION("an experiment written by another writer is found and the next id follows it") {
        spit(f.root / "7" / "meta.yaml",
             "artifact_location: file:///elsewhere/7\ncreation_time: 1\nexperiment_id: '7'\n"
             "last_update_time: 1\nlifecycle_stage: active\nname: from mlflow\n");
        CHECK(f.experiment("from mlflow") == "7");
        CHECK(f.experiment("after") == "8");
    }
    SECTION("the Default experiment is found by name") {
        CHECK(f.experiment("Default") == "0");
    }
    SECTION("a deleted experiment's name is refused until it leaves .trash") {
        fs::rename(f.root / "2", f.root / ".trash" / "2");
        spit(f.root / ".trash" / "2" / "meta.yaml",
             "artifact_location: x\ncreation_time: 1\nexperiment_id: '2'\nlast_update_time: 1\n"
             "lifecycle_stage: deleted\nname: collab_>_project_>_expt_b\n");
        auto id = f.tracker.ensure_experiment("collab_>_project_>_expt_b");
        REQUIRE_FALSE(id.has_value());
        CHECK(id.error().code == sdk::ErrorCode::FailedPrecondition);
        CHECK_THAT(id.error().message, Contains("deleted"));
        // Ids in the trash are not reused.
        CHECK(f.experiment("fresh") == "3");
    }
}

TEST_CASE("experiment names that are empty or not UTF-8 are refused", "[unit][mlflow]") {
    Fixture f;
    CHECK(f.tracker.ensure_experiment("").error().code == sdk::ErrorCode::InvalidArgument);
    CHECK(f.tracker.ensure_experiment("\xff").error().code == sdk::ErrorCode::InvalidArgument);
    CHECK(f.tracker.ensure_experiment(std::string(501, 'e')).error().code ==
          sdk::ErrorCode::InvalidArgument);
    CHECK(f.experiment(std::string(500, 'e')) == "1");
}

TEST_CASE("awkward experiment names survive the YAML round trip", "[unit][mlflow]") {
    Fixture f;
    const std::string name = GENERATE(as<std::string>{}, "123", "yes", "a: b # c", "it's",
                                      "caf\xc3\xa9 \xe2\x82\xac", "line\nbreak", " padded ");
    const std::string id = f.experiment(name);
    CHECK(f.experiment(name) == id);
    const YAML::Node meta = YAML::LoadFile((f.root / id / "meta.yaml").string());
    CHECK(meta["name"].as<std::string>() == name);
}

TEST_CASE("runs get a 32-hex id, MLflow's meta.yaml and tags, and are found again by name",
          "[unit][mlflow]") {
    Fixture f;
    const std::string experiment = f.experiment("c_>_p_>_e");
    const std::int64_t before = now_ms();
    auto created = f.tracker.ensure_run(experiment, "run_1", {{"synergos.collab", "c"}});
    REQUIRE(created.has_value());
    const std::string run_id = *created;
    CHECK(std::regex_match(run_id, std::regex("[0-9a-f]{32}")));
    CHECK(run_id[12] == '4');  // uuid4

    const fs::path dir = f.run_dir(experiment, run_id);
    for (const char* folder : {"metrics", "params", "artifacts", "tags"}) {
        CHECK(fs::is_directory(dir / folder));
    }
    const YAML::Node meta = YAML::LoadFile((dir / "meta.yaml").string());
    CHECK(meta["run_id"].as<std::string>() == run_id);
    CHECK(meta["run_uuid"].as<std::string>() == run_id);
    CHECK(meta["run_name"].as<std::string>() == "run_1");
    CHECK(meta["experiment_id"].as<std::string>() == experiment);
    CHECK(meta["status"].as<int>() == 1);  // RUNNING
    CHECK(meta["lifecycle_stage"].as<std::string>() == "active");
    CHECK(meta["user_id"].as<std::string>() == "tester");
    CHECK(meta["source_type"].as<int>() == 4);  // LOCAL
    CHECK(meta["end_time"].IsNull());
    CHECK(meta["deleted_time"].IsNull());
    CHECK(meta["tags"].IsSequence());
    CHECK(meta["tags"].size() == 0);
    CHECK(meta["start_time"].as<std::int64_t>() >= before);
    CHECK(meta["artifact_uri"].as<std::string>() ==
          "file://" + (f.root / experiment / run_id / "artifacts").string());
    // Keys in sorted order, as yaml.safe_dump writes them.
    std::vector<std::string> keys;
    for (const auto& line : lines_of(slurp(dir / "meta.yaml"))) {
        keys.push_back(line.substr(0, line.find(':')));
    }
    CHECK(std::is_sorted(keys.begin(), keys.end()));
    CHECK(keys.size() == 16);

    CHECK(slurp(dir / "tags" / "mlflow.runName") == "run_1");
    CHECK(slurp(dir / "tags" / "mlflow.user") == "tester");
    CHECK(slurp(dir / "tags" / "mlflow.source.type") == "LOCAL");
    CHECK(slurp(dir / "tags" / "synergos.collab") == "c");

    CHECK(f.run(experiment, "run_1") == run_id);
    const std::string other = f.run(experiment, "run_2");
    CHECK(other != run_id);

    SECTION("a second tracker finds the run by name and by id") {
        sdk::testing::FakeHost host(f.dir.path().string());
        mlflow::MlflowTracker again(host, opts({}));
        REQUIRE(again.start().is_ok());
        CHECK(again.ensure_run(experiment, "run_1", {}).value_or("") == run_id);
        CHECK(again.log_params(other, {{"k", "v"}}).is_ok());
        CHECK(slurp(f.run_dir(experiment, other) / "params" / "k") == "v");
    }
    SECTION("the same run name in another experiment is another run") {
        const std::string second = f.experiment("c_>_p_>_e2");
        CHECK(f.run(second, "run_1") != run_id);
    }
    SECTION("a run that lost its meta.yaml in a crash is skipped and made anew") {
        fs::remove(dir / "meta.yaml");
        const std::string fresh = f.run(experiment, "run_1");
        CHECK(fresh != run_id);
        CHECK(fs::exists(f.run_dir(experiment, fresh) / "meta.yaml"));
    }
    SECTION("a run renamed through the mlflow.runName tag is found under its new name") {
        REQUIRE(f.tracker.set_tags(run_id, {{"mlflow.runName", "renamed"}}).is_ok());
        CHECK(YAML::LoadFile((dir / "meta.yaml").string())["run_name"].as<std::string>() ==
              "renamed");
        CHECK(f.run(experiment, "renamed") == run_id);
        CHECK(f.run(experiment, "run_1") != run_id);
    }
}

TEST_CASE("ensure_run refuses unknown experiments, bad tags and an empty name", "[unit][mlflow]") {
    Fixture f;
    const std::string experiment = f.experiment("e");
    CHECK(f.tracker.ensure_run("42", "r", {}).error().code == sdk::ErrorCode::NotFound);
    CHECK(f.tracker.ensure_run("../0", "r", {}).error().code == sdk::ErrorCode::InvalidArgument);
    CHECK(f.tracker.ensure_run(experiment, "", {}).error().code == sdk::ErrorCode::InvalidArgument);
    auto bad_tag = f.tracker.ensure_run(experiment, "r", {{"bad@tag", "v"}});
    REQUIRE_FALSE(bad_tag.has_value());
    CHECK_THAT(bad_tag.error().message, Contains("bad@tag"));
    auto mismatch = f.tracker.ensure_run(experiment, "r", {{"mlflow.runName", "other"}});
    REQUIRE_FALSE(mismatch.has_value());
    CHECK(mismatch.error().code == sdk::ErrorCode::InvalidArgument);
    // Nothing was created by the refused calls.
    std::size_t runs = 0;
    for (const auto& entry : fs::directory_iterator(f.root / experiment)) {
        runs += entry.is_directory() ? 1 : 0;
    }
    CHECK(runs == 0);
}

TEST_CASE("params are files holding the value without a newline, and cannot change",
          "[unit][mlflow]") {
    Fixture f;
    const std::string experiment = f.experiment("e");
    const std::string run = f.run(experiment, "r");
    const fs::path params = f.run_dir(experiment, run) / "params";
    REQUIRE(f.tracker
                .log_params(
                    run, {{"rounds", "2"}, {"lr", "0.001"}, {"model/layers", "3"}, {"empty", ""}})
                .is_ok());
    CHECK(slurp(params / "rounds") == "2");
    CHECK(slurp(params / "lr") == "0.001");
    CHECK(slurp(params / "model" / "layers") == "3");
    CHECK(slurp(params / "empty").empty());
    CHECK(fs::exists(params / "empty"));
    // The same value again is fine. A new value is refused and named in a warning; the rest of
    // the call is written.
    CHECK(f.tracker.log_params(run, {{"rounds", "2"}}).is_ok());
    CHECK_FALSE(f.host.captured().contains("not logged"));
    REQUIRE(f.tracker.log_params(run, {{"new", "1"}, {"rounds", "3"}}).is_ok());
    CHECK(slurp(params / "rounds") == "2");
    CHECK(slurp(params / "new") == "1");
    REQUIRE(f.host.captured().contains("mlflow params not logged"));
    CHECK_THAT(f.host.captured().lines().back().fields_json, Contains("'rounds'"));
    // Nothing left to write: the call fails naming the key, and changes nothing.
    const auto status = f.tracker.log_params(run, {{"new", "1"}, {"rounds", "3"}});
    REQUIRE_FALSE(status.is_ok());
    CHECK(status.code() == sdk::ErrorCode::InvalidArgument);
    CHECK_THAT(status.message(), Contains("rounds"));
    CHECK(slurp(params / "rounds") == "2");

    CHECK(f.tracker.log_params(run, {{"a", "1"}, {"a", "1"}}).is_ok());
    CHECK(slurp(params / "a") == "1");
    CHECK_THAT(f.tracker.log_params(run, {{"b", "1"}, {"b", "2"}}).message(), Contains("twice"));
    CHECK_FALSE(fs::exists(params / "b"));
    CHECK_THAT(f.tracker.log_params(run, {{"model", "x"}}).message(), Contains("model"));
    CHECK_THAT(f.tracker.log_params(run, {{"rounds/x", "x"}}).message(), Contains("rounds"));
    CHECK_THAT(f.tracker.log_params(run, {{"big", std::string(6001, 'v')}}).message(),
               Contains("big"));
    CHECK(f.tracker.log_params(run, {{"big", std::string(6000, 'v')}}).is_ok());
}

TEST_CASE("metrics are lines '<timestamp> <value> <step>' appended per key", "[unit][mlflow]") {
    Fixture f;
    const std::string experiment = f.experiment("e");
    const std::string run = f.run(experiment, "r");
    const fs::path metrics = f.run_dir(experiment, run) / "metrics";
    REQUIRE(f.tracker
                .log_metrics(run, {{"global_train_loss", 0.5, 0, 1700000000000},
                                   {"global_train_loss", 0.25, 1, 1700000000001},
                                   {"accuracy_class_0", 1.0, 1, 1700000000002},
                                   {"loss/eval", 1e-05, 3, 1700000000003}})
                .is_ok());
    REQUIRE(f.tracker.log_metrics(run, {{"global_train_loss", 0.125, 2, 1700000000004}}).is_ok());
    CHECK(slurp(metrics / "global_train_loss") ==
          "1700000000000 0.5 0\n1700000000001 0.25 1\n1700000000004 0.125 2\n");
    CHECK(slurp(metrics / "accuracy_class_0") == "1700000000002 1.0 1\n");
    CHECK(slurp(metrics / "loss" / "eval") == "1700000000003 1e-05 3\n");

    SECTION("timestamp 0 means now") {
        const std::int64_t before = now_ms();
        REQUIRE(f.tracker.log_metrics(run, {{"t", 2.0, 5, 0}}).is_ok());
        const auto line = lines_of(slurp(metrics / "t")).at(0);
        CHECK(std::stoll(line.substr(0, line.find(' '))) >= before);
        CHECK(line.substr(line.find(' ')) == " 2.0 5");
    }
    SECTION("a batch with only bad points writes nothing and names them") {
        const std::string bad =
            GENERATE(as<std::string>{}, "../escape", "bad@key", "", "/abs", "global_train_loss/x");
        const auto status = f.tracker.log_metrics(run, {{bad, 1.0, 1, 1}, {bad, 2.0, 2, 1}});
        REQUIRE_FALSE(status.is_ok());
        CHECK(status.code() == sdk::ErrorCode::InvalidArgument);
        CHECK_THAT(status.message(), Contains("'" + bad + "'"));
        CHECK_FALSE(fs::exists(f.run_dir(experiment, run) / "escape"));
        CHECK_FALSE(f.host.captured().contains("not logged"));
    }
    SECTION("a negative timestamp is refused") {
        CHECK(f.tracker.log_metrics(run, {{"m", 1.0, 1, -5}}).code() ==
              sdk::ErrorCode::InvalidArgument);
        CHECK_FALSE(fs::exists(metrics / "m"));
    }
    SECTION("NaN and infinities are written as Python does") {
        REQUIRE(f.tracker
                    .log_metrics(run, {{"odd", std::numeric_limits<double>::quiet_NaN(), 1, 9},
                                       {"odd", std::numeric_limits<double>::infinity(), 2, 9}})
                    .is_ok());
        CHECK(slurp(metrics / "odd") == "9 nan 1\n9 inf 2\n");
    }
}

TEST_CASE("a batch with some bad metrics writes the others and names the bad ones in a warning",
          "[unit][mlflow]") {
    Fixture f;
    const std::string experiment = f.experiment("e");
    const std::string run = f.run(experiment, "r");
    const fs::path metrics = f.run_dir(experiment, run) / "metrics";
    // Metric names built from a participant id with a colon, as MLflow 2.x accepts them.
    REQUIRE(f.tracker
                .log_metrics(run, {{"hosp:a.evaluate.accuracy", 0.875, 0, 1},
                                   {"bad@key", 1.0, 1, 2},
                                   {"hosp:a_local_loss", 0.5, 1, 3},
                                   {"bad@key", 2.0, 2, 4},
                                   {"late", 1.0, 1, -5},
                                   {"late", 2.0, 2, 6}})
                .is_ok());
    CHECK(slurp(metrics / "hosp:a.evaluate.accuracy") == "1 0.875 0\n");
    CHECK(slurp(metrics / "hosp:a_local_loss") == "3 0.5 1\n");
    CHECK(slurp(metrics / "late") == "6 2.0 2\n");
    CHECK_FALSE(fs::exists(metrics / "bad@key"));
    REQUIRE(f.host.captured().contains("mlflow metrics not logged"));
    const std::string warning = f.host.captured().lines().back().fields_json;
    CHECK_THAT(warning, Contains("'bad@key'") && Contains("(2 points)"));
    CHECK_THAT(warning, Contains("'late'") && Contains("-5"));
    CHECK_THAT(warning, Contains(run));
    CHECK_THAT(warning, !Contains("hosp:a"));
}

TEST_CASE("params of a batch are written but for the refused ones, which a warning names",
          "[unit][mlflow]") {
    Fixture f;
    const std::string experiment = f.experiment("e");
    const std::string run = f.run(experiment, "r");
    const fs::path params = f.run_dir(experiment, run) / "params";
    REQUIRE(f.tracker.log_params(run, {{"rounds", "2"}}).is_ok());
    REQUIRE(f.tracker
                .log_params(run, {{"participant:hosp:a", "x"},
                                  {"bad@key", "v"},
                                  {"rounds", "5"},
                                  {"lr", "0.1"}})
                .is_ok());
    CHECK(slurp(params / "participant:hosp:a") == "x");
    CHECK(slurp(params / "lr") == "0.1");
    CHECK(slurp(params / "rounds") == "2");
    CHECK_FALSE(fs::exists(params / "bad@key"));
    const std::string warning = f.host.captured().lines().back().fields_json;
    CHECK_THAT(warning, Contains("'bad@key'") && Contains("'rounds'") && Contains("'5'"));
}

TEST_CASE("each training job gets a run of its own and a redelivered one keeps it",
          "[unit][mlflow]") {
    Fixture f;
    const std::string experiment = f.experiment("e");
    const auto ensure = [&](mlflow::MlflowTracker& tracker, const std::string& name,
                            const std::string& training_job) {
        return ensure_job_run(tracker, experiment, name, training_job);
    };
    const std::string first = ensure(f.tracker, "r1", "j1");
    CHECK(tag_of(f.run_dir(experiment, first), "synergos.attempt") == "1");
    CHECK(tag_of(f.run_dir(experiment, first), "synergos.training_job") == "j1");
    REQUIRE(f.tracker.log_params(first, {{"rounds", "2"}}).is_ok());
    REQUIRE(f.tracker.log_metrics(first, {{"loss", 0.5, 0, 1}, {"loss", 0.25, 1, 2}}).is_ok());
    CHECK(ensure(f.tracker, "r1", "j1") == first);  // redelivered or resumed
    CHECK(ensure(f.tracker, "r1", "") == first);    // an evaluation: the current run

    // A second training of the same run: a new run with the same name, the next attempt.
    const std::string second = ensure(f.tracker, "r1", "j2");
    CHECK(second != first);
    const fs::path second_dir = f.run_dir(experiment, second);
    CHECK(tag_of(second_dir, "synergos.attempt") == "2");
    CHECK(tag_of(second_dir, "synergos.training_job") == "j2");
    CHECK(tag_of(second_dir, "mlflow.runName") == "r1");
    CHECK(YAML::LoadFile((second_dir / "meta.yaml").string())["run_name"].as<std::string>() ==
          "r1");
    REQUIRE(f.tracker.log_params(second, {{"rounds", "5"}}).is_ok());
    REQUIRE(f.tracker.log_metrics(second, {{"loss", 0.4, 0, 3}}).is_ok());
    CHECK(slurp(f.run_dir(experiment, first) / "metrics" / "loss") == "1 0.5 0\n2 0.25 1\n");
    CHECK(slurp(f.run_dir(experiment, first) / "params" / "rounds") == "2");
    CHECK(ensure(f.tracker, "r1", "") == second);
    CHECK(ensure(f.tracker, "r1", "j1") == first);
    CHECK(ensure(f.tracker, "r1", "") == second);

    SECTION("a restarted tracker finds the same runs") {
        sdk::testing::FakeHost host(f.dir.path().string());
        mlflow::MlflowTracker again(host, opts({}));
        REQUIRE(again.start().is_ok());
        CHECK(ensure(again, "r1", "") == second);
        CHECK(ensure(again, "r1", "j1") == first);
        CHECK(ensure(again, "r1", "j2") == second);
        const std::string third = ensure(again, "r1", "j3");
        CHECK(tag_of(f.run_dir(experiment, third), "synergos.attempt") == "3");
        CHECK(ensure(again, "r1", "") == third);
    }
    SECTION("a run with nothing logged is adopted by a training") {
        const std::string plain = ensure(f.tracker, "r2", "");
        CHECK_FALSE(fs::exists(f.run_dir(experiment, plain) / "tags" / "synergos.attempt"));
        CHECK(ensure(f.tracker, "r2", "j5") == plain);
        CHECK(tag_of(f.run_dir(experiment, plain), "synergos.attempt") == "1");
        CHECK(tag_of(f.run_dir(experiment, plain), "synergos.training_job") == "j5");
    }
    SECTION("an empty training job id is refused") {
        CHECK(f.tracker.ensure_run(experiment, "r1", {{"synergos.training_job", ""}})
                  .error()
                  .code == sdk::ErrorCode::InvalidArgument);
        CHECK(tag_of(f.run_dir(experiment, second), "synergos.training_job") == "j2");
    }
    SECTION("a run trained before attempts existed is not reused by a new training") {
        const std::string legacy = ensure(f.tracker, "r3", "");
        REQUIRE(f.tracker.log_metrics(legacy, {{"loss", 0.5, 0, 1}}).is_ok());
        const std::string fresh = ensure(f.tracker, "r3", "j6");
        CHECK(fresh != legacy);
        CHECK(tag_of(f.run_dir(experiment, fresh), "synergos.attempt") == "2");
    }
}

namespace {

YAML::Node run_meta(const Fixture& f, const std::string& experiment, const std::string& run) {
    return YAML::LoadFile((f.run_dir(experiment, run) / "meta.yaml").string());
}

}  // namespace

TEST_CASE("a training job taking its ended run sets it running again", "[unit][mlflow]") {
    Fixture f;
    const std::string experiment = f.experiment("e");
    const std::string run = ensure_job_run(f.tracker, experiment, "r1", "j1");
    REQUIRE(f.tracker.log_metrics(run, {{"loss", 0.5, 0, 1}}).is_ok());
    REQUIRE(f.tracker.end_run(run, "FAILED").is_ok());
    REQUIRE(run_meta(f, experiment, run)["status"].as<int>() == 4);

    // Redelivered or resumed: the job's metrics go on in a run that says it is running.
    CHECK(ensure_job_run(f.tracker, experiment, "r1", "j1") == run);
    YAML::Node meta = run_meta(f, experiment, run);
    CHECK(meta["status"].as<int>() == 1);
    CHECK(meta["end_time"].IsNull());

    REQUIRE(f.tracker.end_run(run, "FINISHED").is_ok());
    // An evaluation logs to the finished run without reopening it.
    CHECK(ensure_job_run(f.tracker, experiment, "r1", "") == run);
    meta = run_meta(f, experiment, run);
    CHECK(meta["status"].as<int>() == 3);
    CHECK_FALSE(meta["end_time"].IsNull());

    // A run with nothing logged, ended, then adopted by a training.
    const std::string plain = ensure_job_run(f.tracker, experiment, "r2", "");
    REQUIRE(f.tracker.end_run(plain, "KILLED").is_ok());
    CHECK(ensure_job_run(f.tracker, experiment, "r2", "j5") == plain);
    meta = run_meta(f, experiment, plain);
    CHECK(meta["status"].as<int>() == 1);
    CHECK(meta["end_time"].IsNull());
}

TEST_CASE("ensure_run without a training job finds a run trained again by another process",
          "[unit][mlflow]") {
    // Two TTPs share the root. A trained r1 and remembers its run; B trains r1 again (new
    // settings), which makes a new attempt the current run. A's next evaluation of r1 belongs
    // there, not in the attempt A remembers.
    Fixture f;
    const std::string experiment = f.experiment("e");
    const std::string first = ensure_job_run(f.tracker, experiment, "r1", "j1");
    REQUIRE(f.tracker.log_metrics(first, {{"loss", 0.5, 0, 1}}).is_ok());
    CHECK(ensure_job_run(f.tracker, experiment, "r1", "") == first);

    sdk::testing::FakeHost other_host(f.dir.path().string());
    mlflow::MlflowTracker other(other_host, opts({}));
    REQUIRE(other.start().is_ok());
    const std::string second = ensure_job_run(other, experiment, "r1", "j2");
    CHECK(second != first);
    CHECK(tag_of(f.run_dir(experiment, second), "synergos.attempt") == "2");

    CHECK(ensure_job_run(f.tracker, experiment, "r1", "") == second);
    CHECK(ensure_job_run(f.tracker, experiment, "r1", "j1") == first);  // its own run still
    CHECK(ensure_job_run(f.tracker, experiment, "r1", "") == second);
}

TEST_CASE("an append cut short by a full disk leaves no partial line behind", "[unit][mlflow]") {
    Fixture f;
    const std::string experiment = f.experiment("e");
    const std::string run = f.run(experiment, "r");
    const fs::path metrics = f.run_dir(experiment, run) / "metrics";
    // The first append checked the file's tail; later appends in this process do not.
    REQUIRE(f.tracker.log_metrics(run, {{"loss", 0.5, 0, 1}}).is_ok());
    sdk::Status cut_short;
    {
        const FileSizeCap cap(fs::file_size(metrics / "loss") + 6);
        cut_short = f.tracker.log_metrics(run, {{"loss", 0.25, 1, 1700000000001}});
    }
    REQUIRE_FALSE(cut_short.is_ok());
    CHECK_THAT(cut_short.message(), Contains((metrics / "loss").string()));
    CHECK(slurp(metrics / "loss") == "1 0.5 0\n");
    REQUIRE(f.tracker.log_metrics(run, {{"loss", 0.125, 2, 3}}).is_ok());
    CHECK(slurp(metrics / "loss") == "1 0.5 0\n3 0.125 2\n");

    SECTION("a new metric file cut short is removed: MLflow refuses an empty one") {
        {
            const FileSizeCap cap(4);
            cut_short = f.tracker.log_metrics(run, {{"acc", 0.75, 1, 1700000000001}});
        }
        REQUIRE_FALSE(cut_short.is_ok());
        CHECK_FALSE(fs::exists(metrics / "acc"));
        REQUIRE(f.tracker.log_metrics(run, {{"acc", 0.75, 1, 5}}).is_ok());
        CHECK(slurp(metrics / "acc") == "5 0.75 1\n");
    }
}

TEST_CASE("a torn last metric line left by a crash is cut before the next append",
          "[unit][mlflow]") {
    Fixture f;
    const std::string experiment = f.experiment("e");
    const std::string run = f.run(experiment, "r");
    const fs::path file = f.run_dir(experiment, run) / "metrics" / "loss";
    spit(file, "1 0.5 0\n2 0.25 1\n3 0.1");  // the crash hit in the middle of the third line
    REQUIRE(f.tracker.log_metrics(run, {{"loss", 0.125, 2, 4}}).is_ok());
    CHECK(slurp(file) == "1 0.5 0\n2 0.25 1\n4 0.125 2\n");

    spit(file, "9 0.");  // torn first line
    sdk::testing::FakeHost host(f.dir.path().string());
    mlflow::MlflowTracker again(host, opts({}));
    REQUIRE(again.start().is_ok());
    REQUIRE(again.log_metrics(run, {{"loss", 1.5, 1, 5}}).is_ok());
    CHECK(slurp(file) == "5 1.5 1\n");
}

TEST_CASE("tags are files without a newline and may be overwritten", "[unit][mlflow]") {
    Fixture f;
    const std::string experiment = f.experiment("e");
    const std::string run = f.run(experiment, "r");
    const fs::path tags = f.run_dir(experiment, run) / "tags";
    REQUIRE(f.tracker.set_tags(run, {{"synergos.job", "j1"}, {"team/owner", "me"}}).is_ok());
    REQUIRE(f.tracker.set_tags(run, {{"synergos.job", "j2"}}).is_ok());
    CHECK(slurp(tags / "synergos.job") == "j2");
    CHECK(slurp(tags / "team" / "owner") == "me");
    CHECK(f.tracker.set_tags(run, {{"a\\b", "x"}}).code() == sdk::ErrorCode::InvalidArgument);
    CHECK(f.tracker.set_tags(run, {{"mlflow.runName", ""}}).code() ==
          sdk::ErrorCode::InvalidArgument);
}

TEST_CASE("end_run records MLflow's status enum and end_time", "[unit][mlflow]") {
    Fixture f;
    const std::string experiment = f.experiment("e");
    const auto [text, code] =
        GENERATE(table<std::string, int>({{"FINISHED", 3}, {"FAILED", 4}, {"KILLED", 5}}));
    const std::string run = f.run(experiment, "r_" + text);
    const std::int64_t before = now_ms();
    REQUIRE(f.tracker.end_run(run, text).is_ok());
    const YAML::Node meta = YAML::LoadFile((f.run_dir(experiment, run) / "meta.yaml").string());
    CHECK(meta["status"].as<int>() == code);
    CHECK(meta["end_time"].as<std::int64_t>() >= before);
    CHECK(meta["run_name"].as<std::string>() == "r_" + text);
    // A finished run still takes metrics (validation archival logs after training ended).
    CHECK(f.tracker.log_metrics(run, {{"late", 1.0, 1, 1}}).is_ok());
    CHECK(f.tracker.end_run(run, "DONE").code() == sdk::ErrorCode::InvalidArgument);
    CHECK(f.tracker.end_run(run, "RUNNING").code() == sdk::ErrorCode::InvalidArgument);
}

TEST_CASE("end_run keeps fields a newer MLflow wrote into meta.yaml", "[unit][mlflow]") {
    Fixture f;
    const std::string experiment = f.experiment("e");
    const std::string run = f.run(experiment, "r");
    const fs::path meta_path = f.run_dir(experiment, run) / "meta.yaml";
    spit(meta_path, slurp(meta_path) + "future_field: 'kept'\nfuture_number: 12\n");
    REQUIRE(f.tracker.end_run(run, "FINISHED").is_ok());
    const YAML::Node meta = YAML::LoadFile(meta_path.string());
    CHECK(meta["future_field"].as<std::string>() == "kept");
    CHECK(meta["future_number"].as<int>() == 12);
    CHECK(meta["status"].as<int>() == 3);
}

TEST_CASE("unknown, malformed and deleted run ids are refused", "[unit][mlflow]") {
    Fixture f;
    const std::string experiment = f.experiment("e");
    const std::string run = f.run(experiment, "r");
    CHECK(f.tracker.log_params("0123456789abcdef0123456789abcdef", {{"k", "v"}}).code() ==
          sdk::ErrorCode::NotFound);
    CHECK(f.tracker.log_metrics("../../etc", {{"k", 1, 1, 1}}).code() ==
          sdk::ErrorCode::InvalidArgument);
    const fs::path meta_path = f.run_dir(experiment, run) / "meta.yaml";
    std::string meta = slurp(meta_path);
    meta.replace(meta.find("lifecycle_stage: active"), 23, "lifecycle_stage: deleted");
    spit(meta_path, meta);
    const auto status = f.tracker.log_metrics(run, {{"k", 1, 1, 1}});
    CHECK(status.code() == sdk::ErrorCode::FailedPrecondition);
    CHECK_THAT(status.message(), Contains(run));
    CHECK(f.run(experiment, "r") != run);  // a deleted run is not reused
}

TEST_CASE("artifacts are copied under the run's artifact folder", "[unit][mlflow]") {
    Fixture f;
    const std::string experiment = f.experiment("e");
    const std::string run = f.run(experiment, "r");
    const fs::path artifacts = f.run_dir(experiment, run) / "artifacts";
    const fs::path out = f.dir.path() / "outputs" / "c" / "p" / "e" / "r";
    spit(out / "global_model.safetensors", "weights");
    spit(out / "global_loss_history.json", "{}");
    spit(out / "checkpoints" / "round_0" / "epoch_0" / "global_model.safetensors", "w0");
    fs::create_symlink("/etc/passwd", out / "link");

    REQUIRE(f.tracker.log_artifact(run, out.string(), "").is_ok());
    CHECK(files_below(artifacts) ==
          std::set<std::string>{"global_model.safetensors", "global_loss_history.json",
                                "checkpoints/round_0/epoch_0/global_model.safetensors"});
    CHECK(slurp(artifacts / "checkpoints" / "round_0" / "epoch_0" / "global_model.safetensors") ==
          "w0");

    SECTION("again, overwriting with new content") {
        spit(out / "global_loss_history.json", R"({"train": {}})");
        REQUIRE(f.tracker.log_artifact(run, out.string(), "").is_ok());
        CHECK(slurp(artifacts / "global_loss_history.json") == R"({"train": {}})");
    }
    SECTION("a single file lands under artifact_path with its name") {
        REQUIRE(f.tracker.log_artifact(run, (out / "global_loss_history.json").string(), "stats/x")
                    .is_ok());
        CHECK(slurp(artifacts / "stats" / "x" / "global_loss_history.json") == "{}");
    }
    SECTION("bad paths are refused") {
        CHECK(f.tracker.log_artifact(run, (out / "missing").string(), "").code() ==
              sdk::ErrorCode::NotFound);
        for (const char* bad : {"../x", "/abs", "a//b", "a/../b", "."}) {
            INFO("artifact path " << bad);
            CHECK(f.tracker.log_artifact(run, out.string(), bad).code() ==
                  sdk::ErrorCode::InvalidArgument);
        }
    }
    // No staging file is left anywhere in the run.
    for (const auto& entry : fs::recursive_directory_iterator(f.run_dir(experiment, run))) {
        CHECK(entry.path().filename().string().rfind(".synergos-tmp-", 0) == std::string::npos);
    }
}

TEST_CASE("concurrent callers get one experiment, one run and every metric line",
          "[unit][mlflow]") {
    Fixture f;
    constexpr int kThreads = 8;
    constexpr int kRounds = 50;
    std::vector<std::string> experiments(kThreads);
    std::vector<std::string> runs(kThreads);
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            auto experiment = f.tracker.ensure_experiment("shared");
            if (!experiment) {
                ++failures;
                return;
            }
            experiments[t] = *experiment;
            auto run = f.tracker.ensure_run(*experiment, "shared_run", {});
            if (!run) {
                ++failures;
                return;
            }
            runs[t] = *run;
            for (int r = 0; r < kRounds; ++r) {
                if (!f.tracker.log_metrics(*run, {{"loss", 1.0 * t, r, 1 + r}}).is_ok()) {
                    ++failures;
                }
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    REQUIRE(failures == 0);
    CHECK(std::set<std::string>(experiments.begin(), experiments.end()).size() == 1);
    CHECK(std::set<std::string>(runs.begin(), runs.end()).size() == 1);
    const auto lines = lines_of(slurp(f.run_dir(experiments[0], runs[0]) / "metrics" / "loss"));
    CHECK(lines.size() == static_cast<std::size_t>(kThreads * kRounds));
    for (const auto& line : lines) {
        CHECK(std::regex_match(line, std::regex("[0-9]+ [0-9]\\.0 [0-9]+")));
    }
}

TEST_CASE("processes sharing a root get one experiment and one run per name",
          "[unit][mlflow]") {
    // A director and its TTPs share the MLflow volume; trainings of one experiment on two grids
    // start together. Real processes, started at once, each ensuring the same names.
    TempDir dir;
    constexpr int kProcesses = 3;
    constexpr int kNames = 30;
    int gate[2];
    REQUIRE(::pipe(gate) == 0);
    std::vector<pid_t> children;
    for (int p = 0; p < kProcesses; ++p) {
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            ::close(gate[1]);
            char byte = 0;
            (void)::read(gate[0], &byte, 1);  // returns when the parent closes its end
            sdk::testing::FakeHost host(dir.path().string());
            mlflow::MlflowTracker tracker(host, opts({{"user", "p" + std::to_string(p)}}));
            if (!tracker.start().is_ok()) {
                ::_exit(2);
            }
            std::string out;
            for (int n = 0; n < kNames; ++n) {
                const std::string name = "expt-" + std::to_string(n);
                auto experiment = tracker.ensure_experiment(name);
                if (!experiment) {
                    ::_exit(3);
                }
                auto run = tracker.ensure_run(*experiment, "run", {});
                if (!run) {
                    ::_exit(4);
                }
                out += name + " " + *experiment + " " + *run + "\n";
            }
            spit(dir.path() / ("seen-" + std::to_string(p)), out);
            tracker.stop();
            ::_exit(0);
        }
        children.push_back(pid);
    }
    ::close(gate[0]);
    ::close(gate[1]);  // all start now
    for (const pid_t pid : children) {
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        REQUIRE(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    }
    std::map<std::string, std::set<std::string>> seen;  // name -> "experiment run" answers
    for (int p = 0; p < kProcesses; ++p) {
        for (const auto& line : lines_of(slurp(dir.path() / ("seen-" + std::to_string(p))))) {
            const auto space = line.find(' ');
            seen[line.substr(0, space)].insert(line.substr(space + 1));
        }
    }
    REQUIRE(seen.size() == static_cast<std::size_t>(kNames));
    for (const auto& [name, answers] : seen) {
        INFO(name);
        CHECK(answers.size() == 1);  // every process got the same experiment and run
    }
    std::size_t experiment_dirs = 0;
    for (const auto& entry : fs::directory_iterator(dir.path() / "mlflow")) {
        experiment_dirs += entry.is_directory() && entry.path().filename() != ".trash" ? 1 : 0;
    }
    CHECK(experiment_dirs == kNames + 1);  // and the Default experiment 0
}

TEST_CASE("sync_metrics false still writes every line", "[unit][mlflow]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path().string());
    mlflow::MlflowTracker tracker(host, opts({{"sync_metrics", "false"}}));
    REQUIRE(tracker.start().is_ok());
    const std::string experiment = tracker.ensure_experiment("e").value();
    const std::string run = tracker.ensure_run(experiment, "r", {}).value();
    REQUIRE(tracker.log_metrics(run, {{"m", 1.5, 1, 7}}).is_ok());
    CHECK(slurp(dir.path() / "mlflow" / experiment / run / "metrics" / "m") == "7 1.5 1\n");
}

TEST_CASE("an experiment folder abandoned by a crash before its meta.yaml is removed on start",
          "[unit][mlflow]") {
    TempDir dir;
    const fs::path root = dir.path() / "mlflow";
    const auto old = fs::file_time_type::clock::now() - std::chrono::minutes(5);
    spit(root / "5" / ".synergos-tmp-0011223344556677", "artifact_location: x\n");
    fs::last_write_time(root / "5", old);
    fs::create_directories(root / "6");  // just claimed by a live writer: kept
    spit(root / "7" / "notes.txt", "a user's file");
    fs::last_write_time(root / "7", old);  // not ours to remove
    fs::create_directories(root / "scratch");
    fs::last_write_time(root / "scratch", old);  // not an experiment id: left alone
    sdk::testing::FakeHost host(dir.path().string());
    mlflow::MlflowTracker tracker(host, opts({}));
    REQUIRE(tracker.start().is_ok());
    CHECK_FALSE(fs::exists(root / "5"));
    CHECK(fs::exists(root / "6"));
    CHECK(fs::exists(root / "7" / "notes.txt"));
    CHECK(fs::exists(root / "scratch"));
    CHECK(tracker.ensure_experiment("next").value_or("") == "8");
}

TEST_CASE("an unusable option is refused at construction, naming it", "[unit][mlflow]") {
    TempDir dir;
    sdk::testing::FakeHost host(dir.path().string());
    CHECK_THROWS_WITH(mlflow::MlflowTracker(host, opts({{"user", "\xff"}})),
                      Contains("'user'"));
}
