// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <vector>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/ttp_function.hpp>

namespace synergos::plugins::train {

/// Federated training of one (experiment, run) combination on one grid (process `train`).
///
/// Round loop: every worker of the grid is called concurrently with the current global weights;
/// each trains locally for the run's epochs and returns its weights, which the run's aggregator
/// folds in as they arrive. After each round the global model is evaluated on the workers'
/// evaluate splits and checkpointed, so a redelivered job resumes at its last finished round.
/// A worker that fails or times out fails the round (naming it), or is dropped when the run's
/// `quorum` allows.
class TrainFunction final : public sdk::TtpFunction, public sdk::JobEndObserver {
public:
    TrainFunction(sdk::HostContext& host, const sdk::Options& options);

    std::vector<std::string> processes() const override { return {"train"}; }
    sdk::Result<std::string> execute(sdk::JobContext& context, std::string_view job_json) noexcept override;
    sdk::Result<std::vector<sdk::Mutation>> archive(sdk::ArchiveContext& context, std::string_view job_json,
                                                    std::string_view outputs_json) noexcept override;
    sdk::Status after_archive(sdk::ArchiveContext& context, std::string_view job_json,
                              std::string_view outputs_json) noexcept override;
    /// A training that failed or was cancelled: its tracker run (created if the training never
    /// logged into it) ends FAILED or KILLED, tagged with the reason.
    sdk::Status after_unsuccessful(sdk::ArchiveContext& context, std::string_view job_json,
                                   std::string_view state, std::string_view reason) noexcept override;

private:
    sdk::HostContext& host_;
    std::int64_t init_timeout_ms_;
    std::int64_t round_timeout_ms_;
    bool save_local_models_;
};

}  // namespace synergos::plugins::train
