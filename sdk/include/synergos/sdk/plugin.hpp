// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file plugin.hpp
/// What a plugin library says about itself: its ABI record and its descriptor. Both are plain
/// data exported under fixed alias names, so the host reads them before running any plugin code.

#include <boost/config.hpp>

#include <cstddef>
#include <cstdint>

#include <synergos/sdk/options.hpp>

namespace synergos::sdk {

/// Plugin kinds (ARCHITECTURE.md "Plugin kinds"). No valid zero value.
enum class PluginKind : std::uint8_t {
    LogSink = 1,   ///< "logging"
    MessageQueue,  ///< "mq"
    Storage,       ///< "storage"
    Tracking,      ///< "tracking"
    TtpFunction,   ///< "ttp"
    Aggregator,    ///< "aggregator"
    Model,         ///< "model"
    Data,          ///< "data"
};

/// The short kind name used in folders, file names (`libsynergos-<kind>-<name>.so`) and config.
inline const char* kind_name(PluginKind kind) noexcept {
    switch (kind) {
        case PluginKind::LogSink: return "logging";
        case PluginKind::MessageQueue: return "mq";
        case PluginKind::Storage: return "storage";
        case PluginKind::Tracking: return "tracking";
        case PluginKind::TtpFunction: return "ttp";
        case PluginKind::Aggregator: return "aggregator";
        case PluginKind::Model: return "model";
        case PluginKind::Data: return "data";
    }
    return "unknown";
}

/// Maturity of a plugin, shown by `synergos plugins`.
enum class PluginStatus : std::uint8_t { Stable = 1, Alpha };

/// ABI record, exported as alias `synergos_plugin_abi`. Read first, before any other symbol.
/// `struct_size` lets a future host detect an older, shorter layout.
struct AbiInfo {
    std::uint32_t struct_size;
    int abi_major;
    int abi_minor;
    const char* fingerprint;  ///< SYNERGOS_SDK_FINGERPRINT of the plugin's build
};

/// Descriptor, exported as alias `synergos_plugin_descriptor`. Static storage in the plugin.
struct PluginDescriptor {
    std::uint32_t struct_size;
    const char* name;         ///< `[a-z0-9_]+`, unique per kind
    PluginKind kind;
    const char* version;      ///< semantic version of the plugin itself
    const char* description;  ///< one line
    const char* vendor;
    PluginStatus status;
    const OptionSpec* options;  ///< the option table (may be nullptr when option_count is 0)
    std::size_t option_count;
};

/// Alias names every plugin exports (see export.hpp).
inline constexpr const char* kAbiAlias = "synergos_plugin_abi";
inline constexpr const char* kDescriptorAlias = "synergos_plugin_descriptor";
inline constexpr const char* kCreateAlias = "synergos_plugin_create";

/// Base of every plugin object the host receives. Interface classes derive from it.
/// Lifetime: the host keeps the plugin library loaded while any such object lives.
class BOOST_SYMBOL_VISIBLE PluginObject {
public:
    virtual ~PluginObject() = default;
};

}  // namespace synergos::sdk
