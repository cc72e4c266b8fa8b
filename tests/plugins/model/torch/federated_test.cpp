// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "fedavg.hpp"
#include "torch_test_support.hpp"

namespace {

using synergos::plugins::fedavg::FedAvg;
using synergos::sdk::Dataset;
using synergos::sdk::TensorMap;
using namespace synergos::test;

// Dropout and BatchNorm included on purpose: their randomness and running statistics must
// line up between the federated and the centralized run too.
constexpr const char* kNet = R"([
  {"l_type": "Linear", "structure": {"in_features": 6, "out_features": 8}, "activation": "relu"},
  {"l_type": "Dropout", "structure": {"p": 0.2}, "activation": ""},
  {"l_type": "BatchNorm1d", "structure": {"num_features": 8}, "activation": ""},
  {"l_type": "Linear", "structure": {"in_features": 8, "out_features": 1},
      "activation": "sigmoid"}])";

Dataset binary_rows(std::uint32_t seed, std::size_t rows) {
    auto x = pseudo_features(rows * 6, seed);
    std::vector<int> y(rows);
    for (std::size_t r = 0; r < rows; ++r) {
        y[r] = x[r * 6 + 1] - x[r * 6 + 4] > 0.1F ? 1 : 0;
    }
    return classify_data({6}, std::move(x), y, 2);
}

struct FederatedRun {
    TensorMap global;
    std::vector<double> losses;
};

/// K rounds of E local epochs with one client and FedAvg aggregation.
FederatedRun federated(TorchFixture& f, FedAvg& fedavg, const Dataset& data,
                       const std::string& args, int rounds, int epochs) {
    auto model = f.build(kNet, args);
    FederatedRun run{*model->state(), {}};
    auto session = fedavg.open(args);
    REQUIRE(session.has_value());
    for (int r = 0; r < rounds; ++r) {
        const std::string round_args = merge_args(
            merge_args(args, fedavg.worker_arguments(args)),
            R"({"round": )" + std::to_string(r) + R"(, "epochs": )" + std::to_string(epochs) + "}");
        REQUIRE(model->load_state(run.global).is_ok());
        auto report = model->train(data, round_args, &run.global);
        REQUIRE(report.has_value());
        run.losses.insert(run.losses.end(), report->epoch_losses.begin(),
                          report->epoch_losses.end());
        REQUIRE((*session)->begin_round(run.global, r).is_ok());
        REQUIRE((*session)->accumulate("only", report->samples, report->weights).is_ok());
        auto next = (*session)->finish_round();
        REQUIRE(next.has_value());
        run.global = std::move(*next);
    }
    return run;
}

}  // namespace

TEST_CASE("One worker with FedAvg equals centralized training to 1e-6",
          "[integration][torch][fedavg]") {
    // Exactly true when nothing carries over between rounds inside the worker: plain SGD
    // without momentum (the optimizer is fresh every round), a constant learning rate (the
    // scheduler is fresh every round), no early stopping. Batch order and dropout masks are
    // seeded from (seed, round * epochs + epoch), i.e. from the global epoch.
    const std::string args =
        R"({"criterion": "BCELoss", "optimizer": "SGD", "lr": 0.1, "lr_scheduler": "",
            "lr_decay": 0, "batch_size": 8, "patience": null, "seed": 21})";
    const Dataset data = binary_rows(9, 44);
    TorchFixture f;
    FedAvg fedavg(f.host, {});
    const int rounds = 3;
    const int epochs = 2;
    const FederatedRun fed = federated(f, fedavg, data, args, rounds, epochs);

    auto central = f.build(kNet, args);
    auto report = central->train(data, merge_args(args, R"({"epochs": 6, "round": 0})"), nullptr);
    REQUIRE(report.has_value());

    const double diff = max_abs_diff(fed.global, report->weights);
    INFO("max |federated - centralized| = " << diff);
    CHECK(diff < 1e-6);
    CHECK(max_abs_diff(fed.global, *f.build(kNet, args)->state()) > 1e-2);  // it did train
    REQUIRE(fed.losses.size() == report->epoch_losses.size());
    for (std::size_t e = 0; e < fed.losses.size(); ++e) {
        CHECK(fed.losses[e] == Approx(report->epoch_losses[e]).epsilon(1e-6));
    }

    // Control: with momentum the per-round reset breaks the equivalence, so the check above
    // can fail.
    const std::string momentum = merge_args(args, R"({"momentum": 0.9})");
    const FederatedRun fed_m = federated(f, fedavg, data, momentum, rounds, epochs);
    auto central_m = f.build(kNet, momentum);
    auto report_m = central_m->train(data, merge_args(momentum, R"({"epochs": 6})"), nullptr);
    REQUIRE(report_m.has_value());
    CHECK(max_abs_diff(fed_m.global, report_m->weights) > 1e-4);
}

TEST_CASE("FedAvg aggregates BatchNorm running statistics of trained models",
          "[integration][torch][fedavg]") {
    const std::string args =
        R"({"criterion": "BCELoss", "lr": 0.1, "lr_scheduler": "", "batch_size": 8, "epochs": 1,
            "seed": 4})";
    TorchFixture f;
    FedAvg fedavg(f.host, {});
    auto a = f.build(kNet, args);
    auto b = f.build(kNet, args);
    const TensorMap global = *a->state();
    auto ra = a->train(binary_rows(1, 24), args, &global);  // 3 batches
    auto rb = b->train(binary_rows(2, 56), args, &global);  // 7 batches
    REQUIRE(ra.has_value());
    REQUIRE(rb.has_value());
    auto session = fedavg.open(args);
    REQUIRE(session.has_value());
    REQUIRE((*session)->begin_round(global, 0).is_ok());
    REQUIRE((*session)->accumulate("a", ra->samples, ra->weights).is_ok());
    REQUIRE((*session)->accumulate("b", rb->samples, rb->weights).is_ok());
    auto next = (*session)->finish_round();
    REQUIRE(next.has_value());

    const char* stats[] = {"nnl_2_batchnorm1d.running_mean", "nnl_2_batchnorm1d.running_var"};
    for (const char* name : stats) {
        INFO(name);
        const auto x = floats(*ra->weights.find(name));
        const auto y = floats(*rb->weights.find(name));
        const auto m = floats(*next->find(name));
        for (std::size_t i = 0; i < m.size(); ++i) {
            CHECK(m[i] == Approx((24.0 * x[i] + 56.0 * y[i]) / 80.0).margin(1e-6));
        }
    }
    // (24 * 3 + 56 * 7) / 80 = 5.8 -> 6
    CHECK(int64s(*next->find("nnl_2_batchnorm1d.num_batches_tracked")) ==
          std::vector<std::int64_t>{6});
    auto loaded = f.build(kNet, args);
    CHECK(loaded->load_state(*next).is_ok());
}
