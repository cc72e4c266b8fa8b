// SPDX-License-Identifier: Apache-2.0
// End to end through real plugin libraries: the tabular data pipeline and the libtorch model
// backend are loaded from the build's plugin folder with Boost.DLL, and the worker service runs
// poll -> initialise -> train -> evaluate on the heart_disease example data.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>

#include <boost/dll/shared_library.hpp>
#include <nlohmann/json.hpp>

#include <synergos/core/tensor/safetensors.hpp>
#include <synergos/core/worker/service.hpp>
#include <synergos/sdk/export.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

namespace fs = std::filesystem;
namespace st = synergos::core::tensor;
using Json = nlohmann::json;
using synergos::core::worker::WorkerHttpRequest;
using synergos::core::worker::WorkerHttpResponse;
using synergos::core::worker::WorkerService;
using synergos::core::worker::WorkerServiceConfig;

namespace {

/// The plugin's own defaults, as the loader would fill them in.
synergos::sdk::Options default_options(const synergos::sdk::PluginDescriptor& d) {
    std::map<std::string, std::string> values;
    for (std::size_t i = 0; i < d.option_count; ++i) {
        if (d.options[i].default_value != nullptr) {
            values[d.options[i].key] = d.options[i].default_value;
        }
    }
    return synergos::sdk::Options(values);
}

template <typename Interface>
std::unique_ptr<Interface> create(boost::dll::shared_library& lib, const char* alias,
                                  synergos::sdk::HostContext& host) {
    const auto& descriptor =
        lib.get_alias<const synergos::sdk::PluginDescriptor>("synergos_plugin_descriptor");
    auto& factory = lib.get_alias<synergos::sdk::Factory<Interface>>(alias);
    auto made = factory(host, default_options(descriptor));
    if (!made) {
        FAIL("plugin factory failed: " << made.error().message);
    }
    return std::move(*made);
}

float sum_abs_diff(const synergos::sdk::TensorMap& a, const synergos::sdk::TensorMap& b) {
    float total = 0;
    for (const auto& t : a.tensors) {
        const auto* u = b.find(t.name);
        REQUIRE(u != nullptr);
        REQUIRE(u->data.size() == t.data.size());
        for (std::size_t i = 0; i + 4 <= t.data.size(); i += 4) {
            float x = 0;
            float y = 0;
            std::memcpy(&x, t.data.data() + i, 4);
            std::memcpy(&y, u->data.data() + i, 4);
            total += std::fabs(x - y);
        }
    }
    return total;
}

}  // namespace

TEST_CASE("worker trains heart_disease with the real tabular and torch plugin libraries",
          "[integration][worker][torch]") {
    const fs::path dir(SYNERGOS_TEST_PLUGIN_DIR);
    boost::dll::shared_library tabular_lib((dir / "libsynergos-data-tabular.so").string());
    boost::dll::shared_library torch_lib((dir / "libsynergos-model-torch.so").string());
    const fs::path outputs = fs::temp_directory_path() /
                             ("synergos-worker-torch-" + std::to_string(std::random_device{}()));
    {
        synergos::sdk::testing::FakeHost host(outputs.string(), "worker");
        auto tabular =
            create<synergos::sdk::DataPipeline>(tabular_lib, "synergos_plugin_create_data", host);
        auto backend =
            create<synergos::sdk::ModelBackend>(torch_lib, "synergos_plugin_create_model", host);
        WorkerServiceConfig config;
        config.participant_id = "worker-1";
        config.data_dir = std::string(SYNERGOS_TEST_SOURCE_DIR) + "/examples/data";
        config.outputs_dir = outputs.string();
        config.pipelines = {{"tabular", tabular.get()}};
        config.model = backend.get();
        WorkerService service(config);
        auto post = [&](const std::string& path, const std::string& body, const std::string& type) {
            return service.handle(WorkerHttpRequest{"POST", path, type, body});
        };

        const Json tags = {{"train", {{"heart_disease", "data1", "iid_1"}}},
                           {"evaluate", {{"heart_disease", "data1", "non_iid_1"}}}};
        auto poll = post("/v1/projects/c/p/poll",
                         Json{{"action", "classify"}, {"tags", tags}}.dump(), "application/json");
        REQUIRE(poll.status == 200);
        const Json headers = Json::parse(poll.body)["headers"]["train"];
        const Json arch = Json::array(
            {{{"l_type", "Linear"},
              {"activation", "softmax"},
              {"is_input", true},
              {"structure", {{"in_features", 28}, {"out_features", 5}, {"bias", true}}}}});
        // The example's hyperparameters.json (SGD + CyclicLR between base_lr and max_lr).
        const Json run = {{"seed", 42},        {"epochs", 2},     {"batch_size", 64},
                          {"base_lr", 0.0005}, {"max_lr", 0.005}, {"criterion", "NLLLoss"}};
        auto init = post("/v1/runs/c/p/e/r/initialise",
                         Json{{"action", "classify"},
                              {"tags", tags},
                              {"alignment", headers},
                              {"architecture", arch},
                              {"run", run},
                              {"return_weights", true}}
                             .dump(),
                         "application/json");
        INFO(init.body.substr(0, 300));
        REQUIRE(init.status == 200);
        auto global = st::decode(init.body);
        REQUIRE(global);
        REQUIRE_FALSE(global->tensors.tensors.empty());

        auto body = st::encode_to_string(global->tensors,
                                         {{"json", Json{{"round", 0}, {"args", run}}.dump()}});
        REQUIRE(body);
        auto trained =
            post("/v1/runs/c/p/e/r/train", *body, std::string(st::kSafetensorsContentType));
        INFO(trained.body.substr(0, 300));
        REQUIRE(trained.status == 200);
        auto local = st::decode(trained.body);
        REQUIRE(local);
        const Json report = Json::parse(local->metadata.at("json"));
        CHECK(report["samples"] == 771);
        REQUIRE(report["epoch_losses"].size() >= 1);
        CHECK(report["epoch_losses"][0].is_number());
        CHECK(sum_abs_diff(global->tensors, local->tensors) > 0.0f);  // training moved the weights

        auto eval_body = st::encode_to_string(
            local->tensors, {{"json", Json{{"meta", "evaluate"}, {"write_outputs", true}}.dump()}});
        REQUIRE(eval_body);
        auto evaluated =
            post("/v1/runs/c/p/e/r/evaluate", *eval_body, std::string(st::kSafetensorsContentType));
        INFO(evaluated.body.substr(0, 300));
        REQUIRE(evaluated.status == 200);
        const Json result = Json::parse(evaluated.body);
        CHECK(result["rows"] == 826);
        CHECK(result["loss"].is_number());
        CHECK(result["statistics"]["accuracy"].size() == 5);
        CHECK(fs::exists(outputs / "c/p/e/r/evaluate/inference_scores_evaluate.txt"));
        CHECK(post("/v1/runs/c/p/e/r/terminate", "", "").status == 200);
    }  // service, model and pipeline objects go before their libraries unload
    std::error_code ec;
    fs::remove_all(outputs, ec);
}
