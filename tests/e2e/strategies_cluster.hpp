// SPDX-License-Identifier: Apache-2.0
#pragma once

// The in-process deployment of cluster.hpp for the strategy suites: a director whose embedded
// TTP knows the strategy plugins under test, workers whose model backend may be a faulty
// participant (GarbageBackend: real local training, then every floating weight replaced by
// uniform(-1, 1) noise times a scale), and heart_disease split across any number of workers.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <synergos/core/tensor/safetensors.hpp>

#include "cluster.hpp"
#include "fedmedian.hpp"
#include "fedtrimmedavg.hpp"
#include "krum.hpp"
#include "scaffold.hpp"

namespace synergos::e2e {

/// A model that trains for real and then replies with scaled noise instead of its weights.
class GarbageModel final : public sdk::Model {
public:
    GarbageModel(std::unique_ptr<sdk::Model> inner, double scale, std::uint64_t seed)
        : inner_(std::move(inner)), scale_(scale), rng_(seed) {}

    sdk::Result<sdk::TensorMap> state() noexcept override {
        return inner_->state();
    }
    sdk::Status load_state(const sdk::TensorMap& state) noexcept override {
        return inner_->load_state(state);
    }
    sdk::Result<sdk::TrainReport> train(const sdk::Dataset& data, std::string_view args_json,
                                        const sdk::TensorMap* reference) noexcept override {
        auto report = inner_->train(data, args_json, reference);
        if (!report) {
            return report;
        }
        std::uniform_real_distribution<float> noise(-1.0F, 1.0F);
        for (sdk::Tensor& t : report->weights.tensors) {
            if (t.dtype != sdk::DType::F32) {
                continue;
            }
            for (std::size_t i = 0; i < static_cast<std::size_t>(t.numel()); ++i) {
                const float v = noise(rng_) * static_cast<float>(scale_);
                std::memcpy(t.data.data() + i * sizeof v, &v, sizeof v);
            }
        }
        return report;
    }
    sdk::Result<sdk::Inference> infer(const sdk::Dataset& data,
                                      std::string_view args_json) noexcept override {
        return inner_->infer(data, args_json);
    }
    std::int64_t parameter_count() const noexcept override {
        return inner_->parameter_count();
    }

private:
    std::unique_ptr<sdk::Model> inner_;
    double scale_;
    std::mt19937_64 rng_;
};

class GarbageBackend final : public sdk::ModelBackend {
public:
    GarbageBackend(sdk::ModelBackend& inner, double scale) : inner_(inner), scale_(scale) {}

    sdk::Status validate(std::string_view architecture_json, std::string_view args_json,
                         const std::vector<std::int64_t>& input_shape) noexcept override {
        return inner_.validate(architecture_json, args_json, input_shape);
    }
    sdk::Result<std::unique_ptr<sdk::Model>> build(std::string_view architecture_json,
                                                   std::string_view args_json) noexcept override {
        auto model = inner_.build(architecture_json, args_json);
        if (!model) {
            return model;
        }
        return std::unique_ptr<sdk::Model>(
            new GarbageModel(std::move(*model), scale_, 0x5eed + builds_++));
    }

private:
    sdk::ModelBackend& inner_;
    double scale_;
    std::uint64_t builds_ = 0;
};

/// cluster.hpp's Worker with a choice of model backend: garbage_scale > 0 makes it faulty.
struct StrategyWorker {
    StrategyWorker(const std::string& id, const fs::path& root, const fs::path& data_dir,
                   double garbage_scale = 0.0)
        : host((root / id).string(), "worker"),
          tabular(host, opts()),
          torch(host, opts()),
          garbage(torch, garbage_scale) {
        core::worker::WorkerServiceConfig c;
        c.participant_id = id;
        c.data_dir = data_dir.string();
        c.outputs_dir = (root / id / "outputs").string();
        c.pipelines["tabular"] = &tabular;
        c.model = garbage_scale > 0.0 ? static_cast<sdk::ModelBackend*>(&garbage)
                                      : static_cast<sdk::ModelBackend*>(&torch);
        c.logger = &host.logger();
        service = std::make_unique<core::worker::WorkerService>(c);
        server = serve_worker(*service, router, host.logger());
    }
    ~StrategyWorker() {
        server->stop(5s);
    }
    int port() const {
        return server->bound_port();
    }

    sdk::testing::FakeHost host;
    plugins::tabular::TabularPipeline tabular;
    plugins::torch::TorchBackend torch;
    GarbageBackend garbage;
    std::unique_ptr<core::worker::WorkerService> service;
    core::http::Router router;
    std::unique_ptr<core::http::HttpServer> server;
};

/// cluster.hpp's Director with the strategies of this suite.
struct StrategyDirector {
    explicit StrategyDirector(const fs::path& root)
        : host(root.string(), "strategies"),
          scaffold(host, opts()),
          fedmedian(host, opts()),
          fedtrimmedavg(host, opts()),
          krum(host, opts()),
          director(root, {{"scaffold", &scaffold},
                          {"fedmedian", &fedmedian},
                          {"fedtrimmedavg", &fedtrimmedavg},
                          {"krum", &krum}}) {}
    int port() const {
        return director.port();
    }

    sdk::testing::FakeHost host;
    plugins::scaffold::Scaffold scaffold;
    plugins::fedmedian::FedMedian fedmedian;
    plugins::fedtrimmedavg::FedTrimmedAvg fedtrimmedavg;
    plugins::krum::Krum krum;
    Director director;  ///< last: stopped before the strategies it uses are destroyed
};

/// The rows of one of heart_disease's CSV files (header apart).
inline std::vector<std::string> csv_rows(const fs::path& file, std::string& header) {
    std::ifstream in(file);
    REQUIRE(in);
    std::vector<std::string> rows;
    std::string line;
    std::getline(in, header);
    while (std::getline(in, line)) {
        if (!line.empty()) {
            rows.push_back(line);
        }
    }
    return rows;
}

/// heart_disease dealt to `workers` data folders `<root>/w<i>/heart_disease/{train,evaluate}`,
/// as the two-worker e2e test uses it: training rows from iid_1 + iid_2 (1542), evaluation rows
/// from non_iid_1 + non_iid_2 (1542), each pool shuffled with `seed` and dealt round-robin.
/// Returns each worker's data directory.
inline std::vector<fs::path> split_heart_disease(const fs::path& root, int workers,
                                                 std::uint64_t seed) {
    const fs::path src = fs::path(SYNERGOS_TEST_SOURCE_DIR) / "examples" / "data" / "heart_disease";
    const std::vector<std::pair<std::string, std::vector<std::string>>> pools{
        {"train",
         {"data1/iid_1/unified_dataset_iid_1_1000.csv",
          "data2/iid_2/unified_dataset_iid_2_1000.csv"}},
        {"evaluate",
         {"data1/non_iid_1/unified_dataset_noniid_1_1000.csv",
          "data2/non_iid_2/unified_dataset_noniid_2_1000.csv"}}};
    std::mt19937_64 rng(seed);
    for (const auto& [meta, files] : pools) {
        std::string header;
        std::vector<std::string> rows;
        for (const std::string& file : files) {
            for (std::string& row : csv_rows(src / file, header)) {
                rows.push_back(std::move(row));
            }
        }
        // Fisher-Yates with an explicit generator: the same deal on every standard library.
        for (std::size_t i = rows.size() - 1; i > 0; --i) {
            std::swap(rows[i], rows[static_cast<std::size_t>(rng() % (i + 1))]);
        }
        for (int w = 0; w < workers; ++w) {
            const fs::path folder = root / ("w" + std::to_string(w)) / "heart_disease" / meta;
            fs::create_directories(folder);
            fs::copy_file(src / "data1" / "iid_1" / "schema.json", folder / "schema.json");
            fs::copy_file(src / "data1" / "iid_1" / "metadata.json", folder / "metadata.json");
            std::ofstream out(folder / "data.csv");
            out << header << '\n';
            for (std::size_t r = static_cast<std::size_t>(w); r < rows.size();
                 r += static_cast<std::size_t>(workers)) {
                out << rows[r] << '\n';
            }
        }
    }
    std::vector<fs::path> dirs;
    for (int w = 0; w < workers; ++w) {
        dirs.push_back(root / ("w" + std::to_string(w)));
    }
    return dirs;
}

/// The tags of a worker prepared by split_heart_disease.
inline json split_tags() {
    // Explicit arrays: a two-string initializer list would become an object.
    const json train = json::array({json::array({"heart_disease", "train"})});
    const json evaluate = json::array({json::array({"heart_disease", "evaluate"})});
    return {{"train", train}, {"evaluate", evaluate}, {"predict", evaluate}};
}

inline json read_json_file(const fs::path& p) {
    std::ifstream in(p);
    REQUIRE(in);
    return json::parse(in);
}

inline sdk::TensorMap read_safetensors(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    REQUIRE(in);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto decoded = core::tensor::decode(text);
    REQUIRE(decoded.has_value());
    return std::move(decoded->tensors);
}

/// The largest |value| over the F32 tensors of `m`.
inline double max_abs(const sdk::TensorMap& m) {
    double worst = 0;
    for (const sdk::Tensor& t : m.tensors) {
        if (t.dtype != sdk::DType::F32) {
            continue;
        }
        for (std::size_t i = 0; i < static_cast<std::size_t>(t.numel()); ++i) {
            float v = 0;
            std::memcpy(&v, t.data.data() + i * sizeof v, sizeof v);
            worst = std::max(worst, static_cast<double>(std::fabs(v)));
        }
    }
    return worst;
}

/// Client::setup for one more project: the participants are registered once
/// (`register_participants`), then enrolled in each collaboration.
inline void setup_project(Client& client, const std::string& c, const std::string& p,
                          const json& model, const json& run,
                          const std::vector<std::pair<std::string, int>>& participants,
                          const std::vector<json>& tags, bool register_participants) {
    client.call("POST", "/ttp/connect/collaborations", {{"collab_id", c}}, 201);
    client.call(
        "POST", "/ttp/connect/collaborations/" + c + "/projects",
        {{"project_id", p}, {"action", "classify"}, {"incentives", {{"tier_1", json::array()}}}},
        201);
    client.call("POST", "/ttp/connect/collaborations/" + c + "/projects/" + p + "/experiments",
                {{"expt_id", "e1"}, {"model", model}}, 201);
    json r = run;
    r["run_id"] = "r1";
    client.call("POST",
                "/ttp/connect/collaborations/" + c + "/projects/" + p + "/experiments/e1/runs", r,
                201);
    for (std::size_t i = 0; i < participants.size(); ++i) {
        const auto& [pid, wport] = participants[i];
        if (register_participants) {
            client.call("POST", "/ttp/connect/participants", {{"id", pid}}, 201);
        }
        const std::string reg = "/ttp/connect/collaborations/" + c + "/projects/" + p +
                                "/participants/" + pid + "/registration";
        client.call("POST", reg,
                    {{"role", i == 0 ? "host" : "guest"},
                     {"n_count", 1},
                     {"node_0",
                      {{"host", "127.0.0.1"},
                       {"port", 8020},
                       {"f_port", wport},
                       {"log_msgs", false},
                       {"verbose", false}}}},
                    201);
        client.call("POST", reg + "/tags", tags[i], 201);
    }
}

/// Aligns, trains run r1 and validates it; returns the accuracy pooled over every worker's
/// evaluate split.
inline double train_and_validate(Client& client, const std::string& c, const std::string& p) {
    const std::string base = "/ttp/train/collaborations/" + c + "/projects/" + p;
    client.wait_jobs(
        client.call("POST", base + "/alignments", {{"auto_align", true}, {"auto_fix", true}}, 201));
    client.wait_jobs(client.call("POST", base + "/models/e1/r1", json::object(), 200));
    const std::string eval = "/ttp/evaluate/collaborations/" + c + "/projects/" + p;
    client.wait_jobs(client.call("POST", eval + "/validations/e1/r1", json::object(), 200));
    const json validations = client.call("GET", eval + "/validations/e1/r1")["data"];
    double correct = 0;
    double rows = 0;
    for (const auto& v : validations) {
        const json& stats = v["evaluate"]["statistics"];
        for (std::size_t k = 0; k < stats.at("TPs").size(); ++k) {
            correct += stats["TPs"][k].get<double>();
            rows += stats["TPs"][k].get<double>() + stats["FNs"][k].get<double>();
        }
    }
    REQUIRE(rows > 0);
    return correct / rows;
}

}  // namespace synergos::e2e
