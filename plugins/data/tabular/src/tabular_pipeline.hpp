// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>

#include <synergos/sdk/data_pipeline.hpp>
#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>

namespace synergos::plugins::tabular {

/// Bounds on what one load may read.
struct TabularLimits {
    std::int64_t max_file_bytes = std::int64_t{1} << 30;  ///< per CSV file
    std::int64_t max_levels = 1000;  ///< distinct levels of one categorical column (one-hot width)
    /// Features and labels of one split as floats: max_levels is per column, so 2,500 category
    /// columns of 1,000 levels made 1,000 rows of 10 GB.
    std::int64_t max_split_bytes = std::int64_t{4} << 30;
};

/// Loads the CSV files of `request.directories` (each with a `schema.json`) into one split:
/// concatenation, imputation, de-duplication, one-hot encoding, sorted columns, per-split min-max
/// scaling and label encoding, as described in the plugin README.
/// Errors: InvalidArgument naming the file and the column; never throws.
sdk::Result<sdk::Dataset> load_tabular(const sdk::DataRequest& request,
                                       const TabularLimits& limits) noexcept;

/// The `tabular` data pipeline (CSV + schema.json).
/// Threading: stateless after construction; `load` may run on several threads at once.
class TabularPipeline final : public sdk::DataPipeline {
public:
    TabularPipeline(sdk::HostContext& host, const sdk::Options& options);

    std::string datatype() const noexcept override { return "tabular"; }
    sdk::Result<sdk::Dataset> load(const sdk::DataRequest& request) noexcept override;

private:
    sdk::HostContext& host_;
    TabularLimits limits_;
};

extern const sdk::PluginDescriptor kTabularDescriptor;

}  // namespace synergos::plugins::tabular
