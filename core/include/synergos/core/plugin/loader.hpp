// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file loader.hpp
/// Loads plugin libraries with Boost.DLL after checking file, ABI, fingerprint, descriptor and
/// options, in that order (STYLE.md L3). Only plugins the config names are loaded. A library
/// stays loaded while any object it created lives (`PluginHandle` holds it).
///
/// Every refusal is one line naming the plugin, its file and what was expected against what was
/// found, e.g. `plugin 'graylog' (kind logging, file /x/libsynergos-logging-graylog.so): ABI major
/// mismatch: expected 1, found 2`.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
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

/// A plugin object plus the library it came from. `unique_ptr` runs the deleter (deleting the
/// object) before the deleter itself, and so the library reference, is destroyed.
template <typename T>
using PluginHandle = std::unique_ptr<T, LibraryHoldingDeleter>;

/// Wraps an object made by plugin code (e.g. a `Model` from a `ModelBackend`, a `Consumer` from a
/// `MessageQueue`) so it keeps `library` loaded too. Use in the same statement as the call that
/// returned `object` (STYLE.md L4).
template <typename T>
PluginHandle<T> adopt_plugin_object(std::unique_ptr<T> object,
                                    std::shared_ptr<const PluginLibrary> library) {
    return PluginHandle<T>(object.release(), LibraryHoldingDeleter{std::move(library)});
}

/// What the config asks for.
struct PluginRequest {
    sdk::PluginKind kind = sdk::PluginKind::LogSink;
    std::string name;                            ///< plugin name, e.g. "graylog"
    std::map<std::string, std::string> options;  ///< textual option values from YAML/flags
    std::string path;                            ///< explicit file, overrides the search
    bool required = true;                        ///< for the caller: abort start-up on failure
};

/// An owned copy of one `sdk::OptionSpec` (safe to keep after the library is unloaded).
struct OptionInfo {
    std::string key;
    sdk::OptionType type = sdk::OptionType::String;
    bool required = false;
    std::optional<std::string> default_value;  ///< nullopt when the plugin declares none
    std::string description;
    bool secret = false;
};

/// A copy of a descriptor's data (safe to keep after the library is gone, except `options`).
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
    std::string file;                      ///< resolved absolute path
    std::vector<sdk::OptionSpec> options;  ///< views into the library; valid while it is loaded
    std::vector<std::string> option_keys;  ///< owned copies of option keys
    std::vector<std::string> option_descriptions;
    std::vector<std::string> option_defaults;  ///< "" when the option has no default
    std::vector<OptionInfo> option_info;       ///< owned copies of the whole option table
};

/// The ABI this host accepts. Tests may construct loaders with other expectations.
struct AbiExpectation {
    int abi_major;
    int abi_minor;
    std::string fingerprint;
    /// The values of the SDK headers this host was compiled with.
    static AbiExpectation current();
};

/// Finds, checks and opens plugin libraries.
/// Threading: call from the main thread during start-up only (STYLE.md L1).
/// Errors: every method returns an error value; none throws.
class PluginLoader {
public:
    /// `search_paths` in order: --plugin-path entries, config plugins.search_paths, built-in dir.
    /// Relative entries are taken relative to the current directory; missing ones are skipped.
    explicit PluginLoader(std::vector<std::string> search_paths,
                          AbiExpectation expected = AbiExpectation::current());
    ~PluginLoader();
    PluginLoader(const PluginLoader&) = delete;
    PluginLoader& operator=(const PluginLoader&) = delete;

    /// Resolves, opens and checks a library; does not call the factory.
    /// Errors name the plugin, its file, and expected against found. Codes: NotFound (no file),
    /// PermissionDenied (unsafe file), FailedPrecondition (cannot load, entry point, ABI,
    /// fingerprint, kind, name, duplicate), InvalidArgument (malformed request).
    sdk::Result<std::shared_ptr<const PluginLibrary>> open(const PluginRequest& request);

    /// Validates `request.options` against the descriptor: unknown key (lists the valid ones),
    /// missing required key, unparsable value; fills defaults and normalises bool and duration
    /// values ("yes" -> "true", "2s" -> "2000"). Values of secret options never appear in errors.
    static sdk::Result<sdk::Options> validate_options(const PluginLibrary& library,
                                                      const PluginRequest& request);

    /// Opens, validates and creates: the whole path from config entry to live object.
    /// `Interface` must be the interface of `request.kind` (e.g. `sdk::StorageBackend`).
    template <typename Interface>
    sdk::Result<PluginHandle<Interface>> create(const PluginRequest& request,
                                                sdk::HostContext& host);

    /// Every `libsynergos-<kind>-<name>.so` on the search path (reads descriptors, creates
    /// nothing), in search order, sorted by file name within a folder. Files that fail the checks,
    /// or are shadowed by an earlier file of the same kind and name, are reported with their error.
    struct Discovered {
        std::string file;
        sdk::Result<PluginInfo> info;
        /// Keeps `info->options` views valid; null when `info` is an error.
        std::shared_ptr<const PluginLibrary> library;
        /// `info` is an error only because an earlier file of the same kind and name wins.
        bool shadowed = false;
    };
    std::vector<Discovered> discover();

    const std::vector<std::string>& search_paths() const { return search_paths_; }
    const AbiExpectation& expected() const { return expected_; }

private:
    std::vector<std::string> search_paths_;
    AbiExpectation expected_;
    /// "<kind>/<name>" -> file, to refuse a second file claiming the same plugin.
    std::map<std::string, std::string> opened_;
};

/// The loaded library; holds the Boost.DLL shared_library. Non-copyable.
/// Lifetime: always held as `std::shared_ptr<const PluginLibrary>`; the library is unloaded when
/// the last reference (loader caller, `PluginHandle`) goes.
class PluginLibrary {
public:
    ~PluginLibrary();
    PluginLibrary(const PluginLibrary&) = delete;
    PluginLibrary& operator=(const PluginLibrary&) = delete;

    const PluginInfo& info() const { return info_; }
    const sdk::PluginDescriptor& descriptor() const { return *descriptor_; }
    /// The typed factory's address (resolved at open); nullptr when missing.
    void* factory_address() const { return factory_; }
    /// "plugin '<name>' (kind <kind>, file <file>)": the prefix of every error about it.
    std::string error_prefix() const;

private:
    friend class PluginLoader;
    PluginLibrary() = default;
    struct Impl;
    std::unique_ptr<Impl> impl_;
    PluginInfo info_;
    const sdk::PluginDescriptor* descriptor_ = nullptr;
    void* factory_ = nullptr;
};

/// The options as text for logs and listings, with secret values replaced by "***".
std::map<std::string, std::string> redact_options(const PluginInfo& info,
                                                  const sdk::Options& options);

}  // namespace synergos::core

#include <synergos/core/plugin/loader_impl.hpp>  // template definition of PluginLoader::create
