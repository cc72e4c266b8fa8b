// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/ttp_function.hpp>

namespace synergos::fixtures {

/// A TTP function for the multi-process job tests, configured by plugin options (the director's
/// REST routes build job parameters themselves, so they cannot carry a test's instructions):
/// every job runs `run_ms` milliseconds (checking for cancellation), and every execution and
/// archival appends "<job_id> <pid>" to `log_dir/executed.log` or `archived.log` (O_APPEND,
/// fsync), so a test counts them across processes, including one killed with SIGKILL.
/// Archival inserts a `ProbeResult` record keyed by job id.
class ProbeFunction final : public sdk::TtpFunction {
public:
    ProbeFunction(sdk::HostContext& host, const sdk::Options& options);

    std::vector<std::string> processes() const override;
    sdk::Result<std::string> execute(sdk::JobContext& context,
                                     std::string_view job_json) noexcept override;
    sdk::Result<std::vector<sdk::Mutation>> archive(sdk::ArchiveContext& context,
                                                    std::string_view job_json,
                                                    std::string_view outputs_json) noexcept override;

private:
    std::vector<std::string> processes_;
    std::int64_t run_ms_;
    std::string log_dir_;
};

}  // namespace synergos::fixtures
