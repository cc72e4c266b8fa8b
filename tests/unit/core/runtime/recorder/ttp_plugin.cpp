// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "recorder.hpp"

namespace synergos::plugins::recorder {
extern const sdk::PluginDescriptor kDescriptor;
const sdk::PluginDescriptor kDescriptor{sizeof(sdk::PluginDescriptor),
                                        "recorder",
                                        sdk::PluginKind::TtpFunction,
                                        "0.0.1",
                                        "test double journaling its lifecycle",
                                        "synergos tests",
                                        sdk::PluginStatus::Alpha,
                                        kOptions,
                                        std::size(kOptions)};
}  // namespace synergos::plugins::recorder

SYNERGOS_DECLARE_TTP_FUNCTION_PLUGIN(synergos::plugins::recorder::RecorderFunction,
                                     synergos::plugins::recorder::kDescriptor)
