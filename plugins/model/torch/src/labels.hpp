// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file labels.hpp
/// Turns a dataset's labels (one-hot for classify, raw for regress) into the targets the
/// criterion expects, following the original's label formatting (see README "Labels").

#include <cstdint>
#include <vector>

#include <synergos/sdk/data_pipeline.hpp>

#include "train_args.hpp"

namespace synergos::plugins::torch {

/// Targets in the layout the criterion takes.
struct Targets {
    enum class Kind {
        Float,      ///< rows x width float32 (binary 0/1, one-hot, or raw regression values)
        ClassIndex  ///< rows int64 class indices (NLLLoss, CrossEntropyLoss)
    };
    Kind kind = Kind::Float;
    std::int64_t rows = 0;
    std::int64_t width = 0;  ///< columns of a Float target
    std::vector<float> values;
    std::vector<std::int64_t> classes;
};

/// Label columns of `data`: label_names.size() when given, else labels.size() / rows.
/// Throws SpecError when the label buffer does not match.
std::int64_t label_width(const sdk::Dataset& data);

/// True for classification: `args.action` when set, otherwise label names "target_<class>"
/// (regression data has the single label "target").
bool is_classification(const TrainArgs& args, const sdk::Dataset& data);

/// Condenses the labels for `args.criterion` given the network's output width. Classify: the class
/// is the arg-max of the one-hot row; NLLLoss/CrossEntropyLoss take class indices, a one-column
/// output takes the binary class as float (<= 2 classes), a wider output takes one-hot floats.
/// Regress: raw values, as many columns as the output. Throws SpecError on any mismatch.
Targets make_targets(const sdk::Dataset& data, bool classify, const TrainArgs& args,
                     std::int64_t output_width);

}  // namespace synergos::plugins::torch
