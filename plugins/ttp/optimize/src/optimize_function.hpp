// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file optimize_function.hpp
/// Process `optimize`: federated hyper-parameter search. Runs on the director (a director-side
/// job), draws the trials, submits each as a `train` job and, once trained, a `validate` job on
/// the same grid through JobContext::submit_job, so trials spread over every grid's TTP in
/// parallel; scores each trial from its validation statistics and reports the best.

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/ttp_function.hpp>

namespace synergos::plugins::optimize {

class OptimizeFunction final : public sdk::TtpFunction {
public:
    /// The clock the search's max_exec_duration is measured on (tests pass their own).
    using Now = std::function<std::chrono::steady_clock::time_point()>;

    OptimizeFunction(sdk::HostContext& host, const sdk::Options& options, Now now = {});

    std::vector<std::string> processes() const override {
        return {"optimize"};
    }
    sdk::Result<std::string> execute(sdk::JobContext& context,
                                     std::string_view job_json) noexcept override;
    sdk::Result<std::vector<sdk::Mutation>> archive(
        sdk::ArchiveContext& context, std::string_view job_json,
        std::string_view outputs_json) noexcept override;
    sdk::Status after_archive(sdk::ArchiveContext& context, std::string_view job_json,
                              std::string_view outputs_json) noexcept override;

private:
    std::int64_t poll_ms_;
    Now now_;
};

}  // namespace synergos::plugins::optimize
