// SPDX-License-Identifier: Apache-2.0
#pragma once

/// A plugin library opened the way the host opens it (dlopen RTLD_NOW | RTLD_LOCAL), with its
/// three exported aliases resolved. Shared by the fedavg, fedprox and torch tests.

#include <dlfcn.h>

#include <string>

#include <synergos/sdk/export.hpp>
#include <synergos/sdk/plugin.hpp>

namespace synergos::test {

class DlPlugin {
public:
    explicit DlPlugin(const std::string& path)
        : handle_(::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) {
        if (handle_ == nullptr) {
            const char* err = ::dlerror();
            error_ = err != nullptr ? err : "dlopen failed";
        }
    }
    ~DlPlugin() {
        if (handle_ != nullptr) {
            ::dlclose(handle_);
        }
    }
    DlPlugin(const DlPlugin&) = delete;
    DlPlugin& operator=(const DlPlugin&) = delete;

    bool is_open() const { return handle_ != nullptr; }
    const std::string& error() const { return error_; }

    /// The address an alias points at (BOOST_DLL_ALIAS exports a `const void*` holding it).
    const void* alias(const char* name) const {
        if (handle_ == nullptr) {
            return nullptr;
        }
        auto* slot = static_cast<const void* const*>(::dlsym(handle_, name));
        return slot == nullptr ? nullptr : *slot;
    }

    const sdk::AbiInfo* abi() const {
        return static_cast<const sdk::AbiInfo*>(alias("synergos_plugin_abi"));
    }
    const sdk::PluginDescriptor* descriptor() const {
        return static_cast<const sdk::PluginDescriptor*>(alias("synergos_plugin_descriptor"));
    }
    template <typename Interface>
    sdk::Factory<Interface>* factory(const char* kind) const {
        const std::string name = std::string("synergos_plugin_create_") + kind;
        return reinterpret_cast<sdk::Factory<Interface>*>(const_cast<void*>(alias(name.c_str())));
    }

private:
    void* handle_;
    std::string error_;
};

}  // namespace synergos::test
