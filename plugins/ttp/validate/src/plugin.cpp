// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "evaluation.hpp"

namespace synergos::plugins::validate {
namespace {
constexpr sdk::OptionSpec kOptions[] = {
    {"timeout_ms", sdk::OptionType::DurationMs, false, "600000",
     "how long a worker may take to load its data and run the model", false},
};
}  // namespace

/// Process `validate`: see ttp::EvaluationFunction.
class Function final : public ttp::EvaluationFunction {
public:
    Function(sdk::HostContext& host, const sdk::Options& options)
        : EvaluationFunction({"validate", "evaluate", "Validation", true}, host, options) {}
};

extern const sdk::PluginDescriptor kDescriptor;
const sdk::PluginDescriptor kDescriptor{sizeof(sdk::PluginDescriptor), "validate", sdk::PluginKind::TtpFunction,
                                        "0.1.0", "validation of a trained model on each participant's evaluate split", "synergos", sdk::PluginStatus::Stable, kOptions, 1};
}  // namespace synergos::plugins::validate

SYNERGOS_DECLARE_TTP_FUNCTION_PLUGIN(synergos::plugins::validate::Function, synergos::plugins::validate::kDescriptor)
