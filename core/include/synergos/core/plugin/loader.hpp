// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file loader.hpp
/// Loads plugin libraries with Boost.DLL after checking file, ABI, fingerprint, descriptor and
/// options, in that order (STYLE.md L3). Only plugins the config names are loaded. A library
/// stays loaded while any object it created lives (`PluginHandle` holds it).

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::core {

class PluginLibrary;

/// Keeps the library loaded until the object it created is destroyed.
struct LibraryHoldingDeleter {
    std::shared_ptr<const PluginLibrary> library;
    template <typename T>
    void operator()(T* object) const noexcept {
        delete object;  // virtual destructor: plugin code, so the library must still be loaded
    }
};

/// A plugin object plus the library it came from. Destroy before dropping the last loader.
template <typename T>
using PluginHandle = std::unique_ptr<T, LibraryHoldingDeleter>;

/// What the config asks for.
struct PluginRequest {
    sdk::PluginKind kind = sdk::PluginKind::LogSink;
    std::string name;                               ///< plugin name, e.g. "graylog"
    std::map<std::string, std::string> options;     ///< textual option values from YAML/flags
    std::string path;                               ///< explicit file, overrides the search
    bool required = true;
};

/// A copy of a descriptor's data (safe to keep after the library is gone).
struct PluginInfo {
    std::string name;
    sdk::PluginKind kind = sdk::PluginKind::LogSink;
    std::string version;
    std::string description;
    std::string vendor;
    std::string status;  ///< "stable" | "alpha"
    int abi_major = 0;
    int abi_minor = 0;
    std::string fingerprint;
    std::string file;    ///< resolved absolute path
    std::vector<sdk::OptionSpec> options;  ///< views into the library; valid while it is loaded
    std::vector<std::string> option_keys;  ///< owned copies of option keys
    std::vector<std::string> option_descriptions;
    std::vector<std::string> option_defaults;
};

/// The ABI this host accepts. Tests may construct loaders with other expectations.
struct AbiExpectation {
    int abi_major;
    int abi_minor;
    std::string fingerprint;
    static AbiExpectation current();
};

/// Finds, checks and opens plugin libraries.
/// Threading: call from the main thread during start-up only (STYLE.md L1).
class PluginLoader {
public:
    /// `search_paths` in order: --plugin-path entries, config plugins.search_paths, built-in dir.
    explicit PluginLoader(std::vector<std::string> search_paths,
                          AbiExpectation expected = AbiExpectation::current());
    ~PluginLoader();
    PluginLoader(const PluginLoader&) = delete;
    PluginLoader& operator=(const PluginLoader&) = delete;

    /// Resolves, opens and checks a library; does not call the factory.
    /// Errors name the plugin, its file, and expected against found.
    sdk::Result<std::shared_ptr<const PluginLibrary>> open(const PluginRequest& request);

    /// Validates `request.options` against the descriptor: unknown key (lists the valid ones),
    /// missing required key, unparsable value; fills defaults.
    static sdk::Result<sdk::Options> validate_options(const PluginLibrary& library,
                                                      const PluginRequest& request);

    /// Opens, validates and creates: the whole path from config entry to live object.
    template <typename Interface>
    sdk::Result<PluginHandle<Interface>> create(const PluginRequest& request, sdk::HostContext& host);

    /// Every plugin library on the search path (reads descriptors, creates nothing).
    /// Files that fail the checks are reported with their error.
    struct Discovered {
        std::string file;
        sdk::Result<PluginInfo> info;
    };
    std::vector<Discovered> discover();

    const std::vector<std::string>& search_paths() const { return search_paths_; }

private:
    std::vector<std::string> search_paths_;
    AbiExpectation expected_;
};

/// The loaded library; holds the Boost.DLL shared_library. Non-copyable.
class PluginLibrary {
public:
    ~PluginLibrary();
    PluginLibrary(const PluginLibrary&) = delete;
    PluginLibrary& operator=(const PluginLibrary&) = delete;

    const PluginInfo& info() const { return info_; }
    const sdk::PluginDescriptor& descriptor() const { return *descriptor_; }
    /// The typed factory's address (resolved at open); nullptr when missing.
    void* factory_address() const { return factory_; }

private:
    friend class PluginLoader;
    PluginLibrary() = default;
    struct Impl;
    std::unique_ptr<Impl> impl_;
    PluginInfo info_;
    const sdk::PluginDescriptor* descriptor_ = nullptr;
    void* factory_ = nullptr;
};

}  // namespace synergos::core

#include <synergos/core/plugin/loader_impl.hpp>  // template definition of PluginLoader::create
