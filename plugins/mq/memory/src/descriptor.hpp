// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <iterator>

#include <synergos/sdk/plugin.hpp>

namespace synergos::plugins::memory {

/// Option table of the `memory` mq plugin (plain data, no dynamic initialisation).
inline constexpr sdk::OptionSpec kOptions[] = {
    {"max_messages_per_queue", sdk::OptionType::Int, false, "1000000",
     "ready messages one queue may hold; a publish beyond it fails with resource_exhausted", false},
};

inline constexpr sdk::PluginDescriptor kDescriptor{
    sizeof(sdk::PluginDescriptor),
    "memory",
    sdk::PluginKind::MessageQueue,
    "0.1.0",
    "in-process message queue with priorities, prefetch, manual ack and dead letters",
    "Synergos",
    sdk::PluginStatus::Stable,
    kOptions,
    std::size(kOptions)};

}  // namespace synergos::plugins::memory
