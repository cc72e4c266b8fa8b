// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "probe_function.hpp"

namespace synergos::fixtures {
namespace {
constexpr sdk::OptionSpec kOptions[] = {
    {"processes", sdk::OptionType::StringList, false, "preprocess", "job processes it handles",
     false},
    {"run_ms", sdk::OptionType::Int, false, "0", "how long each job runs", false},
    {"log_dir", sdk::OptionType::Path, false, nullptr, "where executed.log/archived.log go",
     false},
};
}  // namespace
extern const sdk::PluginDescriptor kProbeDescriptor;
const sdk::PluginDescriptor kProbeDescriptor{sizeof(sdk::PluginDescriptor), "probe",
                                             sdk::PluginKind::TtpFunction, "0.1.0",
                                             "test probe for the multi-process job tests",
                                             "synergos tests", sdk::PluginStatus::Alpha, kOptions,
                                             3};
}  // namespace synergos::fixtures

SYNERGOS_DECLARE_TTP_FUNCTION_PLUGIN(synergos::fixtures::ProbeFunction,
                                     synergos::fixtures::kProbeDescriptor)
