// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "optimize_function.hpp"

namespace synergos::plugins::optimize {
namespace {
constexpr sdk::OptionSpec kOptions[] = {
    {"poll_ms", sdk::OptionType::DurationMs, false, "1000",
     "longest wait on one trial job before the search looks at the others again", false},
};
}  // namespace
extern const sdk::PluginDescriptor kDescriptor;
const sdk::PluginDescriptor kDescriptor{sizeof(sdk::PluginDescriptor),
                                        "optimize",
                                        sdk::PluginKind::TtpFunction,
                                        "0.1.0",
                                        "federated hyper-parameter search over a ranges.json space",
                                        "synergos",
                                        sdk::PluginStatus::Stable,
                                        kOptions,
                                        1};
}  // namespace synergos::plugins::optimize

SYNERGOS_DECLARE_TTP_FUNCTION_PLUGIN(synergos::plugins::optimize::OptimizeFunction,
                                     synergos::plugins::optimize::kDescriptor)
