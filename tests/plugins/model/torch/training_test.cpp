// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "torch_test_support.hpp"

namespace {

using synergos::sdk::Dataset;
using synergos::sdk::DType;
using synergos::sdk::ErrorCode;
using synergos::sdk::TensorMap;
using namespace synergos::test;

constexpr const char* kBatchNormNet = R"([
  {"l_type": "Linear", "structure": {"in_features": 4, "out_features": 6}, "activation": ""},
  {"l_type": "BatchNorm1d", "structure": {"num_features": 6}, "activation": "relu"},
  {"l_type": "Linear", "structure": {"in_features": 6, "out_features": 1}, "activation": ""}])";
constexpr const char* kBatchNormArgs =
    R"({"criterion": "MSELoss", "lr": 0.05, "lr_scheduler": "", "batch_size": 8, "epochs": 2,
        "seed": 3})";

Dataset regression_rows(std::uint32_t seed, std::size_t rows) {
    const auto x = pseudo_features(rows * 4, seed);
    std::vector<float> y(rows);
    for (std::size_t r = 0; r < rows; ++r) {
        y[r] = 3 * x[r * 4] - x[r * 4 + 1] + 2;
    }
    return regression_data({4}, x, y);
}

/// heart_disease as the tabular pipeline prepares it: 8 categorical columns one-hot encoded
/// (all levels), 5 numeric ones, sorted names (28 features), min-max scaled; 5 classes.
Dataset heart_disease(const std::string& csv_path) {
    std::ifstream in(csv_path);
    if (!in) {
        FAIL("cannot open " << csv_path
                            << " (the example data lives in examples/data)");
    }
    const std::set<std::string> categorical{"sex",   "cp",    "fbs", "restecg",
                                            "exang", "slope", "ca",  "thal"};
    std::string line;
    std::getline(in, line);
    std::vector<std::string> header;
    {
        std::stringstream ss(line);
        for (std::string cell; std::getline(ss, cell, ',');) {
            header.push_back(cell);
        }
    }
    std::vector<std::vector<double>> table;
    while (std::getline(in, line)) {
        if (line.empty()) {
            continue;
        }
        std::stringstream ss(line);
        std::vector<double> row;
        for (std::string cell; std::getline(ss, cell, ',');) {
            row.push_back(std::stod(cell));
        }
        table.push_back(row);
    }
    // column name -> values per row
    std::map<std::string, std::vector<double>> columns;
    std::vector<int> target;
    for (std::size_t c = 0; c < header.size(); ++c) {
        if (header[c] == "target") {
            for (const auto& row : table) {
                target.push_back(static_cast<int>(row[c]));
            }
            continue;
        }
        if (categorical.count(header[c]) != 0) {
            std::set<int> levels;
            for (const auto& row : table) {
                levels.insert(static_cast<int>(row[c]));
            }
            for (int level : levels) {
                auto& col = columns[header[c] + "_" + std::to_string(level)];
                for (const auto& row : table) {
                    col.push_back(static_cast<int>(row[c]) == level ? 1.0 : 0.0);
                }
            }
        } else {
            auto& col = columns[header[c]];
            for (const auto& row : table) {
                col.push_back(row[c]);
            }
        }
    }
    const std::size_t rows = table.size();
    std::vector<float> features(rows * columns.size());
    std::size_t j = 0;
    for (const auto& [name, col] : columns) {  // std::map: sorted names
        const auto [lo, hi] = std::minmax_element(col.begin(), col.end());
        for (std::size_t r = 0; r < rows; ++r) {
            features[r * columns.size() + j] =
                *hi > *lo ? static_cast<float>((col[r] - *lo) / (*hi - *lo)) : 0.0F;
        }
        ++j;
    }
    return classify_data({static_cast<std::int64_t>(columns.size())}, std::move(features), target,
                         5);
}

}  // namespace

TEST_CASE("BatchNorm running statistics survive a state round trip", "[unit][torch]") {
    TorchFixture f;
    auto model = f.build(kBatchNormNet, kBatchNormArgs);
    const Dataset data = regression_rows(4, 40);
    auto report = model->train(data, kBatchNormArgs, nullptr);
    REQUIRE(report.has_value());

    const TensorMap& state = report->weights;
    std::vector<std::string> names;
    for (const auto& t : state.tensors) {
        names.push_back(t.name);
    }
    CHECK(names == std::vector<std::string>{
                       "nnl_0_linear.weight", "nnl_0_linear.bias", "nnl_1_batchnorm1d.weight",
                       "nnl_1_batchnorm1d.bias", "nnl_1_batchnorm1d.running_mean",
                       "nnl_1_batchnorm1d.running_var", "nnl_1_batchnorm1d.num_batches_tracked",
                       "nnl_2_linear.weight", "nnl_2_linear.bias"});
    const auto* tracked = state.find("nnl_1_batchnorm1d.num_batches_tracked");
    REQUIRE(tracked != nullptr);
    CHECK(tracked->dtype == DType::I64);
    CHECK(tracked->shape.empty());
    CHECK(int64s(*tracked) == std::vector<std::int64_t>{10});  // 2 epochs x 5 batches
    const auto mean = floats(*state.find("nnl_1_batchnorm1d.running_mean"));
    CHECK(std::any_of(mean.begin(), mean.end(), [](float v) { return std::fabs(v) > 1e-3; }));

    // A model built with another seed becomes the same model once the state is loaded.
    auto copy = f.build(kBatchNormNet, R"({"seed": 99})");
    CHECK(max_abs_diff(*copy->state(), state) > 1e-3);
    REQUIRE(copy->load_state(state).is_ok());
    CHECK(max_abs_diff(*copy->state(), state) == 0.0);
    auto a = model->infer(data, kBatchNormArgs);
    auto b = copy->infer(data, kBatchNormArgs);
    REQUIRE(a.has_value());
    REQUIRE(b.has_value());
    CHECK(a->scores == b->scores);
    CHECK(a->loss == b->loss);
}

TEST_CASE("load_state refuses a state that does not match and changes nothing", "[unit][torch]") {
    TorchFixture f;
    auto model = f.build(kBatchNormNet, kBatchNormArgs);
    const TensorMap good = *model->state();
    struct Case {
        const char* label;
        TensorMap state;
        std::string expected;
    };
    std::vector<Case> cases;
    {
        TensorMap s = good;
        s.find("nnl_1_batchnorm1d.num_batches_tracked")->dtype = DType::F32;
        cases.push_back(
            {"dtype", s, "'nnl_1_batchnorm1d.num_batches_tracked' is F32, the model has I64"});
    }
    {
        TensorMap s = good;
        s.tensors.erase(s.tensors.begin() + 5);
        cases.push_back({"missing", s, "lacks tensor 'nnl_1_batchnorm1d.running_var'"});
    }
    {
        TensorMap s = good;
        s.tensors.push_back(f32("nnl_3_linear.weight", {1}, {0}));
        cases.push_back({"extra", s, "'nnl_3_linear.weight', which the model does not have"});
    }
    {
        TensorMap s = good;
        s.tensors[0] = f32("nnl_0_linear.weight", {4, 6}, std::vector<float>(24, 0.0F));
        cases.push_back(
            {"shape", s, "'nnl_0_linear.weight' has shape [4, 6], the model has [6, 4]"});
    }
    {
        TensorMap s = good;
        s.tensors[1].data.pop_back();
        cases.push_back({"bytes", s, "'nnl_0_linear.bias' holds 23 bytes"});
    }
    for (auto& c : cases) {
        INFO(c.label);
        // Zero the first tensor so a partial copy would show.
        c.state.tensors[0].data.assign(c.state.tensors[0].data.size(), 0);
        auto status = model->load_state(c.state);
        REQUIRE_FALSE(status.is_ok());
        CHECK(status.code() == ErrorCode::InvalidArgument);
        CHECK_THAT(status.message(), Catch::Contains(c.expected));
        CHECK(max_abs_diff(good, *model->state()) == 0.0);
    }
}

TEST_CASE("Training on heart_disease reduces the loss", "[integration][torch]") {
    const Dataset data = heart_disease(std::string(SYNERGOS_TEST_SOURCE_DIR) +
                                       "/examples/data/heart_disease/data1/iid_1/"
                                       "unified_dataset_iid_1_1000.csv");
    REQUIRE(data.rows == 771);
    REQUIRE(data.sample_shape == std::vector<std::int64_t>{28});
    TorchFixture f;
    // The heart_disease experiment after the TTP's auto-fix: Linear(28 -> 5), softmax, NLLLoss,
    // the default SGD + CyclicLR (with larger rates than the smoke hyperparameters).
    const std::string arch =
        R"([{"activation": "softmax", "is_input": true, "l_type": "Linear",
            "structure": {"bias": true, "in_features": 28, "out_features": 5}}])";
    const std::string args =
        R"({"criterion": "NLLLoss", "base_lr": 0.01, "max_lr": 0.05, "batch_size": 32,
            "epochs": 15})";
    auto model = f.build(arch, args);
    CHECK(model->parameter_count() == 145);
    auto before = model->infer(data, args);
    REQUIRE(before.has_value());
    auto report = model->train(data, args, nullptr);
    REQUIRE(report.has_value());
    auto after = model->infer(data, args);
    REQUIRE(after.has_value());
    INFO("loss before " << before->loss << ", after " << after->loss);
    CHECK(after->loss < 0.85 * before->loss);
    CHECK(report->epoch_losses.back() < report->epoch_losses.front());

    // Better than always answering the majority class.
    std::vector<int> counts(5, 0);
    int correct = 0;
    for (std::int64_t r = 0; r < data.rows; ++r) {
        int truth = 0;
        int guess = 0;
        for (int c = 1; c < 5; ++c) {
            if (data.labels[static_cast<std::size_t>(r * 5 + c)] > 0.5F) {
                truth = c;
            }
            if (after->scores[static_cast<std::size_t>(r * 5 + c)] >
                after->scores[static_cast<std::size_t>(r * 5 + guess)]) {
                guess = c;
            }
        }
        ++counts[static_cast<std::size_t>(truth)];
        correct += guess == truth ? 1 : 0;
    }
    const double majority =
        *std::max_element(counts.begin(), counts.end()) / static_cast<double>(data.rows);
    const double accuracy = correct / static_cast<double>(data.rows);
    INFO("accuracy " << accuracy << ", majority share " << majority);
    CHECK(accuracy > majority + 0.05);
}
