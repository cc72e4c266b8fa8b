// SPDX-License-Identifier: Apache-2.0
// Every expected value below is worked out by hand (in the comments) from the definitions
// sklearn uses, never by calling the code under test.
#include <synergos/core/metrics/metrics.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace metrics = synergos::core::metrics;
using Catch::Matchers::Contains;

namespace {

void check_list(const nlohmann::json& stats, const char* key, const std::vector<double>& expected) {
    INFO("key " << key);
    REQUIRE(stats.contains(key));
    const auto& list = stats.at(key);
    REQUIRE(list.is_array());
    REQUIRE(list.size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
        INFO("class " << i);
        CHECK(list[i].get<double>() == Approx(expected[i]).margin(1e-12));
    }
}

void check_ints(const nlohmann::json& stats, const char* key,
                const std::vector<std::int64_t>& expected) {
    INFO("key " << key);
    REQUIRE(stats.contains(key));
    const auto& list = stats.at(key);
    REQUIRE(list.size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
        CHECK(list[i].is_number_integer());
        CHECK(list[i].get<std::int64_t>() == expected[i]);
    }
}

// Binary case, 8 rows, with a tie across classes at 0.6.
//   row  y  s     prediction (s > 0.5)
//   0    1  0.9   1
//   1    1  0.8   1
//   2    0  0.7   1
//   3    1  0.6   1
//   4    0  0.6   1
//   5    0  0.4   0
//   6    1  0.3   0
//   7    0  0.1   0
const std::vector<int> kBinaryTruth = {1, 1, 0, 1, 0, 0, 1, 0};
const std::vector<float> kBinaryScores = {0.9F, 0.8F, 0.7F, 0.6F, 0.6F, 0.4F, 0.3F, 0.1F};

void check_binary_statistics(const nlohmann::json& stats) {
    // Class 1: TP rows 0,1,3 = 3; FP rows 2,4 = 2; FN row 6 = 1; TN rows 5,7 = 2.
    // Class 0 swaps the roles: TP 2, TN 3, FP 1, FN 2.
    check_ints(stats, "TPs", {2, 3});
    check_ints(stats, "TNs", {3, 2});
    check_ints(stats, "FPs", {1, 2});
    check_ints(stats, "FNs", {2, 1});
    // (TP + TN) / 8 = 5/8 for both classes.
    check_list(stats, "accuracy", {0.625, 0.625});
    check_list(stats, "TPRs", {2.0 / 4, 3.0 / 4});
    check_list(stats, "TNRs", {3.0 / 4, 2.0 / 4});
    check_list(stats, "PPVs", {2.0 / 3, 3.0 / 5});
    check_list(stats, "NPVs", {3.0 / 5, 2.0 / 3});
    check_list(stats, "FPRs", {1.0 / 4, 2.0 / 4});
    check_list(stats, "FNRs", {2.0 / 4, 1.0 / 4});
    check_list(stats, "FDRs", {1.0 / 3, 2.0 / 5});
    // F1 = 2TP / (2TP + FP + FN): class 0 4/7, class 1 6/9.
    check_list(stats, "f_score", {4.0 / 7, 6.0 / 9});
    // ROC-AUC = Mann-Whitney U / (P N). Positives {.9 .8 .6 .3}, negatives {.7 .6 .4 .1}:
    // .9 beats 4, .8 beats 4, .6 beats 2 and ties 1 (2.5), .3 beats 1 -> 11.5 / 16.
    // Class 0 ranks by 1 - s with the labels flipped: the same pairs, the same value.
    // PR-AUC class 1, distinct thresholds descending -> (recall, precision):
    //   .9 (1/4, 1) .8 (2/4, 1) .7 (2/4, 2/3) .6 (3/4, 3/5) .4 (3/4, 3/6) .3 (1, 4/7)
    //   trapezoids from (0, 1): 1/4 + 1/4 + 0 + 1/4 (2/3 + 3/5)/2 + 0 + 1/4 (1/2 + 4/7)/2
    //   = 840/1680 + 266/1680 + 225/1680 = 1331/1680.
    // PR-AUC class 0, thresholds on 1 - s descending (s ascending):
    //   .1 (1/4, 1) .3 (1/4, 1/2) .4 (2/4, 2/3) .6 (3/4, 3/5) .7 (1, 4/6)
    //   = 1/4 + 0 + 1/4 (1/2 + 2/3)/2 + 1/4 (2/3 + 3/5)/2 + 1/4 (3/5 + 2/3)/2
    //   = 60/240 + 35/240 + 38/240 + 38/240 = 171/240.
    check_list(stats, "roc_auc_score", {11.5 / 16, 11.5 / 16});
    check_list(stats, "pr_auc_score", {171.0 / 240, 1331.0 / 1680});
}

}  // namespace

TEST_CASE("binary statistics from one probability column match a hand-worked confusion matrix",
          "[unit][metrics]") {
    std::vector<float> labels;
    for (int y : kBinaryTruth) {
        labels.push_back(y == 0 ? 1.0F : 0.0F);
        labels.push_back(y == 1 ? 1.0F : 0.0F);
    }
    const auto stats = metrics::compute_statistics("classify", labels, 2, kBinaryScores, 1, 8);
    CHECK(stats.size() == 15);
    check_binary_statistics(stats);
}

TEST_CASE(
    "binary statistics agree whether labels are a 0/1 column or one-hot and scores one "
    "or two columns",
    "[unit][metrics]") {
    std::vector<float> column(kBinaryTruth.begin(), kBinaryTruth.end());
    SECTION("label_width 1, score_width 1") {
        check_binary_statistics(
            metrics::compute_statistics("classify", column, 1, kBinaryScores, 1, 8));
    }
    SECTION("label_width 1, score_width 2 (argmax of [1 - s, s])") {
        std::vector<float> two;
        for (float s : kBinaryScores) {
            two.push_back(1.0F - s);
            two.push_back(s);
        }
        check_binary_statistics(metrics::compute_statistics("classify", column, 1, two, 2, 8));
    }
}

TEST_CASE("multiclass statistics have one entry per class even for a class never seen",
          "[unit][metrics]") {
    // Four classes; class 3 is in neither the labels nor the predictions (sklearn's confusion
    // matrix would drop it and misalign the lists).
    //   row  true  scores                  argmax
    //   0    0     .7  .2  .1   0          0
    //   1    0     .3  .6  .1   0          1
    //   2    1     .2  .5  .3   0          1
    //   3    1     .1  .4  .5   0          2
    //   4    2     .2  .2  .6   0          2
    //   5    2     .45 .1  .45  0          0 (tie: first maximum wins)
    const std::vector<int> truth = {0, 0, 1, 1, 2, 2};
    const std::vector<float> scores = {
        0.7F,  0.2F, 0.1F,  0.0F,  // row 0
        0.3F,  0.6F, 0.1F,  0.0F,  // row 1
        0.2F,  0.5F, 0.3F,  0.0F,  // row 2
        0.1F,  0.4F, 0.5F,  0.0F,  // row 3
        0.2F,  0.2F, 0.6F,  0.0F,  // row 4
        0.45F, 0.1F, 0.45F, 0.0F,  // row 5
    };
    std::vector<float> labels(6 * 4, 0.0F);
    for (std::size_t r = 0; r < truth.size(); ++r) {
        labels[r * 4 + static_cast<std::size_t>(truth[r])] = 1.0F;
    }
    const auto stats = metrics::compute_statistics("classify", labels, 4, scores, 4, 6);
    CHECK(stats.size() == 15);
    for (const auto& [key, value] : stats.items()) {
        INFO("key " << key);
        CHECK(value.size() == 4);
    }
    // Confusion matrix (true x predicted): 0->{0,1}, 1->{1,2}, 2->{2,0}. Classes 0..2 each have
    // TP 1, FP 1, FN 1, TN 3; class 3 has TN 6 only.
    check_ints(stats, "TPs", {1, 1, 1, 0});
    check_ints(stats, "FPs", {1, 1, 1, 0});
    check_ints(stats, "FNs", {1, 1, 1, 0});
    check_ints(stats, "TNs", {3, 3, 3, 6});
    check_list(stats, "accuracy", {4.0 / 6, 4.0 / 6, 4.0 / 6, 1.0});
    check_list(stats, "f_score", {0.5, 0.5, 0.5, 0.0});
    check_list(stats, "TPRs", {0.5, 0.5, 0.5, 0.0});
    check_list(stats, "TNRs", {0.75, 0.75, 0.75, 1.0});
    check_list(stats, "PPVs", {0.5, 0.5, 0.5, 0.0});
    check_list(stats, "NPVs", {0.75, 0.75, 0.75, 1.0});
    check_list(stats, "FPRs", {0.25, 0.25, 0.25, 0.0});
    check_list(stats, "FNRs", {0.5, 0.5, 0.5, 0.0});
    check_list(stats, "FDRs", {0.5, 0.5, 0.5, 0.0});
    // ROC class 0: positives {.7 .3} vs negatives {.2 .1 .2 .45}: 4 + 3 = 7 of 8.
    // ROC class 1: positives {.5 .4} vs negatives {.2 .6 .2 .1}: 3 + 3 = 6 of 8.
    // ROC class 2: positives {.6 .45} vs negatives {.1 .1 .3 .5}: 4 + 3 = 7 of 8.
    // Class 3 has no positive: undefined, reported as 0.0.
    check_list(stats, "roc_auc_score", {7.0 / 8, 6.0 / 8, 7.0 / 8, 0.0});
    // PR class 0: .7 (1/2, 1) .45 (1/2, 1/2) .3 (1, 2/3): 1/2 + 0 + 1/2 (1/2 + 2/3)/2 = 19/24.
    // PR class 1: .6 (0, 0) .5 (1/2, 1/2) .4 (1, 2/3): 0 + 1/2 (0 + 1/2)/2 + 7/24 = 10/24.
    // PR class 2: .6 (1/2, 1) .5 (1/2, 1/2) .45 (1, 2/3): 19/24. Class 3: no positive, 0.0.
    check_list(stats, "pr_auc_score", {19.0 / 24, 10.0 / 24, 19.0 / 24, 0.0});
}

TEST_CASE("ROC and PR curves over fully tied scores", "[unit][metrics]") {
    // All four scores tie: one threshold, ROC is the diagonal (0.5); the PR curve is the single
    // point (recall 1, precision 1/4) joined to (0, 1): (1 + 1/4) / 2 = 0.625.
    const std::vector<float> labels = {1, 0, 0, 0};
    const std::vector<float> scores = {0.3F, 0.3F, 0.3F, 0.3F};
    const auto stats = metrics::compute_statistics("classify", labels, 1, scores, 1, 4);
    CHECK(stats.at("roc_auc_score")[1].get<double>() == Approx(0.5));
    CHECK(stats.at("pr_auc_score")[1].get<double>() == Approx(0.625));
    // Class 0 has three positives of four: (1 + 3/4) / 2.
    CHECK(stats.at("pr_auc_score")[0].get<double>() == Approx(0.875));
}

TEST_CASE("a perfect ranking gives ROC-AUC and PR-AUC of 1, a reversed one ROC-AUC 0",
          "[unit][metrics]") {
    const std::vector<float> labels = {0, 0, 1, 1};
    SECTION("perfect") {
        const std::vector<float> scores = {0.1F, 0.2F, 0.8F, 0.9F};
        const auto stats = metrics::compute_statistics("classify", labels, 1, scores, 1, 4);
        check_list(stats, "roc_auc_score", {1.0, 1.0});
        check_list(stats, "pr_auc_score", {1.0, 1.0});
        check_list(stats, "accuracy", {1.0, 1.0});
    }
    SECTION("reversed") {
        const std::vector<float> scores = {0.9F, 0.8F, 0.2F, 0.1F};
        const auto stats = metrics::compute_statistics("classify", labels, 1, scores, 1, 4);
        check_list(stats, "roc_auc_score", {0.0, 0.0});
        // Class 1, thresholds .9 (0, 0) .8 (0, 0) .2 (1/2, 1/3) .1 (1, 2/4):
        // 0 + 0 + 1/2 (0 + 1/3)/2 + 1/2 (1/3 + 1/2)/2 = 1/12 + 5/24 = 7/24.
        CHECK(stats.at("pr_auc_score")[1].get<double>() == Approx(7.0 / 24));
        check_list(stats, "accuracy", {0.0, 0.0});
    }
}

TEST_CASE("ROC-AUC is 0.0 when only one class is present", "[unit][metrics]") {
    const std::vector<float> labels = {1, 1, 1};
    const std::vector<float> scores = {0.9F, 0.2F, 0.7F};
    const auto stats = metrics::compute_statistics("classify", labels, 1, scores, 1, 3);
    check_list(stats, "roc_auc_score", {0.0, 0.0});
    // Class 0 is absent: PR undefined -> 0.0. Class 1 is every row: precision 1 everywhere.
    check_list(stats, "pr_auc_score", {0.0, 1.0});
    // Predictions 1, 0, 1: class 1 TP 2 FN 1; class 0 FP 1 TN 2.
    check_ints(stats, "TPs", {0, 2});
    check_ints(stats, "FNs", {0, 1});
    check_ints(stats, "FPs", {1, 0});
    check_ints(stats, "TNs", {2, 0});
    check_list(stats, "f_score", {0.0, 4.0 / 5});
}

TEST_CASE("a binary score of exactly 0.5 predicts class 0", "[unit][metrics]") {
    const auto predicted = metrics::predictions("classify", {0.5F, 0.51F, 0.49F}, 1, 3);
    CHECK(predicted == std::vector<double>{0, 1, 0});
}

TEST_CASE("predictions are the argmax class per row or the regression value", "[unit][metrics]") {
    CHECK(metrics::predictions("classify", {0.1F, 0.7F, 0.2F, 0.5F, 0.5F, 0.0F}, 3, 2) ==
          std::vector<double>{1, 0});
    CHECK(metrics::predictions("regress", {1.5F, -2.25F}, 1, 2) == std::vector<double>{1.5, -2.25});
}

TEST_CASE("regression statistics match hand-worked R2, MSE and MAE", "[unit][metrics]") {
    // y = 1 2 3 4, prediction 1.5 2 2 5: errors -.5 0 1 -1.
    // MSE = (.25 + 0 + 1 + 1) / 4 = .5625; MAE = (.5 + 0 + 1 + 1) / 4 = .625;
    // mean y 2.5, SS_tot = 2.25 + .25 + .25 + 2.25 = 5, R2 = 1 - 2.25 / 5 = .55.
    const auto stats =
        metrics::compute_statistics("regress", {1, 2, 3, 4}, 1, {1.5F, 2, 2, 5}, 1, 4);
    CHECK(stats.size() == 3);
    CHECK(stats.at("MSE").get<double>() == Approx(0.5625));
    CHECK(stats.at("MAE").get<double>() == Approx(0.625));
    CHECK(stats.at("R2").get<double>() == Approx(0.55));
}

TEST_CASE("R2 of constant labels is 1 for a perfect fit and 0 otherwise", "[unit][metrics]") {
    CHECK(metrics::compute_statistics("regress", {2, 2}, 1, {2, 2}, 1, 2).at("R2") == 1.0);
    CHECK(metrics::compute_statistics("regress", {2, 2}, 1, {2, 3}, 1, 2).at("R2") == 0.0);
}

TEST_CASE("multi-output regression averages the columns uniformly", "[unit][metrics]") {
    // Column a as in the single-output case (R2 .55, MSE .5625, MAE .625); column b perfect
    // (R2 1, MSE 0, MAE 0): averages .775, .28125, .3125.
    const std::vector<float> labels = {1, 0, 2, 2, 3, 0, 4, 2};
    const std::vector<float> scores = {1.5F, 0, 2, 2, 2, 0, 5, 2};
    const auto stats = metrics::compute_statistics("regress", labels, 2, scores, 2, 4);
    CHECK(stats.at("R2").get<double>() == Approx(0.775));
    CHECK(stats.at("MSE").get<double>() == Approx(0.28125));
    CHECK(stats.at("MAE").get<double>() == Approx(0.3125));
}

TEST_CASE("malformed input is refused with a message naming the field", "[unit][metrics]") {
    const std::vector<float> labels = {0, 1, 1, 0};
    const std::vector<float> scores = {0.2F, 0.7F};
    SECTION("unknown action") {
        auto r = metrics::try_compute_statistics("cluster", labels, 2, scores, 1, 2);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == synergos::sdk::ErrorCode::InvalidArgument);
        CHECK_THAT(r.error().message, Contains("cluster"));
    }
    SECTION("labels of the wrong size") {
        auto r = metrics::try_compute_statistics("classify", labels, 2, scores, 1, 3);
        REQUIRE_FALSE(r);
        CHECK_THAT(r.error().message, Contains("labels"));
    }
    SECTION("scores of the wrong size") {
        auto r = metrics::try_compute_statistics("classify", labels, 2, {0.1F}, 1, 2);
        REQUIRE_FALSE(r);
        CHECK_THAT(r.error().message, Contains("scores"));
    }
    SECTION("a score that is not finite names its row") {
        const float nan = std::numeric_limits<float>::quiet_NaN();
        auto r = metrics::try_compute_statistics("classify", labels, 2, {0.2F, nan}, 1, 2);
        REQUIRE_FALSE(r);
        CHECK_THAT(r.error().message, Contains("scores row 1"));
    }
    SECTION("a label row that is not one-hot names its row") {
        auto r = metrics::try_compute_statistics("classify", {0, 1, 1, 1}, 2, scores, 1, 2);
        REQUIRE_FALSE(r);
        CHECK_THAT(r.error().message, Contains("labels row 1"));
        auto half =
            metrics::try_compute_statistics("classify", {0.5F, 0.5F, 1, 0}, 2, scores, 1, 2);
        REQUIRE_FALSE(half);
        CHECK_THAT(half.error().message, Contains("labels row 0"));
    }
    SECTION("a binary 0/1 label column holding another value") {
        auto r = metrics::try_compute_statistics("classify", {0, 2}, 1, scores, 1, 2);
        REQUIRE_FALSE(r);
        CHECK_THAT(r.error().message, Contains("labels row 1"));
    }
    SECTION("one probability column for more than two classes") {
        auto r = metrics::try_compute_statistics("classify", {1, 0, 0, 0, 1, 0}, 3, scores, 1, 2);
        REQUIRE_FALSE(r);
        CHECK_THAT(r.error().message, Contains("score_width"));
    }
    SECTION("no rows, or widths below 1") {
        CHECK_THAT(metrics::try_compute_statistics("regress", {}, 1, {}, 1, 0).error().message,
                   Contains("rows"));
        CHECK_THAT(metrics::try_compute_statistics("regress", {1}, 0, {1}, 1, 1).error().message,
                   Contains("label_width"));
        CHECK_THAT(metrics::try_compute_statistics("regress", {1}, 1, {1}, 0, 1).error().message,
                   Contains("score_width"));
        CHECK_THAT(metrics::try_predictions("regress", {1}, -1, 1).error().message,
                   Contains("score_width"));
    }
    SECTION("regression widths that differ") {
        auto r = metrics::try_compute_statistics("regress", {1, 2}, 1, {1, 2, 3, 4}, 2, 2);
        REQUIRE_FALSE(r);
        CHECK_THAT(r.error().message, Contains("label_width"));
    }
    SECTION("the throwing API throws std::invalid_argument with the same message") {
        CHECK_THROWS_AS(metrics::compute_statistics("classify", labels, 2, scores, 1, 3),
                        std::invalid_argument);
        CHECK_THROWS_WITH(metrics::predictions("classify", scores, 1, 5), Contains("scores"));
    }
}
