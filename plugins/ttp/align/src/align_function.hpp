// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/ttp_function.hpp>

namespace synergos::plugins::align {

/// Feature alignment (process `preprocess`): asks every worker of the grid for its column names,
/// dtypes and class labels (never rows), builds the union by name, records for each participant
/// which superset columns it lacks, and fixes each experiment's input and output sizes.
class AlignFunction final : public sdk::TtpFunction {
public:
    AlignFunction(sdk::HostContext& host, const sdk::Options& options);

    std::vector<std::string> processes() const override { return {"preprocess"}; }
    sdk::Result<std::string> execute(sdk::JobContext& context, std::string_view job_json) noexcept override;
    sdk::Result<std::vector<sdk::Mutation>> archive(sdk::ArchiveContext& context, std::string_view job_json,
                                                    std::string_view outputs_json) noexcept override;

private:
    sdk::HostContext& host_;
    std::int64_t poll_timeout_ms_;
};

/// Sorts label names: numerically by their suffix when every name is `target_<number>`, else as
/// strings. Exposed for tests.
std::vector<std::string> sort_labels(std::vector<std::string> labels);

/// Rewrites a model's first layer input size and last layer output size (the original's
/// auto-fix). Exposed for tests.
nlohmann::json auto_fix_model(nlohmann::json model, std::size_t x_count, std::size_t y_count);

}  // namespace synergos::plugins::align
