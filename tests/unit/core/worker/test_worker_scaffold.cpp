// SPDX-License-Identifier: Apache-2.0
// The worker's part of SCAFFOLD: it strips the server control c from the weights, hands c and
// its own control c_i to the model in the reference map, keeps c_i+ = c_i + Delta c_i per run
// on disk (surviving a restart; a re-run round starts from the control it started from), and
// ignores `scaffold.` tensors when evaluating.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/core/tensor/safetensors.hpp>
#include <synergos/core/worker/service.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "tabular_pipeline.hpp"

namespace fs = std::filesystem;
namespace st = synergos::core::tensor;
namespace sdk = synergos::sdk;
using Json = nlohmann::json;
using synergos::core::worker::WorkerHttpRequest;
using synergos::core::worker::WorkerHttpResponse;
using synergos::core::worker::WorkerService;
using synergos::core::worker::WorkerServiceConfig;

namespace {

const fs::path kSource(SYNERGOS_TEST_SOURCE_DIR);
const std::string kRun = "/v1/runs/c1/p1/e1/r1";

sdk::Tensor f32(const std::string& name, std::vector<float> v) {
    sdk::Tensor t;
    t.name = name;
    t.dtype = sdk::DType::F32;
    t.shape = {static_cast<std::int64_t>(v.size())};
    t.data.resize(v.size() * sizeof(float));
    std::memcpy(t.data.data(), v.data(), t.data.size());
    return t;
}

sdk::Tensor i64(const std::string& name, std::int64_t v) {
    sdk::Tensor t;
    t.name = name;
    t.dtype = sdk::DType::I64;
    t.shape = {1};
    t.data.resize(sizeof v);
    std::memcpy(t.data.data(), &v, sizeof v);
    return t;
}

std::vector<float> floats(const sdk::Tensor& t) {
    std::vector<float> out(t.data.size() / sizeof(float));
    std::memcpy(out.data(), t.data.data(), t.data.size());
    return out;
}

/// What the probe model saw in its last train call.
struct Seen {
    std::mutex mutex;
    std::vector<std::string> reference_names;
    sdk::TensorMap reference;
};

/// A model with a floating tensor `w` [2] and an integer counter `n` that records the reference
/// map and replies with w + 1 and Delta c_i = (round + 1, -(round + 1)) when `delta` is set.
class ProbeModel final : public sdk::Model {
public:
    ProbeModel(Seen& seen, bool delta) : seen_(seen), delta_(delta) {}
    sdk::Result<sdk::TensorMap> state() noexcept override {
        return state_;
    }
    sdk::Status load_state(const sdk::TensorMap& state) noexcept override {
        for (const sdk::Tensor& t : state.tensors) {
            if (state_.find(t.name) == nullptr) {
                return {sdk::ErrorCode::InvalidArgument, "unknown tensor '" + t.name + "'"};
            }
        }
        state_ = state;
        return sdk::Status::ok();
    }
    sdk::Result<sdk::TrainReport> train(const sdk::Dataset& data, std::string_view args_json,
                                        const sdk::TensorMap* reference) noexcept override {
        const Json args = Json::parse(args_json);
        const int round = args.value("round", 0);
        {
            std::lock_guard<std::mutex> lock(seen_.mutex);
            seen_.reference = reference != nullptr ? *reference : sdk::TensorMap{};
            seen_.reference_names.clear();
            for (const auto& t : seen_.reference.tensors) {
                seen_.reference_names.push_back(t.name);
            }
        }
        sdk::TrainReport report;
        report.samples = data.rows;
        report.epochs_run = 1;
        report.epoch_losses = {0.5};
        auto w = floats(*state_.find("w"));
        report.weights.tensors = {f32("w", {w[0] + 1, w[1] + 1}), i64("n", 1)};
        if (delta_) {
            const auto d = static_cast<float>(round + 1);
            report.weights.tensors.push_back(f32("scaffold.delta_c.w", {d, -d}));
        }
        return report;
    }
    sdk::Result<sdk::Inference> infer(const sdk::Dataset& data,
                                      std::string_view) noexcept override {
        sdk::Inference out;
        out.rows = data.rows;
        out.width = 5;
        out.scores.assign(static_cast<std::size_t>(data.rows * 5), 0.2F);
        out.loss = 1.0;
        return out;
    }
    std::int64_t parameter_count() const noexcept override {
        return 2;
    }

private:
    Seen& seen_;
    bool delta_;
    sdk::TensorMap state_{{f32("w", {0, 0}), i64("n", 0)}};
};

class ProbeBackend final : public sdk::ModelBackend {
public:
    ProbeBackend(Seen& seen, bool delta) : seen_(seen), delta_(delta) {}
    sdk::Status validate(std::string_view, std::string_view,
                         const std::vector<std::int64_t>&) noexcept override {
        return sdk::Status::ok();
    }
    sdk::Result<std::unique_ptr<sdk::Model>> build(std::string_view,
                                                   std::string_view) noexcept override {
        return std::unique_ptr<sdk::Model>(new ProbeModel(seen_, delta_));
    }

private:
    Seen& seen_;
    bool delta_;
};

/// A worker over heart_disease with the probe model; `outputs` may be shared by two workers
/// (a restart).
struct ScaffoldWorker {
    synergos::sdk::testing::FakeHost host;
    synergos::plugins::tabular::TabularPipeline tabular{host, sdk::Options()};
    Seen seen;
    ProbeBackend backend;
    std::unique_ptr<WorkerService> service;

    ScaffoldWorker(const fs::path& outputs, bool delta = true) : backend(seen, delta) {
        WorkerServiceConfig config;
        config.participant_id = "worker-1";
        config.data_dir = (kSource / "examples" / "data").string();
        config.outputs_dir = outputs.string();
        config.pipelines = {{"tabular", &tabular}};
        config.model = &backend;
        config.logger = &host.logger();
        service = std::make_unique<WorkerService>(config);
        const Json init = {{"action", "classify"},
                           {"tags",
                            {{"train", {{"heart_disease", "data1", "iid_1"}}},
                             {"evaluate", {{"heart_disease", "data1", "non_iid_1"}}}}},
                           {"architecture", Json::array({{{"l_type", "Linear"}}})},
                           {"run", {{"seed", 7}}}};
        const auto r =
            service->handle({"POST", kRun + "/initialise", "application/json", init.dump()});
        INFO(r.body);
        REQUIRE(r.status == 200);
    }

    WorkerHttpResponse post_weights(const std::string& route, const sdk::TensorMap& weights,
                                    const Json& meta) {
        auto body = st::encode_to_string(weights, {{"json", meta.dump()}});
        REQUIRE(body);
        return service->handle(
            {"POST", kRun + route, std::string(st::kSafetensorsContentType), *body});
    }

    /// One SCAFFOLD training round with global w = (1, 2) and server control c = (0.5, 0.25).
    sdk::TensorMap train_round(int round) {
        const sdk::TensorMap body{
            {f32("w", {1, 2}), i64("n", 0), f32("scaffold.c.w", {0.5F, 0.25F})}};
        const Json meta = {{"round", round},
                           {"args", {{"scaffold", true}, {"round", round}, {"mu", 0.0}}}};
        const auto r = post_weights("/train", body, meta);
        INFO(r.body.substr(0, 300));
        REQUIRE(r.status == 200);
        auto decoded = st::decode(r.body);
        REQUIRE(decoded);
        return decoded->tensors;
    }

    /// c_i as the model saw it in the last round (empty when none was passed).
    std::vector<float> seen_c_i() {
        std::lock_guard<std::mutex> lock(seen.mutex);
        const sdk::Tensor* t = seen.reference.find("scaffold.c_i.w");
        return t != nullptr ? floats(*t) : std::vector<float>{};
    }
};

std::vector<float> saved_control(const fs::path& outputs, int round) {
    const fs::path file = outputs / "c1" / "p1" / "e1" / "r1" / "scaffold" /
                          ("client_control_round_" + std::to_string(round) + ".safetensors");
    std::ifstream in(file, std::ios::binary);
    REQUIRE(in);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto decoded = st::decode(text);
    REQUIRE(decoded);
    const sdk::Tensor* w = decoded->tensors.find("w");
    REQUIRE(w != nullptr);
    CHECK(decoded->tensors.find("n") == nullptr);  // integer tensors have no control
    return floats(*w);
}

fs::path temp_outputs() {
    return fs::temp_directory_path() /
           ("synergos-worker-scaffold-" + std::to_string(std::random_device{}()));
}

}  // namespace

TEST_CASE("worker SCAFFOLD: c and c_i reach the model, c_i+ is kept across rounds and restarts",
          "[worker][scaffold]") {
    const fs::path outputs = temp_outputs();
    {
        ScaffoldWorker worker(outputs);
        const sdk::TensorMap reply = worker.train_round(0);
        // The model got x, the server control and (round 0) no client control.
        {
            std::lock_guard<std::mutex> lock(worker.seen.mutex);
            CHECK(worker.seen.reference_names ==
                  std::vector<std::string>{"w", "n", "scaffold.c.w"});
            CHECK(floats(*worker.seen.reference.find("scaffold.c.w")) ==
                  std::vector<float>{0.5F, 0.25F});
        }
        // The reply carries the trained weights and Delta c_i to the TTP.
        REQUIRE(reply.find("scaffold.delta_c.w") != nullptr);
        CHECK(floats(*reply.find("w")) == std::vector<float>{2, 3});
        CHECK(saved_control(outputs, 0) == std::vector<float>{1, -1});

        worker.train_round(1);
        CHECK(worker.seen_c_i() == std::vector<float>{1, -1});
        CHECK(saved_control(outputs, 1) == std::vector<float>{3, -3});  // c_i + (2, -2)
    }
    {
        // A restarted worker (new service, same outputs) continues with its saved control.
        ScaffoldWorker worker(outputs);
        worker.train_round(2);
        CHECK(worker.seen_c_i() == std::vector<float>{3, -3});
        CHECK(saved_control(outputs, 2) == std::vector<float>{6, -6});
        // The resumed job re-runs round 2: it starts again from round 1's control.
        worker.train_round(2);
        CHECK(worker.seen_c_i() == std::vector<float>{3, -3});
        CHECK(saved_control(outputs, 2) == std::vector<float>{6, -6});
        // Only the controls still needed are kept.
        const fs::path dir = outputs / "c1" / "p1" / "e1" / "r1" / "scaffold";
        CHECK_FALSE(fs::exists(dir / "client_control_round_0.safetensors"));
        CHECK(fs::exists(dir / "client_control_round_1.safetensors"));

        // A new job on the same run starts at round 0 with c_i = 0 and drops the old controls.
        worker.train_round(0);
        CHECK(worker.seen_c_i().empty());
        CHECK_FALSE(fs::exists(dir / "client_control_round_2.safetensors"));
        CHECK(saved_control(outputs, 0) == std::vector<float>{1, -1});

        // Evaluation ignores the server control that travels with the global weights.
        const sdk::TensorMap global{
            {f32("w", {1, 2}), i64("n", 0), f32("scaffold.c.w", {0.5F, 0.25F})}};
        const auto r = worker.post_weights("/evaluate", global, {{"meta", "evaluate"}});
        INFO(r.body);
        CHECK(r.status == 200);
    }
    std::error_code ec;
    fs::remove_all(outputs, ec);
}

TEST_CASE("worker SCAFFOLD: a model without the client side is refused with a clear message",
          "[worker][scaffold]") {
    const fs::path outputs = temp_outputs();
    ScaffoldWorker worker(outputs, /*delta=*/false);
    const sdk::TensorMap body{{f32("w", {1, 2}), i64("n", 0)}};
    const auto r = worker.post_weights(
        "/train", body, {{"round", 0}, {"args", {{"scaffold", true}, {"round", 0}}}});
    CHECK(r.status == 422);
    CHECK_THAT(r.body, Catch::Contains("scaffold.delta_c.w"));
    CHECK_THAT(r.body, Catch::Contains("SCAFFOLD"));
    CHECK_FALSE(fs::exists(outputs / "c1" / "p1" / "e1" / "r1" / "scaffold" /
                           "client_control_round_0.safetensors"));

    // The train argument must be a boolean, and SCAFFOLD needs the round number.
    const auto bad_flag = worker.post_weights("/train", body, {{"args", {{"scaffold", "yes"}}}});
    CHECK(bad_flag.status == 400);
    CHECK_THAT(bad_flag.body, Catch::Contains("scaffold"));
    const auto no_round = worker.post_weights("/train", body, {{"args", {{"scaffold", true}}}});
    CHECK(no_round.status == 400);
    CHECK_THAT(no_round.body, Catch::Contains("round"));
    std::error_code ec;
    fs::remove_all(outputs, ec);
}

TEST_CASE("worker: a plain round hands the model the received global weights as its reference",
          "[worker][scaffold]") {
    // FedProx anchors on the reference; without SCAFFOLD the worker moves the received weights
    // into it instead of copying them, so it must still be exactly what the TTP sent.
    const fs::path outputs = temp_outputs();
    {
        ScaffoldWorker worker(outputs, false);
        for (int round = 0; round < 2; ++round) {
            const float base = static_cast<float>(10 * (round + 1));
            const sdk::TensorMap global{{f32("w", {base, base + 1}), i64("n", round)}};
            const Json meta = {{"round", round}, {"args", {{"mu", 0.1}}}};
            const auto r = worker.post_weights("/train", global, meta);
            INFO(r.body.substr(0, 300));
            REQUIRE(r.status == 200);
            {
                std::lock_guard<std::mutex> lock(worker.seen.mutex);
                CHECK(worker.seen.reference_names == std::vector<std::string>{"w", "n"});
                CHECK(floats(*worker.seen.reference.find("w")) ==
                      std::vector<float>{base, base + 1});
            }
            // The model trained from the received weights (it answers w + 1).
            auto decoded = st::decode(r.body);
            REQUIRE(decoded);
            CHECK(floats(*decoded->tensors.find("w")) == std::vector<float>{base + 1, base + 2});
            CHECK_FALSE(fs::exists(outputs / "c1" / "p1" / "e1" / "r1" / "scaffold"));
        }
    }
    std::error_code ec;
    fs::remove_all(outputs, ec);
}
