// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file evaluation.hpp
/// The shared body of `validate` and `predict`: the trained global model is sent to the chosen
/// participants' workers, each runs it on its own split (`evaluate` or `predict`), computes
/// statistics against its own labels and keeps predictions and scores on its disk; only the
/// statistics travel back and are archived (Validation or Prediction records).

#include <string>
#include <vector>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/ttp_function.hpp>

namespace synergos::plugins::ttp {

struct EvaluationKind {
    const char* process;      ///< "validate" | "predict"
    const char* meta;         ///< the split: "evaluate" | "predict"
    const char* record_kind;  ///< "Validation" | "Prediction"
    bool track;               ///< log the statistics to the tracker after archival
};

class EvaluationFunction : public sdk::TtpFunction {
public:
    EvaluationFunction(EvaluationKind kind, sdk::HostContext& host, const sdk::Options& options);

    std::vector<std::string> processes() const override { return {kind_.process}; }
    sdk::Result<std::string> execute(sdk::JobContext& context, std::string_view job_json) noexcept override;
    sdk::Result<std::vector<sdk::Mutation>> archive(sdk::ArchiveContext& context, std::string_view job_json,
                                                    std::string_view outputs_json) noexcept override;
    sdk::Status after_archive(sdk::ArchiveContext& context, std::string_view job_json,
                              std::string_view outputs_json) noexcept override;

private:
    EvaluationKind kind_;
    std::int64_t timeout_ms_;
};

}  // namespace synergos::plugins::ttp
