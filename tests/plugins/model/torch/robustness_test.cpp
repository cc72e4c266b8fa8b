// SPDX-License-Identifier: Apache-2.0
// Inputs that used to poison a federation or take the worker down: non-finite weights and
// diverging rounds, a 1-row inference tail under batch-statistics BatchNorm, huge models.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "architecture.hpp"
#include "torch_test_support.hpp"

namespace {

using synergos::sdk::Dataset;
using synergos::sdk::ErrorCode;
using synergos::sdk::Options;
using synergos::sdk::TensorMap;
using namespace synergos::test;
namespace torch_plugin = synergos::plugins::torch;

constexpr const char* kLinear =
    R"([{"l_type": "Linear", "structure": {"in_features": 2, "out_features": 1},
        "activation": ""}])";
constexpr const char* kSgd =
    R"({"criterion": "MSELoss", "optimizer": "SGD", "lr": 0.1, "lr_scheduler": "", "lr_decay": 0,
        "epochs": 3, "patience": null, "mu": 0})";

Dataset linear_rows() {
    return regression_data({2}, {1, 2, 3, -1, 0.5F, 0.5F}, {1, -2, 0.3F});
}

TensorMap linear_state(float w0, float w1, float b) {
    return TensorMap{
        {f32("nnl_0_linear.weight", {1, 2}, {w0, w1}), f32("nnl_0_linear.bias", {1}, {b})}};
}

bool all_finite(const TensorMap& m) {
    for (const auto& t : m.tensors) {
        if (t.dtype != synergos::sdk::DType::F32) {
            continue;
        }
        for (float v : floats(t)) {
            if (!std::isfinite(v)) {
                return false;
            }
        }
    }
    return true;
}

std::string layer(const char* type, const std::string& structure, const char* activation = "") {
    return std::string(R"({"l_type": ")") + type + R"(", "structure": )" + structure +
           R"(, "activation": ")" + activation + R"("})";
}

std::string net(std::initializer_list<std::string> layers) {
    std::string out = "[";
    for (const auto& l : layers) {
        out += (out.size() > 1 ? "," : "") + l;
    }
    return out + "]";
}

/// A backend with the option max_parameters set.
struct LimitFixture {
    synergos::sdk::testing::FakeHost host;
    torch_plugin::TorchBackend backend;
    explicit LimitFixture(const std::string& max_parameters)
        : backend(host,
                  Options(std::map<std::string, std::string>{{"max_parameters", max_parameters}})) {
    }
};

}  // namespace

TEST_CASE("load_state refuses NaN or infinite weights, naming the tensor, and changes nothing",
          "[unit][torch]") {
    TorchFixture f;
    auto model = f.build(kLinear, "{}");
    const TensorMap before = *model->state();
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    struct Case {
        TensorMap state;
        std::string expected;
    };
    const std::vector<Case> cases{
        {linear_state(nan, nan, nan),
         "'nnl_0_linear.weight' holds a non-finite value (nan at index 0)"},
        {linear_state(1, 2, inf), "'nnl_0_linear.bias' holds a non-finite value (inf at index 0)"},
        {linear_state(1, -inf, 0),
         "'nnl_0_linear.weight' holds a non-finite value (-inf at index 1)"},
    };
    for (const auto& c : cases) {
        INFO(c.expected);
        auto status = model->load_state(c.state);
        REQUIRE_FALSE(status.is_ok());
        CHECK(status.code() == ErrorCode::InvalidArgument);
        CHECK_THAT(status.message(), Catch::Contains(c.expected));
        CHECK(max_abs_diff(before, *model->state()) == 0.0);
    }
    // A NaN proximal anchor would pull every weight to NaN as well.
    const TensorMap nan_reference = linear_state(0, nan, 0);
    auto report = model->train(linear_rows(), merge_args(kSgd, R"({"mu": 0.1})"), &nan_reference);
    REQUIRE_FALSE(report.has_value());
    CHECK(report.error().code == ErrorCode::InvalidArgument);
    CHECK_THAT(report.error().message,
               Catch::Contains("reference tensor 'nnl_0_linear.weight'") && Catch::Contains("nan"));
    CHECK(max_abs_diff(before, *model->state()) == 0.0);
}

TEST_CASE("A round whose loss becomes non-finite fails naming the epoch and changes nothing",
          "[unit][torch]") {
    TorchFixture f;
    auto model = f.build(kLinear, "{}");
    SECTION("weights of 1e38 overflow in the first forward pass") {
        const TensorMap huge = linear_state(1e38F, 1e38F, 0);
        REQUIRE(model->load_state(huge).is_ok());  // finite: accepted
        auto report = model->train(linear_rows(), kSgd, nullptr);
        REQUIRE_FALSE(report.has_value());
        CHECK(report.error().code == ErrorCode::InvalidArgument);
        CHECK_THAT(report.error().message,
                   Catch::Contains("training diverged in epoch 0") && Catch::Contains("loss"));
        CHECK(max_abs_diff(huge, *model->state()) == 0.0);
    }
    SECTION("a huge learning rate diverges after the first epoch") {
        const TensorMap start = linear_state(0.5F, -0.5F, 0.1F);
        REQUIRE(model->load_state(start).is_ok());
        auto report = model->train(linear_rows(), merge_args(kSgd, R"({"lr": 1e25})"), nullptr);
        REQUIRE_FALSE(report.has_value());
        CHECK_THAT(report.error().message, Catch::Contains("training diverged in epoch 1"));
        CHECK(max_abs_diff(start, *model->state()) == 0.0);
    }
    SECTION("an ordinary round still trains and reports finite losses") {
        auto report = model->train(linear_rows(), kSgd, nullptr);
        REQUIRE(report.has_value());
        CHECK(report->epoch_losses.size() == 3);
        for (double loss : report->epoch_losses) {
            CHECK(std::isfinite(loss));
        }
        CHECK(all_finite(report->weights));
    }
}

TEST_CASE("Inference with batch-statistics BatchNorm takes a 1-row tail batch", "[unit][torch]") {
    // 826 rows in batches of 25 leave one row: BatchNorm1d with track_running_stats false
    // refused it ("Expected more than 1 value per channel when training").
    const std::string arch =
        net({layer("Linear", R"({"in_features": 4, "out_features": 6})"),
             layer("BatchNorm1d", R"({"num_features": 6, "track_running_stats": false})", "relu"),
             layer("Linear", R"({"in_features": 6, "out_features": 1})")});
    const std::string args =
        R"({"criterion": "MSELoss", "lr": 0.05, "lr_scheduler": "", "batch_size": 25,
            "epochs": 1, "seed": 5})";
    TorchFixture f;
    auto model = f.build(arch, args);
    const auto x = pseudo_features(826 * 4, 11);
    std::vector<float> y(826);
    for (std::size_t r = 0; r < y.size(); ++r) {
        y[r] = x[r * 4] - 2 * x[r * 4 + 3];
    }
    const Dataset data = regression_data({4}, x, y);
    REQUIRE(model->train(data, args, nullptr).has_value());
    auto all = model->infer(data, args);
    INFO((all.has_value() ? std::string() : all.error().message));
    REQUIRE(all.has_value());
    REQUIRE(all->scores.size() == 826);
    CHECK(std::isfinite(all->loss));

    // The tail row joined the last full batch: rows 800..825 were normalised together.
    const Dataset tail = regression_data({4}, std::vector<float>(x.begin() + 800 * 4, x.end()),
                                         std::vector<float>(y.begin() + 800, y.end()));
    auto last = model->infer(tail, merge_args(args, R"({"batch_size": null})"));
    REQUIRE(last.has_value());
    CHECK(std::vector<float>(all->scores.begin() + 800, all->scores.end()) == last->scores);
    // The other batches are unchanged: the first 800 rows give the same scores alone.
    const Dataset head = regression_data({4}, std::vector<float>(x.begin(), x.begin() + 800 * 4),
                                         std::vector<float>(y.begin(), y.begin() + 800));
    auto first = model->infer(head, args);
    REQUIRE(first.has_value());
    CHECK(std::vector<float>(all->scores.begin(), all->scores.begin() + 800) == first->scores);

    // batch_size 1 cannot give batch statistics: batches of 2 are used instead.
    auto ones = model->infer(head, merge_args(args, R"({"batch_size": 1})"));
    CHECK(ones.has_value());

    // A single row cannot be normalised by its own statistics: a clear error, no crash.
    const Dataset one = regression_data({4}, {0.1F, 0.2F, 0.3F, 0.4F}, {1});
    auto refused = model->infer(one, args);
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().code == ErrorCode::InvalidArgument);
    CHECK_THAT(refused.error().message,
               Catch::Contains("at least 2 rows") && Catch::Contains("track_running_stats"));
}

TEST_CASE("Architectures above max_parameters are refused before anything is allocated",
          "[unit][torch]") {
    const std::string args = R"({"base_lr": 0.1, "max_lr": 0.2, "criterion": "MSELoss"})";
    SECTION("the default limit refuses Linear(28, 150000000) (16.8 GB)") {
        TorchFixture f;
        const std::string huge =
            net({layer("Linear", R"({"in_features": 28, "out_features": 150000000})")});
        auto status = f.backend.validate(huge, args, {28});
        REQUIRE_FALSE(status.is_ok());
        CHECK(status.code() == ErrorCode::InvalidArgument);
        CHECK_THAT(status.message(), Catch::Contains("layer 0 (Linear): 4350000000 parameters") &&
                                         Catch::Contains("100000000") &&
                                         Catch::Contains("max_parameters"));
        auto built = f.backend.build(huge, "{}");
        REQUIRE_FALSE(built.has_value());
        CHECK(built.error().code == ErrorCode::InvalidArgument);
        CHECK_THAT(built.error().message, Catch::Contains("layer 0 (Linear)"));
        // Sizes whose product overflows int64 are refused the same way.
        auto overflow = f.backend.build(
            net({layer("Linear",
                       R"({"in_features": 4000000000000, "out_features": 4000000000000})")}),
            "{}");
        REQUIRE_FALSE(overflow.has_value());
        CHECK_THAT(overflow.error().message, Catch::Contains("max_parameters"));
    }
    SECTION("a configured limit counts every layer, and the total") {
        LimitFixture f("1000");
        const std::string small =
            net({layer("Linear", R"({"in_features": 28, "out_features": 30})")});
        CHECK(f.backend.validate(small, args, {28}).is_ok());  // 870
        CHECK(f.backend.build(small, "{}").has_value());
        // A bad input shape is still the dry run's to name, not a size to compare.
        CHECK_THAT(f.backend.validate(small, args, {-3}).message(),
                   Catch::Contains("input shape has a dimension <= 0"));
        const std::string wide =
            net({layer("Linear", R"({"in_features": 28, "out_features": 100})")});  // 2900
        auto built = f.backend.build(wide, "{}");
        REQUIRE_FALSE(built.has_value());
        CHECK_THAT(built.error().message, Catch::Contains("layer 0 (Linear): 2900 parameters") &&
                                              Catch::Contains("limit of 1000"));
        const std::string deep =
            net({layer("Linear", R"({"in_features": 28, "out_features": 30})"),
                 layer("BatchNorm1d", R"({"num_features": 30})"),                 // 60 + 61
                 layer("Linear", R"({"in_features": 30, "out_features": 1})")});  // 31: 1022
        auto status = f.backend.validate(deep, args, {28});
        REQUIRE_FALSE(status.is_ok());
        CHECK_THAT(status.message(),
                   Catch::Contains("layer 2 (Linear): its 31 parameters bring the network to "
                                   "1022, more than the limit of 1000"));
    }
    SECTION("a batch's rows times one sample's values count for training; inference goes in pieces") {
        // Before, only one sample was bounded: a full batch of 60000 images through a wide conv
        // took ~96 GB in one layer's output and the worker was killed.
        LimitFixture f("1000");
        auto model = f.backend.build(net({layer("Linear", R"({"in_features": 8, "out_features": 1})")}), "{}");
        REQUIRE(model.has_value());
        std::vector<float> x(200 * 8, 0.25F);
        std::vector<float> y(200, 1.0F);
        const Dataset rows = regression_data({8}, x, y);
        auto full = (*model)->train(rows, merge_args(args, R"({"epochs": 1})"), nullptr);  // 200 x 8
        REQUIRE_FALSE(full.has_value());
        CHECK(full.error().code == ErrorCode::InvalidArgument);
        CHECK_THAT(full.error().message, Catch::Contains("batch_size of at most 125") &&
                                             Catch::Contains("max_parameters"));
        CHECK((*model)->train(rows, merge_args(args, R"({"epochs": 1, "batch_size": 100})"), nullptr).has_value());
        auto inference = (*model)->infer(rows, args);  // in pieces of 125 rows
        REQUIRE(inference.has_value());
        CHECK(inference->rows == 200);
    }
    SECTION("one sample's output of a layer counts too") {
        LimitFixture f("1000");
        // 200 parameters, but the conv output holds 100 x 28 x 28 = 78400 values per sample.
        const std::string conv =
            net({layer("Conv2d", R"({"in_channels": 1, "out_channels": 100, "kernel_size": 1})"),
                 layer("MaxPool2d", R"({"kernel_size": 28})"), layer("Flatten", "{}"),
                 layer("Linear", R"({"in_features": 100, "out_features": 1})")});
        auto status = f.backend.validate(conv, args, {1, 28, 28});
        REQUIRE_FALSE(status.is_ok());
        CHECK_THAT(status.message(),
                   Catch::Contains("layer 0 (Conv2d): its output holds 78400 values per sample"));
        auto model = f.backend.build(conv, "{}");
        REQUIRE(model.has_value());  // parameters alone fit
        const Dataset images =
            regression_data({1, 28, 28}, std::vector<float>(2 * 784, 0.5F), {1, 0});
        auto report = (*model)->train(images, merge_args(args, R"({"epochs": 1})"), nullptr);
        REQUIRE_FALSE(report.has_value());
        CHECK(report.error().code == ErrorCode::InvalidArgument);
        CHECK_THAT(report.error().message, Catch::Contains("layer 0 (Conv2d)"));
        auto inference = (*model)->infer(images, args);
        REQUIRE_FALSE(inference.has_value());
        CHECK_THAT(inference.error().message, Catch::Contains("layer 0 (Conv2d)"));
        // An input wider than the limit is refused before the dry run builds its zero batch.
        auto input = f.backend.validate(net({layer("Tanh", "{}")}), args, {2000});
        CHECK_THAT(input.message(), Catch::Contains("the input holds 2000 values per sample"));
    }
    SECTION("max_parameters out of range is refused at construction, naming the option") {
        synergos::sdk::testing::FakeHost host;
        for (const char* value : {"0", "-5", "1000000000001"}) {
            INFO(value);
            CHECK_THROWS_WITH(
                torch_plugin::TorchBackend(
                    host, Options(std::map<std::string, std::string>{{"max_parameters", value}})),
                Catch::Contains("option max_parameters must be between 1 and 1000000000000"));
        }
    }
}

TEST_CASE("The size estimate matches the tensors and shapes libtorch makes", "[unit][torch]") {
    // The limit is checked from the spec alone, so the count and the shape arithmetic must be
    // exactly libtorch's: compare with real state sizes and inference widths.
    struct Case {
        std::string architecture;
        std::vector<std::int64_t> input;
    };
    const std::vector<Case> cases{
        {net({layer("Conv2d", R"({"in_channels": 2, "out_channels": 4, "kernel_size": [3, 2],
                 "stride": [2, 1], "padding": [1, 0], "dilation": [1, 2], "groups": 2,
                 "bias": false})"),
              layer("BatchNorm2d", R"({"num_features": 4, "affine": false})"),
              layer("MaxPool2d", R"({"kernel_size": 3, "stride": 2, "padding": 1,
                 "ceil_mode": true})"),
              layer("AvgPool2d", R"({"kernel_size": 2, "ceil_mode": true})"),
              layer("Flatten", "{}")}),
         {2, 11, 9}},
        {net({layer("Conv1d", R"({"in_channels": 3, "out_channels": 5, "kernel_size": 5,
                 "padding": "same"})"),
              layer("Conv1d", R"({"in_channels": 5, "out_channels": 2, "kernel_size": 3,
                 "padding": "valid", "stride": 2})"),
              layer("BatchNorm1d", R"({"num_features": 2, "track_running_stats": false})"),
              layer("AvgPool1d", R"({"kernel_size": 3, "stride": 2, "padding": 1,
                 "ceil_mode": true})"),
              layer("MaxPool1d", R"({"kernel_size": 2, "dilation": 2})"),
              layer("Flatten", R"({"start_dim": 1, "end_dim": -1})"),
              layer("Linear", R"({"in_features": 4, "out_features": 3})"),
              layer("Dropout", R"({"p": 0.1})"), layer("Tanh", "{}")}),
         {3, 17}},
    };
    TorchFixture f;
    for (const auto& c : cases) {
        INFO(c.architecture);
        const auto layers = torch_plugin::parse_architecture(c.architecture);
        std::int64_t expected_values = 0;
        for (const auto& l : layers) {
            expected_values += torch_plugin::layer_values(l);
        }
        auto model = f.build(c.architecture, "{}");
        const TensorMap state = *model->state();
        std::int64_t values = 0;
        for (const auto& t : state.tensors) {
            values += t.numel();
        }
        CHECK(values == expected_values);

        const auto shapes = torch_plugin::sample_shapes(layers, c.input);
        REQUIRE(shapes.size() == layers.size());
        std::int64_t in = 1;
        for (auto d : c.input) {
            in *= d;
        }
        Dataset rows;
        rows.sample_shape = c.input;
        rows.rows = 3;
        rows.features = pseudo_features(static_cast<std::size_t>(3 * in), 3);
        auto out = model->infer(rows, "{}");
        REQUIRE(out.has_value());
        CHECK(std::vector<std::int64_t>{1, out->width} == shapes.back());
    }
}
