// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file multikrum.hpp
/// The `multikrum` aggregator: Multi-Krum (Blanchard et al. 2017).
/// Run fields: krum_f (default 0), multikrum_m (default n - krum_f).
/// It keeps every update of the round (memory = n models). The rule is
/// aggregator_common::RobustSession; docs/strategies.md has the formulas.

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/status.hpp>

#include "aggregator_common/robust.hpp"

namespace synergos::plugins::multikrum {

inline constexpr sdk::PluginDescriptor kMultiKrumDescriptor{
    sizeof(sdk::PluginDescriptor),
    "multikrum",
    sdk::PluginKind::Aggregator,
    "0.1.0",
    "Multi-Krum: mean of the m best Krum-scored updates, run fields krum_f and multikrum_m "
    "(Blanchard et al. 2017)",
    "Synergos",
    sdk::PluginStatus::Stable,
    nullptr,
    0};

/// The rule and the defaults of its run fields.
inline constexpr aggregator_common::RobustConfig kDefaults{
    .rule = aggregator_common::RobustRule::MultiKrum,
    .trim_fraction = 0.2,
    .krum_f = 0,
    .multikrum_m = std::nullopt,
};

/// The run's settings; InvalidArgument names the field when one is out of range.
sdk::Result<aggregator_common::RobustConfig> run_config(std::string_view run_json) noexcept;

/// MultiKrum. Threading: every method may be called from any thread; sessions are independent.
class MultiKrum final : public sdk::Aggregator {
public:
    MultiKrum(sdk::HostContext& host, const sdk::Options& options);

    sdk::Status validate(std::string_view run_json) noexcept override;
    sdk::Result<std::unique_ptr<sdk::AggregationSession>> open(
        std::string_view run_json) noexcept override;
    /// {"mu": 0}: workers train plainly; the strategy acts on the server only.
    std::string worker_arguments(std::string_view run_json) noexcept override;

private:
    sdk::HostContext& host_;
};

}  // namespace synergos::plugins::multikrum
