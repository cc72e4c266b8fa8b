// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file metrics.hpp
/// Validation statistics a worker computes from its own labels and the model's scores
/// (reference: synergos-federated-learning.md 6.1, key names from synergos-rest-api.md 7.1).
///
/// Layout of the inputs: row-major `rows x width` float buffers.
/// - "classify": `labels` are one-hot rows of width C (`label_width`). `label_width` 1 is also
///   accepted for binary tasks (a 0/1 class column, C = 2). `scores` have width C (one score per
///   class, prediction = argmax, first maximum wins) or, when C = 2, width 1 (probability of
///   class 1, prediction = score > 0.5).
/// - "regress": `labels` and `scores` have the same width (normally 1); with a width above 1
///   every statistic is the uniform average over the columns (sklearn's default).
///
/// Output of "classify": a JSON object whose every value is a list with exactly C entries, one
/// per class, in class order (binary: class 0 then class 1). This fixes the original's
/// confusion-matrix quirk (lists shorter than C when a class never occurs):
/// - floats: `accuracy` (one-vs-rest), `roc_auc_score` (trapezoid over distinct thresholds, ties
///   count one half, 0.0 when the class or its complement is absent), `pr_auc_score` (trapezoidal
///   area under the precision-recall curve as sklearn `auc(recall, precision)`, not average
///   precision; 0.0 when the class is absent), `f_score` (binary F1 of that class), `TPRs`,
///   `TNRs`, `PPVs`, `NPVs`, `FPRs`, `FNRs`, `FDRs` (0.0 when the denominator is 0);
/// - integers: `TPs`, `TNs`, `FPs`, `FNs`.
/// Output of "regress": `{"R2": float, "MSE": float, "MAE": float}`; R2 follows sklearn when the
/// labels are constant (1.0 for a perfect fit, else 0.0).
///
/// Errors: malformed input (unknown action, widths that do not fit, a buffer whose size is not
/// rows x width, no rows, a non-finite value, a label row that is not one-hot) is refused with a
/// message naming the field and, for values, the row. Nothing is computed from partial input.
/// Threading: pure functions, safe from any thread.

#include <cstdint>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/status.hpp>

namespace synergos::core::metrics {

/// The two actions.
inline constexpr std::string_view kClassify = "classify";
inline constexpr std::string_view kRegress = "regress";

/// Computes the statistics described above.
/// @throws std::invalid_argument with a message naming the field when the input is malformed.
nlohmann::json compute_statistics(std::string_view action, const std::vector<float>& labels,
                                  std::int64_t label_width, const std::vector<float>& scores,
                                  std::int64_t score_width, std::int64_t rows);

/// As `compute_statistics`, reporting malformed input as `InvalidArgument` instead of throwing.
sdk::Result<nlohmann::json> try_compute_statistics(std::string_view action,
                                                   const std::vector<float>& labels,
                                                   std::int64_t label_width,
                                                   const std::vector<float>& scores,
                                                   std::int64_t score_width, std::int64_t rows);

/// The prediction per row: for "classify" the class index (argmax of the scores, or score > 0.5
/// when `score_width` is 1), one value per row; for "regress" the scores themselves
/// (`rows x score_width` values).
/// @throws std::invalid_argument with a message naming the field when the input is malformed.
std::vector<double> predictions(std::string_view action, const std::vector<float>& scores,
                                std::int64_t score_width, std::int64_t rows);

/// As `predictions`, reporting malformed input as `InvalidArgument` instead of throwing.
sdk::Result<std::vector<double>> try_predictions(std::string_view action,
                                                 const std::vector<float>& scores,
                                                 std::int64_t score_width, std::int64_t rows);

}  // namespace synergos::core::metrics
