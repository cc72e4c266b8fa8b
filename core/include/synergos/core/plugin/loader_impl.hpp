// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file loader_impl.hpp
/// Template definition of `PluginLoader::create`, included at the end of loader.hpp.

#include <memory>
#include <string>
#include <utility>

#include <synergos/core/plugin/loader.hpp>
#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/data_pipeline.hpp>
#include <synergos/sdk/log_sink.hpp>
#include <synergos/sdk/message_queue.hpp>
#include <synergos/sdk/model.hpp>
#include <synergos/sdk/storage_backend.hpp>
#include <synergos/sdk/tracker.hpp>
#include <synergos/sdk/ttp_function.hpp>

namespace synergos::core {
namespace detail {

/// The plugin kind whose factory returns `Interface`; undefined for non-plugin types.
template <typename Interface>
struct InterfaceKind;
template <>
struct InterfaceKind<sdk::LogSink> {
    static constexpr sdk::PluginKind kValue = sdk::PluginKind::LogSink;
};
template <>
struct InterfaceKind<sdk::MessageQueue> {
    static constexpr sdk::PluginKind kValue = sdk::PluginKind::MessageQueue;
};
template <>
struct InterfaceKind<sdk::StorageBackend> {
    static constexpr sdk::PluginKind kValue = sdk::PluginKind::Storage;
};
template <>
struct InterfaceKind<sdk::Tracker> {
    static constexpr sdk::PluginKind kValue = sdk::PluginKind::Tracking;
};
template <>
struct InterfaceKind<sdk::TtpFunction> {
    static constexpr sdk::PluginKind kValue = sdk::PluginKind::TtpFunction;
};
template <>
struct InterfaceKind<sdk::Aggregator> {
    static constexpr sdk::PluginKind kValue = sdk::PluginKind::Aggregator;
};
template <>
struct InterfaceKind<sdk::ModelBackend> {
    static constexpr sdk::PluginKind kValue = sdk::PluginKind::Model;
};
template <>
struct InterfaceKind<sdk::DataPipeline> {
    static constexpr sdk::PluginKind kValue = sdk::PluginKind::Data;
};

/// Same signature as `sdk::Factory` (export.hpp), without pulling Boost.DLL into core headers.
template <typename Interface>
using FactoryFn = sdk::Result<std::unique_ptr<Interface>>(sdk::HostContext&,
                                                          const sdk::Options&) noexcept;

/// Error for `create<I>` called with a request of another kind (a caller bug).
sdk::Error interface_mismatch(const PluginRequest& request, sdk::PluginKind interface_kind);
/// Copies a factory's error into host memory, prefixed with the plugin's name and file.
sdk::Error factory_failed(const PluginLibrary& library, const sdk::Error& error);
/// Error for a factory that reported success without an object.
sdk::Error factory_returned_null(const PluginLibrary& library);

}  // namespace detail

template <typename Interface>
sdk::Result<PluginHandle<Interface>> PluginLoader::create(const PluginRequest& request,
                                                          sdk::HostContext& host) {
    constexpr sdk::PluginKind kKind = detail::InterfaceKind<Interface>::kValue;
    if (request.kind != kKind) {
        return detail::interface_mismatch(request, kKind);
    }
    auto opened = open(request);
    if (!opened) {
        return opened.error();
    }
    // Declared before `made` so the library outlives everything the factory returned.
    std::shared_ptr<const PluginLibrary> library = std::move(opened).value();
    auto options = validate_options(*library, request);
    if (!options) {
        return options.error();
    }
    auto* factory = reinterpret_cast<detail::FactoryFn<Interface>*>(library->factory_address());
    sdk::Result<std::unique_ptr<Interface>> made = factory(host, options.value());
    if (!made) {
        return detail::factory_failed(*library, made.error());
    }
    if (!made.value()) {
        return detail::factory_returned_null(*library);
    }
    // Released into the handle in the same statement (STYLE.md L4).
    return PluginHandle<Interface>(made.value().release(),
                                   LibraryHoldingDeleter{std::move(library)});
}

}  // namespace synergos::core
