// SPDX-License-Identifier: Apache-2.0
// `synergos submit` run twice on one job file, against a director with two real workers: the
// second submit keeps what the store already holds as written (a registration and tags are not
// replaced by identical ones, which would delete the project's alignment with them), and a
// participant whose tags did change must be aligned again before training, also when they
// change while an alignment job runs.

#include <atomic>
#include <fstream>
#include <future>
#include <sstream>

#include <synergos/core/client/client.hpp>

#include "cluster.hpp"

namespace synergos::e2e {
namespace {

/// The heart_disease job file for this director and these workers, with `steps` and hospital
/// p2's evaluate folder given. One short round: the test is about what the store keeps.
fs::path write_job(const fs::path& dir, int port1, int port2, const std::string& steps,
                   const std::string& p2_evaluate) {
    const fs::path data = fs::path(SYNERGOS_TEST_SOURCE_DIR) / "examples" / "data";
    const fs::path job = dir / "job.yaml";
    std::ofstream out(job);
    out << "collaboration: {id: heart}\n"
           "project: {id: hp, action: classify, incentives: {tier_1: [], tier_2: []}}\n"
           "experiment: {id: e1, model_file: "
        << (data / "heart_disease" / "architecture.json").string()
        << "}\n"
           "runs:\n"
           "  - {id: r1, algorithm: FedAvg, rounds: 1, epochs: 1, batch_size: 64, optimizer: Adam,\n"
           "     lr: 0.01, criterion: NLLLoss, lr_scheduler: \"\", seed: 7}\n"
           "participants:\n"
           "  - id: p1\n"
           "    role: host\n"
           "    nodes: [{host: 127.0.0.1, f_port: "
        << port1
        << "}]\n"
           "    tags: {train: [[heart_disease, data1, iid_1]], evaluate: [[heart_disease, data1, non_iid_1]]}\n"
           "  - id: p2\n"
           "    role: guest\n"
           "    nodes: [{host: 127.0.0.1, f_port: "
        << port2
        << "}]\n"
           "    tags: {train: [[heart_disease, data2, iid_2]], evaluate: [[heart_disease, data2, "
        << p2_evaluate << "]]}\n"
        << "steps: " << steps << "\n";
    return job;
}

int submit(const fs::path& job, int director_port, std::string& printed) {
    core::client::ClientOptions o;
    o.server = "http://127.0.0.1:" + std::to_string(director_port);
    o.timeout = std::chrono::seconds(300);
    o.poll = std::chrono::milliseconds(100);
    std::ostringstream out;
    std::ostringstream err;
    const int code = core::client::submit(job.string(), o, out, err);
    printed = out.str() + err.str();
    return code;
}

/// Submits the job file for these ports with `steps`; the test fails unless it exits 0.
void submit_ok(const fs::path& root, int port1, int port2, int director_port, const std::string& steps,
               const std::string& p2_evaluate) {
    std::string printed;
    const int code = submit(write_job(root, port1, port2, steps, p2_evaluate), director_port, printed);
    INFO("synergos submit, steps " << steps << ":\n" << printed);
    REQUIRE(code == 0);
}

/// The participants with an alignment record in the project (none: the listing is a 404).
std::set<std::string> aligned(Client& client) {
    auto r = client.http.request("GET", "127.0.0.1", static_cast<std::uint16_t>(client.port),
                                 "/ttp/train/collaborations/heart/projects/hp/alignments", "", "", 60s);
    REQUIRE(r);
    std::set<std::string> out;
    if (r->status == 404) {
        return out;
    }
    REQUIRE(r->status == 200);
    for (const auto& a : json::parse(r->body).value("data", json::array())) {
        out.insert(a["key"].value("participant_id", ""));
    }
    return out;
}

}  // namespace

TEST_CASE("A re-submitted job file keeps the alignment and changed tags need a new one",
          "[e2e][client]") {
    const fs::path root = temp_root("resubmit");
    const fs::path data = fs::path(SYNERGOS_TEST_SOURCE_DIR) / "examples" / "data";
    Worker w1("p1", root, data);
    Worker w2("p2", root, data);
    Director director(root / "director");
    Client client(director.port());
    const auto run = [&](const std::string& steps, const std::string& p2_evaluate) {
        submit_ok(root, w1.port(), w2.port(), director.port(), steps, p2_evaluate);
    };

    run("[align]", "non_iid_2");
    REQUIRE(aligned(client) == std::set<std::string>{"p1", "p2"});

    // The same file again, now only to train: the registrations and tags are as stored, so they
    // and the alignment stay, and training finds it.
    run("[train]", "non_iid_2");
    CHECK(aligned(client) == std::set<std::string>{"p1", "p2"});
    auto models = client.call("GET", "/ttp/train/collaborations/heart/projects/hp/models/e1/r1");
    CHECK(models["data"].size() == 1);

    // p2 now evaluates on another folder: its tags are replaced, its alignment goes with them,
    // and training refuses until the project is aligned again, naming p2.
    run("[]", "iid_2");
    CHECK(aligned(client) == std::set<std::string>{"p1"});
    const json tags = client.call(
        "GET", "/ttp/connect/collaborations/heart/projects/hp/participants/p2/registration/tags");
    CHECK(tags["data"]["evaluate"] == json::array({json::array({"heart_disease", "data2", "iid_2"})}));
    const json refused =
        client.call("POST", "/ttp/train/collaborations/heart/projects/hp/models/e1/r1", json::object(), 409);
    CHECK_THAT(refused.value("message", ""), Catch::Contains("participant 'p2' has no alignment"));

    // Aligning again (the journey the message names) makes training possible again.
    run("[align, train]", "iid_2");
    CHECK(aligned(client) == std::set<std::string>{"p1", "p2"});
}

TEST_CASE("An alignment whose participant's tags change while it runs is not used", "[e2e][align]") {
    const fs::path root = temp_root("align-race");
    const fs::path data = fs::path(SYNERGOS_TEST_SOURCE_DIR) / "examples" / "data";
    Worker w1("p1", root, data);
    Worker w2("p2", root, data);
    // p2's next poll is held until the test lets it go: the alignment job is then mid-way.
    std::atomic<bool> hold{false};
    std::promise<void> entered;
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    w2.before_request = [&](const core::http::Request& req) {
        if (req.path.find("/poll") != std::string::npos && hold.exchange(false)) {
            entered.set_value();
            released.wait_for(60s);
        }
    };
    Release let_go{release};
    Director director(root / "director");
    Client client(director.port());
    const auto run = [&](const std::string& steps, const std::string& p2_evaluate) {
        submit_ok(root, w1.port(), w2.port(), director.port(), steps, p2_evaluate);
    };
    run("[]", "non_iid_2");

    const std::string project = "/ttp/train/collaborations/heart/projects/hp";
    const std::string p2_tags = "/ttp/connect/collaborations/heart/projects/hp/participants/p2/registration/tags";
    hold = true;
    const json answer = client.call("POST", project + "/alignments", json::object(), 201);
    REQUIRE(entered.get_future().wait_for(60s) == std::future_status::ready);
    // p2 now names other data while the job still reads the old.
    client.call("PUT", p2_tags,
                {{"train", json::array({json::array({"heart_disease", "data2", "iid_2"})})},
                 {"evaluate", json::array({json::array({"heart_disease", "data2", "iid_2"})})}});
    let_go.now();
    const json job = client.finished_job(answer.at("jobs").at(0).at("job_id"), 300s);
    INFO(job.dump());
    CHECK(job["state"] == "failed");
    CHECK_THAT(job.value("reason", ""),
               Catch::Contains("the tags of participant 'p2' changed while the alignment ran"));
    CHECK(aligned(client).empty());
    client.call("POST", project + "/models/e1/r1", json::object(), 409);

    // Aligned again on the new tags, it is used; an alignment whose recorded basis no longer
    // matches the store (what an archive racing a change would leave) is refused at use.
    run("[align]", "iid_2");
    REQUIRE(aligned(client) == std::set<std::string>{"p1", "p2"});
    const sdk::Key key{{"collab_id", "heart"}, {"project_id", "hp"}, {"participant_id", "p2"}};
    auto stored = director.storage.get("Alignment", key);
    REQUIRE(stored);
    json doc = json::parse(stored->document);
    REQUIRE(doc.contains("basis"));
    CHECK(doc["basis"]["tags"]["evaluate"] == json::array({json::array({"heart_disease", "data2", "iid_2"})}));
    doc["basis"]["tags"]["evaluate"] = json::array({json::array({"heart_disease", "data2", "non_iid_2"})});
    REQUIRE(director.storage.apply({{sdk::WriteMode::Update, "Alignment", key, doc.dump()}}));
    const json refused = client.call("POST", project + "/models/e1/r1", json::object(), 409);
    CHECK_THAT(refused.value("message", ""),
               Catch::Contains("alignment of participant 'p2' in Project 'hp' was computed from a "
                               "registration or tags that have changed since"));
}

}  // namespace synergos::e2e
