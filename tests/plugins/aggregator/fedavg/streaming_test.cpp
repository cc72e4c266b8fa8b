// SPDX-License-Identifier: Apache-2.0
// The streamed fold (SDK 1.1 StreamingAggregationSession) of FedAvg/FedProx: bit-identical to
// the whole-update fold, refuses bad pieces naming the participant, and a partly folded update
// that fails spoils the round until it begins again.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "plugins/aggregator/fedavg/dl_plugin.hpp"
#include "tensor_builders.hpp"
#include "weighted_mean.hpp"

namespace {

using synergos::plugins::fedavg::WeightedMeanSession;
using synergos::sdk::DType;
using synergos::sdk::ErrorCode;
using synergos::sdk::StreamingAggregationSession;
using synergos::sdk::TensorMap;
using synergos::sdk::TensorSpec;
using namespace synergos::test;

/// A [5, 41] weight (not a multiple of the 16-wide block), a bias, an I64 counter, an F64 scale.
TensorMap client_map(std::uint32_t seed, std::int64_t batches) {
    TensorMap m;
    m.tensors.push_back(f32_tensor("l0.weight", {5, 41}, pseudo_random(5 * 41, seed)));
    m.tensors.push_back(f32_tensor("l0.bias", {5}, pseudo_random(5, seed + 100)));
    m.tensors.push_back(i64_tensor("bn.num_batches_tracked", {}, {batches}));
    synergos::sdk::Tensor f64;
    f64.name = "scale";
    f64.dtype = DType::F64;
    f64.shape = {2};
    const double values[2] = {0.25 * seed, -1.5};
    f64.data.resize(sizeof values);
    std::memcpy(f64.data.data(), values, sizeof values);
    m.tensors.push_back(f64);
    return m;
}

std::vector<TensorSpec> specs_of(const TensorMap& m) {
    std::vector<TensorSpec> specs;
    for (const auto& t : m.tensors) {
        specs.push_back({t.name, t.dtype, t.shape});
    }
    return specs;
}

/// Whole updates, in order, through `accumulate`.
TensorMap whole_fold(const std::vector<TensorMap>& maps, const std::vector<std::int64_t>& samples) {
    WeightedMeanSession session("fedavg");
    REQUIRE(session.begin_round(maps[0], 0).is_ok());
    for (std::size_t k = 0; k < maps.size(); ++k) {
        REQUIRE(session.accumulate("p" + std::to_string(k), samples[k], maps[k]).is_ok());
    }
    auto result = session.finish_round();
    REQUIRE(result.has_value());
    return std::move(*result);
}

/// The F32 tensors of every update streamed in pieces of `piece` elements, round-robin across
/// the updates (so each element still meets the updates in order 0, 1, 2, ...); the other
/// dtypes whole through `fold_tensor`.
void stream_round(StreamingAggregationSession& session, const std::vector<TensorMap>& maps,
                  const std::vector<std::int64_t>& samples, std::size_t piece,
                  std::size_t first_name = 0) {
    std::vector<StreamingAggregationSession::UpdateId> ids;
    for (std::size_t k = 0; k < maps.size(); ++k) {
        auto id = session.begin_update("p" + std::to_string(first_name + k), samples[k],
                                       specs_of(maps[k]));
        REQUIRE(id.has_value());
        ids.push_back(*id);
    }
    for (std::size_t t = 0; t < maps[0].tensors.size(); ++t) {
        if (maps[0].tensors[t].dtype != DType::F32) {
            for (std::size_t k = 0; k < maps.size(); ++k) {
                REQUIRE(session.fold_tensor(ids[k], maps[k].tensors[t]).is_ok());
            }
            continue;
        }
        const auto numel = static_cast<std::size_t>(maps[0].tensors[t].numel());
        for (std::size_t at = 0; at < numel; at += piece) {
            const std::size_t count = std::min(piece, numel - at);
            for (std::size_t k = 0; k < maps.size(); ++k) {
                REQUIRE(session.fold(ids[k], t, at, maps[k].tensors[t].f32() + at, count).is_ok());
            }
        }
    }
    for (auto id : ids) {
        REQUIRE(session.end_update(id).is_ok());
    }
}

}  // namespace

TEST_CASE("A streamed fold gives the bits of the whole-update fold", "[unit][fedavg][streaming]") {
    const std::vector<TensorMap> maps{client_map(1, 10), client_map(2, 13), client_map(3, 20),
                                      client_map(4, 7)};
    const std::vector<std::int64_t> samples{10, 30, 7, 1};
    const TensorMap expected = whole_fold(maps, samples);
    const std::size_t piece = GENERATE(std::size_t{1}, std::size_t{7}, std::size_t{16},
                                       std::size_t{64}, std::size_t{1000});
    INFO("piece of " << piece << " elements");
    WeightedMeanSession session("fedavg");
    for (int round = 0; round < 2; ++round) {  // the second round rebuilds the given-away sums
        REQUIRE(session.begin_round(maps[0], round).is_ok());
        stream_round(session, maps, samples, piece);
        auto got = session.finish_round();
        REQUIRE(got.has_value());
        REQUIRE(got->tensors.size() == expected.tensors.size());
        for (std::size_t t = 0; t < expected.tensors.size(); ++t) {
            CHECK(got->tensors[t].name == expected.tensors[t].name);
            CHECK(got->tensors[t].dtype == expected.tensors[t].dtype);
            CHECK(got->tensors[t].shape == expected.tensors[t].shape);
            CHECK(got->tensors[t].data == expected.tensors[t].data);  // bit for bit
        }
    }
}

TEST_CASE("Whole and streamed updates mix in one round with the same bits",
          "[unit][fedavg][streaming]") {
    const std::vector<TensorMap> maps{client_map(5, 1), client_map(6, 2), client_map(7, 3)};
    const std::vector<std::int64_t> samples{3, 5, 8};
    const TensorMap expected = whole_fold(maps, samples);
    WeightedMeanSession session("fedprox");
    REQUIRE(session.begin_round(maps[0], 0).is_ok());
    // p0 streamed, p1 whole, p2 streamed: each element meets them in order 0, 1, 2.
    stream_round(session, {maps[0]}, {samples[0]}, 9);
    REQUIRE(session.accumulate("p1", samples[1], maps[1]).is_ok());
    auto id = session.begin_update("p2", samples[2], specs_of(maps[2]));
    REQUIRE(id.has_value());
    for (const auto& t : maps[2].tensors) {
        REQUIRE(session.fold_tensor(*id, t).is_ok());  // F32 tensors may come whole too
    }
    REQUIRE(session.end_update(*id).is_ok());
    auto got = session.finish_round();
    REQUIRE(got.has_value());
    for (std::size_t t = 0; t < expected.tensors.size(); ++t) {
        CHECK(got->tensors[t].data == expected.tensors[t].data);
    }
}

TEST_CASE("A streamed update in another tensor order, with an empty global, folds the same",
          "[unit][fedavg][streaming]") {
    const std::vector<TensorMap> maps{client_map(8, 4), client_map(9, 6)};
    const std::vector<std::int64_t> samples{2, 3};
    const TensorMap expected = whole_fold(maps, samples);
    WeightedMeanSession session("fedavg");
    REQUIRE(session.begin_round(TensorMap{}, 0).is_ok());  // layout from the first update
    stream_round(session, {maps[0]}, {samples[0]}, 50);
    TensorMap reversed;
    reversed.tensors.assign(maps[1].tensors.rbegin(), maps[1].tensors.rend());
    stream_round(session, {reversed}, {samples[1]}, 50, 1);
    auto got = session.finish_round();
    REQUIRE(got.has_value());
    for (std::size_t t = 0; t < expected.tensors.size(); ++t) {
        CHECK(got->tensors[t].name == expected.tensors[t].name);
        CHECK(got->tensors[t].data == expected.tensors[t].data);
    }
}

TEST_CASE("A streamed update with a bad layout is refused, naming the participant, and changes "
          "nothing",
          "[unit][fedavg][streaming]") {
    const TensorMap good = client_map(1, 1);
    WeightedMeanSession session("fedavg");
    REQUIRE(session.begin_round(good, 3).is_ok());

    auto specs = specs_of(good);
    SECTION("wrong shape") { specs[0].shape = {41, 5}; }
    SECTION("wrong dtype") { specs[1].dtype = DType::F64; }
    SECTION("missing tensor") { specs.pop_back(); }
    SECTION("extra tensor") { specs.push_back({"extra", DType::F32, {1}}); }
    SECTION("duplicate tensor") { specs[1] = specs[0]; }
    auto refused = session.begin_update("mallory", 5, specs);
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().code == ErrorCode::InvalidArgument);
    CHECK(refused.error().message.find("participant 'mallory', round 3") != std::string::npos);

    auto zero = session.begin_update("mallory", 0, specs_of(good));
    REQUIRE_FALSE(zero.has_value());
    CHECK(zero.error().message.find("samples must be positive") != std::string::npos);

    // Nothing changed: the same participant may still send a good update.
    stream_round(session, {good}, {4}, 33);
    auto got = session.finish_round();
    REQUIRE(got.has_value());
    CHECK(got->tensors[0].data == whole_fold({good}, {4}).tensors[0].data);
}

TEST_CASE("Bad pieces are refused, and a refused update that folded data spoils the round until it "
          "begins again",
          "[unit][fedavg][streaming]") {
    const std::vector<TensorMap> maps{client_map(1, 1), client_map(2, 2)};
    WeightedMeanSession session("fedavg");
    REQUIRE(session.begin_round(maps[0], 1).is_ok());
    stream_round(session, {maps[0]}, {2}, 20);  // p0 completes
    auto id = session.begin_update("p1", 3, specs_of(maps[1]));
    REQUIRE(id.has_value());
    const float* w = maps[1].tensors[0].f32();

    SECTION("a refused first piece folds nothing: the round stays good") {
        std::string why;
        SECTION("out of order") { why = session.fold(*id, 0, 10, w + 10, 5).message(); }
        SECTION("past the end") { why = session.fold(*id, 1, 0, w, 6).message(); }
        SECTION("not an F32 tensor") { why = session.fold(*id, 2, 0, w, 1).message(); }
        SECTION("no such tensor") { why = session.fold(*id, 9, 0, w, 1).message(); }
        CHECK(why.find("participant 'p1', round 1") != std::string::npos);
        // The update is closed: its id is unknown now.
        CHECK(session.fold(*id, 0, 0, w, 1).code() == ErrorCode::FailedPrecondition);
        auto got = session.finish_round();
        REQUIRE(got.has_value());
        CHECK(got->tensors[0].data == whole_fold({maps[0]}, {2}).tensors[0].data);
    }
    SECTION("after a folded piece, a refused piece spoils the round") {
        REQUIRE(session.fold(*id, 0, 0, w, 10).is_ok());
        CHECK(session.fold(*id, 0, 11, w + 11, 5).code() == ErrorCode::InvalidArgument);
        auto spoilt = session.finish_round();
        REQUIRE_FALSE(spoilt.has_value());
        CHECK(spoilt.error().code == ErrorCode::FailedPrecondition);
        CHECK(spoilt.error().message.find("'p1'") != std::string::npos);
        CHECK(spoilt.error().message.find("begin the round again") != std::string::npos);
    }
    SECTION("an update abandoned after a folded piece spoils the round") {
        REQUIRE(session.fold(*id, 0, 0, w, 10).is_ok());
        CHECK(session.abandon_update(*id));
        CHECK_FALSE(session.finish_round().has_value());
    }
    SECTION("an update ended before all its data came spoils the round") {
        REQUIRE(session.fold(*id, 0, 0, w, 10).is_ok());
        auto ended = session.end_update(*id);
        CHECK(ended.code() == ErrorCode::InvalidArgument);
        CHECK(ended.message().find("ended with 10 of the 205 elements of tensor 'l0.weight'") !=
              std::string::npos);
        CHECK_FALSE(session.finish_round().has_value());
    }
    SECTION("an update abandoned before any piece leaves the round good") {
        CHECK_FALSE(session.abandon_update(*id));
        auto got = session.finish_round();
        REQUIRE(got.has_value());
        CHECK(got->tensors[0].data == whole_fold({maps[0]}, {2}).tensors[0].data);
    }
    SECTION("an update still open blocks finish_round") {
        auto open = session.finish_round();
        REQUIRE_FALSE(open.has_value());
        CHECK(open.error().message.find("'p1'") != std::string::npos);
        CHECK(open.error().message.find("still open") != std::string::npos);
    }
    SECTION("a participant has one update per round") {
        auto again = session.begin_update("p1", 3, specs_of(maps[1]));
        REQUIRE_FALSE(again.has_value());
        CHECK(again.error().code == ErrorCode::AlreadyExists);
        CHECK(session.begin_update("p0", 3, specs_of(maps[1])).error().code ==
              ErrorCode::AlreadyExists);
        CHECK(session.accumulate("p1", 3, maps[1]).code() == ErrorCode::AlreadyExists);
    }
    // Whatever happened, the round begins again from the same global and completes.
    REQUIRE(session.begin_round(maps[0], 1).is_ok());
    stream_round(session, maps, {2, 3}, 20);
    auto redone = session.finish_round();
    REQUIRE(redone.has_value());
    CHECK(redone->tensors[0].data == whole_fold(maps, {2, 3}).tensors[0].data);
}

TEST_CASE("A streamed update holding an inf or a NaN is refused naming the participant and tensor",
          "[unit][fedavg][streaming][finite]") {
    const std::vector<TensorMap> maps{client_map(1, 1), client_map(2, 2)};
    const float inf = std::numeric_limits<float>::infinity();
    WeightedMeanSession session("fedavg");
    REQUIRE(session.begin_round(maps[0], 1).is_ok());
    stream_round(session, {maps[0]}, {2}, 20);  // p0 completes
    auto id = session.begin_update("p1", 3, specs_of(maps[1]));
    REQUIRE(id.has_value());
    std::vector<float> w = f32_values(maps[1].tensors[0]);  // l0.weight: 205 elements

    bool spoils = false;
    std::string why;
    std::string tensor = "'l0.weight'";
    std::string element;
    SECTION("inf in the first piece: nothing is folded and the round stays good") {
        w[37] = inf;
        why = session.fold(*id, 0, 0, w.data(), 64).message();
        element = "element 37";
    }
    SECTION("NaN in the last piece's tail: nothing is folded and the round stays good") {
        w[204] = std::nanf("");
        why = session.fold(*id, 0, 0, w.data(), 205).message();
        element = "element 204";
    }
    SECTION("NaN in a piece after folded pieces spoils the round") {
        REQUIRE(session.fold(*id, 0, 0, w.data(), 64).is_ok());
        w[100] = std::nanf("");
        why = session.fold(*id, 0, 64, w.data() + 64, 64).message();
        element = "element 100";  // the tensor's element, not the piece's
        spoils = true;
    }
    SECTION("negative inf in an F32 tensor sent whole (fold_tensor)") {
        synergos::sdk::Tensor bad = maps[1].tensors[0];
        w[150] = -inf;
        std::memcpy(bad.data.data(), w.data(), bad.data.size());
        why = session.fold_tensor(*id, bad).message();
        element = "element 150";
    }
    SECTION("inf in an F64 tensor sent whole after the F32 pieces spoils the round") {
        REQUIRE(session.fold(*id, 0, 0, w.data(), 205).is_ok());
        REQUIRE(session.fold(*id, 1, 0, maps[1].tensors[1].f32(), 5).is_ok());
        synergos::sdk::Tensor bad = maps[1].tensors[3];
        const double big = std::numeric_limits<double>::infinity();
        std::memcpy(bad.data.data() + sizeof big, &big, sizeof big);
        why = session.fold_tensor(*id, bad).message();
        tensor = "'scale'";
        element = "element 1";
        spoils = true;
    }
    CHECK(why.find("fedavg: participant 'p1', round 1") != std::string::npos);
    CHECK(why.find(tensor) != std::string::npos);
    CHECK(why.find("non-finite value at " + element) != std::string::npos);
    // The update is closed: its id is unknown now.
    CHECK(session.fold(*id, 1, 0, maps[1].tensors[1].f32(), 1).code() ==
          ErrorCode::FailedPrecondition);
    auto got = session.finish_round();
    if (spoils) {
        // Folded pieces cannot be taken back: the round must run again without p1.
        REQUIRE_FALSE(got.has_value());
        CHECK(got.error().code == ErrorCode::FailedPrecondition);
        CHECK(got.error().message.find("'p1'") != std::string::npos);
        CHECK(got.error().message.find("begin the round again") != std::string::npos);
        REQUIRE(session.begin_round(maps[0], 1).is_ok());
        stream_round(session, {maps[0]}, {2}, 20);
        got = session.finish_round();
    }
    // Either way the round's result is p0's update alone, bit for bit.
    REQUIRE(got.has_value());
    const TensorMap expected = whole_fold({maps[0]}, {2});
    for (std::size_t t = 0; t < expected.tensors.size(); ++t) {
        CHECK(got->tensors[t].data == expected.tensors[t].data);
    }
}

TEST_CASE("A streamed update outside a round is refused", "[unit][fedavg][streaming]") {
    WeightedMeanSession session("fedprox");
    const TensorMap m = client_map(1, 1);
    auto early = session.begin_update("p0", 1, specs_of(m));
    REQUIRE_FALSE(early.has_value());
    CHECK(early.error().code == ErrorCode::FailedPrecondition);
    CHECK(early.error().message.find("fedprox: update from participant 'p0' arrived outside") !=
          std::string::npos);
    REQUIRE(session.begin_round(m, 0).is_ok());
    stream_round(session, {m}, {1}, 100);
    REQUIRE(session.finish_round().has_value());
    CHECK(session.begin_update("p1", 1, specs_of(m)).error().code ==
          ErrorCode::FailedPrecondition);
}

TEST_CASE("The fedavg module's session streams across the plugin boundary (dynamic_cast)",
          "[integration][fedavg][streaming]") {
    DlPlugin plugin(std::string(SYNERGOS_TEST_PLUGIN_DIR) + "/libsynergos-aggregator-fedavg.so");
    REQUIRE(plugin.is_open());
    auto* factory = plugin.factory<synergos::sdk::Aggregator>("aggregator");
    REQUIRE(factory != nullptr);
    synergos::sdk::testing::FakeHost host;
    {
        auto aggregator = factory(host, synergos::sdk::Options{});
        REQUIRE(aggregator.has_value());
        auto session = (*aggregator)->open("{}");
        REQUIRE(session.has_value());
        auto* streaming = dynamic_cast<StreamingAggregationSession*>(session->get());
        REQUIRE(streaming != nullptr);
        const std::vector<TensorMap> maps{client_map(1, 2), client_map(2, 4)};
        REQUIRE(streaming->begin_round(maps[0], 0).is_ok());
        stream_round(*streaming, maps, {1, 3}, 16);
        auto got = streaming->finish_round();
        REQUIRE(got.has_value());
        const TensorMap expected = whole_fold(maps, {1, 3});
        for (std::size_t t = 0; t < expected.tensors.size(); ++t) {
            CHECK(got->tensors[t].data == expected.tensors[t].data);
        }
    }
}
