// SPDX-License-Identifier: Apache-2.0
// Strategies end to end through the REST API (issue 8): SCAFFOLD trains with control variates
// on both sides, and with one of five workers sending scaled garbage, the robust strategies
// still learn heart_disease while FedAvg does not.

#include <cstring>

#include "strategies_cluster.hpp"

namespace synergos::e2e {
namespace {

/// The example job's settings (examples/heart_disease/job.yaml), few rounds.
json heart_run(const std::string& algorithm, int rounds) {
    return {{"algorithm", algorithm}, {"rounds", rounds},    {"epochs", 5},
            {"batch_size", 32},       {"optimizer", "Adam"}, {"lr", 0.01},
            {"criterion", "NLLLoss"}, {"lr_scheduler", ""},  {"seed", 42},
            {"patience", 10}};
}

}  // namespace

TEST_CASE("scaffold: workers keep client controls and the run trains heart_disease",
          "[e2e][strategies]") {
    const fs::path root = temp_root("scaffold");
    const auto dirs = split_heart_disease(root / "data", 2, 11);
    StrategyWorker w1("p1", root, dirs[0]);
    StrategyWorker w2("p2", root, dirs[1]);
    StrategyDirector director(root / "director");
    Client client(director.port());
    const json model = read_json_file(fs::path(SYNERGOS_TEST_SOURCE_DIR) / "examples" / "data" /
                                      "heart_disease" / "architecture.json");
    setup_project(client, "sc", "sp", model, heart_run("scaffold", 3),
                  {{"p1", w1.port()}, {"p2", w2.port()}}, {split_tags(), split_tags()}, true);
    const double accuracy = train_and_validate(client, "sc", "sp");
    WARN("scaffold: heart_disease accuracy after 3 rounds on two workers: " << accuracy);
    CHECK(accuracy >= 0.5);

    // Each worker saved its control c_i for the last round (2) and kept the one it started from.
    for (const char* p : {"p1", "p2"}) {
        const fs::path dir = root / p / "outputs" / "sc" / "sp" / "e1" / "r1" / "scaffold";
        CHECK(fs::exists(dir / "client_control_round_2.safetensors"));
        CHECK(fs::exists(dir / "client_control_round_1.safetensors"));
        CHECK_FALSE(fs::exists(dir / "client_control_round_0.safetensors"));
        const sdk::TensorMap c_i = read_safetensors(dir / "client_control_round_2.safetensors");
        CHECK(c_i.find("nnl_0_linear.weight") != nullptr);
        CHECK(max_abs(c_i) > 0.0);
    }
    // The global model carries the server control c, which the workers' corrections moved.
    const json models =
        client.call("GET", "/ttp/train/collaborations/sc/projects/sp/models/e1/r1")["data"];
    const sdk::TensorMap global = read_safetensors(models[0]["global"]["path"].get<std::string>());
    const sdk::Tensor* c = global.find("scaffold.c.nnl_0_linear.weight");
    REQUIRE(c != nullptr);
    CHECK(max_abs(sdk::TensorMap{{*c}}) > 0.0);
    std::error_code ec;
    fs::remove_all(root, ec);
}

TEST_CASE("robust strategies reach 50% with one of five workers sending garbage, and fedavg does not",
          "[e2e][strategies]") {
    const fs::path root = temp_root("robust");
    const auto dirs = split_heart_disease(root / "data", 5, 7);
    std::vector<std::unique_ptr<StrategyWorker>> workers;
    for (int i = 0; i < 5; ++i) {
        // p5 trains, then replies with uniform(-1, 1) x 100 noise instead of its weights.
        workers.push_back(std::make_unique<StrategyWorker>("p" + std::to_string(i + 1), root,
                                                           dirs[static_cast<std::size_t>(i)],
                                                           i == 4 ? 100.0 : 0.0));
    }
    StrategyDirector director(root / "director");
    Client client(director.port());
    const json model = read_json_file(fs::path(SYNERGOS_TEST_SOURCE_DIR) / "examples" / "data" /
                                      "heart_disease" / "architecture.json");
    std::vector<std::pair<std::string, int>> participants;
    for (std::size_t i = 0; i < workers.size(); ++i) {
        participants.emplace_back("p" + std::to_string(i + 1), workers[i]->port());
    }
    const std::vector<json> tags(workers.size(), split_tags());

    std::map<std::string, double> accuracy;
    const std::vector<std::pair<std::string, json>> strategies{
        {"fedavg", json::object()},
        {"fedmedian", json::object()},
        {"fedtrimmedavg", {{"trim_fraction", 0.2}}},
        {"krum", {{"krum_f", 1}}}};
    bool first = true;
    for (const auto& [algorithm, fields] : strategies) {
        json run = heart_run(algorithm, 3);
        run.update(fields);
        const std::string collab = "rb_" + algorithm;
        setup_project(client, collab, "rp", model, run, participants, tags, first);
        first = false;
        accuracy[algorithm] = train_and_validate(client, collab, "rp");
        WARN(algorithm << " with one garbage worker of five: accuracy " << accuracy[algorithm]);
    }
    CHECK(accuracy["fedavg"] < 0.5);
    CHECK(accuracy["fedmedian"] >= 0.5);
    CHECK(accuracy["fedtrimmedavg"] >= 0.5);
    CHECK(accuracy["krum"] >= 0.5);
    std::error_code ec;
    fs::remove_all(root, ec);
}

}  // namespace synergos::e2e
