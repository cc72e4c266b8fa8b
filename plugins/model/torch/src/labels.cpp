// SPDX-License-Identifier: Apache-2.0
#include "labels.hpp"

#include <cmath>
#include <string>

#include "spec_error.hpp"

namespace synergos::plugins::torch {

std::int64_t label_width(const sdk::Dataset& data) {
    if (data.rows <= 0) {
        throw SpecError("dataset has no rows");
    }
    const auto rows = static_cast<std::size_t>(data.rows);
    std::int64_t width = static_cast<std::int64_t>(data.label_names.size());
    if (width == 0) {
        if (data.labels.size() % rows != 0) {
            throw SpecError("dataset labels hold " + std::to_string(data.labels.size()) +
                            " values, not a multiple of its " + std::to_string(rows) + " rows");
        }
        width = static_cast<std::int64_t>(data.labels.size() / rows);
    }
    if (width == 0 || data.labels.size() != rows * static_cast<std::size_t>(width)) {
        throw SpecError("dataset labels hold " + std::to_string(data.labels.size()) +
                        " values, expected rows x label columns = " + std::to_string(rows) + " x " +
                        std::to_string(width));
    }
    return width;
}

bool is_classification(const TrainArgs& args, const sdk::Dataset& data) {
    if (!args.action.empty()) {
        return args.action == "classify";
    }
    if (data.label_names.empty()) {
        return false;
    }
    for (const std::string& name : data.label_names) {
        if (name.rfind("target_", 0) != 0) {
            return false;
        }
    }
    return true;
}

Targets make_targets(const sdk::Dataset& data, bool classify, const TrainArgs& args,
                     std::int64_t output_width) {
    const CriterionKind criterion = args.criterion;
    const std::int64_t width = label_width(data);
    const std::int64_t rows = data.rows;
    const bool wants_index =
        criterion == CriterionKind::NllLoss || criterion == CriterionKind::CrossEntropyLoss;
    for (std::size_t i = 0; i < data.labels.size(); ++i) {
        if (!std::isfinite(data.labels[i])) {
            throw SpecError("dataset label of row " +
                            std::to_string(i / static_cast<std::size_t>(width)) +
                            " is not a finite number");
        }
    }
    Targets t;
    t.rows = rows;
    if (!classify) {
        if (wants_index) {
            throw SpecError("criterion " + args.criterion_name +
                            " needs class labels, but the project regresses "
                            "(use MSELoss, L1Loss or SmoothL1Loss)");
        }
        if (output_width != width) {
            throw SpecError("the network outputs " + std::to_string(output_width) +
                            " columns but the regression labels have " + std::to_string(width));
        }
        t.kind = Targets::Kind::Float;
        t.width = width;
        t.values = data.labels;
        return t;
    }

    std::vector<std::int64_t> classes(static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r) {
        const float* row = data.labels.data() + r * width;
        std::int64_t best = 0;
        for (std::int64_t c = 1; c < width; ++c) {
            if (row[c] > row[best]) {
                best = c;
            }
        }
        classes[static_cast<std::size_t>(r)] = best;
    }
    if (wants_index) {
        if (output_width < 2 || output_width < width) {
            throw SpecError("criterion " + args.criterion_name +
                            " needs one output column per class: the labels have " +
                            std::to_string(width) + " classes, the network outputs " +
                            std::to_string(output_width));
        }
        t.kind = Targets::Kind::ClassIndex;
        t.classes = std::move(classes);
        return t;
    }
    t.kind = Targets::Kind::Float;
    if (output_width == 1) {
        if (width > 2) {
            throw SpecError("the network outputs 1 column but the labels have " +
                            std::to_string(width) +
                            " classes (set the last layer's width to the class count)");
        }
        t.width = 1;
        t.values.resize(static_cast<std::size_t>(rows));
        for (std::size_t r = 0; r < classes.size(); ++r) {
            t.values[r] = static_cast<float>(classes[r]);
        }
        return t;
    }
    if (output_width < width) {
        throw SpecError("the network outputs " + std::to_string(output_width) +
                        " columns but the labels have " + std::to_string(width) + " classes");
    }
    t.width = output_width;
    t.values.assign(static_cast<std::size_t>(rows * output_width), 0.0F);
    for (std::size_t r = 0; r < classes.size(); ++r) {
        t.values[r * static_cast<std::size_t>(output_width) +
                 static_cast<std::size_t>(classes[r])] = 1.0F;
    }
    return t;
}

}  // namespace synergos::plugins::torch
