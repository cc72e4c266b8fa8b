// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/config/plugin_requests.hpp>

namespace synergos::core {

PluginRequest to_request(sdk::PluginKind kind, const PluginSection& section) {
    PluginRequest request;
    request.kind = kind;
    request.name = section.backend;
    request.options = section.options;
    request.path = section.path;
    request.required = section.required;
    return request;
}

std::vector<ConfiguredPlugin> configured_plugins(const RuntimeConfig& config) {
    std::vector<ConfiguredPlugin> out;
    auto add = [&out](sdk::PluginKind kind, const PluginSection& section) {
        if (section.is_enabled()) {
            out.push_back({to_request(kind, section), section});
        }
    };
    add(sdk::PluginKind::LogSink, config.logging.sink);
    add(sdk::PluginKind::Tracking, config.tracking);
    add(sdk::PluginKind::Storage, config.storage);
    add(sdk::PluginKind::MessageQueue, config.message_queue);
    for (const auto& s : config.aggregators) {
        add(sdk::PluginKind::Aggregator, s);
    }
    add(sdk::PluginKind::Model, config.model);
    for (const auto& s : config.data) {
        add(sdk::PluginKind::Data, s);
    }
    for (const auto& s : config.ttp.functions) {
        add(sdk::PluginKind::TtpFunction, s);
    }
    return out;
}

}  // namespace synergos::core
