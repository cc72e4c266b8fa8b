// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file alignment.hpp
/// Alignment by name (synergos-federated-learning.md 5.4, "Recommendation for C++"): the TTP
/// sends the ordered supersets of feature and label names; a worker rebuilds its matrices by
/// name lookup, placing each of its columns at the superset position and zero-filling the rest.
/// Threading: pure functions.

#include <string>
#include <vector>

#include <synergos/sdk/data_pipeline.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::core::worker {

/// Reorders `data`'s feature columns to `superset` (zero-filling missing ones) and sets
/// `feature_names` and `sample_shape = {superset.size()}`. InvalidArgument names a feature of
/// `data` that the superset lacks (`split` names the split), or a duplicate superset name.
sdk::Status align_features(sdk::Dataset& data, const std::vector<std::string>& superset,
                           const std::string& split);

/// The same for the label columns (`label_names`), e.g. one-hot `target_<class>` columns.
sdk::Status align_labels(sdk::Dataset& data, const std::vector<std::string>& superset,
                         const std::string& split);

}  // namespace synergos::core::worker
