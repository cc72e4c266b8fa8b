// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file data_pipeline.hpp
/// Plugin kind `data`: turns a worker's tagged folders into tensors. Runs on workers only; raw
/// rows never leave the worker.

#include <cstdint>
#include <string>
#include <vector>

#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::sdk {

/// What to load.
struct DataRequest {
    std::string action;                    ///< "classify" or "regress"
    std::vector<std::string> directories;  ///< absolute dataset folders, already checked by the
                                           ///< host to lie inside the worker's data directory
    std::string options_json = "{}";      ///< pipeline options (image size, colour ...)
};

/// A loaded split. Features are float32, row-major: rows x prod(sample_shape).
/// Labels: classify: one-hot, rows x label_names.size(); regress: rows x 1 (raw target).
struct Dataset {
    std::vector<std::string> feature_names;  ///< tabular: column names after one-hot; image: empty
    std::vector<std::string> label_names;    ///< "target_<class>" (classify) or "target" (regress)
    std::vector<std::int64_t> sample_shape;  ///< e.g. {28} or {1, 28, 28}
    std::int64_t rows = 0;
    std::vector<float> features;
    std::vector<float> labels;
    std::string schema_json = "{}";    ///< column -> dtype (descriptive, may leave the worker)
    std::string metadata_json = "{}";  ///< counts and per-column summaries (may leave the worker)
};

/// A data pipeline.
/// Threading: `load` may be called from several threads concurrently.
/// Errors: a malformed file gets InvalidArgument naming the file and the column; never a crash.
class BOOST_SYMBOL_VISIBLE DataPipeline : public PluginObject {
public:
    /// The `datatype` in metadata.json this pipeline handles ("tabular", "image").
    virtual std::string datatype() const = 0;
    virtual Result<Dataset> load(const DataRequest& request) noexcept = 0;
};

}  // namespace synergos::sdk
