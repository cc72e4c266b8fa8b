// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/worker/alignment.hpp>

#include <algorithm>
#include <cstddef>
#include <unordered_map>

namespace synergos::core::worker {

namespace {

/// Rebuilds a rows x names.size() matrix as rows x superset.size(), by name.
sdk::Status realign(std::vector<float>& values, std::vector<std::string>& names, std::int64_t rows,
                    const std::vector<std::string>& superset, const std::string& what,
                    const std::string& split, std::uint64_t max_bytes) {
    std::unordered_map<std::string, std::size_t> position;
    position.reserve(superset.size());
    for (std::size_t i = 0; i < superset.size(); ++i) {
        if (!position.emplace(superset[i], i).second) {
            return {sdk::ErrorCode::InvalidArgument,
                    "alignment " + what + " names '" + superset[i] + "' twice"};
        }
    }
    const std::size_t width = names.size();
    const auto n = static_cast<std::size_t>(rows);
    if (values.size() != n * width) {
        return {sdk::ErrorCode::Internal, "split '" + split + "' has " +
                                              std::to_string(values.size()) + " " + what +
                                              " values for " + std::to_string(n) + " rows of " +
                                              std::to_string(width) + " columns"};
    }
    std::vector<std::size_t> target(width);
    for (std::size_t c = 0; c < width; ++c) {
        auto it = position.find(names[c]);
        if (it == position.end()) {
            return {sdk::ErrorCode::InvalidArgument, "column '" + names[c] + "' of split '" +
                                                         split + "' is not in the alignment " +
                                                         what + " superset (re-run the alignment)"};
        }
        target[c] = it->second;
    }
    const std::size_t out_width = superset.size();
    // Checked before allocating: a long junk superset must not exhaust the worker's memory.
    const std::uint64_t bytes = matrix_bytes(rows, out_width);
    if (bytes > max_bytes) {
        return {sdk::ErrorCode::InvalidArgument,
                "alignment." + what + " has " + std::to_string(out_width) + " names: split '" +
                    split + "' would take " + std::to_string(n) + " rows x " +
                    std::to_string(out_width) + " x 4 bytes, more than the worker's budget of " +
                    std::to_string(max_bytes) + " bytes"};
    }
    std::vector<float> out(n * out_width, 0.0f);
    for (std::size_t r = 0; r < n; ++r) {
        const float* src = values.data() + r * width;
        float* dst = out.data() + r * out_width;
        for (std::size_t c = 0; c < width; ++c) {
            dst[target[c]] = src[c];
        }
    }
    values = std::move(out);
    names = superset;
    return {};
}

}  // namespace

std::uint64_t matrix_bytes(std::int64_t rows, std::size_t width) {
    constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
    const auto r = static_cast<std::uint64_t>(std::max<std::int64_t>(rows, 0));
    const auto w = static_cast<std::uint64_t>(width);
    if (r != 0 && w > kMax / sizeof(float) / r) {
        return kMax;
    }
    return r * w * sizeof(float);
}

sdk::Status align_features(sdk::Dataset& data, const std::vector<std::string>& superset,
                           const std::string& split, std::uint64_t max_bytes) {
    auto st =
        realign(data.features, data.feature_names, data.rows, superset, "X", split, max_bytes);
    if (st) {
        data.sample_shape = {static_cast<std::int64_t>(superset.size())};
    }
    return st;
}

sdk::Status align_labels(sdk::Dataset& data, const std::vector<std::string>& superset,
                         const std::string& split, std::uint64_t max_bytes) {
    return realign(data.labels, data.label_names, data.rows, superset, "y", split, max_bytes);
}

}  // namespace synergos::core::worker
