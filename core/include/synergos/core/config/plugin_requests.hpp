// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file plugin_requests.hpp
/// Turns the plugin sections of a RuntimeConfig into loader requests, in start order.

#include <string>
#include <vector>

#include <synergos/core/config/runtime_config.hpp>
#include <synergos/core/plugin/loader.hpp>

namespace synergos::core {

/// A config section plus the loader request made from it (the section keeps the file line for
/// error messages).
struct ConfiguredPlugin {
    PluginRequest request;
    PluginSection section;
};

/// The request for one section of `kind`.
PluginRequest to_request(sdk::PluginKind kind, const PluginSection& section);

/// Every enabled plugin the config names, in start order: log sink, tracking, storage,
/// message queue, aggregators, model, data pipelines, TTP functions.
std::vector<ConfiguredPlugin> configured_plugins(const RuntimeConfig& config);

}  // namespace synergos::core
