// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "align_function.hpp"

namespace synergos::plugins::align {
namespace {
constexpr sdk::OptionSpec kOptions[] = {
    {"poll_timeout_ms", sdk::OptionType::DurationMs, false, "600000",
     "how long a worker may take to load and describe its data", false},
};
}  // namespace
extern const sdk::PluginDescriptor kDescriptor;
const sdk::PluginDescriptor kDescriptor{sizeof(sdk::PluginDescriptor), "align", sdk::PluginKind::TtpFunction,
                                        "0.1.0", "multiple feature alignment across a grid's participants",
                                        "synergos", sdk::PluginStatus::Stable, kOptions, 1};
}  // namespace synergos::plugins::align

SYNERGOS_DECLARE_TTP_FUNCTION_PLUGIN(synergos::plugins::align::AlignFunction, synergos::plugins::align::kDescriptor)
