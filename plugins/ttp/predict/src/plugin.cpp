// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "evaluation.hpp"

namespace synergos::plugins::predict {
namespace {
constexpr sdk::OptionSpec kOptions[] = {
    {"timeout_ms", sdk::OptionType::DurationMs, false, "600000",
     "how long a worker may take to load its data and run the model", false},
};
}  // namespace

/// Process `predict`: see ttp::EvaluationFunction.
class Function final : public ttp::EvaluationFunction {
public:
    Function(sdk::HostContext& host, const sdk::Options& options)
        : EvaluationFunction({"predict", "predict", "Prediction", false}, host, options) {}
};

extern const sdk::PluginDescriptor kDescriptor;
const sdk::PluginDescriptor kDescriptor{sizeof(sdk::PluginDescriptor), "predict", sdk::PluginKind::TtpFunction,
                                        "0.1.0", "participant-initiated prediction on its predict split", "synergos", sdk::PluginStatus::Stable, kOptions, 1};
}  // namespace synergos::plugins::predict

SYNERGOS_DECLARE_TTP_FUNCTION_PLUGIN(synergos::plugins::predict::Function, synergos::plugins::predict::kDescriptor)
