// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <synergos/sdk/aggregator.hpp>

#include "tensor_builders.hpp"
#include "weighted_mean.hpp"

namespace {

using synergos::plugins::fedavg::WeightedMeanSession;
using synergos::sdk::DType;
using synergos::sdk::ErrorCode;
using synergos::sdk::TensorMap;
using namespace synergos::test;

/// A model-shaped map: a [3, 37] weight (37: not a multiple of the 16-wide block), a bias,
/// and BatchNorm's num_batches_tracked as a 0-dim I64.
TensorMap client_map(std::uint32_t seed, std::int64_t batches) {
    TensorMap m;
    m.tensors.push_back(f32_tensor("nnl_0_linear.weight", {3, 37}, pseudo_random(3 * 37, seed)));
    m.tensors.push_back(f32_tensor("nnl_0_linear.bias", {3}, pseudo_random(3, seed + 100)));
    m.tensors.push_back(i64_tensor("nnl_1_batchnorm1d.num_batches_tracked", {}, {batches}));
    return m;
}

/// sum_k n_k w_k / sum_k n_k in double, independently of the plugin's float32 accumulator.
std::vector<double> expected_mean(const std::vector<TensorMap>& maps,
                                  const std::vector<std::int64_t>& samples, std::size_t tensor) {
    std::vector<double> sum(static_cast<std::size_t>(maps[0].tensors[tensor].numel()), 0.0);
    double total = 0.0;
    for (std::size_t k = 0; k < maps.size(); ++k) {
        const auto values = f32_values(maps[k].tensors[tensor]);
        for (std::size_t i = 0; i < values.size(); ++i) {
            sum[i] += static_cast<double>(samples[k]) * values[i];
        }
        total += static_cast<double>(samples[k]);
    }
    for (double& v : sum) {
        v /= total;
    }
    return sum;
}

/// client_map plus an F64 tensor (F64 tensors are summed in double, element by element).
TensorMap client_map_f64(std::uint32_t seed, std::int64_t batches) {
    TensorMap m = client_map(seed, batches);
    synergos::sdk::Tensor t;
    t.name = "nnl_1_batchnorm1d.running_var";
    t.dtype = DType::F64;
    t.shape = {3};
    const double values[3] = {0.5 * seed, 1.0, -2.0};
    t.data.resize(sizeof values);
    std::memcpy(t.data.data(), values, sizeof values);
    m.tensors.push_back(t);
    return m;
}

/// Sets element `i` of F32 tensor `t` to `v`.
void set_f32(synergos::sdk::Tensor& t, std::size_t i, float v) {
    std::memcpy(t.data.data() + i * sizeof v, &v, sizeof v);
}

}  // namespace

TEST_CASE("FedAvg's aggregate equals an independently computed weighted mean", "[unit][fedavg]") {
    const std::vector<TensorMap> maps{client_map(1, 10), client_map(2, 13), client_map(3, 20)};
    const std::vector<std::int64_t> samples{10, 30, 7};
    const std::vector<std::string> names{"alice", "bob", "carol"};

    WeightedMeanSession session("fedavg");
    REQUIRE(session.begin_round(maps[0], 0).is_ok());
    for (std::size_t k = 0; k < maps.size(); ++k) {
        REQUIRE(session.accumulate(names[k], samples[k], maps[k]).is_ok());
    }
    auto result = session.finish_round();
    REQUIRE(result.has_value());
    REQUIRE(result->tensors.size() == 3);

    for (std::size_t t = 0; t < 2; ++t) {
        const auto expected = expected_mean(maps, samples, t);
        const auto got = f32_values(result->tensors[t]);
        REQUIRE(got.size() == expected.size());
        for (std::size_t i = 0; i < got.size(); ++i) {
            REQUIRE(got[i] == Approx(expected[i]).margin(1e-6));
        }
    }
    // num_batches_tracked: weighted mean rounded to nearest: (10*10 + 30*13 + 7*20) / 47 = 13.4.
    const auto& nbt = result->tensors[2];
    CHECK(nbt.name == "nnl_1_batchnorm1d.num_batches_tracked");
    CHECK(nbt.dtype == DType::I64);
    CHECK(nbt.shape.empty());
    CHECK(i64_values(nbt) == std::vector<std::int64_t>{13});
}

TEST_CASE("FedAvg matches updates by name whatever their tensor order", "[unit][fedavg]") {
    TensorMap a = client_map(5, 1);
    TensorMap b = client_map(6, 3);
    TensorMap b_reordered;
    b_reordered.tensors = {b.tensors[2], b.tensors[0], b.tensors[1]};

    WeightedMeanSession first("fedavg");
    WeightedMeanSession second("fedavg");
    REQUIRE(first.begin_round(a, 0).is_ok());
    REQUIRE(second.begin_round(a, 0).is_ok());
    REQUIRE(first.accumulate("a", 4, a).is_ok());
    REQUIRE(first.accumulate("b", 9, b).is_ok());
    REQUIRE(second.accumulate("a", 4, a).is_ok());
    REQUIRE(second.accumulate("b", 9, b_reordered).is_ok());
    auto x = first.finish_round();
    auto y = second.finish_round();
    REQUIRE(x.has_value());
    REQUIRE(y.has_value());
    for (std::size_t t = 0; t < 3; ++t) {
        CHECK(x->tensors[t].name == y->tensors[t].name);
        CHECK(x->tensors[t].data == y->tensors[t].data);
    }
}

TEST_CASE("FedAvg refuses a malformed update, names the tensor and folds nothing of it",
          "[unit][fedavg]") {
    const TensorMap good = client_map(7, 2);
    WeightedMeanSession session("fedavg");
    REQUIRE(session.begin_round(good, 3).is_ok());
    REQUIRE(session.accumulate("good", 5, good).is_ok());

    TensorMap bad = client_map(8, 2);
    std::string expected_text;
    SECTION("wrong shape in the second tensor (the first one is fine)") {
        bad.tensors[1] = f32_tensor("nnl_0_linear.bias", {4}, {1, 2, 3, 4});
        expected_text = "nnl_0_linear.bias";
    }
    SECTION("wrong dtype") {
        bad.tensors[2] = f32_tensor("nnl_1_batchnorm1d.num_batches_tracked", {}, {1.0F});
        expected_text = "num_batches_tracked";
    }
    SECTION("missing tensor") {
        bad.tensors.pop_back();
        expected_text = "lacks tensor 'nnl_1_batchnorm1d.num_batches_tracked'";
    }
    SECTION("unknown tensor") {
        bad.tensors.push_back(f32_tensor("nnl_9_linear.weight", {1}, {1.0F}));
        expected_text = "nnl_9_linear.weight";
    }
    SECTION("data size does not match the shape") {
        bad.tensors[1].data.resize(8);
        expected_text = "nnl_0_linear.bias";
    }
    auto status = session.accumulate("bad", 50, bad);
    REQUIRE_FALSE(status.is_ok());
    CHECK(status.code() == ErrorCode::InvalidArgument);
    CHECK_THAT(status.message(), Catch::Contains(expected_text));
    CHECK_THAT(status.message(), Catch::Contains("participant 'bad'"));
    CHECK_THAT(status.message(), Catch::Contains("round 3"));

    // Nothing of the refused update was folded: the mean is the good update alone.
    auto result = session.finish_round();
    REQUIRE(result.has_value());
    for (std::size_t t = 0; t < 2; ++t) {
        const auto want = f32_values(good.tensors[t]);
        const auto got = f32_values(result->tensors[t]);
        for (std::size_t i = 0; i < want.size(); ++i) {
            REQUIRE(got[i] == Approx(want[i]).margin(1e-6));
        }
    }
    CHECK(i64_values(result->tensors[2]) == std::vector<std::int64_t>{2});
}

TEST_CASE("FedAvg refuses bad samples, duplicate participants and out-of-round calls",
          "[unit][fedavg]") {
    const TensorMap m = client_map(9, 1);
    WeightedMeanSession session("fedavg");

    auto early = session.accumulate("a", 1, m);
    CHECK(early.code() == ErrorCode::FailedPrecondition);
    CHECK_FALSE(session.finish_round().has_value());

    REQUIRE(session.begin_round(m, 0).is_ok());
    auto none = session.finish_round();
    REQUIRE_FALSE(none.has_value());
    CHECK(none.error().code == ErrorCode::FailedPrecondition);
    CHECK_THAT(none.error().message, Catch::Contains("no update arrived for round 0"));

    REQUIRE(session.begin_round(m, 1).is_ok());
    auto zero = session.accumulate("a", 0, m);
    CHECK(zero.code() == ErrorCode::InvalidArgument);
    CHECK_THAT(zero.message(), Catch::Contains("samples must be positive"));
    REQUIRE(session.accumulate("a", 3, m).is_ok());
    auto twice = session.accumulate("a", 3, m);
    CHECK(twice.code() == ErrorCode::AlreadyExists);
    CHECK_THAT(twice.message(), Catch::Contains("participant 'a'"));
}

TEST_CASE("FedAvg rounds are independent and the layout may come from the first update",
          "[unit][fedavg]") {
    const TensorMap a = client_map(11, 4);
    const TensorMap b = client_map(12, 8);
    WeightedMeanSession session("fedavg");

    REQUIRE(session.begin_round(TensorMap{}, 0).is_ok());  // no global yet: adopt a's layout
    REQUIRE(session.accumulate("a", 2, a).is_ok());
    REQUIRE(session.accumulate("b", 2, b).is_ok());
    auto round0 = session.finish_round();
    REQUIRE(round0.has_value());

    REQUIRE(session.begin_round(*round0, 1).is_ok());
    REQUIRE(session.accumulate("b", 1, b).is_ok());
    auto round1 = session.finish_round();
    REQUIRE(round1.has_value());
    // Round 1 saw only b: the round 0 sums were cleared.
    CHECK(round1->tensors[0].data == b.tensors[0].data);
    CHECK(i64_values(round1->tensors[2]) == std::vector<std::int64_t>{8});
    // Round 0 was the plain mean of a and b (equal weights); 4 and 8 batches give 6.
    CHECK(i64_values(round0->tensors[2]) == std::vector<std::int64_t>{6});
}

TEST_CASE("FedAvg keeps no strategy state", "[unit][fedavg]") {
    WeightedMeanSession session("fedavg");
    auto saved = session.save_state();
    REQUIRE(saved.has_value());
    CHECK(saved->tensors.empty());
    CHECK(session.load_state(TensorMap{}).is_ok());
    auto refused = session.load_state(client_map(1, 1));
    CHECK(refused.code() == ErrorCode::InvalidArgument);
}

TEST_CASE("FedAvg refuses a whole update holding a NaN or an inf and keeps the mean of the others",
          "[unit][fedavg][finite]") {
    const TensorMap a = client_map_f64(21, 3);
    const TensorMap c = client_map_f64(23, 5);
    TensorMap bad = client_map_f64(22, 4);
    std::string tensor;
    std::string element;
    SECTION("NaN in the second tensor (the first one is fine)") {
        set_f32(bad.tensors[1], 1, std::nanf(""));
        tensor = "'nnl_0_linear.bias'";
        element = "element 1";
    }
    SECTION("inf inside the weight's 16-wide blocks") {
        set_f32(bad.tensors[0], 40, std::numeric_limits<float>::infinity());
        tensor = "'nnl_0_linear.weight'";
        element = "element 40";
    }
    SECTION("negative inf in the weight's last element (past the last whole block)") {
        set_f32(bad.tensors[0], 110, -std::numeric_limits<float>::infinity());
        tensor = "'nnl_0_linear.weight'";
        element = "element 110";
    }
    SECTION("NaN in an F64 tensor") {
        const double nan = std::nan("");
        std::memcpy(bad.tensors[3].data.data() + 2 * sizeof nan, &nan, sizeof nan);
        tensor = "'nnl_1_batchnorm1d.running_var'";
        element = "element 2";
    }

    WeightedMeanSession session("fedavg");
    REQUIRE(session.begin_round(a, 3).is_ok());
    REQUIRE(session.accumulate("a", 10, a).is_ok());
    auto status = session.accumulate("bad", 50, bad);
    REQUIRE_FALSE(status.is_ok());
    CHECK(status.code() == ErrorCode::InvalidArgument);
    CHECK_THAT(status.message(), Catch::Contains("fedavg: participant 'bad', round 3"));
    CHECK_THAT(status.message(), Catch::Contains(tensor));
    CHECK_THAT(status.message(), Catch::Contains("non-finite value at " + element));
    REQUIRE(session.accumulate("c", 7, c).is_ok());
    auto got = session.finish_round();
    REQUIRE(got.has_value());

    // Nothing of the refused update was folded: the bits of a round of a and c alone.
    WeightedMeanSession others("fedavg");
    REQUIRE(others.begin_round(a, 3).is_ok());
    REQUIRE(others.accumulate("a", 10, a).is_ok());
    REQUIRE(others.accumulate("c", 7, c).is_ok());
    auto want = others.finish_round();
    REQUIRE(want.has_value());
    REQUIRE(got->tensors.size() == want->tensors.size());
    for (std::size_t t = 0; t < want->tensors.size(); ++t) {
        INFO("tensor " << want->tensors[t].name);
        CHECK(got->tensors[t].data == want->tensors[t].data);
    }
}

TEST_CASE("FedAvg refuses a first update holding a NaN without adopting its layout",
          "[unit][fedavg][finite]") {
    WeightedMeanSession session("fedavg");
    REQUIRE(session.begin_round(TensorMap{}, 0).is_ok());  // the layout comes from an update
    TensorMap bad = client_map(31, 1);
    set_f32(bad.tensors[0], 0, std::nanf(""));
    auto status = session.accumulate("bad", 5, bad);
    REQUIRE_FALSE(status.is_ok());
    CHECK(status.code() == ErrorCode::InvalidArgument);
    CHECK_THAT(status.message(), Catch::Contains("participant 'bad', round 0"));
    CHECK_THAT(status.message(), Catch::Contains("'nnl_0_linear.weight'"));
    CHECK_THAT(status.message(), Catch::Contains("non-finite value at element 0"));

    // The refused update fixed nothing: an update of another layout is the round's first.
    TensorMap other;
    other.tensors.push_back(f32_tensor("w", {2}, {1.0F, -1.0F}));
    REQUIRE(session.accumulate("good", 2, other).is_ok());
    auto got = session.finish_round();
    REQUIRE(got.has_value());
    REQUIRE(got->tensors.size() == 1);
    CHECK(f32_values(got->tensors[0]) == std::vector<float>{1.0F, -1.0F});
}

TEST_CASE("FedAvg accepts huge finite values even when their sum would overflow float",
          "[unit][fedavg][finite]") {
    // The finiteness guard sums the values first: a sum that overflows must not refuse them.
    const float huge = std::numeric_limits<float>::max() / 2;
    TensorMap m = client_map(41, 1);
    for (std::size_t i = 0; i < 111; ++i) {
        set_f32(m.tensors[0], i, i % 2 == 0 ? huge : -huge / 3);
    }
    WeightedMeanSession session("fedavg");
    REQUIRE(session.begin_round(m, 0).is_ok());
    REQUIRE(session.accumulate("big", 1, m).is_ok());
    auto id = session.begin_update("streamed", 1, {{"nnl_0_linear.weight", DType::F32, {3, 37}},
                                                   {"nnl_0_linear.bias", DType::F32, {3}},
                                                   {"nnl_1_batchnorm1d.num_batches_tracked",
                                                    DType::I64,
                                                    {}}});
    REQUIRE(id.has_value());
    const auto w = f32_values(m.tensors[0]);
    REQUIRE(session.fold(*id, 0, 0, w.data(), w.size()).is_ok());
    REQUIRE(session.fold_tensor(*id, m.tensors[1]).is_ok());
    REQUIRE(session.fold_tensor(*id, m.tensors[2]).is_ok());
    REQUIRE(session.end_update(*id).is_ok());
    auto got = session.finish_round();
    REQUIRE(got.has_value());
    CHECK(got->tensors[0].data == m.tensors[0].data);  // the mean of two equal updates
}

TEST_CASE("FedAvg refuses samples that would overflow the round's int64 total naming the "
          "participant",
          "[unit][fedavg]") {
    const TensorMap m = client_map(5, 1);
    const std::int64_t most = std::numeric_limits<std::int64_t>::max();
    WeightedMeanSession session("fedavg");
    REQUIRE(session.begin_round(m, 4).is_ok());
    REQUIRE(session.accumulate("a", most - 1, m).is_ok());
    auto whole = session.accumulate("b", 2, m);
    CHECK(whole.code() == ErrorCode::InvalidArgument);
    CHECK_THAT(whole.message(), Catch::Contains("participant 'b', round 4"));
    CHECK_THAT(whole.message(), Catch::Contains("overflow"));
    // Streamed: an open update's samples count too, before it ends.
    REQUIRE(session.begin_round(m, 5).is_ok());
    const std::vector<synergos::sdk::TensorSpec> layout{
        {"nnl_0_linear.weight", DType::F32, {3, 37}},
        {"nnl_0_linear.bias", DType::F32, {3}},
        {"nnl_1_batchnorm1d.num_batches_tracked", DType::I64, {}}};
    REQUIRE(session.begin_update("a", most / 2 + 1, layout).has_value());
    auto streamed = session.begin_update("b", most / 2 + 1, layout);
    REQUIRE_FALSE(streamed.has_value());
    CHECK_THAT(streamed.error().message, Catch::Contains("participant 'b', round 5"));
    CHECK_THAT(streamed.error().message, Catch::Contains("overflow"));
    CHECK(session.accumulate("c", most / 2 + 1, m).code() == ErrorCode::InvalidArgument);
    CHECK(session.accumulate("d", 1, m).is_ok());
}

TEST_CASE("FedAvg fails the round naming it when the weighted mean is not finite",
          "[unit][fedavg][finite]") {
    // Finite weights, but 1e9 samples * 1e30 overflows the float32 sums: workers must not get inf.
    TensorMap m = client_map(6, 1);
    for (std::size_t i = 0; i < 111; ++i) {
        set_f32(m.tensors[0], i, 1e30F);
    }
    WeightedMeanSession session("fedavg");
    REQUIRE(session.begin_round(m, 7).is_ok());
    REQUIRE(session.accumulate("a", 1000000000, m).is_ok());
    auto got = session.finish_round();
    REQUIRE_FALSE(got.has_value());
    CHECK(got.error().code == ErrorCode::FailedPrecondition);
    CHECK_THAT(got.error().message, Catch::Contains("round 7"));
    CHECK_THAT(got.error().message, Catch::Contains("'nnl_0_linear.weight' is not finite"));
    // The next round works again.
    REQUIRE(session.begin_round(client_map(6, 1), 8).is_ok());
    REQUIRE(session.accumulate("a", 3, client_map(6, 1)).is_ok());
    CHECK(session.finish_round().has_value());
}
