// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file export.hpp
/// The one macro a plugin uses, in exactly one translation unit (`src/plugin.cpp`), to export
/// its three entry points (STYLE.md D1):
///   1. `synergos_plugin_abi`        -> const AbiInfo       (plain data, read first)
///   2. `synergos_plugin_descriptor` -> const PluginDescriptor (plain data)
///   3. `synergos_plugin_create_<kind>` -> the typed factory
///
/// Example:
/// @code
///   #include <synergos/sdk/export.hpp>
///   #include "my_sink.hpp"
///   SYNERGOS_DECLARE_LOG_SINK_PLUGIN(myvendor::MySink, myvendor::kMySinkDescriptor)
/// @endcode
/// The class is constructed as `Impl(HostContext&, const Options&)`; an exception thrown by the
/// constructor is caught inside the plugin and reported as an `Internal` error (it never crosses
/// the boundary). Export macros must be used at global namespace scope.

#include <boost/dll/alias.hpp>

#include <exception>
#include <memory>
#include <string>
#include <type_traits>

#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/data_pipeline.hpp>
#include <synergos/sdk/host.hpp>
#include <synergos/sdk/log_sink.hpp>
#include <synergos/sdk/message_queue.hpp>
#include <synergos/sdk/model.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/status.hpp>
#include <synergos/sdk/storage_backend.hpp>
#include <synergos/sdk/tracker.hpp>
#include <synergos/sdk/ttp_function.hpp>
#include <synergos/sdk/version.hpp>

namespace synergos::sdk {

/// The factory signature of a plugin of interface `Interface`.
template <typename Interface>
using Factory = Result<std::unique_ptr<Interface>>(HostContext&, const Options&) noexcept;

namespace detail {

/// Constructs `Impl`, converting any exception into an error so none crosses the boundary.
template <typename Interface, typename Impl>
Result<std::unique_ptr<Interface>> create_plugin(HostContext& host, const Options& options) noexcept {
    static_assert(std::is_base_of_v<Interface, Impl>, "plugin class must implement the kind's interface");
    try {
        return std::unique_ptr<Interface>(new Impl(host, options));
    } catch (const std::exception& e) {
        return Error{ErrorCode::Internal, std::string("plugin factory failed: ") + e.what()};
    } catch (...) {
        return Error{ErrorCode::Internal, "plugin factory failed with an unknown exception"};
    }
}

}  // namespace detail
}  // namespace synergos::sdk

/// Exports the ABI record. Used by SYNERGOS_DECLARE_*; fixture plugins may use it directly.
#define SYNERGOS_PLUGIN_EXPORT_ABI(abi_major, abi_minor, fingerprint)                          \
    namespace synergos_plugin_exports {                                                      \
    extern const ::synergos::sdk::AbiInfo synergos_abi_info;                                 \
    const ::synergos::sdk::AbiInfo synergos_abi_info{sizeof(::synergos::sdk::AbiInfo),       \
                                                     (abi_major), (abi_minor), (fingerprint)}; \
    BOOST_DLL_ALIAS(synergos_plugin_exports::synergos_abi_info, synergos_plugin_abi)         \
    }

/// Exports the descriptor (a `const PluginDescriptor` variable with static storage).
#define SYNERGOS_PLUGIN_EXPORT_DESCRIPTOR(descriptor)                    \
    namespace synergos_plugin_exports {                                \
    BOOST_DLL_ALIAS(descriptor, synergos_plugin_descriptor)            \
    }

/// Exports the typed factory under `synergos_plugin_create_<kind>`.
#define SYNERGOS_PLUGIN_EXPORT_FACTORY(alias_name, Interface, Impl)                              \
    namespace synergos_plugin_exports {                                                        \
    ::synergos::sdk::Result<std::unique_ptr<Interface>> synergos_create(                       \
        ::synergos::sdk::HostContext& host, const ::synergos::sdk::Options& options) noexcept { \
        return ::synergos::sdk::detail::create_plugin<Interface, Impl>(host, options);         \
    }                                                                                          \
    BOOST_DLL_ALIAS(synergos_plugin_exports::synergos_create, alias_name)                      \
    }

#define SYNERGOS_DECLARE_PLUGIN_IMPL(alias_name, Interface, Impl, descriptor)                 \
    SYNERGOS_PLUGIN_EXPORT_ABI(SYNERGOS_SDK_ABI_MAJOR, SYNERGOS_SDK_ABI_MINOR,                \
                               SYNERGOS_SDK_FINGERPRINT)                                      \
    SYNERGOS_PLUGIN_EXPORT_DESCRIPTOR(descriptor)                                             \
    SYNERGOS_PLUGIN_EXPORT_FACTORY(alias_name, Interface, Impl)

/// Declares a `logging` plugin.
#define SYNERGOS_DECLARE_LOG_SINK_PLUGIN(Impl, descriptor) \
    SYNERGOS_DECLARE_PLUGIN_IMPL(synergos_plugin_create_logging, ::synergos::sdk::LogSink, Impl, descriptor)
/// Declares an `mq` plugin.
#define SYNERGOS_DECLARE_MESSAGE_QUEUE_PLUGIN(Impl, descriptor) \
    SYNERGOS_DECLARE_PLUGIN_IMPL(synergos_plugin_create_mq, ::synergos::sdk::MessageQueue, Impl, descriptor)
/// Declares a `storage` plugin.
#define SYNERGOS_DECLARE_STORAGE_PLUGIN(Impl, descriptor) \
    SYNERGOS_DECLARE_PLUGIN_IMPL(synergos_plugin_create_storage, ::synergos::sdk::StorageBackend, Impl, descriptor)
/// Declares a `tracking` plugin.
#define SYNERGOS_DECLARE_TRACKING_PLUGIN(Impl, descriptor) \
    SYNERGOS_DECLARE_PLUGIN_IMPL(synergos_plugin_create_tracking, ::synergos::sdk::Tracker, Impl, descriptor)
/// Declares a `ttp` plugin.
#define SYNERGOS_DECLARE_TTP_FUNCTION_PLUGIN(Impl, descriptor) \
    SYNERGOS_DECLARE_PLUGIN_IMPL(synergos_plugin_create_ttp, ::synergos::sdk::TtpFunction, Impl, descriptor)
/// Declares an `aggregator` plugin.
#define SYNERGOS_DECLARE_AGGREGATOR_PLUGIN(Impl, descriptor) \
    SYNERGOS_DECLARE_PLUGIN_IMPL(synergos_plugin_create_aggregator, ::synergos::sdk::Aggregator, Impl, descriptor)
/// Declares a `model` plugin.
#define SYNERGOS_DECLARE_MODEL_PLUGIN(Impl, descriptor) \
    SYNERGOS_DECLARE_PLUGIN_IMPL(synergos_plugin_create_model, ::synergos::sdk::ModelBackend, Impl, descriptor)
/// Declares a `data` plugin.
#define SYNERGOS_DECLARE_DATA_PLUGIN(Impl, descriptor) \
    SYNERGOS_DECLARE_PLUGIN_IMPL(synergos_plugin_create_data, ::synergos::sdk::DataPipeline, Impl, descriptor)
