// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "fedavg.hpp"
#include "fedprox.hpp"
#include "plugins/model/torch/torch_test_support.hpp"

namespace {

using synergos::plugins::fedavg::FedAvg;
using synergos::plugins::fedprox::FedProx;
using synergos::sdk::Dataset;
using synergos::sdk::TensorMap;
using namespace synergos::test;

constexpr const char* kArchitecture = R"([
  {"l_type": "Linear", "structure": {"in_features": 6, "out_features": 4}, "activation": "relu",
      "is_input": true},
  {"l_type": "Linear", "structure": {"in_features": 4, "out_features": 1}, "activation": "sigmoid",
      "is_input": false}
])";
constexpr const char* kRun =
    R"({"criterion": "BCELoss", "epochs": 3, "batch_size": 8, "base_lr": 0.05, "max_lr": 0.2,
        "seed": 5, "round": 0})";

Dataset client_data(std::uint32_t seed, int rows) {
    auto x = pseudo_features(static_cast<std::size_t>(rows) * 6, seed);
    std::vector<int> y(static_cast<std::size_t>(rows));
    for (int r = 0; r < rows; ++r) {
        y[static_cast<std::size_t>(r)] =
            x[static_cast<std::size_t>(r) * 6] + x[static_cast<std::size_t>(r) * 6 + 3] > 0 ? 1 : 0;
    }
    return classify_data({6}, std::move(x), y, 2);
}

/// One round: every client trains from `global` with `args` (reference passed or not) and the
/// aggregator folds the results.
TensorMap run_round(TorchFixture& f, synergos::sdk::Aggregator& aggregator, const std::string& run,
                    const std::vector<Dataset>& clients, const TensorMap& global,
                    bool pass_reference, std::vector<TensorMap>& locals) {
    const std::string args = merge_args(kRun, aggregator.worker_arguments(run));
    auto session = aggregator.open(run);
    REQUIRE(session.has_value());
    REQUIRE((*session)->begin_round(global, 0).is_ok());
    locals.clear();
    for (std::size_t k = 0; k < clients.size(); ++k) {
        auto model = f.build(kArchitecture, kRun);
        REQUIRE(model->load_state(global).is_ok());
        auto report = model->train(clients[k], args, pass_reference ? &global : nullptr);
        REQUIRE(report.has_value());
        REQUIRE((*session)
                    ->accumulate("p" + std::to_string(k), report->samples, report->weights)
                    .is_ok());
        locals.push_back(report->weights);
    }
    auto next = (*session)->finish_round();
    REQUIRE(next.has_value());
    return std::move(*next);
}

}  // namespace

TEST_CASE("A FedProx round with mu 0 gives exactly the FedAvg round's weights",
          "[integration][fedprox][torch]") {
    TorchFixture f;
    FedProx fedprox(f.host, {});
    FedAvg fedavg(f.host, {});
    const std::vector<Dataset> clients{client_data(1, 30), client_data(2, 50)};
    const TensorMap global = *f.build(kArchitecture, kRun)->state();

    std::vector<TensorMap> avg_locals;
    std::vector<TensorMap> prox_locals;
    const TensorMap avg =
        run_round(f, fedavg, R"({"mu": 0.1})", clients, global, false, avg_locals);
    const TensorMap prox0 =
        run_round(f, fedprox, R"({"mu": 0})", clients, global, true, prox_locals);

    for (std::size_t k = 0; k < clients.size(); ++k) {
        REQUIRE(prox_locals[k].tensors.size() == avg_locals[k].tensors.size());
        for (std::size_t t = 0; t < avg_locals[k].tensors.size(); ++t) {
            CHECK(prox_locals[k].tensors[t].data == avg_locals[k].tensors[t].data);
        }
    }
    for (std::size_t t = 0; t < avg.tensors.size(); ++t) {
        CHECK(prox0.tensors[t].data == avg.tensors[t].data);
    }
    // The training moved the weights, so equality above is not two untouched copies.
    CHECK(max_abs_diff(avg, global) > 1e-3);

    // Control: a real proximal term changes the local weights.
    const TensorMap prox =
        run_round(f, fedprox, R"({"mu": 0.5})", clients, global, true, prox_locals);
    CHECK(max_abs_diff(prox, avg) > 1e-5);
}
