// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "train_function.hpp"

namespace synergos::plugins::train {
namespace {
constexpr sdk::OptionSpec kOptions[] = {
    {"init_timeout_ms", sdk::OptionType::DurationMs, false, "600000",
     "how long a worker may take to load its data and build the model", false},
    {"round_timeout_ms", sdk::OptionType::DurationMs, false, "3600000",
     "how long a worker may take for one round of local training", false},
    {"save_local_models", sdk::OptionType::Bool, false, "true",
     "write each participant's last local model next to the global one", false},
};
}  // namespace
extern const sdk::PluginDescriptor kDescriptor;
const sdk::PluginDescriptor kDescriptor{sizeof(sdk::PluginDescriptor), "train", sdk::PluginKind::TtpFunction,
                                        "0.1.0", "federated training rounds with checkpoints and resume",
                                        "synergos", sdk::PluginStatus::Stable, kOptions, 3};
}  // namespace synergos::plugins::train

SYNERGOS_DECLARE_TTP_FUNCTION_PLUGIN(synergos::plugins::train::TrainFunction, synergos::plugins::train::kDescriptor)
