// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/core/http/client.hpp>
#include <synergos/core/http/router.hpp>
#include <synergos/core/http/server.hpp>
#include <synergos/core/tensor/safetensors.hpp>
#include <synergos/core/worker/alignment.hpp>
#include <synergos/core/worker/data_layout.hpp>
#include <synergos/core/worker/service.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "fake_model.hpp"
#include "image_pipeline.hpp"
#include "tabular_pipeline.hpp"

namespace fs = std::filesystem;
namespace st = synergos::core::tensor;
using Json = nlohmann::json;
using synergos::core::worker::WorkerHttpRequest;
using synergos::core::worker::WorkerHttpResponse;
using synergos::core::worker::WorkerService;
using synergos::core::worker::WorkerServiceConfig;
using synergos::sdk::TensorMap;

namespace {

const fs::path kSource(SYNERGOS_TEST_SOURCE_DIR);
const std::string kRun = "/v1/runs/c1/p1/e1/r1";
const Json kHeartTags = {{"train", {{"heart_disease", "data1", "iid_1"}}},
                         {"evaluate", {{"heart_disease", "data1", "non_iid_1"}}}};

Json linear(std::int64_t in, std::int64_t out, const std::string& activation) {
    return Json::array(
        {{{"l_type", "Linear"},
          {"activation", activation},
          {"is_input", true},
          {"structure", {{"in_features", in}, {"out_features", out}, {"bias", true}}}}});
}

/// A worker with a private data directory holding real example datasets.
struct Worker {
    fs::path root;
    fs::path data;
    fs::path outputs;
    synergos::sdk::testing::FakeHost host;
    synergos::plugins::tabular::TabularPipeline tabular{host, synergos::sdk::Options()};
    synergos::plugins::image::ImagePipeline image{host, synergos::sdk::Options()};
    synergos::testing::FakeBackend backend;
    std::unique_ptr<WorkerService> service;

    explicit Worker(std::size_t max_body = std::size_t{64} << 20,
                    std::chrono::milliseconds run_wait = std::chrono::seconds(30),
                    const std::function<void(WorkerServiceConfig&)>& tweak = {}) {
        root = fs::temp_directory_path() /
               ("synergos-worker-" + std::to_string(std::random_device{}()));
        data = root / "data";
        outputs = root / "outputs";
        fs::create_directories(data);
        fs::copy(kSource / "examples/data/heart_disease", data / "heart_disease",
                 fs::copy_options::recursive);
        fs::copy(kSource / "examples/data/abalone", data / "abalone", fs::copy_options::recursive);
        fs::create_directories(data / "femnist/data1");
        fs::copy(kSource / "tests/data/images/femnist_evaluate", data / "femnist/data1/evaluate",
                 fs::copy_options::recursive);
        WorkerServiceConfig config;
        config.participant_id = "worker-1";
        config.data_dir = data.string();
        config.outputs_dir = outputs.string();
        config.pipelines = {{"tabular", &tabular}, {"image", &image}};
        config.model = &backend;
        config.logger = &host.logger();
        config.max_body_bytes = max_body;
        config.run_wait = run_wait;
        if (tweak) {
            tweak(config);
        }
        service = std::make_unique<WorkerService>(config);
    }
    ~Worker() {
        service.reset();
        std::error_code ec;
        fs::remove_all(root, ec);
    }

    WorkerHttpResponse call(const std::string& method, const std::string& path,
                            const std::string& body = "",
                            const std::string& type = "application/json") {
        return service->handle(WorkerHttpRequest{method, path, type, body});
    }
    WorkerHttpResponse post(const std::string& path, const Json& body) {
        return call("POST", path, body.dump());
    }
    WorkerHttpResponse post_weights(const std::string& path, const TensorMap& weights,
                                    const Json& meta) {
        auto body = st::encode_to_string(weights, {{"json", meta.dump()}});
        REQUIRE(body);
        return call("POST", path, *body, std::string(st::kSafetensorsContentType));
    }
    /// Starts round 0's train of the heart_disease run (initialised, its model at `weights`) on a
    /// thread of its own, and returns once the model holds it (the gate): a request in flight.
    std::future<WorkerHttpResponse> hold_train(const TensorMap& weights) {
        auto body = st::encode_to_string(weights, {{"json", R"({"round": 0})"}});
        REQUIRE(body);
        backend.gate.enabled = true;
        auto held = std::async(std::launch::async, [this, body = std::move(*body)] {
            return call("POST", kRun + "/train", body, std::string(st::kSafetensorsContentType));
        });
        REQUIRE(backend.gate.wait_inside(1));
        return held;
    }
    /// Initialises the heart_disease run and returns the initial weights.
    TensorMap initialise_heart(const Json& alignment = nullptr) {
        auto r = post(kRun + "/initialise", {{"action", "classify"},
                                             {"tags", kHeartTags},
                                             {"alignment", alignment},
                                             {"architecture", linear(28, 5, "softmax")},
                                             {"run", {{"seed", 7}}},
                                             {"return_weights", true}});
        REQUIRE(r.status == 200);
        REQUIRE(r.content_type == st::kSafetensorsContentType);
        auto decoded = st::decode(r.body);
        REQUIRE(decoded);
        return decoded->tensors;
    }
};

Json body_of(const WorkerHttpResponse& r) {
    INFO(r.body.substr(0, 400));
    REQUIRE(r.content_type == "application/json");
    Json j = Json::parse(r.body, nullptr, false);
    REQUIRE(j.is_object());
    return j;
}

std::string message_of(const WorkerHttpResponse& r) {
    return body_of(r).value("message", "");
}

std::vector<std::string> lines_of(const fs::path& file) {
    std::ifstream in(file);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) {
        out.push_back(line);
    }
    return out;
}

float first_weight(const TensorMap& m) {
    float v = 0;
    std::memcpy(&v, m.find("nnl_0_linear.weight")->data.data(), sizeof v);
    return v;
}

}  // namespace

TEST_CASE("worker health reports the participant, its datatypes and loaded runs",
          "[unit][worker]") {
    Worker w;
    auto r = w.call("GET", "/v1/health");
    REQUIRE(r.status == 200);
    const Json j = body_of(r);
    CHECK(j["participant_id"] == "worker-1");
    CHECK(j["datatypes"] == Json::array({"image", "tabular"}));
    CHECK(j["runs_loaded"] == 0);
    CHECK(j["data_dir_found"] == true);
}

TEST_CASE("worker started before its data directory exists finds it once it appears",
          "[unit][worker]") {
    // A volume mounted after the worker started: health says so, and no restart is needed.
    const fs::path later = fs::temp_directory_path() /
                           ("synergos-worker-late-" + std::to_string(std::random_device{}()));
    Worker w(std::size_t{64} << 20, std::chrono::seconds(30),
             [&](WorkerServiceConfig& c) { c.data_dir = later.string(); });
    CHECK(body_of(w.call("GET", "/v1/health"))["data_dir_found"] == false);
    auto missing = w.post("/v1/projects/c1/p1/poll", {{"action", "classify"}, {"tags", kHeartTags}});
    CHECK(missing.status == 500);
    CHECK_THAT(missing.body, Catch::Contains("does not exist"));
    CHECK(w.host.captured().contains("worker data directory not found"));

    fs::create_directories(later);
    fs::copy(w.data / "heart_disease", later / "heart_disease", fs::copy_options::recursive);
    CHECK(body_of(w.call("GET", "/v1/health"))["data_dir_found"] == true);
    auto found = w.post("/v1/projects/c1/p1/poll", {{"action", "classify"}, {"tags", kHeartTags}});
    CHECK(found.status == 200);
    std::error_code ec;
    fs::remove_all(later, ec);
}

TEST_CASE("worker poll returns headers, schemas and metadata of each tagged split",
          "[unit][worker]") {
    Worker w;
    auto r = w.post("/v1/projects/c1/p1/poll", {{"action", "classify"}, {"tags", kHeartTags}});
    REQUIRE(r.status == 200);
    const Json j = body_of(r);
    CHECK(j["headers"]["train"]["X"].size() == 28);
    CHECK(j["headers"]["train"]["X"][0] == "age");
    CHECK(j["headers"]["train"]["y"] ==
          Json::array({"target_0", "target_1", "target_2", "target_3", "target_4"}));
    CHECK(j["headers"].count("predict") == 0);
    CHECK(j["schemas"]["evaluate"]["thal"] == "category");
    CHECK(j["metadata"]["train"]["rows"] == 771);
    CHECK(j["metadata"]["evaluate"]["rows"] == 826);
    CHECK(j["metadata"]["train"]["datatype"] == "tabular");
    CHECK(j["metadata"]["train"]["folders"] == Json::array({"heart_disease/data1/iid_1"}));
    // Only names and summaries: the reply is small and carries no row data.
    CHECK(r.body.size() < 64 * 1024);
    CHECK(r.body.find("unified_dataset_iid_1_1000.csv") != std::string::npos);  // file name only
    CHECK(r.body.find(w.data.string()) == std::string::npos);                   // no local paths

    SECTION("a second poll with the same tags is served from the cache") {
        auto again =
            w.post("/v1/projects/c1/p1/poll", {{"action", "classify"}, {"tags", kHeartTags}});
        CHECK(again.status == 200);
        CHECK(again.body == r.body);
    }
}

TEST_CASE("worker resolves tags order-insensitively and prefers the exact path", "[unit][worker]") {
    Worker w;
    const fs::path root = fs::canonical(w.data);
    auto exact =
        synergos::core::worker::resolve_tag(root, Json{"heart_disease", "data2", "iid_2"}, 1000);
    REQUIRE(exact);
    CHECK(exact->relative == "heart_disease/data2/iid_2");
    CHECK(exact->datatype == "tabular");
    auto shuffled = synergos::core::worker::resolve_tag(root, Json{"iid_2", "heart_disease"}, 1000);
    REQUIRE(shuffled);
    CHECK(shuffled->relative == "heart_disease/data2/iid_2");
    auto missing = synergos::core::worker::resolve_tag(root, Json{"heart_disease", "data9"}, 1000);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code == synergos::sdk::ErrorCode::NotFound);
    auto bounded = synergos::core::worker::resolve_tag(root, Json{"iid_2", "heart_disease"}, 3);
    REQUIRE_FALSE(bounded);
    CHECK(bounded.error().code == synergos::sdk::ErrorCode::ResourceExhausted);
}

TEST_CASE("worker refuses tags that could leave the data directory, naming the tag",
          "[unit][worker]") {
    Worker w;
    // A folder outside the data directory that a symbolic link inside points to.
    const fs::path outside = w.root / "outside";
    fs::create_directories(outside);
    fs::copy(w.data / "heart_disease/data1/iid_1", outside, fs::copy_options::recursive);
    fs::create_symlink(outside, w.data / "escape");

    struct Case {
        Json tag;
        int status;
        const char* text;
    };
    const std::vector<Case> cases = {
        {Json{"..", "outside"}, 400, "\"..\""},
        {Json{"heart_disease/data1"}, 400, "heart_disease/data1"},
        {Json{"/etc"}, 400, "/etc"},
        {Json{std::string("a\0b", 3)}, 400, "not a plain folder name"},
        {Json{"escape"}, 400, "outside the data directory"},
        {Json::array(), 400, "non-empty list"},
        {Json{1, 2}, 400, "not a string"},
        {Json{"no_such_folder"}, 404, "no_such_folder"},
    };
    for (const Case& c : cases) {
        INFO(c.tag.dump());
        auto r = w.post("/v1/projects/c1/p1/poll",
                        {{"action", "classify"}, {"tags", {{"train", Json::array({c.tag})}}}});
        CHECK(r.status == c.status);
        CHECK_THAT(message_of(r), Catch::Contains(c.text));
    }
    CHECK(w.service->runs_loaded() == 0);
}

TEST_CASE("worker answers 422 naming an unknown datatype", "[unit][worker]") {
    Worker w;
    fs::create_directories(w.data / "texts/t1");
    std::ofstream(w.data / "texts/t1/metadata.json") << R"({"datatype": "text", "operations": {}})";
    auto r = w.post("/v1/projects/c1/p1/poll",
                    {{"action", "classify"},
                     {"tags", {{"train", Json::array({Json::array({"texts", "t1"})})}}}});
    CHECK(r.status == 422);
    CHECK_THAT(message_of(r), Catch::Contains("'text'") || Catch::Contains("\"text\""));
    SECTION("and a split mixing datatypes") {
        auto mixed =
            w.post("/v1/projects/c1/p1/poll",
                   {{"action", "classify"},
                    {"tags",
                     {{"train",
                       {{"heart_disease", "data1", "iid_1"}, {"femnist", "data1", "evaluate"}}}}}});
        CHECK(mixed.status == 422);
        CHECK_THAT(message_of(mixed), Catch::Contains("mixes datatypes"));
    }
}

TEST_CASE("worker reports data errors from the pipeline as 422 without local paths",
          "[unit][worker]") {
    Worker w;
    fs::create_directories(w.data / "broken/b1");
    std::ofstream(w.data / "broken/b1/metadata.json") << R"({"datatype": "tabular"})";
    std::ofstream(w.data / "broken/b1/schema.json") << R"({"age": "int32", "target": "category"})";
    std::ofstream(w.data / "broken/b1/data.csv") << "age\n1\n";
    auto r = w.post("/v1/projects/c1/p1/poll",
                    {{"action", "classify"},
                     {"tags", {{"train", Json::array({Json::array({"broken", "b1"})})}}}});
    CHECK(r.status == 422);
    CHECK_THAT(message_of(r),
               Catch::Contains("<data>/broken/b1/data.csv") && Catch::Contains("'target'"));
}

TEST_CASE("worker refuses malformed requests with the right status", "[unit][worker]") {
    Worker w(4096);
    CHECK(w.call("POST", "/v1/projects/c1/p1/poll", "{not json").status == 400);
    CHECK(w.call("POST", "/v1/projects/c1/p1/poll", "[1]").status == 400);
    CHECK(w.call("POST", "/v1/projects/c1/p1/poll", std::string(200, '[')).status == 400);
    CHECK(w.post("/v1/projects/c1/p1/poll", {{"action", "cluster"}, {"tags", kHeartTags}}).status ==
          400);
    CHECK(w.post("/v1/projects/c1/p1/poll",
                 {{"action", "classify"}, {"tags", {{"test", Json::array()}}}})
              .status == 400);
    CHECK(w.post("/v1/projects/c1/p1/poll", {{"action", "classify"}, {"tags", Json::object()}})
              .status == 400);
    auto big = w.call("POST", "/v1/projects/c1/p1/poll", std::string(5000, ' '));
    CHECK(big.status == 413);
    CHECK(w.call("GET", "/v1/projects/c1/p1/poll").status == 405);
    CHECK(w.call("POST", "/v1/health").status == 405);
    CHECK(w.call("GET", "/v1/nothing").status == 404);
    auto dots = w.call("POST", "/v1/runs/c1/p1/%2e%2e/r1/terminate");
    CHECK(dots.status == 400);
    CHECK_THAT(message_of(dots), Catch::Contains("expt_id"));
    CHECK(w.call("POST", "/v1/runs/c1/p1/e%2fx/r1/terminate").status == 400);
    CHECK(w.call("POST", "/v1/runs/c1/p1/e1/r1/terminate", "", "").status == 200);
    CHECK(w.call("POST", kRun + "/train", "{}").status == 400);  // JSON where weights are due
}

TEST_CASE("worker initialise aligns by name, builds the model and returns initial weights",
          "[unit][worker]") {
    Worker w;
    const TensorMap initial = w.initialise_heart();
    REQUIRE(initial.find("nnl_0_linear.weight") != nullptr);
    CHECK(initial.find("nnl_0_linear.weight")->shape == std::vector<std::int64_t>{5, 28});
    CHECK(w.service->runs_loaded() == 1);

    SECTION("the JSON summary travels in __metadata__") {
        auto r = w.post(kRun + "/initialise", {{"action", "classify"},
                                               {"tags", kHeartTags},
                                               {"architecture", linear(28, 5, "softmax")},
                                               {"return_weights", true}});
        auto view = st::parse(r.body);
        REQUIRE(view);
        const Json meta = Json::parse(view->metadata.at("json"));
        CHECK(meta["train_rows"] == 771);
        CHECK(meta["evaluate_rows"] == 826);
        CHECK(meta["predict_rows"] == 0);
        CHECK(meta["input_shape"] == Json::array({28}));
    }
    SECTION("a superset with extra columns and classes widens the data by name") {
        auto poll = body_of(
            w.post("/v1/projects/c1/p1/poll", {{"action", "classify"}, {"tags", kHeartTags}}));
        std::vector<std::string> x = poll["headers"]["train"]["X"];
        x.insert(x.begin() + 1, "aaa_extra");
        x.push_back("zzz_extra");
        std::vector<std::string> y = poll["headers"]["train"]["y"];
        y.push_back("target_5");
        auto r = w.post(kRun + "/initialise", {{"action", "classify"},
                                               {"tags", kHeartTags},
                                               {"alignment", {{"X", x}, {"y", y}}},
                                               {"architecture", linear(30, 6, "softmax")}});
        REQUIRE(r.status == 200);
        CHECK(body_of(r)["input_shape"] == Json::array({30}));
    }
    SECTION("a superset lacking one of the worker's columns is refused") {
        auto r =
            w.post(kRun + "/initialise", {{"action", "classify"},
                                          {"tags", kHeartTags},
                                          {"alignment", {{"X", {"age"}}, {"y", Json::array()}}},
                                          {"architecture", linear(1, 5, "softmax")}});
        CHECK(r.status == 422);
        CHECK_THAT(message_of(r), Catch::Contains("not in the alignment X superset"));
    }
    SECTION("an architecture the backend refuses is 422 and keeps the previous run") {
        Json arch = linear(28, 5, "softmax");
        arch[0]["l_type"] = "Bogus";
        auto r = w.post(kRun + "/initialise",
                        {{"action", "classify"}, {"tags", kHeartTags}, {"architecture", arch}});
        CHECK(r.status == 422);
        CHECK_THAT(message_of(r), Catch::Contains("Bogus"));
        CHECK(w.service->runs_loaded() == 1);
        CHECK(w.post_weights(kRun + "/train", initial, {{"round", 0}}).status == 200);
    }
    SECTION("a model whose input does not fit the data is 422") {
        auto r = w.post(kRun + "/initialise", {{"action", "classify"},
                                               {"tags", kHeartTags},
                                               {"architecture", linear(13, 5, "softmax")}});
        CHECK(r.status == 422);
        CHECK_THAT(message_of(r), Catch::Contains("13"));
    }
    SECTION("missing architecture is 400") {
        CHECK(w.post(kRun + "/initialise", {{"action", "classify"}, {"tags", kHeartTags}}).status ==
              400);
    }
}

TEST_CASE("worker train needs an initialised run, loads global weights and returns local ones",
          "[unit][worker]") {
    Worker w;
    TensorMap global;
    {
        // Build weights of the right shape without a run: the call must be refused with 409.
        synergos::testing::FakeModel model(28, 5, "softmax", 1.0, nullptr);
        global = *model.state();
    }
    auto early = w.post_weights(kRun + "/train", global, {{"round", 0}});
    CHECK(early.status == 409);
    CHECK_THAT(message_of(early), Catch::Contains("not initialised"));

    w.initialise_heart();
    auto r = w.post_weights(kRun + "/train", global,
                            {{"round", 3}, {"args", {{"epochs", 2}, {"step", 0.25}, {"mu", 0.1}}}});
    REQUIRE(r.status == 200);
    REQUIRE(r.content_type == st::kSafetensorsContentType);
    auto decoded = st::decode(r.body);
    REQUIRE(decoded);
    const Json meta = Json::parse(decoded->metadata.at("json"));
    CHECK(meta["samples"] == 771);
    CHECK(meta["epochs_run"] == 2);
    CHECK(meta["epoch_losses"] == Json::array({1.0, 0.5}));
    CHECK(meta["round"] == 3);
    // Trained from the global weights sent, not from the model's initial ones.
    CHECK(first_weight(decoded->tensors) == Approx(first_weight(global) + 0.5f));

    SECTION("weights of the wrong shape are 422 naming the tensor") {
        TensorMap wrong = global;
        wrong.find("nnl_0_linear.bias")->shape = {1, 5};
        auto bad = w.post_weights(kRun + "/train", wrong, {{"round", 0}});
        CHECK(bad.status == 422);
        CHECK_THAT(message_of(bad), Catch::Contains("nnl_0_linear.bias"));
    }
    SECTION("a corrupt safetensors body is 400") {
        auto body = st::encode_to_string(global, {});
        REQUIRE(body);
        std::string cut = body->substr(0, body->size() - 3);
        auto bad = w.call("POST", kRun + "/train", cut, std::string(st::kSafetensorsContentType));
        CHECK(bad.status == 400);
        CHECK_THAT(message_of(bad), Catch::Contains("safetensors"));
    }
    SECTION("a body over the limit is 413") {
        Worker small(1024);
        small.initialise_heart();
        TensorMap huge;
        synergos::sdk::Tensor t;
        t.name = "x";
        t.shape = {1024};
        t.data.resize(4096);
        huge.tensors.push_back(t);
        CHECK(small.post_weights(kRun + "/train", huge, Json::object()).status == 413);
    }
}

TEST_CASE("worker evaluate computes statistics on the worker and writes outputs there",
          "[unit][worker]") {
    Worker w;
    const TensorMap weights = w.initialise_heart();
    auto r = w.post_weights(kRun + "/evaluate", weights,
                            {{"meta", "evaluate"}, {"write_outputs", true}});
    REQUIRE(r.status == 200);
    const Json j = body_of(r);
    CHECK(j["rows"] == 826);
    CHECK(j["loss"] == 0.25);
    REQUIRE(j["statistics"]["accuracy"].size() == 5);
    REQUIRE(j["statistics"]["TPs"].size() == 5);
    CHECK(j.count("scores") == 0);
    CHECK(j.count("predictions") == 0);

    const fs::path dir = w.outputs / "c1/p1/e1/r1/evaluate";
    CHECK(j["res_path"] == dir.string());
    const auto preds = lines_of(dir / "inference_predictions_evaluate.txt");
    const auto scores = lines_of(dir / "inference_scores_evaluate.txt");
    REQUIRE(preds.size() == 826);
    REQUIRE(scores.size() == 826);
    CHECK(std::count(scores[0].begin(), scores[0].end(), ' ') == 4);  // 5 columns
    const double p0 = std::stod(preds[0]);
    CHECK((p0 >= 0.0 && p0 <= 4.0 && p0 == std::floor(p0)));
    std::ifstream stats_file(dir / "inference_statistics_evaluate.json");
    const Json stats = Json::parse(stats_file, nullptr, false);
    CHECK(stats == j["statistics"]);

    SECTION("without write_outputs nothing is written") {
        auto t = w.post_weights(kRun + "/evaluate", weights,
                                {{"meta", "train"}, {"write_outputs", false}});
        REQUIRE(t.status == 200);
        CHECK(body_of(t)["rows"] == 771);
        CHECK(body_of(t)["res_path"].is_null());
        CHECK_FALSE(fs::exists(w.outputs / "c1/p1/e1/r1/train"));
    }
    SECTION("a split without tags is 422, an unknown one 400") {
        auto none = w.post_weights(kRun + "/evaluate", weights, {{"meta", "predict"}});
        CHECK(none.status == 422);
        CHECK_THAT(message_of(none), Catch::Contains("predict"));
        CHECK(w.post_weights(kRun + "/evaluate", weights, {{"meta", "test"}}).status == 400);
    }
}

TEST_CASE("worker refuses to score a classify split of one class without alignment",
          "[unit][worker]") {
    // One-hot over the classes a split holds: with one class there is one column, which the
    // statistics read as a 0/1 column, so every row of class 0 counted as class 1.
    Worker w;
    const fs::path source = w.data / "heart_disease/data1/iid_1";
    const fs::path one = w.data / "heart_disease/data1/one_class";
    fs::create_directories(one);
    fs::copy(source / "metadata.json", one / "metadata.json");
    fs::copy(source / "schema.json", one / "schema.json");
    {
        std::ifstream in(source / "unified_dataset_iid_1_1000.csv");
        std::ofstream out(one / "data.csv");
        std::string line;
        std::getline(in, line);
        out << line << "\n";
        int kept = 0;
        while (std::getline(in, line) && kept < 40) {
            const std::string target = line.substr(line.rfind(',') + 1);
            if (std::stod(target) == 0.0) {
                out << line << "\n";
                ++kept;
            }
        }
        REQUIRE(kept == 40);
    }
    const Json tags = {{"train", {{"heart_disease", "data1", "iid_1"}}},
                       {"evaluate", {{"heart_disease", "data1", "one_class"}}},
                       {"predict", {{"heart_disease", "data1", "one_class"}}}};
    // The features aligned (the one-class split lacks some category levels), the labels not.
    auto poll = body_of(w.post("/v1/projects/c1/p1/poll", {{"action", "classify"}, {"tags", tags}}));
    const Json x = poll["headers"]["train"]["X"];
    auto init = w.post(kRun + "/initialise", {{"action", "classify"},
                                              {"tags", tags},
                                              {"alignment", {{"X", x}, {"y", Json::array()}}},
                                              {"architecture", linear(28, 5, "softmax")},
                                              {"return_weights", true}});
    INFO(init.body.substr(0, 300));
    REQUIRE(init.status == 200);
    auto weights = st::decode(init.body);
    REQUIRE(weights);
    auto r = w.post_weights(kRun + "/evaluate", weights->tensors, {{"meta", "evaluate"}});
    CHECK(r.status == 422);
    CHECK_THAT(message_of(r), Catch::Contains("one class only") && Catch::Contains("target_0"));
    // A binary model (one sigmoid output): the old code scored these class-0 rows as class 1
    // without a word (accuracy 0 for a model that is always right).
    auto binary = w.post(kRun + "/initialise", {{"action", "classify"},
                                                {"tags", tags},
                                                {"alignment", {{"X", x}, {"y", Json::array()}}},
                                                {"architecture", linear(28, 1, "sigmoid")},
                                                {"return_weights", true}});
    INFO(binary.body.substr(0, 300));
    REQUIRE(binary.status == 200);
    auto binary_weights = st::decode(binary.body);
    REQUIRE(binary_weights);
    auto scored = w.post_weights(kRun + "/evaluate", binary_weights->tensors, {{"meta", "evaluate"}});
    CHECK(scored.status == 422);
    CHECK_THAT(message_of(scored), Catch::Contains("one class only"));
    // A prediction still predicts; it has no statistics to give.
    auto predicted = w.post_weights(kRun + "/evaluate", binary_weights->tensors,
                                    {{"meta", "predict"}, {"write_outputs", true}});
    REQUIRE(predicted.status == 200);
    CHECK(body_of(predicted)["statistics"] == Json::object());
    CHECK(lines_of(w.outputs / "c1/p1/e1/r1/predict/inference_predictions_predict.txt").size() == 40);
}

TEST_CASE("worker evaluates a regression run with R2, MSE and MAE", "[unit][worker]") {
    Worker w;
    const Json tags = {{"train", {{"abalone", "data1", "train"}}},
                       {"predict", {{"abalone", "data1", "predict"}}}};
    auto init = w.post(kRun + "/initialise", {{"action", "regress"},
                                              {"tags", tags},
                                              {"architecture", linear(10, 1, "")},
                                              {"return_weights", true}});
    REQUIRE(init.status == 200);
    auto weights = st::decode(init.body);
    REQUIRE(weights);
    auto r = w.post_weights(kRun + "/evaluate", weights->tensors,
                            {{"meta", "predict"}, {"write_outputs", true}});
    REQUIRE(r.status == 200);
    const Json j = body_of(r);
    CHECK(j["rows"] == 436);
    CHECK(j["statistics"].contains("R2"));
    CHECK(j["statistics"].contains("MSE"));
    CHECK(j["statistics"]["MAE"].get<double>() > 0.0);
    CHECK(lines_of(w.outputs / "c1/p1/e1/r1/predict/inference_predictions_predict.txt").size() ==
          436);
}

TEST_CASE("worker aligns only the labels of image data", "[unit][worker]") {
    Worker w;
    const Json tags = {{"evaluate", {{"femnist", "data1", "evaluate"}}}};
    auto poll = w.post("/v1/projects/c1/p1/poll", {{"action", "classify"}, {"tags", tags}});
    REQUIRE(poll.status == 200);
    const Json p = body_of(poll);
    CHECK(p["headers"]["evaluate"]["X"] == Json::array());
    CHECK(p["headers"]["evaluate"]["y"] == Json::array({"target_J", "target_K", "target_L"}));
    CHECK(p["metadata"]["evaluate"]["sample_shape"] == Json::array({1, 28, 28}));

    auto init =
        w.post(kRun + "/initialise", {{"action", "classify"},
                                      {"tags", tags},
                                      // As the align function sends it: no numeric columns,
                                      // so an empty `scaling` (the image pipeline has no such
                                      // option and refused the run when it was passed on).
                                      {"alignment",
                                       {{"X", {"some", "tabular", "names"}},
                                        {"y", {"target_I", "target_J", "target_K", "target_L"}},
                                        {"scaling", Json::object()}}},
                                      {"architecture", linear(784, 4, "softmax")},
                                      {"return_weights", true}});
    REQUIRE(init.status == 200);
    auto weights = st::decode(init.body);
    REQUIRE(weights);
    CHECK(Json::parse(weights->metadata.at("json"))["input_shape"] == Json::array({1, 28, 28}));
    auto r = w.post_weights(kRun + "/evaluate", weights->tensors, {{"meta", "evaluate"}});
    REQUIRE(r.status == 200);
    CHECK(body_of(r)["statistics"]["accuracy"].size() == 4);
}

TEST_CASE("worker terminate frees the run and is idempotent", "[unit][worker]") {
    Worker w;
    const TensorMap weights = w.initialise_heart();
    auto t = w.call("POST", kRun + "/terminate", "", "");
    REQUIRE(t.status == 200);
    CHECK(body_of(t)["terminated"] == true);
    CHECK(w.service->runs_loaded() == 0);
    CHECK(w.post_weights(kRun + "/train", weights, Json::object()).status == 409);
    CHECK(body_of(w.call("POST", kRun + "/terminate", "{}"))["terminated"] == false);
}

TEST_CASE("worker serialises requests of one run and runs different runs concurrently",
          "[unit][worker]") {
    Worker w(std::size_t{64} << 20, std::chrono::milliseconds(200));
    const std::string run_a = "/v1/runs/c1/p1/e1/a";
    const std::string run_b = "/v1/runs/c1/p1/e1/b";
    auto init = [&](const std::string& run) {
        auto r = w.post(run + "/initialise", {{"action", "classify"},
                                              {"tags", kHeartTags},
                                              {"architecture", linear(28, 5, "softmax")},
                                              {"return_weights", true}});
        REQUIRE(r.status == 200);
        return st::decode(r.body)->tensors;
    };
    const TensorMap wa = init(run_a);
    const TensorMap wb = init(run_b);
    auto body_a = st::encode_to_string(wa, {{"json", R"({"round": 0})"}});
    auto body_b = st::encode_to_string(wb, {{"json", R"({"round": 0})"}});
    const std::string type(st::kSafetensorsContentType);

    w.backend.gate.enabled = true;
    auto held = std::async(std::launch::async, [&] {
        return w.service->handle(WorkerHttpRequest{"POST", run_a + "/train", type, *body_a});
    });
    REQUIRE(w.backend.gate.wait_inside(1));  // run A is now inside train()

    // Run B is not blocked by run A (its own train is held too, so evaluate it instead).
    auto other = w.post_weights(run_b + "/evaluate", wb, {{"meta", "evaluate"}});
    CHECK(other.status == 200);
    // A second request for run A waits run_wait (200 ms) and gives up with 409.
    auto busy = w.post_weights(run_a + "/evaluate", wa, {{"meta", "evaluate"}});
    CHECK(busy.status == 409);
    CHECK_THAT(message_of(busy), Catch::Contains("busy"));

    w.backend.gate.release();
    REQUIRE(held.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(held.get().status == 200);
    CHECK(w.post_weights(run_a + "/evaluate", wa, {{"meta", "evaluate"}}).status == 200);
}

TEST_CASE("alignment by name places columns at superset positions and zero-fills",
          "[unit][worker]") {
    synergos::sdk::Dataset ds;
    ds.rows = 2;
    ds.feature_names = {"b", "d"};
    ds.sample_shape = {2};
    ds.features = {1, 2, 3, 4};
    ds.label_names = {"target_1"};
    ds.labels = {1, 1};
    REQUIRE(synergos::core::worker::align_features(ds, {"a", "b", "c", "d"}, "train"));
    CHECK(ds.features == std::vector<float>{0, 1, 0, 2, 0, 3, 0, 4});
    CHECK(ds.sample_shape == std::vector<std::int64_t>{4});
    REQUIRE(synergos::core::worker::align_labels(ds, {"target_0", "target_1"}, "train"));
    CHECK(ds.labels == std::vector<float>{0, 1, 0, 1});
    auto dup = synergos::core::worker::align_features(ds, {"a", "a"}, "train");
    CHECK_FALSE(dup);
}

TEST_CASE("worker refuses a request that waited for a run terminated meanwhile", "[unit][worker]") {
    Worker w;
    const TensorMap weights = w.initialise_heart();
    auto held = w.hold_train(weights);
    auto waiting = std::async(std::launch::async, [&] {
        return w.post_weights(kRun + "/train", weights, {{"round", 0}});
    });
    CHECK(body_of(w.call("POST", kRun + "/terminate", "{}"))["terminated"] == true);
    w.backend.gate.release();
    REQUIRE(held.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    REQUIRE(waiting.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(held.get().status == 200);  // the in-flight round completes on its own state
    CHECK(waiting.get().status == 409);
    CHECK(w.service->runs_loaded() == 0);
}

namespace {

/// Weights that fit the heart_disease model (28 inputs, 5 classes).
TensorMap heart_weights() {
    synergos::testing::FakeModel model(28, 5, "softmax", 1.0, nullptr);
    return *model.state();
}

WorkerHttpResponse init_heart_run(Worker& w, const std::string& run) {
    return w.post(
        run + "/initialise",
        {{"action", "classify"}, {"tags", kHeartTags}, {"architecture", linear(28, 5, "softmax")}});
}

/// A metadata.json whose nesting is `depth` levels in all (the top object counts 1).
std::string nested_metadata(std::size_t depth) {
    const std::size_t arrays = depth - 2;  // the top object and "operations"
    return R"({"datatype": "tabular", "operations": {"x": )" + std::string(arrays, '[') +
           std::string(arrays, ']') + "}}";
}

}  // namespace

TEST_CASE("worker initialise of a run terminated mid-request waits for that request to end",
          "[unit][worker]") {
    Worker w;
    auto held = w.hold_train(w.initialise_heart());
    // What a TTP does when a round's attempt fails elsewhere: terminate, then initialise again.
    CHECK(body_of(w.call("POST", kRun + "/terminate", "{}"))["terminated"] == true);
    auto again = std::async(std::launch::async, [&] { return init_heart_run(w, kRun); });
    // Before, the new run was installed at once and its requests ran beside the old one, both
    // writing the run's files (a SCAFFOLD control, results).
    CHECK(again.wait_for(std::chrono::milliseconds(500)) == std::future_status::timeout);
    CHECK(w.service->runs_loaded() == 0);
    w.backend.gate.release();
    REQUIRE(held.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    REQUIRE(again.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(held.get().status == 200);
    CHECK(again.get().status == 200);
    CHECK(w.service->runs_loaded() == 1);
}

TEST_CASE("worker refuses a deeply nested metadata.json with 422 naming the file",
          "[unit][worker]") {
    Worker w;
    fs::create_directories(w.data / "deep/d1");
    // 100,000 levels, ~200 KB: copying or printing it recursively overflowed the stack.
    std::ofstream(w.data / "deep/d1/metadata.json") << nested_metadata(100000);
    const Json tags = {{"train", Json::array({Json::array({"deep", "d1"})})}};

    auto poll = w.post("/v1/projects/c1/p1/poll", {{"action", "classify"}, {"tags", tags}});
    CHECK(poll.status == 422);
    CHECK_THAT(message_of(poll),
               Catch::Contains("deep/d1/metadata.json") && Catch::Contains("64 levels"));
    auto init = w.post(
        kRun + "/initialise",
        {{"action", "classify"}, {"tags", tags}, {"architecture", linear(28, 5, "softmax")}});
    CHECK(init.status == 422);
    CHECK_THAT(message_of(init), Catch::Contains("deep/d1/metadata.json"));
    CHECK(w.service->runs_loaded() == 0);

    SECTION("64 levels are accepted, 65 are not") {
        fs::create_directories(w.data / "deep/d64");
        fs::create_directories(w.data / "deep/d65");
        std::ofstream(w.data / "deep/d64/metadata.json") << nested_metadata(64);
        std::ofstream(w.data / "deep/d65/metadata.json") << nested_metadata(65);
        const fs::path root = fs::canonical(w.data);
        CHECK(synergos::core::worker::resolve_tag(root, Json{"deep", "d64"}, 1000));
        auto too_deep = synergos::core::worker::resolve_tag(root, Json{"deep", "d65"}, 1000);
        REQUIRE_FALSE(too_deep);
        CHECK_THAT(too_deep.error().message, Catch::Contains("deep/d65/metadata.json"));
    }
    SECTION("and so is a request body nested deeper than 64 levels") {
        auto r = w.call("POST", "/v1/projects/c1/p1/poll",
                        R"({"action": "classify", "x": )" + std::string(100000, '[') +
                            std::string(100000, ']') + "}");
        CHECK(r.status == 400);
        CHECK_THAT(message_of(r), Catch::Contains("64 levels"));
    }
}

TEST_CASE("worker answers 409 at once beyond the waiters of a busy run", "[unit][worker]") {
    Worker w;  // run_wait 30 s: a waiter would hold its thread that long
    w.initialise_heart();
    const TensorMap weights = heart_weights();
    auto train_body = st::encode_to_string(weights, {{"json", R"({"round": 0})"}});
    auto eval_body = st::encode_to_string(weights, {{"json", R"({"meta": "evaluate"})"}});
    REQUIRE(train_body);
    REQUIRE(eval_body);
    const std::string type(st::kSafetensorsContentType);
    w.backend.gate.enabled = true;
    auto held = std::async(std::launch::async, [&] {
        return w.service->handle(WorkerHttpRequest{"POST", kRun + "/train", type, *train_body});
    });
    REQUIRE(w.backend.gate.wait_inside(1));

    std::vector<std::future<WorkerHttpResponse>> evaluates;
    for (int i = 0; i < 20; ++i) {
        evaluates.push_back(std::async(std::launch::async, [&] {
            return w.service->handle(
                WorkerHttpRequest{"POST", kRun + "/evaluate", type, *eval_body});
        }));
    }
    // At most max_run_waiters (2) wait; the other 18 are answered within moments.
    const auto answered = [&] {
        std::size_t n = 0;
        for (auto& f : evaluates) {
            n += f.wait_for(std::chrono::seconds(0)) == std::future_status::ready ? 1 : 0;
        }
        return n;
    };
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (answered() < 18 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(answered() >= 18);
    CHECK(w.call("GET", "/v1/health").status == 200);

    w.backend.gate.release();
    REQUIRE(held.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(held.get().status == 200);
    std::size_t ok = 0;
    std::size_t busy = 0;
    for (auto& f : evaluates) {
        REQUIRE(f.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
        const WorkerHttpResponse r = f.get();
        ok += r.status == 200 ? 1 : 0;
        if (r.status == 409) {
            ++busy;
            CHECK_THAT(message_of(r), Catch::Contains("busy"));
        }
    }
    CHECK(ok + busy == 20);
    CHECK(busy >= 18);
}

TEST_CASE("a busy run does not starve the worker's HTTP server", "[unit][worker]") {
    namespace http = synergos::core::http;
    Worker w;
    const std::string run_a = "/v1/runs/c1/p1/e1/a";
    const std::string run_b = "/v1/runs/c1/p1/e1/b";
    REQUIRE(init_heart_run(w, run_a).status == 200);
    REQUIRE(init_heart_run(w, run_b).status == 200);
    // Mounted as the worker role mounts it, on a small handler pool.
    http::Router router;
    auto forward = [&w](const http::Request& req) {
        WorkerHttpResponse out = w.service->handle(
            WorkerHttpRequest{req.method, req.path, req.header("content-type"), req.body});
        http::Response resp;
        resp.status = out.status;
        resp.content_type = out.content_type;
        resp.body = std::move(out.body);
        return resp;
    };
    router.add("GET", "/v1/health", forward);
    for (const char* action : {"initialise", "train", "evaluate", "terminate"}) {
        router.add("POST",
                   std::string("/v1/runs/{collab_id}/{project_id}/{expt_id}/{run_id}/") + action,
                   forward);
    }
    http::ServerOptions so;
    so.port = 0;
    so.handler_threads = 4;
    so.body_limit_bytes = std::size_t{64} << 20;
    so.access_log = false;
    http::HttpServer server(so, router, w.host.logger());
    REQUIRE(server.start().is_ok());
    const std::uint16_t port = server.bound_port();
    http::HttpClient client;
    const std::string type(st::kSafetensorsContentType);
    const TensorMap weights = heart_weights();
    const std::string train_body = *st::encode_to_string(weights, {{"json", R"({"round": 0})"}});
    const std::string eval_body =
        *st::encode_to_string(weights, {{"json", R"({"meta": "evaluate"})"}});
    const auto post = [&](const std::string& path, const std::string& body) {
        auto r =
            client.request("POST", "127.0.0.1", port, path, body, type, std::chrono::seconds(20));
        return r ? r->status : -1;
    };

    w.backend.gate.enabled = true;
    auto held = std::async(std::launch::async, [&] { return post(run_a + "/train", train_body); });
    REQUIRE(w.backend.gate.wait_inside(1));
    std::atomic<int> done{0};
    std::vector<std::future<int>> evaluates;
    for (int i = 0; i < 20; ++i) {
        evaluates.push_back(std::async(std::launch::async, [&] {
            const int status = post(run_a + "/evaluate", eval_body);
            ++done;
            return status;
        }));
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (done.load() < 18 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(done.load() >= 18);
    // The health check and another run are served while run A is busy.
    auto health =
        client.request("GET", "127.0.0.1", port, "/v1/health", {}, "", std::chrono::seconds(3));
    REQUIRE(health);
    CHECK(health->status == 200);
    auto other = client.request("POST", "127.0.0.1", port, run_b + "/evaluate", eval_body, type,
                                std::chrono::seconds(3));
    REQUIRE(other);
    CHECK(other->status == 200);

    w.backend.gate.release();
    REQUIRE(held.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
    CHECK(held.get() == 200);
    for (auto& f : evaluates) {
        REQUIRE(f.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
        const int status = f.get();
        CHECK((status == 200 || status == 409));
    }
    server.stop(std::chrono::seconds(2));
}

TEST_CASE("worker loads a folder named by several tags once and caps the tags of a split",
          "[unit][worker]") {
    Worker w(std::size_t{64} << 20, std::chrono::seconds(30),
             [](WorkerServiceConfig& c) { c.max_tags_per_split = 300; });
    Json train = Json::array();
    for (int i = 0; i < 150; ++i) {
        train.push_back({"heart_disease", "data1", "iid_1"});
        train.push_back({"iid_1", "heart_disease", "data1"});  // the same folder, searched
    }
    auto r =
        w.post("/v1/projects/c1/p1/poll", {{"action", "classify"}, {"tags", {{"train", train}}}});
    REQUIRE(r.status == 200);
    const Json meta = body_of(r)["metadata"]["train"];
    CHECK(meta["folders"] == Json::array({"heart_disease/data1/iid_1"}));
    CHECK(meta["rows"] == 771);
    CHECK(meta["src_count"] == 771);  // loaded once, not 300 times
    CHECK(meta["duplicates_dropped"] == 0);

    SECTION("more tags than the limit is 422 naming the split") {
        train.push_back({"heart_disease", "data1", "iid_1"});
        auto over = w.post("/v1/projects/c1/p1/poll",
                           {{"action", "classify"}, {"tags", {{"train", train}}}});
        CHECK(over.status == 422);
        CHECK_THAT(message_of(over), Catch::Contains("split 'train'") && Catch::Contains("300"));
        auto init = w.post(kRun + "/initialise", {{"action", "classify"},
                                                  {"tags", {{"train", train}}},
                                                  {"architecture", linear(28, 5, "softmax")}});
        CHECK(init.status == 422);
        CHECK(w.service->runs_loaded() == 0);
    }
    SECTION("the default limit is 1024") {
        CHECK(WorkerServiceConfig{}.max_tags_per_split == 1024);
    }
}

TEST_CASE("worker caps alignment supersets and checks the aligned size before allocating",
          "[unit][worker]") {
    // A budget of 1 MiB stands in for the default 4 GiB.
    Worker w(std::size_t{64} << 20, std::chrono::seconds(30),
             [](WorkerServiceConfig& c) { c.max_aligned_bytes = std::uint64_t{1} << 20; });
    auto poll =
        body_of(w.post("/v1/projects/c1/p1/poll", {{"action", "classify"}, {"tags", kHeartTags}}));
    const std::vector<std::string> x = poll["headers"]["train"]["X"];
    const std::vector<std::string> y = poll["headers"]["train"]["y"];
    const auto init = [&](const std::vector<std::string>& xs, const std::vector<std::string>& ys) {
        return w.post(kRun + "/initialise",
                      {{"action", "classify"},
                       {"tags", kHeartTags},
                       {"alignment", {{"X", xs}, {"y", ys}}},
                       {"architecture", linear(static_cast<std::int64_t>(xs.size()),
                                               static_cast<std::int64_t>(ys.size()), "softmax")}});
    };

    SECTION("a superset that fits the budget is aligned") {
        std::vector<std::string> wide = x;
        wide.push_back("zzz_extra");
        CHECK(init(wide, y).status == 200);
        CHECK(w.service->runs_loaded() == 1);
    }
    SECTION("aligned splits over the budget are 422 naming alignment.X") {
        // 771 + 826 rows x 428 columns x 4 bytes: about 2.7 MB.
        std::vector<std::string> wide = x;
        for (int i = 0; i < 400; ++i) {
            wide.push_back("junk_" + std::to_string(i));
        }
        auto r = init(wide, y);
        CHECK(r.status == 422);
        CHECK_THAT(message_of(r), Catch::Contains("alignment.X") && Catch::Contains("budget"));
        CHECK(w.service->runs_loaded() == 0);
    }
    SECTION("more than 100,000 names is 422 naming the list") {
        std::vector<std::string> many(100001);
        for (std::size_t i = 0; i < many.size(); ++i) {
            many[i] = "n" + std::to_string(i);
        }
        auto rx = init(many, y);
        CHECK(rx.status == 422);
        CHECK_THAT(message_of(rx), Catch::Contains("alignment.X") && Catch::Contains("100000"));
        auto ry = init(x, many);
        CHECK(ry.status == 422);
        CHECK_THAT(message_of(ry), Catch::Contains("alignment.y"));
        CHECK(w.service->runs_loaded() == 0);
    }
    SECTION("align_features checks its budget before allocating") {
        synergos::sdk::Dataset ds;
        ds.rows = 1000;
        ds.feature_names = {"a"};
        ds.sample_shape = {1};
        ds.features.assign(1000, 1.0f);
        auto st = synergos::core::worker::align_features(ds, {"a", "b", "c"}, "train", 8000);
        REQUIRE_FALSE(st);
        CHECK_THAT(st.message(), Catch::Contains("alignment.X"));
        CHECK(ds.features.size() == 1000);  // unchanged
    }
}

TEST_CASE("worker keeps at most max_runs runs, evicting the least recently used idle one",
          "[unit][worker]") {
    Worker w(std::size_t{64} << 20, std::chrono::seconds(30),
             [](WorkerServiceConfig& c) { c.max_runs = 3; });
    const TensorMap weights = heart_weights();
    const auto run = [](int i) { return "/v1/runs/c1/p1/e1/r" + std::to_string(i); };
    const auto evaluate = [&](int i) {
        return w.post_weights(run(i) + "/evaluate", weights, {{"meta", "evaluate"}}).status;
    };
    for (int i = 1; i <= 3; ++i) {
        REQUIRE(init_heart_run(w, run(i)).status == 200);
    }
    CHECK(evaluate(1) == 200);  // r2 is now the least recently used
    REQUIRE(init_heart_run(w, run(4)).status == 200);
    CHECK(w.service->runs_loaded() == 3);
    CHECK(evaluate(2) == 409);  // evicted: its TTP re-initialises it
    CHECK(evaluate(1) == 200);
    CHECK(evaluate(3) == 200);
    CHECK(evaluate(4) == 200);
    CHECK(body_of(w.call("GET", "/v1/health"))["runs_loaded"] == 3);

    SECTION("when every run is busy, an initialise of another run is 503 naming the limit") {
        auto body = st::encode_to_string(weights, {{"json", R"({"round": 0})"}});
        REQUIRE(body);
        const std::string type(st::kSafetensorsContentType);
        w.backend.gate.enabled = true;
        std::vector<std::future<WorkerHttpResponse>> trains;
        for (int i : {1, 3, 4}) {
            trains.push_back(std::async(std::launch::async, [&, i] {
                return w.service->handle(WorkerHttpRequest{"POST", run(i) + "/train", type, *body});
            }));
        }
        REQUIRE(w.backend.gate.wait_inside(3));
        auto full = init_heart_run(w, run(5));
        CHECK(full.status == 503);
        CHECK_THAT(message_of(full), Catch::Contains("limit of 3"));
        CHECK(w.service->runs_loaded() == 3);
        w.backend.gate.release();
        for (auto& t : trains) {
            REQUIRE(t.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
            CHECK(t.get().status == 200);
        }
        CHECK(init_heart_run(w, run(5)).status == 200);  // now one is idle again
        CHECK(w.service->runs_loaded() == 3);
    }
}

TEST_CASE("worker terminate during an initialise leaves no run installed", "[unit][worker]") {
    Worker w;
    SECTION("terminate while the initialise builds its model") {
        w.backend.build_gate.enabled = true;
        auto init = std::async(std::launch::async, [&] { return init_heart_run(w, kRun); });
        REQUIRE(w.backend.build_gate.wait_inside(1));
        CHECK(body_of(w.call("POST", kRun + "/terminate", "{}"))["terminated"] == true);
        w.backend.build_gate.release();
        REQUIRE(init.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
        const WorkerHttpResponse r = init.get();
        CHECK(r.status == 409);
        CHECK_THAT(message_of(r), Catch::Contains("terminated"));
        CHECK(w.service->runs_loaded() == 0);
        // The next initialise is not affected.
        CHECK(init_heart_run(w, kRun).status == 200);
        CHECK(w.service->runs_loaded() == 1);
    }
    SECTION("terminate while a re-initialise waits for the run's request in flight") {
        auto held = w.hold_train(w.initialise_heart());
        auto init = std::async(std::launch::async, [&] { return init_heart_run(w, kRun); });
        // The re-initialise loads (cached) and then waits for the held train.
        for (int i = 0; i < 1000 && w.service->requests_waiting() == 0; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        REQUIRE(w.service->requests_waiting() == 1);
        CHECK(body_of(w.call("POST", kRun + "/terminate", "{}"))["terminated"] == true);
        w.backend.gate.release();
        REQUIRE(held.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
        REQUIRE(init.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
        CHECK(held.get().status == 200);
        CHECK(init.get().status == 409);
        CHECK(w.service->runs_loaded() == 0);
    }
}

TEST_CASE("concurrent initialises of one run leave exactly one working run", "[unit][worker]") {
    Worker w;
    REQUIRE(init_heart_run(w, kRun).status == 200);  // warms the split cache
    std::vector<std::future<WorkerHttpResponse>> inits;
    for (int i = 0; i < 8; ++i) {
        inits.push_back(std::async(std::launch::async, [&] { return init_heart_run(w, kRun); }));
    }
    for (auto& f : inits) {
        REQUIRE(f.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
        CHECK(f.get().status == 200);
    }
    CHECK(w.service->runs_loaded() == 1);
    CHECK(w.post_weights(kRun + "/train", heart_weights(), {{"round", 0}}).status == 200);
    CHECK(body_of(w.call("POST", kRun + "/terminate", "{}"))["terminated"] == true);
    CHECK(w.service->runs_loaded() == 0);
}
