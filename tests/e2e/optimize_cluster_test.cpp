// SPDX-License-Identifier: Apache-2.0
// Issue 6, acceptance 4: a federated hyper-parameter search over examples/heart_disease/ranges.json
// with 4 trials in cluster mode (a real RabbitMQ broker, two TTPs on two grids, each grid with
// its own two workers): the trials run on both grids at the same time and the best is reported.

#include <algorithm>
#include <fstream>

#include "rabbitmq_queue.hpp"
#include "rig.hpp"

namespace synergos::e2e {
namespace {

json read_json(const fs::path& p) {
    std::ifstream in(p);
    REQUIRE(in);
    return json::parse(in);
}

}  // namespace

TEST_CASE(
    "optimize: 4 trials on two grids run in parallel on both and the best is reported (rabbitmq)",
    "[e2e][optimize][rabbitmq]") {
    const fs::path root = temp_root("optimize");
    const fs::path data = fs::path(SYNERGOS_TEST_SOURCE_DIR) / "examples" / "data";
    // Grid g has its own worker for each participant (node_g of the registration).
    Worker a0("p1", root / "grid0", data);
    Worker b0("p2", root / "grid0", data);
    Worker a1("p1", root / "grid1", data);
    Worker b1("p2", root / "grid1", data);

    sdk::testing::FakeHost mq_host(root.string(), "mq");
    std::vector<std::unique_ptr<plugins::rabbitmq::RabbitMqQueue>> connections;
    auto connect = [&]() -> sdk::MessageQueue& {
        connections.push_back(std::make_unique<plugins::rabbitmq::RabbitMqQueue>(
            mq_host, opts(amqp_options_from_env())));
        REQUIRE(connections.back()->start());
        return *connections.back();
    };
    core::jobs::Topology topology;
    topology.prefix = "synergos-e2e-optimize-" + root.filename().string();
    {
        Rig rig(root / "director", connect, nullptr, topology);
        rig.start_ttp(0);
        rig.start_ttp(1);
        Client client(rig.port());

        const std::string c = "optc";
        const std::string p = "optp";
        const std::string base = "/ttp/connect/collaborations/" + c + "/projects/" + p;
        client.call("POST", "/ttp/connect/collaborations", {{"collab_id", c}}, 201);
        client.call("POST", "/ttp/connect/collaborations/" + c + "/projects",
                    {{"project_id", p},
                     {"action", "classify"},
                     {"incentives", {{"tier_1", json::array()}}}},
                    201);
        client.call(
            "POST", base + "/experiments",
            {{"expt_id", "e1"}, {"model", read_json(data / "heart_disease" / "architecture.json")}},
            201);
        const std::vector<std::pair<std::string, std::pair<int, int>>> participants{
            {"p1", {a0.port(), a1.port()}}, {"p2", {b0.port(), b1.port()}}};
        for (std::size_t i = 0; i < participants.size(); ++i) {
            const auto& [pid, ports] = participants[i];
            client.call("POST", "/ttp/connect/participants", {{"id", pid}}, 201);
            const std::string reg = base + "/participants/" + pid + "/registration";
            client.call(
                "POST", reg,
                {{"role", i == 0 ? "host" : "guest"},
                 {"n_count", 2},
                 {"node_0", {{"host", "127.0.0.1"}, {"port", 8020}, {"f_port", ports.first}}},
                 {"node_1", {{"host", "127.0.0.1"}, {"port", 8020}, {"f_port", ports.second}}}},
                201);
            client.call("POST", reg + "/tags", heart_tags(static_cast<int>(i) + 1), 201);
        }
        client.wait_jobs(
            client.call("POST", "/ttp/train/collaborations/" + c + "/projects/" + p + "/alignments",
                        json::object(), 201));

        const std::string route =
            "/ttp/train/collaborations/" + c + "/projects/" + p + "/models/e1/optimizations";
        // Nothing searched yet: the original's 404.
        auto none = client.http.request("GET", "127.0.0.1", static_cast<std::uint16_t>(rig.port()),
                                        route, "", "", 10s);
        REQUIRE(none);
        CHECK(none->status == 404);
        // A request without a metric changes nothing.
        client.call("POST", route,
                    {{"search_space", read_json(fs::path(SYNERGOS_TEST_SOURCE_DIR) / "examples" /
                                                "heart_disease" / "ranges.json")},
                     {"optimize_mode", "max"}},
                    422);

        const json ranges = read_json(fs::path(SYNERGOS_TEST_SOURCE_DIR) / "examples" /
                                      "heart_disease" / "ranges.json");
        json answer = client.call("POST", route + "/",
                                  {{"search_space", ranges},
                                   {"metric", "accuracy"},
                                   {"optimize_mode", "max"},
                                   {"max_trial_num", 4},
                                   {"seed", 7},
                                   {"run", heart_base_run()}},
                                  200);
        REQUIRE(answer["jobs"].size() == 1);
        CHECK(answer["jobs"][0]["process"] == "optimize");
        const std::string search = answer["jobs"][0]["job_id"];

        json job = client.finished_job(search, 900s);
        INFO(job.dump(2));
        REQUIRE(job["state"] == "succeeded");
        const json& out = job["outputs"];
        REQUIRE(out["trials"].size() == 4);
        std::set<int> grids;
        std::vector<double> scores;
        for (const auto& t : out["trials"]) {
            CHECK(t["state"] == "succeeded");
            CHECK(t["run_id"].get<std::string>().rfind("optim_run_", 0) == 0);
            grids.insert(t["grid"].get<int>());
            scores.push_back(t["score"].get<double>());
            CHECK(t["score"].get<double>() > 0.0);
            CHECK(t["score"].get<double>() <= 1.0);
            CHECK(t["hyperparameters"].contains("mu"));
        }
        // Both grids ran trials ...
        CHECK(grids == std::set<int>{0, 1});
        // ... at the same time: some trial of grid 0 and some trial of grid 1 overlap in time
        // (ISO-8601 UTC with milliseconds compares as text).
        bool overlap = false;
        for (const auto& x : out["trials"]) {
            for (const auto& y : out["trials"]) {
                if (x["grid"] == 0 && y["grid"] == 1 && x["started_at"] < y["finished_at"] &&
                    y["started_at"] < x["finished_at"]) {
                    overlap = true;
                }
            }
        }
        CHECK(overlap);
        // The best is the trial with the highest mean accuracy.
        const double top = *std::max_element(scores.begin(), scores.end());
        REQUIRE(out["best"].is_object());
        CHECK(out["best"]["score"].get<double>() == Approx(top));
        WARN("optimization scores: " << json(scores).dump() << " best " << out["best"]["run_id"]);

        // The route: validation records of the optim runs (2 participants x 4 trials), the search
        // with its trials, and the best.
        json got = client.call("GET", route, nullptr, 200);
        CHECK(got["method"] == "optimizations.get");
        CHECK(got["data"].size() == 8);
        for (const auto& v : got["data"]) {
            CHECK(v["kind"] == "Optimization");
            CHECK(v["key"]["run_id"].get<std::string>().rfind("optim_run_", 0) == 0);
            CHECK(v["evaluate"]["statistics"]["accuracy"].size() == 5);
        }
        REQUIRE(got["optimizations"].size() == 1);
        CHECK(got["optimizations"][0]["job_id"] == search);
        CHECK(got["best"]["run_id"] == out["best"]["run_id"]);
        // Each trial is a Run (its sampled settings over the base run), trained and validated.
        const std::string best_run = out["best"]["run_id"];
        json run =
            client.call("GET", base + "/experiments/e1/runs/" + best_run, nullptr, 200)["data"];
        CHECK(run["rounds"] == out["best"]["hyperparameters"]["rounds"]);
        client.call("GET",
                    "/ttp/train/collaborations/" + c + "/projects/" + p + "/models/e1/" + best_run,
                    nullptr, 200);
    }
    for (auto& q : connections) {
        q->stop();
    }
    std::error_code ec;
    fs::remove_all(root, ec);
}

TEST_CASE(
    "optimize: a search space the function refuses fails the job with the entry named (rabbitmq)",
    "[e2e][optimize][rabbitmq]") {
    const fs::path root = temp_root("optimize-bad");
    sdk::testing::FakeHost mq_host(root.string(), "mq");
    std::vector<std::unique_ptr<plugins::rabbitmq::RabbitMqQueue>> connections;
    auto connect = [&]() -> sdk::MessageQueue& {
        connections.push_back(std::make_unique<plugins::rabbitmq::RabbitMqQueue>(
            mq_host, opts(amqp_options_from_env())));
        REQUIRE(connections.back()->start());
        return *connections.back();
    };
    core::jobs::Topology topology;
    topology.prefix = "synergos-e2e-optimize-" + root.filename().string();
    {
        Rig rig(root / "director", connect, nullptr, topology);
        core::jobs::JobSpec s;
        s.process = "optimize";
        s.filters = {"c", "p", "e"};
        s.keys = {{"collab_id", "c"}, {"project_id", "p"}, {"expt_id", "e"}};
        s.parameters = {{"search_space", {{"lr", {{"_type", "lograndint"}, {"_value", {1, 9}}}}}},
                        {"metric", "accuracy"},
                        {"optimize_mode", "max"}};
        auto jobs = rig.jobs->submit({s});
        REQUIRE(jobs);
        CHECK(jobs->front().grid == core::jobs::kDirectorGrid);
        auto done = rig.jobs->wait(jobs->front().job_id, 60s);
        REQUIRE(done);
        CHECK(done->state == "failed");
        CHECK_THAT(done->reason,
                   Catch::Contains("search_space.lr") && Catch::Contains("lograndint"));
    }
    for (auto& q : connections) {
        q->stop();
    }
    std::error_code ec;
    fs::remove_all(root, ec);
}

}  // namespace synergos::e2e
