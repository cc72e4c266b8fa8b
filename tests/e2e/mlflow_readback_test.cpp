// SPDX-License-Identifier: Apache-2.0
// Issue 6, acceptance 3: after a real training run through the REST API (heart_disease, two
// workers, the mlflow tracker on the director), the MLflow directory is read back with
// yaml-cpp and plain file reads, not the plugin's code, and experiments, runs, params and
// per-round metrics are where MLflow's file store puts them.

#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "mlflow_tracker.hpp"
#include "rig.hpp"

namespace synergos::e2e {
namespace {

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    REQUIRE(in);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

json read_json(const fs::path& p) {
    return json::parse(slurp(p));
}

/// The folder under `parent` whose meta.yaml has `field: value`.
fs::path find_by_meta(const fs::path& parent, const std::string& field, const std::string& value) {
    for (const auto& entry : fs::directory_iterator(parent)) {
        const fs::path meta = entry.path() / "meta.yaml";
        if (entry.is_directory() && fs::exists(meta)) {
            YAML::Node y = YAML::LoadFile(meta.string());
            if (y[field] && y[field].as<std::string>() == value) {
                return entry.path();
            }
        }
    }
    FAIL("no folder under " << parent << " has meta.yaml " << field << ": " << value);
    return {};
}

struct MetricLine {
    std::int64_t timestamp;
    double value;
    std::int64_t step;
};

/// A metric file: one "<timestamp ms> <value> <step>" line per point.
std::vector<MetricLine> metric_lines(const fs::path& p) {
    std::ifstream in(p);
    REQUIRE(in);
    std::vector<MetricLine> out;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream s(line);
        MetricLine m{};
        std::string extra;
        INFO(p << ": '" << line << "'");
        REQUIRE(static_cast<bool>(s >> m.timestamp >> m.value >> m.step));
        REQUIRE_FALSE(static_cast<bool>(s >> extra));
        out.push_back(m);
    }
    return out;
}

}  // namespace

TEST_CASE("MLflow read-back: experiment, run, params and per-round metrics of a REST training run",
          "[e2e][mlflow]") {
    const fs::path root = temp_root("mlflow");
    const fs::path data = fs::path(SYNERGOS_TEST_SOURCE_DIR) / "examples" / "data";
    const fs::path mlruns = root / "mlruns";
    Worker w1("p1", root, data);
    Worker w2("p2", root, data);
    sdk::testing::FakeHost tracker_host(root.string(), "director");
    plugins::mlflow::MlflowTracker tracker(tracker_host, opts({{"root", mlruns.string()}}));
    REQUIRE(tracker.start());
    sdk::testing::FakeHost mq_host(root.string(), "mq");
    plugins::memory::MemoryQueue mq(mq_host, opts());
    REQUIRE(mq.start());
    constexpr int kRounds = 3;
    {
        Rig rig(
            root / "director", [&]() -> sdk::MessageQueue& { return mq; }, &tracker);
        rig.start_ttp(0);
        Client client(rig.port());
        json run = heart_base_run();
        run["rounds"] = kRounds;
        client.setup("mlc", "mlp", "classify",
                     read_json(data / "heart_disease" / "architecture.json"), run,
                     {{"p1", w1.port()}, {"p2", w2.port()}}, {heart_tags(1), heart_tags(2)});
        client.wait_jobs(client.call(
            "POST", "/ttp/train/collaborations/mlc/projects/mlp/alignments", json::object(), 201));
        client.wait_jobs(client.call("POST",
                                     "/ttp/train/collaborations/mlc/projects/mlp/models/e1/r1",
                                     json::object(), 200));
        client.wait_jobs(
            client.call("POST", "/ttp/evaluate/collaborations/mlc/projects/mlp/validations/e1/r1",
                        json::object(), 200));
    }
    mq.stop();
    tracker.stop();

    // The experiment: <root>/<id>/meta.yaml with MLflow's fields; the Default experiment is 0.
    REQUIRE(fs::exists(mlruns / "0" / "meta.yaml"));
    const fs::path expt = find_by_meta(mlruns, "name", "mlc_>_mlp_>_e1");
    YAML::Node em = YAML::LoadFile((expt / "meta.yaml").string());
    CHECK(em["experiment_id"].as<std::string>() == expt.filename().string());
    CHECK(em["lifecycle_stage"].as<std::string>() == "active");
    CHECK(em["artifact_location"].as<std::string>().rfind("file://", 0) == 0);
    CHECK(em["creation_time"].as<std::int64_t>() > 1600000000000LL);

    // The run: <experiment>/<run id>/meta.yaml, named after the Synergos run.
    const fs::path r = find_by_meta(expt, "run_name", "r1");
    YAML::Node rm = YAML::LoadFile((r / "meta.yaml").string());
    CHECK(rm["run_id"].as<std::string>() == r.filename().string());
    CHECK(rm["run_uuid"].as<std::string>() == r.filename().string());
    CHECK(r.filename().string().size() == 32);
    CHECK(rm["experiment_id"].as<std::string>() == expt.filename().string());
    CHECK(rm["lifecycle_stage"].as<std::string>() == "active");
    CHECK(rm["source_type"].as<int>() == 4);
    const int status = rm["status"].as<int>();
    CHECK(status >= 1);
    CHECK(status <= 5);
    CHECK(rm["artifact_uri"].as<std::string>() ==
          em["artifact_location"].as<std::string>() + "/" + r.filename().string() + "/artifacts");

    // Params: one file per setting, the value without a newline.
    CHECK(slurp(r / "params" / "rounds") == std::to_string(kRounds));
    CHECK(slurp(r / "params" / "optimizer") == "Adam");
    CHECK(slurp(r / "params" / "criterion") == "NLLLoss");
    CHECK(slurp(r / "params" / "lr") == "0.01");
    // Tags naming the collaboration, project and participants.
    CHECK(slurp(r / "tags" / "mlflow.runName") == "r1");
    CHECK(slurp(r / "tags" / "synergos.collab_id") == "mlc");
    CHECK(slurp(r / "tags" / "synergos.project_id") == "mlp");
    const std::string parts = slurp(r / "tags" / "synergos.participants");
    CHECK_THAT(parts, Catch::Contains("p1") && Catch::Contains("p2"));

    // Per-round metrics: the global training loss once per round, step = round.
    auto loss = metric_lines(r / "metrics" / "global_train_loss");
    REQUIRE(loss.size() == static_cast<std::size_t>(kRounds));
    std::set<std::int64_t> steps;
    for (const auto& m : loss) {
        CHECK(m.timestamp > 1600000000000LL);
        CHECK(std::isfinite(m.value));
        CHECK(m.value > 0.0);
        steps.insert(m.step);
    }
    CHECK(steps.size() == static_cast<std::size_t>(kRounds));
    CHECK(*steps.rbegin() - *steps.begin() == kRounds - 1);
    // Each participant's local loss per round too.
    CHECK(metric_lines(r / "metrics" / "p1_local_loss").size() ==
          static_cast<std::size_t>(kRounds));
    // Validation metrics: per-class accuracy of each participant (5 classes, step = class + 1).
    auto acc = metric_lines(r / "metrics" / "p1.evaluate.accuracy_class_0");
    REQUIRE(acc.size() == 1);
    CHECK(acc[0].step == 1);
    CHECK(acc[0].value >= 0.0);
    CHECK(acc[0].value <= 1.0);
    CHECK(fs::exists(r / "metrics" / "p2.evaluate.f_score_class_4"));
    // The model is an artifact of the run.
    bool model = false;
    for (const auto& f : fs::recursive_directory_iterator(r / "artifacts")) {
        model = model || f.path().extension() == ".safetensors";
    }
    CHECK(model);
    std::error_code ec;
    fs::remove_all(root, ec);
}

}  // namespace synergos::e2e
