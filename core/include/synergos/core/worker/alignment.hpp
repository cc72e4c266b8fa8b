// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file alignment.hpp
/// Alignment by name (synergos-federated-learning.md 5.4, "Recommendation for C++"): the TTP
/// sends the ordered supersets of feature and label names; a worker rebuilds its matrices by
/// name lookup, placing each of its columns at the superset position and zero-filling the rest.
/// Threading: pure functions.

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <synergos/sdk/data_pipeline.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::core::worker {

/// Bytes of a `rows` x `width` float matrix, or UINT64_MAX when that does not fit 64 bits.
std::uint64_t matrix_bytes(std::int64_t rows, std::size_t width);

/// Reorders `data`'s feature columns to `superset` (zero-filling missing ones) and sets
/// `feature_names` and `sample_shape = {superset.size()}`. InvalidArgument names a feature of
/// `data` that the superset lacks (`split` names the split), a duplicate superset name, or a
/// result larger than `max_bytes`; all checked before the new matrix is allocated.
sdk::Status align_features(sdk::Dataset& data, const std::vector<std::string>& superset,
                           const std::string& split,
                           std::uint64_t max_bytes = std::numeric_limits<std::uint64_t>::max());

/// The same for the label columns (`label_names`), e.g. one-hot `target_<class>` columns.
sdk::Status align_labels(sdk::Dataset& data, const std::vector<std::string>& superset,
                         const std::string& split,
                         std::uint64_t max_bytes = std::numeric_limits<std::uint64_t>::max());

}  // namespace synergos::core::worker
