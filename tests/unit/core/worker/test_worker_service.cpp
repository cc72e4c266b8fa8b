// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

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
                    std::chrono::milliseconds run_wait = std::chrono::seconds(30)) {
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
    auto body = st::encode_to_string(weights, {{"json", R"({"round": 0})"}});
    REQUIRE(body);
    const std::string type(st::kSafetensorsContentType);
    w.backend.gate.enabled = true;
    auto held = std::async(std::launch::async, [&] {
        return w.service->handle(WorkerHttpRequest{"POST", kRun + "/train", type, *body});
    });
    REQUIRE(w.backend.gate.wait_inside(1));
    auto waiting = std::async(std::launch::async, [&] {
        return w.service->handle(WorkerHttpRequest{"POST", kRun + "/train", type, *body});
    });
    CHECK(body_of(w.call("POST", kRun + "/terminate", "{}"))["terminated"] == true);
    w.backend.gate.release();
    REQUIRE(held.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    REQUIRE(waiting.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(held.get().status == 200);  // the in-flight round completes on its own state
    CHECK(waiting.get().status == 409);
    CHECK(w.service->runs_loaded() == 0);
}
