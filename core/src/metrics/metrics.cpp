// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/metrics/metrics.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace synergos::core::metrics {

namespace {

using sdk::ErrorCode;
using sdk::Result;

/// Per-class confusion counts.
struct Counts {
    std::int64_t tp = 0;
    std::int64_t tn = 0;
    std::int64_t fp = 0;
    std::int64_t fn = 0;
};

double ratio(std::int64_t num, std::int64_t den) {
    return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
}

sdk::Error invalid(std::string message) {
    return sdk::Error{ErrorCode::InvalidArgument, "metrics: " + std::move(message)};
}

/// Checks that `values` holds exactly rows x width finite values.
std::optional<sdk::Error> check_buffer(const char* name, const std::vector<float>& values,
                                       std::int64_t width, std::int64_t rows) {
    const auto size = static_cast<std::uint64_t>(values.size());
    const auto w = static_cast<std::uint64_t>(width);
    // Division instead of rows * width: the product of two caller values may overflow.
    if (size % w != 0 || size / w != static_cast<std::uint64_t>(rows)) {
        return invalid(std::string(name) + " has " + std::to_string(size) +
                       " values, expected rows x width = " + std::to_string(rows) + " x " +
                       std::to_string(width));
    }
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (!std::isfinite(values[i])) {
            return invalid(std::string(name) + " row " + std::to_string(i / w) + " column " +
                           std::to_string(i % w) + " is not a finite number");
        }
    }
    return std::nullopt;
}

std::optional<sdk::Error> check_shape(std::int64_t rows, std::int64_t score_width) {
    if (rows < 1) {
        return invalid("rows must be at least 1, got " + std::to_string(rows));
    }
    if (score_width < 1) {
        return invalid("score_width must be at least 1, got " + std::to_string(score_width));
    }
    return std::nullopt;
}

/// Predicted class per row. Binary probability (width 1): class 1 when score > 0.5. Otherwise
/// argmax, the first maximum winning (numpy's argmax).
std::vector<std::int64_t> predicted_classes(const std::vector<float>& scores,
                                            std::int64_t score_width, std::int64_t rows) {
    std::vector<std::int64_t> out(static_cast<std::size_t>(rows));
    const auto w = static_cast<std::size_t>(score_width);
    for (std::size_t r = 0; r < out.size(); ++r) {
        const float* row = scores.data() + r * w;
        if (w == 1) {
            out[r] = row[0] > 0.5F ? 1 : 0;
        } else {
            out[r] = static_cast<std::int64_t>(std::max_element(row, row + w) - row);
        }
    }
    return out;
}

/// Area under the ROC curve of `keys` (higher = more positive) against `positive`: the
/// trapezoid over distinct thresholds, which equals the Mann-Whitney U statistic with ties
/// counted one half. 0.0 when only one class is present (undefined).
double roc_auc(const std::vector<std::pair<double, bool>>& sorted_desc, std::int64_t positives) {
    const auto n = static_cast<std::int64_t>(sorted_desc.size());
    const std::int64_t negatives = n - positives;
    if (positives == 0 || negatives == 0) {
        return 0.0;
    }
    double area = 0.0;
    std::int64_t tp = 0;
    std::int64_t fp = 0;
    std::size_t i = 0;
    while (i < sorted_desc.size()) {
        const std::int64_t tp_before = tp;
        const std::int64_t fp_before = fp;
        const double threshold = sorted_desc[i].first;
        // Every sample tied at this threshold enters the curve at once.
        while (i < sorted_desc.size() && sorted_desc[i].first == threshold) {
            (sorted_desc[i].second ? tp : fp) += 1;
            ++i;
        }
        area += static_cast<double>(fp - fp_before) * static_cast<double>(tp + tp_before) / 2.0;
    }
    return area / (static_cast<double>(positives) * static_cast<double>(negatives));
}

/// Trapezoidal area under the precision-recall curve as sklearn's
/// `auc(*precision_recall_curve(...)[1::-1])`: points at each distinct threshold down to the
/// first one reaching full recall, plus the end point (recall 0, precision 1). 0.0 when the class
/// is absent (recall undefined).
double pr_auc(const std::vector<std::pair<double, bool>>& sorted_desc, std::int64_t positives) {
    if (positives == 0) {
        return 0.0;
    }
    const double p = static_cast<double>(positives);
    double area = 0.0;
    double prev_recall = 0.0;
    double prev_precision = 1.0;
    std::int64_t tp = 0;
    std::int64_t fp = 0;
    std::size_t i = 0;
    while (i < sorted_desc.size() && tp < positives) {
        const double threshold = sorted_desc[i].first;
        while (i < sorted_desc.size() && sorted_desc[i].first == threshold) {
            (sorted_desc[i].second ? tp : fp) += 1;
            ++i;
        }
        const double recall = static_cast<double>(tp) / p;
        const double precision = static_cast<double>(tp) / static_cast<double>(tp + fp);
        area += (recall - prev_recall) * (precision + prev_precision) / 2.0;
        prev_recall = recall;
        prev_precision = precision;
    }
    return area;
}

Result<nlohmann::json> classify(const std::vector<float>& labels, std::int64_t label_width,
                                const std::vector<float>& scores, std::int64_t score_width,
                                std::int64_t rows) {
    // label_width 1 is a binary 0/1 column; otherwise one-hot over label_width classes.
    const std::int64_t classes = label_width == 1 ? 2 : label_width;
    if (score_width != classes && !(classes == 2 && score_width == 1)) {
        return invalid("score_width " + std::to_string(score_width) + " does not fit " +
                       std::to_string(classes) + " classes (label_width " +
                       std::to_string(label_width) + "): expected " + std::to_string(classes) +
                       (classes == 2 ? " or 1" : ""));
    }
    const auto n = static_cast<std::size_t>(rows);
    const auto lw = static_cast<std::size_t>(label_width);
    std::vector<std::int64_t> truth(n);
    for (std::size_t r = 0; r < n; ++r) {
        const float* row = labels.data() + r * lw;
        if (lw == 1) {
            if (row[0] != 0.0F && row[0] != 1.0F) {
                return invalid("labels row " + std::to_string(r) +
                               " is not a class (binary labels of width 1 must be 0 or 1)");
            }
            truth[r] = row[0] == 1.0F ? 1 : 0;
            continue;
        }
        std::size_t ones = 0;
        for (std::size_t c = 0; c < lw; ++c) {
            if (row[c] == 1.0F) {
                ++ones;
                truth[r] = static_cast<std::int64_t>(c);
            } else if (row[c] != 0.0F) {
                ones = 2;  // anything but 0/1 makes the row invalid
            }
        }
        if (ones != 1) {
            return invalid("labels row " + std::to_string(r) +
                           " is not one-hot (exactly one 1 and zeros elsewhere)");
        }
    }
    const std::vector<std::int64_t> predicted = predicted_classes(scores, score_width, rows);

    const auto c_count = static_cast<std::size_t>(classes);
    std::vector<Counts> counts(c_count);
    for (std::size_t r = 0; r < n; ++r) {
        for (std::size_t c = 0; c < c_count; ++c) {
            const bool is_true = truth[r] == static_cast<std::int64_t>(c);
            const bool is_pred = predicted[r] == static_cast<std::int64_t>(c);
            Counts& k = counts[c];
            if (is_true && is_pred) {
                ++k.tp;
            } else if (is_true) {
                ++k.fn;
            } else if (is_pred) {
                ++k.fp;
            } else {
                ++k.tn;
            }
        }
    }

    nlohmann::json accuracy = nlohmann::json::array();
    nlohmann::json roc = nlohmann::json::array();
    nlohmann::json pr = nlohmann::json::array();
    nlohmann::json f1 = nlohmann::json::array();
    nlohmann::json tps = nlohmann::json::array();
    nlohmann::json tns = nlohmann::json::array();
    nlohmann::json fps = nlohmann::json::array();
    nlohmann::json fns = nlohmann::json::array();
    nlohmann::json tpr = nlohmann::json::array();
    nlohmann::json tnr = nlohmann::json::array();
    nlohmann::json ppv = nlohmann::json::array();
    nlohmann::json npv = nlohmann::json::array();
    nlohmann::json fpr = nlohmann::json::array();
    nlohmann::json fnr = nlohmann::json::array();
    nlohmann::json fdr = nlohmann::json::array();

    const auto sw = static_cast<std::size_t>(score_width);
    std::vector<std::pair<double, bool>> ranked(n);
    for (std::size_t c = 0; c < c_count; ++c) {
        std::int64_t positives = 0;
        for (std::size_t r = 0; r < n; ++r) {
            double key = 0.0;
            if (sw == 1) {
                // Binary probability column: class 0's score is 1 - s, which ranks as -s
                // (exactly, without rounding 1 - s).
                const double s = scores[r];
                key = c == 1 ? s : -s;
            } else {
                key = scores[r * sw + c];
            }
            const bool is_positive = truth[r] == static_cast<std::int64_t>(c);
            positives += is_positive ? 1 : 0;
            ranked[r] = {key, is_positive};
        }
        std::sort(ranked.begin(), ranked.end(),
                  [](const auto& a, const auto& b) { return a.first > b.first; });

        const Counts& k = counts[c];
        accuracy.push_back(ratio(k.tp + k.tn, static_cast<std::int64_t>(n)));
        roc.push_back(roc_auc(ranked, positives));
        pr.push_back(pr_auc(ranked, positives));
        f1.push_back(ratio(2 * k.tp, 2 * k.tp + k.fp + k.fn));
        tps.push_back(k.tp);
        tns.push_back(k.tn);
        fps.push_back(k.fp);
        fns.push_back(k.fn);
        tpr.push_back(ratio(k.tp, k.tp + k.fn));
        tnr.push_back(ratio(k.tn, k.tn + k.fp));
        ppv.push_back(ratio(k.tp, k.tp + k.fp));
        npv.push_back(ratio(k.tn, k.tn + k.fn));
        fpr.push_back(ratio(k.fp, k.fp + k.tn));
        fnr.push_back(ratio(k.fn, k.fn + k.tp));
        fdr.push_back(ratio(k.fp, k.fp + k.tp));
    }

    nlohmann::json out = nlohmann::json::object();
    out["accuracy"] = std::move(accuracy);
    out["roc_auc_score"] = std::move(roc);
    out["pr_auc_score"] = std::move(pr);
    out["f_score"] = std::move(f1);
    out["TPs"] = std::move(tps);
    out["TNs"] = std::move(tns);
    out["FPs"] = std::move(fps);
    out["FNs"] = std::move(fns);
    out["TPRs"] = std::move(tpr);
    out["TNRs"] = std::move(tnr);
    out["PPVs"] = std::move(ppv);
    out["NPVs"] = std::move(npv);
    out["FPRs"] = std::move(fpr);
    out["FNRs"] = std::move(fnr);
    out["FDRs"] = std::move(fdr);
    return out;
}

Result<nlohmann::json> regress(const std::vector<float>& labels, std::int64_t label_width,
                               const std::vector<float>& scores, std::int64_t score_width,
                               std::int64_t rows) {
    if (score_width != label_width) {
        return invalid("score_width " + std::to_string(score_width) + " must equal label_width " +
                       std::to_string(label_width) + " for regress");
    }
    const auto n = static_cast<std::size_t>(rows);
    const auto w = static_cast<std::size_t>(label_width);
    double r2_sum = 0.0;
    double mse_sum = 0.0;
    double mae_sum = 0.0;
    for (std::size_t c = 0; c < w; ++c) {
        double mean = 0.0;
        for (std::size_t r = 0; r < n; ++r) {
            mean += labels[r * w + c];
        }
        mean /= static_cast<double>(n);
        double ss_res = 0.0;
        double ss_tot = 0.0;
        double abs_sum = 0.0;
        for (std::size_t r = 0; r < n; ++r) {
            const double y = labels[r * w + c];
            const double e = y - static_cast<double>(scores[r * w + c]);
            ss_res += e * e;
            abs_sum += std::fabs(e);
            ss_tot += (y - mean) * (y - mean);
        }
        // sklearn r2_score: constant labels give 1.0 for a perfect fit, else 0.0.
        if (ss_tot != 0.0) {
            r2_sum += 1.0 - ss_res / ss_tot;
        } else {
            r2_sum += ss_res == 0.0 ? 1.0 : 0.0;
        }
        mse_sum += ss_res / static_cast<double>(n);
        mae_sum += abs_sum / static_cast<double>(n);
    }
    const double outputs = static_cast<double>(w);
    return nlohmann::json{
        {"R2", r2_sum / outputs}, {"MSE", mse_sum / outputs}, {"MAE", mae_sum / outputs}};
}

template <typename T>
T value_or_throw(Result<T> result) {
    if (!result) {
        throw std::invalid_argument(result.error().message);
    }
    return std::move(result).value();
}

}  // namespace

Result<nlohmann::json> try_compute_statistics(std::string_view action,
                                              const std::vector<float>& labels,
                                              std::int64_t label_width,
                                              const std::vector<float>& scores,
                                              std::int64_t score_width, std::int64_t rows) {
    if (action != kClassify && action != kRegress) {
        return invalid("unknown action '" + std::string(action) +
                       "' (expected 'classify' or 'regress')");
    }
    if (auto error = check_shape(rows, score_width)) {
        return *error;
    }
    if (label_width < 1) {
        return invalid("label_width must be at least 1, got " + std::to_string(label_width));
    }
    if (auto error = check_buffer("labels", labels, label_width, rows)) {
        return *error;
    }
    if (auto error = check_buffer("scores", scores, score_width, rows)) {
        return *error;
    }
    try {
        if (action == kClassify) {
            return classify(labels, label_width, scores, score_width, rows);
        }
        return regress(labels, label_width, scores, score_width, rows);
    } catch (const std::bad_alloc&) {
        return sdk::Error{ErrorCode::ResourceExhausted,
                          "metrics: out of memory for " + std::to_string(rows) + " rows"};
    }
}

nlohmann::json compute_statistics(std::string_view action, const std::vector<float>& labels,
                                  std::int64_t label_width, const std::vector<float>& scores,
                                  std::int64_t score_width, std::int64_t rows) {
    return value_or_throw(
        try_compute_statistics(action, labels, label_width, scores, score_width, rows));
}

Result<std::vector<double>> try_predictions(std::string_view action,
                                            const std::vector<float>& scores,
                                            std::int64_t score_width, std::int64_t rows) {
    if (action != kClassify && action != kRegress) {
        return invalid("unknown action '" + std::string(action) +
                       "' (expected 'classify' or 'regress')");
    }
    if (auto error = check_shape(rows, score_width)) {
        return *error;
    }
    if (auto error = check_buffer("scores", scores, score_width, rows)) {
        return *error;
    }
    if (action == kRegress) {
        return std::vector<double>(scores.begin(), scores.end());
    }
    const std::vector<std::int64_t> classes = predicted_classes(scores, score_width, rows);
    return std::vector<double>(classes.begin(), classes.end());
}

std::vector<double> predictions(std::string_view action, const std::vector<float>& scores,
                                std::int64_t score_width, std::int64_t rows) {
    return value_or_throw(try_predictions(action, scores, score_width, rows));
}

}  // namespace synergos::core::metrics
