// SPDX-License-Identifier: Apache-2.0
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/core/rest/record_store.hpp>

#include "rest_fixture.hpp"
#include "support/process_memory.hpp"
#include "support/storage_double.hpp"

namespace {

using nlohmann::json;
using synergos::testing::body_of;
using synergos::testing::RestServer;

const std::string kConnect = "/ttp/connect";

json collab_body(const std::string& id) {
    return {{"collab_id", id},
            {"mq", {{"host", "h"}, {"ports", {{"main", 5672}, {"ui", 15672}}}, {"secure", false}}}};
}

json project_body(const std::string& id) {
    return {{"project_id", id},
            {"action", "classify"},
            {"incentives", {{"tier_1", json::array()}, {"tier_2", json::array()}}}};
}

json experiment_body(const std::string& id) {
    return {{"expt_id", id},
            {"model",
             {{{"is_input", true},
               {"l_type", "Linear"},
               {"structure", {{"in_features", 15}, {"out_features", 1}, {"bias", true}}},
               {"activation", "sigmoid"}}}}};
}

json run_body(const std::string& id) {
    return {{"run_id", id}, {"algorithm", "FedProx"}, {"rounds", 2}, {"epochs", 1}, {"lr", 0.001}};
}

json participant_body(const std::string& id) {
    return {{"id", id},         {"category", nullptr}, {"summary", nullptr},
            {"phone", nullptr}, {"email", nullptr},    {"socials", nullptr}};
}

json registration_body() {
    return {{"role", "host"},
            {"n_count", 1},
            {"node_0",
             {{"host", "127.0.0.1"},
              {"port", 8020},
              {"f_port", 5000},
              {"log_msgs", false},
              {"verbose", false}}}};
}

std::string project_path(const std::string& c, const std::string& p) {
    return kConnect + "/collaborations/" + c + "/projects/" + p;
}

/// Checks the six-key success envelope and returns its data.
json expect_envelope(const synergos::core::http::Response& response, int status,
                     const std::string& method) {
    INFO("response: " << response.status << " " << response.body);
    REQUIRE(response.status == status);
    CHECK(response.content_type == "application/json");
    json body = body_of(response);
    std::set<std::string> keys;
    for (auto& [key, value] : body.items()) {
        keys.insert(key);
    }
    CHECK(keys ==
          std::set<std::string>{"apiVersion", "success", "status", "method", "params", "data"});
    CHECK(body["apiVersion"] == "0.1.0");
    CHECK(body["success"] == 1);
    CHECK(body["status"] == status);
    CHECK(body["method"] == method);
    return body;
}

void expect_error(const synergos::core::http::Response& response, int status,
                  const std::string& message_prefix) {
    INFO("response: " << response.status << " " << response.body);
    CHECK(response.status == status);
    CHECK(response.content_type == "application/json");
    json body = body_of(response);
    REQUIRE(body.contains("message"));
    CHECK(body["message"].get<std::string>().rfind(message_prefix, 0) == 0);
}

/// Builds collab c / project p / experiment e / run r / participant w / registration / tag.
void build_tree(RestServer& s, const std::string& c, const std::string& p, const std::string& w) {
    REQUIRE(s.call("POST", kConnect + "/collaborations", collab_body(c)).status == 201);
    REQUIRE(
        s.call("POST", kConnect + "/collaborations/" + c + "/projects", project_body(p)).status ==
        201);
    REQUIRE(s.call("POST", project_path(c, p) + "/experiments", experiment_body("e1")).status ==
            201);
    REQUIRE(s.call("POST", project_path(c, p) + "/experiments/e1/runs", run_body("r1")).status ==
            201);
    auto pt = s.call("POST", kConnect + "/participants", participant_body(w));
    REQUIRE((pt.status == 201 || pt.status == 409));
    REQUIRE(s.call("POST", project_path(c, p) + "/participants/" + w + "/registration",
                   registration_body())
                .status == 201);
    REQUIRE(s.call("POST", project_path(c, p) + "/participants/" + w + "/registration/tags",
                   json{{"train", json::array({json::array({"a", "b"})})}})
                .status == 201);
}

}  // namespace

TEST_CASE("connect routes serve the full journey of the original client", "[unit][rest]") {
    RestServer s;

    // 1. Collaboration (slash-less, as the Driver sends it).
    auto r = s.call("POST", kConnect + "/collaborations", collab_body("c1"));
    json body = expect_envelope(r, 201, "collaborations.post");
    CHECK(body["params"] == json::object());
    json data = body["data"];
    CHECK(data["key"] == json{{"collab_id", "c1"}});
    CHECK(data["kind"] == "Collaboration");
    CHECK(data["doc_id"] == "1");
    CHECK(data["mq"]["host"] == "h");
    CHECK_FALSE(data.contains("created_at"));
    CHECK_FALSE(data.contains("collab_id"));
    REQUIRE(data["relations"].size() == 8);
    for (const char* kind : {"Project", "Experiment", "Run", "Registration", "Tag", "Model",
                             "Validation", "Prediction"}) {
        CHECK(data["relations"][kind] == json::array());
    }

    // Both spellings of the collection.
    for (const std::string& path : {kConnect + "/collaborations", kConnect + "/collaborations/"}) {
        json list = expect_envelope(s.call("GET", path), 200, "collaborations.get");
        REQUIRE(list["data"].size() == 1);
        CHECK(list["data"][0]["key"]["collab_id"] == "c1");
    }

    // 2. Project (slash form, with the Driver's redundant collab_id in the body).
    json project = project_body("p1");
    project["collab_id"] = "c1";
    body = expect_envelope(s.call("POST", kConnect + "/collaborations/c1/projects/", project), 201,
                           "projects.post");
    CHECK(body["params"] == json{{"collab_id", "c1"}});
    CHECK(body["data"]["key"] == json{{"collab_id", "c1"}, {"project_id", "p1"}});
    CHECK(body["data"]["action"] == "classify");
    CHECK_FALSE(body["data"].contains("collab_id"));

    // 3. Experiment: the raw stored document (integer doc_id, created_at).
    body = expect_envelope(
        s.call("POST", project_path("c1", "p1") + "/experiments", experiment_body("e1")), 201,
        "experiments.post");
    data = body["data"];
    CHECK(data["doc_id"] == 1);
    REQUIRE(data["created_at"].is_string());
    const std::string created = data["created_at"];
    CHECK(created.size() == 21);
    CHECK(created.substr(created.size() - 2) == " N");
    CHECK(data["relations"].contains("Run"));
    CHECK(data["model"][0]["l_type"] == "Linear");
    CHECK(body["params"] == json{{"collab_id", "c1"}, {"project_id", "p1"}});

    // 4. Run: stored-only fields (algorithm) are not echoed.
    body = expect_envelope(
        s.call("POST", project_path("c1", "p1") + "/experiments/e1/runs/", run_body("r1")), 201,
        "runs.post");
    data = body["data"];
    CHECK(data["rounds"] == 2);
    CHECK(data["lr"] == 0.001);
    CHECK_FALSE(data.contains("algorithm"));
    CHECK(data["key"] ==
          json{{"collab_id", "c1"}, {"project_id", "p1"}, {"expt_id", "e1"}, {"run_id", "r1"}});
    CHECK(data["relations"] == json{{"Model", json::array()},
                                    {"Validation", json::array()},
                                    {"Prediction", json::array()}});

    // 5. Participants (nulls omitted).
    for (const char* w : {"w1", "w2"}) {
        body = expect_envelope(s.call("POST", kConnect + "/participants", participant_body(w)), 201,
                               "participants.post");
        CHECK(body["data"]["key"] == json{{"participant_id", w}});
        CHECK(body["data"]["id"] == w);
        CHECK_FALSE(body["data"].contains("category"));
        CHECK(body["data"]["relations"] ==
              json{{"Registration", json::array()}, {"Tag", json::array()}});
    }

    // 6. Registration: the Driver first GETs (404), then POSTs.
    const std::string reg = project_path("c1", "p1") + "/participants/w1/registration";
    expect_error(s.call("GET", reg), 404, "Participant 'w1' has not registered for Project 'p1'!");
    body = expect_envelope(s.call("POST", reg, registration_body()), 201, "registration.post");
    data = body["data"];
    CHECK(body["params"] ==
          json{{"collab_id", "c1"}, {"project_id", "p1"}, {"participant_id", "w1"}});
    CHECK(data["role"] == "host");
    CHECK(data["n_count"] == 1);
    CHECK(data["node_0"]["f_port"] == 5000);
    CHECK(data["collaboration"]["mq"]["host"] == "h");
    CHECK(data["collaboration"]["logs"] == json::object());
    CHECK(data["project"]["action"] == "classify");
    CHECK(data["participant"]["id"] == "w1");
    CHECK(data["participant"]["category"] == json::array());
    CHECK(data["relations"] == json{{"Tag", json::array()}});
    // The participant-side alias reaches the same record.
    body = expect_envelope(
        s.call("GET", kConnect + "/participants/w1/collaborations/c1/projects/p1/registration"),
        200, "registration.get");
    CHECK(body["data"]["doc_id"] == data["doc_id"]);
    REQUIRE(s.call("POST", project_path("c1", "p1") + "/participants/w2/registration",
                   json{{"role", "guest"},
                        {"n_count", 1},
                        {"node_0", {{"host", "h2"}, {"port", 8021}, {"f_port", 5001}}}})
                .status == 201);

    // 7. Tags.
    body = expect_envelope(
        s.call("POST", reg + "/tags",
               json{{"train", json::array({json::array({"heart_disease", "data1"})})},
                    {"evaluate", json::array()},
                    {"predict", json::array()}}),
        201, "tag.post");
    CHECK(body["data"]["train"] == json::array({json::array({"heart_disease", "data1"})}));
    CHECK_FALSE(body["data"].contains("relations"));
    body = expect_envelope(s.call("GET", reg), 200, "registration.get");
    REQUIRE(body["data"]["relations"]["Tag"].size() == 1);
    CHECK(body["data"]["relations"]["Tag"][0]["kind"] == "Tag");
    body = expect_envelope(s.call("GET", project_path("c1", "p1")), 200, "project.get");
    CHECK(body["data"]["relations"]["Tag"].size() == 1);
    CHECK(body["data"]["relations"]["Registration"].size() == 2);
    CHECK(body["data"]["relations"]["Experiment"].size() == 1);
    CHECK(body["data"]["relations"]["Run"].size() == 1);
    body = expect_envelope(
        s.call("GET",
               kConnect + "/participants/w1/collaborations/c1/projects/p1/registration/tags"),
        200, "tag.get");
    CHECK(body["data"]["key"]["participant_id"] == "w1");

    // 8. The five registration listings (params always {}).
    struct Listing {
        std::string path;
        std::size_t count;
    };
    for (const auto& listing :
         {Listing{kConnect + "/collaborations/c1/registrations", 2},
          Listing{kConnect + "/collaborations/c1/participants/w1/registrations", 1},
          Listing{project_path("c1", "p1") + "/registrations", 2},
          Listing{kConnect + "/participants/w2/registrations", 1},
          Listing{kConnect + "/participants/w1/collaborations/c1/registrations", 1}}) {
        INFO(listing.path);
        body = expect_envelope(s.call("GET", listing.path), 200, "registrations.get");
        CHECK(body["params"] == json::object());
        CHECK(body["data"].size() == listing.count);
    }

    // 9. Read, update, list.
    body = expect_envelope(
        s.call("PUT", project_path("c1", "p1") + "/experiments/e1/runs/r1", json{{"rounds", 5}}),
        200, "run.put");
    CHECK(body["data"]["rounds"] == 5);
    CHECK(body["data"]["epochs"] == 1);
    body = expect_envelope(s.call("PUT", project_path("c1", "p1"), json{{"action", "regress"}}),
                           200, "project.put");
    CHECK(body["data"]["action"] == "regress");
    body =
        expect_envelope(s.call("PUT", reg + "/tags", json{{"evaluate", {{"x"}}}}), 200, "tag.put");
    CHECK(body["data"]["evaluate"] == json{{"x"}});
    body = expect_envelope(s.call("PUT", kConnect + "/collaborations/c1",
                                  json{{"logs",
                                        {{"host", "g"},
                                         {"ports",
                                          {{"main", 1},
                                           {"sysmetrics", 2},
                                           {"director", 3},
                                           {"ttp", 4},
                                           {"worker", 5}}}}}}),
                           200, "collaboration.put");
    CHECK(body["data"]["logs"]["host"] == "g");
    body =
        expect_envelope(s.call("PUT", kConnect + "/participants/w1", json{{"summary", "hospital"}}),
                        200, "participant.put");
    CHECK(body["data"]["summary"] == "hospital");
    body = expect_envelope(s.call("GET", project_path("c1", "p1") + "/experiments"), 200,
                           "experiments.get");
    REQUIRE(body["data"].size() == 1);
    CHECK(body["data"][0]["doc_id"] == "1");  // a string everywhere but experiments POST
    CHECK(body["data"][0]["model"][0]["structure"]["in_features"] == 15);
    body = expect_envelope(s.call("GET", project_path("c1", "p1") + "/experiments/e1/runs/"), 200,
                           "runs.get");
    CHECK(body["data"].size() == 1);
    body = expect_envelope(s.call("GET", kConnect + "/participants/"), 200, "participants.get");
    CHECK(body["data"].size() == 2);
    expect_envelope(s.call("GET", project_path("c1", "p1") + "/experiments/e1"), 200,
                    "experiment.get");

    // 10. Registration delete (Driver's re-registration flow) cascades to its tag.
    body = expect_envelope(s.call("DELETE", reg), 200, "registration.delete");
    CHECK(body["data"]["relations"]["Tag"].size() == 1);
    expect_error(s.call("GET", reg + "/tags"), 404,
                 "Data tags does not exist for participant 'w1'");
    REQUIRE(s.call("POST", reg, registration_body()).status == 201);

    // 11. Cascade delete of the project.
    body = expect_envelope(s.call("DELETE", project_path("c1", "p1")), 200, "project.delete");
    CHECK(body["data"]["relations"]["Run"].size() == 1);
    expect_error(s.call("GET", project_path("c1", "p1")), 404, "Project 'p1' does not exist!");
    expect_error(s.call("GET", project_path("c1", "p1") + "/experiments/e1"), 404,
                 "Experiment 'e1' does not exist in Project 'p1'!");
    expect_error(s.call("GET", project_path("c1", "p1") + "/experiments/e1/runs/r1"), 404,
                 "Run 'r1' does not exist for Experiment e1 under Project 'p1'!");
    expect_error(s.call("GET", reg), 404, "Participant 'w1' has not registered");
    body = expect_envelope(s.call("GET", kConnect + "/participants/w1"), 200, "participant.get");
    CHECK(body["data"]["relations"]["Registration"] == json::array());
    body =
        expect_envelope(s.call("GET", kConnect + "/collaborations/c1"), 200, "collaboration.get");
    CHECK(body["data"]["relations"]["Project"] == json::array());

    // 12. Collaboration and participant delete.
    expect_envelope(s.call("DELETE", kConnect + "/collaborations/c1"), 200, "collaboration.delete");
    expect_envelope(s.call("DELETE", kConnect + "/participants/w1"), 200, "participant.delete");
    body = expect_envelope(s.call("GET", kConnect + "/collaborations"), 200, "collaborations.get");
    CHECK(body["data"] == json::array());
}

TEST_CASE("relations and cascades are scoped by the full key", "[unit][rest]") {
    RestServer s;
    build_tree(s, "A", "p1", "w1");
    build_tree(s, "B", "p1", "w1");

    json a = body_of(s.call("GET", project_path("A", "p1")))["data"];
    REQUIRE(a["relations"]["Run"].size() == 1);
    CHECK(a["relations"]["Run"][0]["key"]["collab_id"] == "A");
    CHECK(a["relations"]["Registration"].size() == 1);
    json run = body_of(s.call("GET", project_path("A", "p1") + "/experiments/e1/runs/r1"))["data"];
    CHECK(run["key"]["collab_id"] == "A");

    REQUIRE(s.call("DELETE", project_path("A", "p1")).status == 200);
    CHECK(s.call("GET", project_path("B", "p1")).status == 200);
    CHECK(s.call("GET", project_path("B", "p1") + "/experiments/e1/runs/r1").status == 200);
    CHECK(s.call("GET", project_path("B", "p1") + "/participants/w1/registration/tags").status ==
          200);
    json w1 = body_of(s.call("GET", kConnect + "/participants/w1"))["data"];
    REQUIRE(w1["relations"]["Registration"].size() == 1);
    CHECK(w1["relations"]["Registration"][0]["key"]["collab_id"] == "B");

    // Deleting the participant removes its registrations and tags everywhere.
    REQUIRE(s.call("DELETE", kConnect + "/participants/w1").status == 200);
    CHECK(s.call("GET", project_path("B", "p1") + "/participants/w1/registration").status == 404);
    CHECK(body_of(s.call("GET", project_path("B", "p1")))["data"]["relations"]["Tag"] ==
          json::array());
}

TEST_CASE("deleting an experiment or a project or a collaboration deletes its search records",
          "[unit][rest]") {
    // Optimization records (a search's summary, archived by the optimize function) belong to
    // an experiment: they go with it, and only its own.
    RestServer s;
    build_tree(s, "A", "p1", "w1");
    build_tree(s, "B", "p1", "w1");
    REQUIRE(s.call("POST", project_path("A", "p1") + "/experiments", experiment_body("e2"))
                .status == 201);
    auto search = [](const std::string& c, const std::string& e, const std::string& id) {
        return synergos::sdk::Mutation{synergos::sdk::WriteMode::Insert,
                                       "Optimization",
                                       {{"collab_id", c},
                                        {"project_id", "p1"},
                                        {"expt_id", e},
                                        {"optim_id", id}},
                                       R"({"best": 0.5})"};
    };
    REQUIRE(s.storage()
                .apply({search("A", "e1", "o1"), search("A", "e2", "o2"), search("B", "e1", "o3")})
                .has_value());
    auto searches = [&](const std::string& c) {
        auto found = s.storage().list({"Optimization", {{"collab_id", c}}});
        REQUIRE(found.has_value());
        std::set<std::string> ids;
        for (const auto& r : *found) {
            ids.insert(r.key.back().value);
        }
        return ids;
    };
    REQUIRE(s.call("DELETE", project_path("A", "p1") + "/experiments/e1").status == 200);
    CHECK(searches("A") == std::set<std::string>{"o2"});
    REQUIRE(s.call("DELETE", project_path("A", "p1")).status == 200);
    CHECK(searches("A").empty());
    CHECK(searches("B") == std::set<std::string>{"o3"});
    REQUIRE(s.call("DELETE", kConnect + "/collaborations/B").status == 200);
    CHECK(searches("B").empty());
}

TEST_CASE("a GET answer reused while unchanged follows every change of the record and its "
          "relations",
          "[unit][rest]") {
    RestServer s;
    REQUIRE(s.call("POST", kConnect + "/collaborations", collab_body("c")).status == 201);
    REQUIRE(s.call("POST", kConnect + "/collaborations/c/projects", project_body("p")).status ==
            201);
    REQUIRE(s.call("POST", kConnect + "/participants", participant_body("w")).status == 201);
    const std::string project = project_path("c", "p");
    const std::string participant = kConnect + "/participants/w";
    const std::string reg = project + "/participants/w/registration";
    auto relations = [&](const std::string& path, const char* kind) {
        json data = expect_envelope(s.call("GET", path), 200,
                                    path == project ? "project.get" : "participant.get")["data"];
        return data["relations"][kind];
    };
    for (int i = 0; i < 2; ++i) {  // the second answer is the reused one
        CHECK(relations(project, "Registration").empty());
        CHECK(relations(participant, "Registration").empty());
    }
    // A participant registered to the project changes both answers.
    REQUIRE(s.call("POST", reg, registration_body()).status == 201);
    REQUIRE(relations(project, "Registration").size() == 1);
    CHECK(relations(project, "Registration")[0]["role"] == "host");
    REQUIRE(relations(participant, "Registration").size() == 1);
    // Replaced (same key, same doc_id): the related record's new content shows.
    json guest = registration_body();
    guest["role"] = "guest";
    REQUIRE(s.call("POST", reg, guest).status == 201);
    CHECK(relations(project, "Registration")[0]["role"] == "guest");
    CHECK(relations(participant, "Registration")[0]["role"] == "guest");
    // Updated in place: the record's own fields.
    REQUIRE(s.call("PUT", participant, json{{"summary", "after"}}).status == 200);
    CHECK(body_of(s.call("GET", participant))["data"]["summary"] == "after");
    // Deleted, then created again under the same key (a new doc_id).
    REQUIRE(s.call("DELETE", reg).status == 200);
    CHECK(relations(project, "Registration").empty());
    CHECK(relations(participant, "Registration").empty());
    REQUIRE(s.call("POST", reg, registration_body()).status == 201);
    REQUIRE(relations(project, "Registration").size() == 1);
    CHECK(relations(project, "Registration")[0]["role"] == "host");
}

TEST_CASE("a GET answer is kept once per record, however its id is percent-encoded",
          "[unit][rest]") {
    RestServer s;
    json big = collab_body("cccccccc");
    big["mq"]["blob"] = std::string(600 * 1024, 'x');  // accepted: the mq block is open
    REQUIRE(s.call("POST", kConnect + "/collaborations", big).status == 201);
    const std::string plain = kConnect + "/collaborations/cccccccc";
    const auto first = s.call("GET", plain);
    REQUIRE(first.status == 200);
    const long before = synergos::testing::status_kib("VmRSS:");
    REQUIRE(before > 0);
    // 100 spellings of one id (a different subset of its letters as %63): before, each kept a
    // copy of the 600 KB answer, about 60 MB in all.
    for (int mask = 1; mask <= 100; ++mask) {
        std::string id;
        for (int i = 0; i < 8; ++i) {
            id += (mask >> i) & 1 ? "%63" : "c";
        }
        const auto r = s.call("GET", kConnect + "/collaborations/" + id);
        REQUIRE(r.status == 200);
        REQUIRE(r.body == first.body);
    }
    const long grown_kib = synergos::testing::status_kib("VmRSS:") - before;
    INFO("resident size grew by " << grown_kib << " KiB");
    CHECK(grown_kib < 24 * 1024);
}

TEST_CASE("concurrent PUTs of one record each keep their fields", "[unit][rest]") {
    // Each PUT merges its fields into the stored record. Four clients update four different
    // fields of one run at once, thirty times: every field must hold its client's last value
    // (merging into the same old document, the later write dropped the earlier one's field).
    RestServer s;
    build_tree(s, "c", "p", "w");
    const std::string run = project_path("c", "p") + "/experiments/e1/runs/r1";
    const std::vector<std::string> fields = {"rounds", "epochs", "batch_size", "seed"};
    for (int i = 1; i <= 30; ++i) {
        std::vector<std::thread> clients;
        std::vector<int> statuses(fields.size(), 0);
        for (std::size_t f = 0; f < fields.size(); ++f) {
            clients.emplace_back([&, f] {
                synergos::core::http::HttpClient client;
                auto answer = client.request("PUT", "127.0.0.1", s.port(), run,
                                             json{{fields[f], 100 * i + static_cast<int>(f)}}.dump(),
                                             "application/json", std::chrono::seconds(10));
                statuses[f] = answer ? answer->status : -1;
            });
        }
        for (auto& c : clients) {
            c.join();
        }
        auto stored = body_of(s.call("GET", run))["data"];
        for (std::size_t f = 0; f < fields.size(); ++f) {
            INFO("round " << i << ", field " << fields[f]);
            CHECK(statuses[f] == 200);
            CHECK(stored[fields[f]] == 100 * i + static_cast<int>(f));
        }
    }
}

namespace {

/// Once armed, holds the first read of `kind` until released: a PUT that has read its record
/// and not yet written its merge.
class HoldFirstRead final : public synergos::testing::ForwardingStorage {
public:
    HoldFirstRead(synergos::sdk::StorageBackend& inner, std::string kind)
        : ForwardingStorage(inner), kind_(std::move(kind)) {}
    synergos::sdk::Result<synergos::sdk::Record> get(const std::string& kind,
                                                    const synergos::sdk::Key& key) noexcept override {
        auto record = inner_.get(kind, key);  // read first: the hold is between read and write
        std::unique_lock<std::mutex> lock(mutex_);
        if (armed_ && !held_ && kind == kind_) {
            held_ = true;
            changed_.notify_all();
            changed_.wait_for(lock, std::chrono::seconds(30), [&] { return released_; });
        }
        return record;
    }
    void arm() {
        std::lock_guard<std::mutex> lock(mutex_);
        armed_ = true;
    }
    bool wait_held(std::chrono::seconds timeout) {
        std::unique_lock<std::mutex> lock(mutex_);
        return changed_.wait_for(lock, timeout, [&] { return held_; });
    }
    void release() {
        std::lock_guard<std::mutex> lock(mutex_);
        released_ = true;
        changed_.notify_all();
    }

private:
    std::string kind_;
    std::mutex mutex_;
    std::condition_variable changed_;
    bool armed_ = false;
    bool held_ = false;
    bool released_ = false;
};

}  // namespace

TEST_CASE("a registration POST that replaces the record is not written over by a PUT in flight",
          "[unit][rest]") {
    // A PUT reads the registration, then a POST replaces it and is answered 201, then the PUT
    // writes its merge of what it read: before, that put the old node back and the answered
    // POST was lost. Now the POST waits for the PUT's turn and replaces what the PUT wrote.
    HoldFirstRead* hold = nullptr;
    RestServer s(RestServer::default_options(), [&](synergos::sdk::StorageBackend& inner) {
        auto wrapped = std::make_unique<HoldFirstRead>(inner, "Registration");
        hold = wrapped.get();
        return wrapped;
    });
    build_tree(s, "c", "p", "w");
    const std::string reg = project_path("c", "p") + "/participants/w/registration";
    hold->arm();
    int put_status = 0;
    std::thread put([&] {
        synergos::core::http::HttpClient client;
        auto answer = client.request("PUT", "127.0.0.1", s.port(), reg, json{{"role", "guest"}}.dump(),
                                     "application/json", std::chrono::seconds(30));
        put_status = answer ? answer->status : -1;
    });
    REQUIRE(hold->wait_held(std::chrono::seconds(10)));
    json replaced = registration_body();
    replaced["node_0"]["host"] = "10.0.0.9";
    std::atomic<int> post_status{0};
    std::thread post([&] {
        synergos::core::http::HttpClient client;
        auto answer = client.request("POST", "127.0.0.1", s.port(), reg, replaced.dump(),
                                     "application/json", std::chrono::seconds(30));
        post_status = answer ? answer->status : -1;
    });
    // The old code answered the POST at once; now it waits for the PUT. Either way the PUT is
    // let go after the POST's answer or a second.
    for (int i = 0; i < 100 && post_status == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    hold->release();
    put.join();
    post.join();
    CHECK(put_status == 200);
    CHECK(post_status == 201);
    auto stored = body_of(s.call("GET", reg))["data"];
    CHECK(stored["node_0"]["host"] == "10.0.0.9");
    CHECK(stored["role"] == "host");  // the POST replaced the whole record after the PUT
}

namespace {

/// Deletes `victim` (with its cascade) just before the first batch that writes `trigger`: a
/// DELETE of the parent committing between a create's checks and its write.
class DeleteFirst final : public synergos::testing::ForwardingStorage {
public:
    DeleteFirst(synergos::sdk::StorageBackend& inner, std::string victim,
                synergos::sdk::Key victim_key, std::string trigger)
        : ForwardingStorage(inner),
          victim_(std::move(victim)),
          victim_key_(std::move(victim_key)),
          trigger_(std::move(trigger)) {}
    synergos::sdk::Result<std::vector<synergos::sdk::Record>> apply(
        const std::vector<synergos::sdk::Mutation>& batch) noexcept override {
        for (const auto& m : batch) {
            if (!fired_ && m.kind == trigger_ &&
                (m.mode == synergos::sdk::WriteMode::Insert ||
                 m.mode == synergos::sdk::WriteMode::Upsert)) {
                fired_ = true;
                auto deleted =
                    inner_.apply(synergos::core::rest::RecordStore::cascade_delete(victim_, victim_key_));
                if (!deleted) {
                    return deleted.error();
                }
            }
        }
        return inner_.apply(batch);
    }
    bool fired() const { return fired_; }

private:
    std::string victim_;
    synergos::sdk::Key victim_key_;
    std::string trigger_;
    bool fired_ = false;  // the writer thread only
};

}  // namespace

TEST_CASE("a create whose parent is deleted before its write leaves no orphan", "[unit][rest]") {
    using synergos::sdk::Key;
    SECTION("a run whose experiment goes") {
        DeleteFirst* hook = nullptr;
        RestServer s(RestServer::default_options(), [&](synergos::sdk::StorageBackend& inner) {
            auto made = std::make_unique<DeleteFirst>(
                inner, "Experiment", Key{{"collab_id", "c"}, {"project_id", "p"}, {"expt_id", "e1"}},
                "Run");
            hook = made.get();
            return made;
        });
        REQUIRE(s.call("POST", kConnect + "/collaborations", collab_body("c")).status == 201);
        REQUIRE(s.call("POST", kConnect + "/collaborations/c/projects", project_body("p")).status ==
                201);
        REQUIRE(s.call("POST", project_path("c", "p") + "/experiments", experiment_body("e1"))
                    .status == 201);
        auto r = s.call("POST", project_path("c", "p") + "/experiments/e1/runs", run_body("r1"));
        INFO(r.body);
        REQUIRE(hook->fired());
        CHECK(r.status == 404);
        CHECK(body_of(r)["message"] == "Experiment 'e1' does not exist in Project 'p'!");
        auto runs = s.storage().list({"Run", {}, 0, 0});
        REQUIRE(runs.has_value());
        CHECK(runs->empty());
        // Once the experiment is back, the same create succeeds (the hook fired once).
        REQUIRE(s.call("POST", project_path("c", "p") + "/experiments", experiment_body("e1"))
                    .status == 201);
        CHECK(s.call("POST", project_path("c", "p") + "/experiments/e1/runs", run_body("r1"))
                  .status == 201);
    }
    SECTION("a tag whose participant goes") {
        RestServer s(RestServer::default_options(), [](synergos::sdk::StorageBackend& inner) {
            return std::make_unique<DeleteFirst>(inner, "Participant",
                                                 Key{{"participant_id", "w"}}, "Tag");
        });
        REQUIRE(s.call("POST", kConnect + "/collaborations", collab_body("c")).status == 201);
        REQUIRE(s.call("POST", kConnect + "/collaborations/c/projects", project_body("p")).status ==
                201);
        REQUIRE(s.call("POST", kConnect + "/participants", participant_body("w")).status == 201);
        REQUIRE(s.call("POST", project_path("c", "p") + "/participants/w/registration",
                       registration_body())
                    .status == 201);
        auto r = s.call("POST", project_path("c", "p") + "/participants/w/registration/tags",
                        json{{"train", json::array({json::array({"a"})})}});
        INFO(r.body);
        CHECK(r.status == 404);
        CHECK(body_of(r)["message"].get<std::string>().find("'w'") != std::string::npos);
        auto tags = s.storage().list({"Tag", {}, 0, 0});
        REQUIRE(tags.has_value());
        CHECK(tags->empty());
    }
}

namespace {

/// Holds the first write that updates a record of `kind` until `release()`: a PUT in the middle
/// of its turn.
class HoldFirstUpdate final : public synergos::testing::ForwardingStorage {
public:
    HoldFirstUpdate(synergos::sdk::StorageBackend& inner, std::string kind)
        : ForwardingStorage(inner), kind_(std::move(kind)) {}
    synergos::sdk::Result<std::vector<synergos::sdk::Record>> apply(
        const std::vector<synergos::sdk::Mutation>& batch) noexcept override {
        bool hold = false;
        for (const auto& m : batch) {
            hold = hold || (m.mode == synergos::sdk::WriteMode::Update && m.kind == kind_);
        }
        if (hold) {
            std::unique_lock<std::mutex> lock(mutex_);
            if (!used_) {
                used_ = true;
                holding_ = true;
                cv_.notify_all();
                cv_.wait_for(lock, std::chrono::seconds(10), [&] { return released_; });
                holding_ = false;
            }
        }
        return inner_.apply(batch);
    }

    bool wait_holding() {
        std::unique_lock<std::mutex> lock(mutex_);
        return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return holding_; });
    }
    void release() {
        std::lock_guard<std::mutex> lock(mutex_);
        released_ = true;
        cv_.notify_all();
    }

private:
    std::string kind_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool used_ = false;
    bool holding_ = false;
    bool released_ = false;
};

}  // namespace

TEST_CASE("a merge from another route waits for a PUT of its record and keeps its fields",
          "[unit][rest]") {
    // The prediction route sets a tag's `predict` while a client PUTs other tag fields: each
    // read-merge-write must see the other's write (merging into the same old document, the
    // later write dropped the earlier one's fields).
    HoldFirstUpdate* hook = nullptr;
    RestServer s(RestServer::default_options(), [&](synergos::sdk::StorageBackend& inner) {
        auto made = std::make_unique<HoldFirstUpdate>(inner, "Tag");
        hook = made.get();
        return made;
    });
    build_tree(s, "c", "p", "w");
    const std::string tags = project_path("c", "p") + "/participants/w/registration/tags";
    std::thread put([&] {
        synergos::core::http::HttpClient client;
        auto answer = client.request("PUT", "127.0.0.1", s.port(), tags,
                                     json{{"evaluate", json::array({json::array({"x"})})}}.dump(),
                                     "application/json", std::chrono::seconds(20));
        CHECK((answer && answer->status == 200));
    });
    REQUIRE(hook->wait_holding());  // the PUT has read the tag and its write is under way
    const synergos::sdk::Key key{{"collab_id", "c"}, {"project_id", "p"}, {"participant_id", "w"}};
    auto merged = std::async(std::launch::async, [&] {
        return s.merger().merge({{"Tag", key, json{{"predict", json::array({json::array({"y"})})}}}},
                                std::chrono::seconds(20));
    });
    // It waits for the PUT's turn rather than reading the tag as it was before the PUT.
    CHECK(merged.wait_for(std::chrono::milliseconds(200)) == std::future_status::timeout);
    hook->release();
    put.join();
    REQUIRE(merged.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
    const synergos::sdk::Status status = merged.get();
    INFO(status.message());
    REQUIRE(status);
    auto stored = body_of(s.call("GET", tags))["data"];
    INFO(stored.dump());
    CHECK(stored["train"] == json::array({json::array({"a", "b"})}));
    CHECK(stored["evaluate"] == json::array({json::array({"x"})}));
    CHECK(stored["predict"] == json::array({json::array({"y"})}));
    // A merge of a record that does not exist writes nothing and says so.
    const synergos::sdk::Key other{{"collab_id", "c"}, {"project_id", "p"}, {"participant_id", "nobody"}};
    const synergos::sdk::Status missing =
        s.merger().merge({{"Tag", other, json{{"predict", json::array()}}}}, std::chrono::seconds(20));
    CHECK(missing.code() == synergos::sdk::ErrorCode::NotFound);
}

TEST_CASE("a PUT queued behind a DELETE and a create of its record never writes the deleted "
          "document over the new one",
          "[unit][rest]") {
    HoldFirstUpdate* hook = nullptr;
    RestServer s(RestServer::default_options(), [&](synergos::sdk::StorageBackend& inner) {
        auto made = std::make_unique<HoldFirstUpdate>(inner, "Experiment");
        hook = made.get();
        return made;
    });
    build_tree(s, "c", "p", "w");
    const std::string expts = project_path("c", "p") + "/experiments";
    const std::string e1 = expts + "/e1";
    const auto request = [&](const std::string& method, const std::string& path, const json& body) {
        synergos::core::http::HttpClient client;
        auto answer = client.request(method, "127.0.0.1", s.port(), path, body.dump(), "application/json",
                                     std::chrono::seconds(20));
        return answer ? answer->status : 0;
    };
    json renewed = experiment_body("e1");
    renewed["model"][0]["structure"]["out_features"] = 7;
    int put1 = 0, put2 = 0, deleted = 0, created = 0;
    std::thread first([&] { put1 = request("PUT", e1, {{"x", 1}}); });
    REQUIRE(hook->wait_holding());  // PUT 1 holds e1's turn; its Update is being applied
    std::thread second([&] { put2 = request("PUT", e1, {{"y", 2}}); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::thread remove([&] { deleted = request("DELETE", e1, nullptr); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::thread create([&] { created = request("POST", expts, renewed); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    hook->release();
    for (auto* t : {&first, &second, &remove, &create}) {
        t->join();
    }
    CHECK(put1 == 200);
    CHECK(put2 == 200);
    CHECK(deleted == 200);
    CHECK(created == 201);
    // In arrival order: both PUTs, the DELETE, then the create. Before, PUT 2 read e1 when
    // PUT 1's turn ended (before the DELETE and the create queued meanwhile were applied) and
    // wrote the deleted document, with x and y, over the created one.
    auto stored = body_of(s.call("GET", e1))["data"];
    INFO(stored.dump());
    CHECK(stored["model"][0]["structure"]["out_features"] == 7);
    CHECK_FALSE(stored.contains("x"));
    CHECK_FALSE(stored.contains("y"));
}

TEST_CASE("a record created under a key its deleted predecessor left records under starts empty",
          "[unit][rest]") {
    RestServer s;
    build_tree(s, "c", "p", "w");
    const std::string run = project_path("c", "p") + "/experiments/e1/runs/r9";
    const synergos::sdk::Key key{
        {"collab_id", "c"}, {"project_id", "p"}, {"expt_id", "e1"}, {"run_id", "r9"}};
    // A model archived after its run's DELETE (no run r9 exists), and one of run r1 that stays.
    REQUIRE(s.storage().apply({{synergos::sdk::WriteMode::Upsert, "Model", key, R"({"global":{}})"}}));
    const synergos::sdk::Key r1{
        {"collab_id", "c"}, {"project_id", "p"}, {"expt_id", "e1"}, {"run_id", "r1"}};
    REQUIRE(s.storage().apply({{synergos::sdk::WriteMode::Upsert, "Model", r1, R"({"global":{}})"}}));

    auto created = s.call("POST", project_path("c", "p") + "/experiments/e1/runs", run_body("r9"));
    REQUIRE(created.status == 201);
    CHECK(body_of(created)["data"]["relations"]["Model"] == json::array());
    CHECK(body_of(s.call("GET", run))["data"]["relations"]["Model"] == json::array());
    CHECK_FALSE(s.storage().get("Model", key));
    CHECK(s.storage().get("Model", r1));  // another run's model is untouched
    // A create refused with 409 removes nothing.
    REQUIRE(s.storage().apply({{synergos::sdk::WriteMode::Upsert, "Model", key, R"({"global":{}})"}}));
    CHECK(s.call("POST", project_path("c", "p") + "/experiments/e1/runs", run_body("r9")).status ==
          409);
    CHECK(s.storage().get("Model", key));
}

TEST_CASE("registration and tag POST create or replace", "[unit][rest]") {
    RestServer s;
    build_tree(s, "c", "p", "w");
    const std::string reg = project_path("c", "p") + "/participants/w/registration";
    auto first = body_of(s.call("GET", reg))["data"];
    json again = registration_body();
    again["role"] = "guest";
    json replaced = expect_envelope(s.call("POST", reg, again), 201, "registration.post")["data"];
    CHECK(replaced["role"] == "guest");
    CHECK(replaced["doc_id"] == first["doc_id"]);
    CHECK(replaced["relations"]["Tag"].size() == 1);  // the tag stays linked (same key)
    json tag = expect_envelope(s.call("POST", reg + "/tags", json{{"train", {{"z"}}}}), 201,
                               "tag.post")["data"];
    CHECK(tag["train"] == json{{"z"}});
}

TEST_CASE("a changed registration or tag drops its participant's alignment and an unchanged one keeps it",
          "[unit][rest]") {
    RestServer s;
    build_tree(s, "c", "p", "w");
    // The same participant in another project, whose alignment must stay.
    REQUIRE(s.call("POST", kConnect + "/collaborations/c/projects", project_body("p2")).status == 201);
    REQUIRE(s.call("POST", project_path("c", "p2") + "/participants/w/registration", registration_body())
                .status == 201);
    const std::string reg = project_path("c", "p") + "/participants/w/registration";
    const synergos::sdk::Key key{{"collab_id", "c"}, {"project_id", "p"}, {"participant_id", "w"}};
    const synergos::sdk::Key other{{"collab_id", "c"}, {"project_id", "p2"}, {"participant_id", "w"}};
    const auto align = [&] {  // what an alignment job archives for each participant
        for (const auto& k : {key, other}) {
            REQUIRE(s.storage().apply(
                {{synergos::sdk::WriteMode::Upsert, "Alignment", k, R"({"superset":{"X":["a"]}})"}}));
        }
    };
    const json tags{{"train", json::array({json::array({"a", "b"})})}};
    align();
    // The same documents again, by POST and by PUT: nothing the alignment came from changed.
    REQUIRE(s.call("POST", reg, registration_body()).status == 201);
    REQUIRE(s.call("POST", reg + "/tags", tags).status == 201);
    REQUIRE(s.call("PUT", reg, json{{"role", "host"}}).status == 200);
    REQUIRE(s.call("PUT", reg + "/tags", tags).status == 200);
    CHECK(s.storage().get("Alignment", key));
    // Each kind of change drops it, only in this project.
    const std::vector<std::pair<std::string, std::pair<std::string, json>>> changes{
        {"POST tags", {reg + "/tags", json{{"train", json::array({json::array({"a", "c"})})}}}},
        {"PUT tags", {reg + "/tags", json{{"evaluate", json::array({json::array({"e"})})}}}},
        {"POST registration", {reg, [] {
                                   json r = registration_body();
                                   r["node_0"]["f_port"] = 5001;
                                   return r;
                               }()}},
        {"PUT registration", {reg, json{{"role", "guest"}}}},
    };
    for (const auto& [what, change] : changes) {
        align();
        const std::string method = what.substr(0, what.find(' '));
        INFO(what);
        REQUIRE(s.call(method, change.first, change.second).status == (method == "POST" ? 201 : 200));
        CHECK_FALSE(s.storage().get("Alignment", key));
        CHECK(s.storage().get("Alignment", other));
    }
}

TEST_CASE("connect routes answer client mistakes with the right 4xx", "[unit][rest]") {
    RestServer s;
    build_tree(s, "c1", "p1", "w1");
    const std::string runs = project_path("c1", "p1") + "/experiments/e1/runs";

    SECTION("404 names the missing record, including a missing parent on create") {
        expect_error(s.call("GET", kConnect + "/collaborations/nope"), 404,
                     "Collaboration 'nope' does not exist!");
        expect_error(s.call("POST", kConnect + "/collaborations/nope/projects", project_body("p")),
                     404, "Collaboration 'nope' does not exist!");
        expect_error(
            s.call("POST", project_path("c1", "nope") + "/experiments", experiment_body("e")), 404,
            "Project 'nope' does not exist!");
        expect_error(
            s.call("POST", project_path("c1", "p1") + "/experiments/nope/runs", run_body("r")), 404,
            "Experiment 'nope' does not exist in Project 'p1'!");
        expect_error(s.call("POST", project_path("c1", "p1") + "/participants/ghost/registration",
                            registration_body()),
                     404, "Participant 'ghost' does not exist!");
        REQUIRE(s.call("POST", kConnect + "/participants", participant_body("w9")).status == 201);
        expect_error(s.call("POST", project_path("c1", "p1") + "/participants/w9/registration/tags",
                            json{{"train", {{"a"}}}}),
                     404, "Participant 'w9' has not registered for Project 'p1'!");
        expect_error(s.call("PUT", runs + "/nope", json{{"rounds", 1}}), 404,
                     "Run 'nope' does not exist");
        expect_error(s.call("DELETE", runs + "/nope"), 404, "Run 'nope' does not exist");
        expect_error(s.call("DELETE", kConnect + "/participants/nope"), 404,
                     "Participant 'nope' does not exist!");
        expect_error(s.call("PUT", kConnect + "/collaborations/nope", json{{"mq", nullptr}}), 404,
                     "Collaboration 'nope' does not exist!");
        expect_error(s.call("GET", kConnect + "/collaborations/nope/projects"), 404,
                     "Collaboration 'nope'");
        expect_error(s.call("GET", kConnect + "/participants/nope/registrations"), 404,
                     "Participant 'nope'");
        expect_error(s.call("GET", "/ttp/connect/nothing/here"), 404, "no route");
        expect_error(s.call("GET", "/"), 404, "no route");
    }
    SECTION("409 when a create would overwrite") {
        expect_error(s.call("POST", kConnect + "/collaborations", collab_body("c1")), 409,
                     "Collaboration 'c1' already exists!");
        expect_error(s.call("POST", kConnect + "/collaborations/c1/projects", project_body("p1")),
                     409, "Project 'p1' already exists");
        expect_error(s.call("POST", runs, run_body("r1")), 409, "Run 'r1' already exists");
        expect_error(s.call("POST", kConnect + "/participants", participant_body("w1")), 409,
                     "Participant 'w1' already exists!");
        // Nothing was overwritten.
        CHECK(body_of(s.call("GET", runs + "/r1"))["data"]["rounds"] == 2);
    }
    SECTION("422 names the invalid field") {
        struct Case {
            std::string path;
            json body;
            std::string field;
        };
        json no_incentives = project_body("p2");
        no_incentives.erase("incentives");
        json bad_action = project_body("p2");
        bad_action["action"] = "predict";
        json no_model = experiment_body("e2");
        no_model.erase("model");
        json bad_layer = experiment_body("e2");
        bad_layer["model"][0].erase("is_input");
        json bad_rounds = run_body("r2");
        bad_rounds["rounds"] = "2";
        json bad_reduction = run_body("r2");
        bad_reduction["reduction"] = "max";
        // A loss per sample, which no training can step on: it used to fail the training job.
        json none_reduction = run_body("r2");
        none_reduction["reduction"] = "none";
        json null_rounds = run_body("r2");
        null_rounds["rounds"] = nullptr;
        json zero_rounds = run_body("r2");
        zero_rounds["rounds"] = 0;
        json bad_algorithm = run_body("r2");
        bad_algorithm["algorithm"] = 3;
        json path_algorithm = run_body("r2");
        path_algorithm["algorithm"] = "../fedavg";
        json negative_epochs = run_body("r2");
        negative_epochs["epochs"] = -5;
        json negative_lr = run_body("r2");
        negative_lr["lr"] = -0.1;
        json negative_patience = run_body("r2");
        negative_patience["patience"] = -1;
        json percent_quorum = run_body("r2");
        percent_quorum["quorum"] = "50%";
        json zero_quorum = run_body("r2");
        zero_quorum["quorum"] = 0;
        json true_quorum = run_body("r2");
        true_quorum["quorum"] = true;
        // Past what the trainers can hold: 1e300 was stored and answered, 4294967297 trained 1 round.
        json huge_rounds = run_body("r2");
        huge_rounds["rounds"] = 1e300;
        json wrapping_epochs = run_body("r2");
        wrapping_epochs["epochs"] = 4294967297LL;
        json huge_seed = run_body("r2");
        huge_seed["seed"] = 1e19;
        json huge_quorum = run_body("r2");
        huge_quorum["quorum"] = 1e12;
        json extra_reg = registration_body();
        extra_reg["colour"] = "blue";
        json missing_node = registration_body();
        missing_node["n_count"] = 2;
        json bad_port = registration_body();
        bad_port["node_0"]["port"] = "8020";
        json bad_mq = collab_body("c2");
        bad_mq["mq"]["ports"] = json{{"ui", 1}};
        const std::string reg = project_path("c1", "p1") + "/participants/w1/registration";
        for (const auto& c :
             {Case{kConnect + "/collaborations", json{{"mq", {{"host", "h"}}}}, "collab_id"},
              Case{kConnect + "/collaborations", json{{"collab_id", 5}}, "collab_id"},
              Case{kConnect + "/collaborations", json{{"collab_id", "a/b"}}, "collab_id"},
              Case{kConnect + "/collaborations", bad_mq, "mq.ports.main"},
              Case{kConnect + "/collaborations/c1/projects", no_incentives, "incentives"},
              Case{kConnect + "/collaborations/c1/projects", bad_action, "action"},
              Case{project_path("c1", "p1") + "/experiments", no_model, "model"},
              Case{project_path("c1", "p1") + "/experiments", bad_layer, "model[0].is_input"},
              Case{runs, bad_rounds, "rounds"},
              Case{runs, bad_reduction, "reduction"},
              Case{runs, none_reduction, "reduction"},
              Case{runs, null_rounds, "rounds"},
              Case{runs, zero_rounds, "rounds"},
              Case{runs, bad_algorithm, "algorithm"},
              Case{runs, path_algorithm, "algorithm"},
              Case{runs, negative_epochs, "epochs"},
              Case{runs, negative_lr, "lr"},
              Case{runs, negative_patience, "patience"},
              Case{runs, percent_quorum, "quorum"},
              Case{runs, zero_quorum, "quorum"},
              Case{runs, true_quorum, "quorum"},
              Case{runs, huge_rounds, "rounds"},
              Case{runs, wrapping_epochs, "epochs"},
              Case{runs, huge_seed, "seed"},
              Case{runs, huge_quorum, "quorum"},
              Case{kConnect + "/participants", json{{"id", 5}}, "id"},
              Case{kConnect + "/participants", json{{"category", "x"}}, "id"},
              Case{reg, json{{"role", "host"}}, "n_count"},
              Case{reg, json{{"role", "boss"}, {"n_count", 1}}, "role"},
              Case{reg, extra_reg, "colour"},
              Case{reg, missing_node, "node_1"},
              Case{reg, bad_port, "node_0.port"},
              Case{reg + "/tags", json{{"evaluate", {{"a"}}}}, "train"},
              Case{reg + "/tags", json{{"train", {"a"}}}, "train"},
              Case{runs, json{{"run_id", "r3"}, {"relations", json::object()}}, "relations"},
              Case{
                  kConnect + "/collaborations/c1/projects",
                  json{
                      {"project_id", "p3"}, {"collab_id", "other"}, {"incentives", json::object()}},
                  "collab_id"}}) {
            INFO(c.path << " " << c.body.dump());
            auto response = s.call("POST", c.path, c.body);
            CHECK(response.status == 422);
            json body = body_of(response);
            CHECK(body["field"] == c.field);
            CHECK(body["message"].get<std::string>().find("'" + c.field + "'") !=
                  std::string::npos);
        }
        // A quorum as a count or as a fraction of the grid is taken.
        int q_id = 0;
        for (const json& quorum : {json(2), json(0.5), json(1.0), json(nullptr)}) {
            json ok = run_body("rq" + std::to_string(q_id++));
            ok["quorum"] = quorum;
            INFO("quorum " << quorum.dump());
            CHECK(s.call("POST", runs, ok).status == 201);
        }
        // PUT is validated too (the original never checked updates).
        auto put = s.call("PUT", runs + "/r1", json{{"epochs", "many"}});
        CHECK(put.status == 422);
        CHECK(body_of(put)["field"] == "epochs");
        CHECK(body_of(s.call("GET", runs + "/r1"))["data"]["epochs"] == 1);
        auto put_id = s.call("PUT", kConnect + "/participants/w1", json{{"id", "w2"}});
        CHECK(put_id.status == 422);
    }
    SECTION("405 for a wrong method, 415 for a non-JSON body, 400 for bad JSON and bad ids") {
        auto r = s.call("DELETE", kConnect + "/collaborations/");
        expect_error(r, 405, "The method is not allowed");
        CHECK(r.header("Allow") == "GET, HEAD, POST");
        expect_error(s.call("POST", kConnect + "/collaborations/c1"), 405,
                     "The method is not allowed");
        expect_error(s.raw("PUT", kConnect + "/collaborations/c1/registrations", "{}"), 405,
                     "The method");
        expect_error(s.call("POST", kConnect + "/collaborations", "collab_id=c9",
                            "application/x-www-form-urlencoded"),
                     415, "request body must be JSON");
        expect_error(s.call("POST", kConnect + "/collaborations", "{\"collab_id\": \"c9\"",
                            "application/json"),
                     400, "request body is not valid JSON");
        expect_error(s.raw("POST", kConnect + "/collaborations", "[1,2]"), 400,
                     "request body must be a JSON object");
        expect_error(s.raw("POST", kConnect + "/collaborations", ""), 400, "request body is empty");
        auto traversal = s.call("GET", kConnect + "/collaborations/..");
        expect_error(traversal, 400, "path parameter 'collab_id'");
        CHECK(body_of(traversal)["field"] == "collab_id");
        expect_error(s.call("GET", kConnect + "/collaborations/c1%2F..%2Fx"), 400,
                     "path parameter 'collab_id'");
        expect_error(s.call("GET", project_path("c1", "%ZZ")), 400, "path parameter 'project_id'");
        CHECK(s.call("GET", kConnect + "/collaborations/c1/").status ==
              404);  // items have no slash form
        CHECK(s.call("GET", kConnect + "/collaborations").status == 200);
    }
}

TEST_CASE("the server answers health and readiness probes", "[unit][rest]") {
    RestServer s;
    auto health = s.call("GET", "/healthz");
    CHECK(health.status == 200);
    CHECK(body_of(health)["status"] == "ok");
    CHECK(s.call("GET", "/readyz").status == 200);
    s.server().set_ready(false);
    CHECK(s.call("GET", "/readyz").status == 503);
    CHECK(s.host().captured().contains("http request"));
}

TEST_CASE("every connect route and method answers with its envelope, in both slash spellings",
          "[unit][rest]") {
    RestServer s;
    const std::string c = kConnect + "/collaborations";
    const std::string p = project_path("c1", "p1");
    const std::string reg = p + "/participants/w1/registration";
    const std::string alias =
        kConnect + "/participants/w1/collaborations/c1/projects/p1/registration";
    struct Step {
        std::string method;
        std::string path;
        json body;
        int status;
        std::string name;
    };
    const json null_body = nullptr;
    const std::vector<Step> steps = {
        {"POST", c + "/", collab_body("c1"), 201, "collaborations.post"},
        {"GET", c + "/", null_body, 200, "collaborations.get"},
        {"GET", c, null_body, 200, "collaborations.get"},
        {"POST", c + "/c1/projects/", project_body("p1"), 201, "projects.post"},
        {"POST", c + "/c1/projects", project_body("p2"), 201, "projects.post"},
        {"GET", c + "/c1/projects/", null_body, 200, "projects.get"},
        {"GET", c + "/c1/projects", null_body, 200, "projects.get"},
        {"POST", p + "/experiments/", experiment_body("e1"), 201, "experiments.post"},
        {"POST", p + "/experiments", experiment_body("e2"), 201, "experiments.post"},
        {"GET", p + "/experiments/", null_body, 200, "experiments.get"},
        {"GET", p + "/experiments", null_body, 200, "experiments.get"},
        {"PUT", p + "/experiments/e2", json{{"model", json::array()}}, 200, "experiment.put"},
        {"DELETE", p + "/experiments/e2", null_body, 200, "experiment.delete"},
        {"POST", p + "/experiments/e1/runs/", run_body("r1"), 201, "runs.post"},
        {"POST", p + "/experiments/e1/runs", run_body("r2"), 201, "runs.post"},
        {"GET", p + "/experiments/e1/runs/", null_body, 200, "runs.get"},
        {"GET", p + "/experiments/e1/runs", null_body, 200, "runs.get"},
        {"GET", p + "/experiments/e1/runs/r2", null_body, 200, "run.get"},
        {"DELETE", p + "/experiments/e1/runs/r2", null_body, 200, "run.delete"},
        {"POST", kConnect + "/participants/", participant_body("w1"), 201, "participants.post"},
        {"POST", kConnect + "/participants", participant_body("w2"), 201, "participants.post"},
        {"GET", kConnect + "/participants", null_body, 200, "participants.get"},
        {"POST", reg, registration_body(), 201, "registration.post"},
        {"PUT", reg, json{{"role", "guest"}}, 200, "registration.put"},
        {"POST", reg + "/tags", json{{"train", {{"a"}}}}, 201, "tag.post"},
        {"DELETE", reg + "/tags", null_body, 200, "tag.delete"},
        {"DELETE", alias, null_body, 200, "registration.delete"},
        {"POST", alias, registration_body(), 201, "registration.post"},
        {"PUT", alias, json{{"n_count", 1}}, 200, "registration.put"},
        {"GET", alias, null_body, 200, "registration.get"},
        {"POST", alias + "/tags", json{{"train", {{"b"}}}}, 201, "tag.post"},
        {"PUT", alias + "/tags", json{{"predict", {{"c"}}}}, 200, "tag.put"},
        {"GET", alias + "/tags", null_body, 200, "tag.get"},
        {"DELETE", alias + "/tags", null_body, 200, "tag.delete"},
        {"GET", c + "/c1/registrations", null_body, 200, "registrations.get"},
        {"DELETE", kConnect + "/participants/w2", null_body, 200, "participant.delete"},
        {"DELETE", c + "/c1/projects/p2", null_body, 200, "project.delete"},
        {"DELETE", c + "/c1", null_body, 200, "collaboration.delete"},
    };
    for (const auto& step : steps) {
        INFO(step.method << " " << step.path);
        auto response = step.body.is_null() ? s.call(step.method, step.path)
                                            : s.call(step.method, step.path, step.body);
        json body = expect_envelope(response, step.status, step.name);
        CHECK((body["data"].is_object() || body["data"].is_array()));
    }
    // The cascade left nothing of c1 behind, and the participant w1 remains.
    CHECK(s.call("GET", p).status == 404);
    CHECK(s.call("GET", kConnect + "/participants/w1").status == 200);
}
