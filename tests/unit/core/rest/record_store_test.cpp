// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/core/rest/error_mapping.hpp>
#include <synergos/core/rest/record_store.hpp>

#include "rest_fixture.hpp"

namespace {

using nlohmann::json;
using synergos::core::rest::RecordStore;
namespace sdk = synergos::sdk;

sdk::Record record(const std::string& kind, sdk::Key key, const json& doc,
                   std::int64_t doc_id = 7) {
    sdk::Record r;
    r.kind = kind;
    r.key = std::move(key);
    r.document = doc.dump();
    r.doc_id = doc_id;
    r.created_at_ms = 1631253662000;  // 2021-09-10 06:01:02 UTC
    return r;
}

sdk::Key run_key(const std::string& c) {
    return {{"collab_id", c}, {"project_id", "p"}, {"expt_id", "e"}, {"run_id", "r"}};
}

}  // namespace

TEST_CASE("RecordStore marshals the job machinery's kinds in the original shapes", "[unit][rest]") {
    SECTION("Model: global and local artifacts, key without collab_id, no checkpoints") {
        json doc = {
            {"global",
             {{"origin", "ttp"},
              {"path", "/o/g.safetensors"},
              {"loss_history", "/o/l.json"},
              {"checkpoints", {{"1", "x"}}}}},
            {"local_1", {{"origin", "w1"}, {"path", "/o/w1"}, {"loss_history", "/o/w1.json"}}},
            {"other", 1}};
        json out = RecordStore::marshal(record("Model", run_key("c"), doc), nullptr);
        CHECK(out["global"] ==
              json{{"origin", "ttp"}, {"path", "/o/g.safetensors"}, {"loss_history", "/o/l.json"}});
        CHECK(out["local_1"]["origin"] == "w1");
        CHECK_FALSE(out.contains("other"));
        CHECK(out["key"] == json{{"project_id", "p"}, {"expt_id", "e"}, {"run_id", "r"}});
        CHECK(out["doc_id"] == "7");
        CHECK_FALSE(out.contains("relations"));
    }
    SECTION("Alignment: absent metas appear as empty X/y lists") {
        json out = RecordStore::marshal(
            record("Alignment", {{"collab_id", "c"}, {"project_id", "p"}, {"participant_id", "w"}},
                   json{{"train", {{"X", {1, 2}}, {"y", json::array()}}}}),
            nullptr);
        CHECK(out["train"]["X"] == json{1, 2});
        CHECK(out["evaluate"] == json{{"X", json::array()}, {"y", json::array()}});
        CHECK(out["predict"] == json{{"X", json::array()}, {"y", json::array()}});
    }
    SECTION(
        "Validation and Prediction: statistics and res_path; prediction key without collab_id") {
        sdk::Key key = {{"participant_id", "w"},
                        {"collab_id", "c"},
                        {"project_id", "p"},
                        {"expt_id", "e"},
                        {"run_id", "r"}};
        json v = RecordStore::marshal(
            record("Validation", key,
                   json{{"evaluate",
                         {{"statistics", {{"accuracy", {0.5, 0.6}}}}, {"res_path", "/x"}}}}),
            nullptr);
        CHECK(v["evaluate"]["statistics"]["accuracy"] == json{0.5, 0.6});
        CHECK(v["key"].size() == 5);
        json p = RecordStore::marshal(
            record("Prediction", key, json{{"predict", {{"res_path", "/y"}}}}), nullptr);
        CHECK(p["predict"] == json{{"statistics", json::object()}, {"res_path", "/y"}});
        CHECK_FALSE(p["key"].contains("collab_id"));
    }
    SECTION("Experiment structure keeps only declared constructor arguments, values as stored") {
        json doc = {{"model",
                     {{{"is_input", true},
                       {"l_type", "Conv2d"},
                       {"structure", {{"kernel_size", {3, 3}}, {"made_up", 1}}},
                       {"activation", nullptr}}}}};
        json out = RecordStore::marshal(record("Experiment", run_key("c"), doc), nullptr);
        CHECK(out["model"][0]["structure"] == json{{"kernel_size", {3, 3}}});
        CHECK(out["model"][0]["activation"].is_null());
    }
    SECTION("raw documents carry created_at in the original format and an integer doc_id") {
        json out = RecordStore::raw(
            record("Experiment", run_key("c"), json{{"model", json::array()}}), nullptr);
        CHECK(out["created_at"] == "2021-09-10 06:01:02 N");
        CHECK(out["doc_id"] == 7);
    }
}

TEST_CASE("RecordStore cascades cover the job machinery's kinds, scoped by the key",
          "[unit][rest]") {
    auto batch = RecordStore::cascade_delete("Collaboration", {{"collab_id", "c"}});
    std::vector<std::string> kinds;
    for (const auto& m : batch) {
        kinds.push_back(m.kind);
        REQUIRE(m.key.size() == 1);
        CHECK(m.key[0].name == "collab_id");
        CHECK(m.key[0].value == "c");
    }
    CHECK(kinds == std::vector<std::string>{"Project", "Experiment", "Run", "Registration", "Tag",
                                            "Alignment", "Model", "Validation", "Prediction", "Job",
                                            "Optimization", "Collaboration"});
    CHECK(batch.back().mode == sdk::WriteMode::Delete);
    CHECK(batch.front().mode == sdk::WriteMode::DeleteWhere);

    // Against the real store: a run delete removes its model, validation and prediction only.
    synergos::testing::TempDir dir;
    sdk::testing::FakeHost host(dir.path);
    synergos::plugins::sqlite::SqliteStorage storage(host, sdk::Options{});
    REQUIRE(storage.start().is_ok());
    RecordStore store(storage);
    auto vkey = [](const std::string& c) {
        return sdk::Key{{"participant_id", "w"},
                        {"collab_id", c},
                        {"project_id", "p"},
                        {"expt_id", "e"},
                        {"run_id", "r"}};
    };
    REQUIRE(storage
                .apply({{sdk::WriteMode::Insert, "Run", run_key("A"), "{}"},
                        {sdk::WriteMode::Insert, "Model", run_key("A"), "{}"},
                        {sdk::WriteMode::Insert, "Model", run_key("B"), "{}"},
                        {sdk::WriteMode::Insert, "Validation", vkey("A"), "{}"},
                        {sdk::WriteMode::Insert, "Prediction", vkey("B"), "{}"}})
                .has_value());
    auto run = store.read("Run", run_key("A"));
    REQUIRE(run.has_value());
    CHECK((*run)["relations"]["Model"].size() == 1);
    CHECK((*run)["relations"]["Validation"].size() == 1);
    CHECK((*run)["relations"]["Prediction"].size() == 0);
    REQUIRE(storage.apply(RecordStore::cascade_delete("Run", run_key("A"))).has_value());
    CHECK(store.list("Model", {})->size() == 1);
    CHECK(store.list("Validation", {})->empty());
    CHECK(store.list("Prediction", {})->size() == 1);
    auto missing = storage.apply(RecordStore::cascade_delete("Run", run_key("A")));
    REQUIRE_FALSE(missing.has_value());
    CHECK(synergos::core::rest::http_status(missing.error().code) == 404);
}

TEST_CASE("error mapping gives each SDK error code one HTTP status", "[unit][rest]") {
    using synergos::core::rest::http_status;
    CHECK(http_status(sdk::ErrorCode::InvalidArgument) == 422);
    CHECK(http_status(sdk::ErrorCode::NotFound) == 404);
    CHECK(http_status(sdk::ErrorCode::AlreadyExists) == 409);
    CHECK(http_status(sdk::ErrorCode::PermissionDenied) == 403);
    CHECK(http_status(sdk::ErrorCode::Unimplemented) == 501);
    CHECK(http_status(sdk::ErrorCode::ResourceExhausted) == 507);
    CHECK(http_status(sdk::ErrorCode::Internal) == 500);
    auto response =
        synergos::core::rest::error_response({sdk::ErrorCode::NotFound, "no such thing"});
    CHECK(response.status == 404);
    CHECK(nlohmann::json::parse(response.body)["message"] == "no such thing");
}
