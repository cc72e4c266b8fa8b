// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/plugin/loader.hpp>

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <set>

#include <boost/dll/shared_library.hpp>
#include <boost/filesystem.hpp>

#include <synergos/sdk/version.hpp>

#include "error_text.hpp"
#include "option_values.hpp"

namespace synergos::core {

struct PluginLibrary::Impl {
    boost::dll::shared_library library;
};

// impl_ is declared first, so the library unloads after every view into it is gone.
PluginLibrary::~PluginLibrary() = default;

std::string PluginLibrary::error_prefix() const {
    return plugin_detail::plugin_prefix(info_.name, info_.kind, info_.file);
}

AbiExpectation AbiExpectation::current() {
    return AbiExpectation{SYNERGOS_SDK_ABI_MAJOR, SYNERGOS_SDK_ABI_MINOR, SYNERGOS_SDK_FINGERPRINT};
}

namespace {

namespace fs = boost::filesystem;
using plugin_detail::describe_kind;
using plugin_detail::is_valid_identifier;
using plugin_detail::join;
using plugin_detail::plugin_prefix;
using plugin_detail::read_plugin_string;
using plugin_detail::sanitize;

constexpr std::array<sdk::PluginKind, 8> kAllKinds = {
    sdk::PluginKind::LogSink,  sdk::PluginKind::MessageQueue, sdk::PluginKind::Storage,
    sdk::PluginKind::Tracking, sdk::PluginKind::TtpFunction,  sdk::PluginKind::Aggregator,
    sdk::PluginKind::Model,    sdk::PluginKind::Data};
constexpr std::string_view kFilePrefix = "libsynergos-";
constexpr std::string_view kFileSuffix = ".so";
// A descriptor claiming more options than this is treated as corrupt.
constexpr std::size_t kMaxOptions = 1024;

bool is_known_kind(sdk::PluginKind kind) {
    return std::find(kAllKinds.begin(), kAllKinds.end(), kind) != kAllKinds.end();
}

std::string file_name_for(sdk::PluginKind kind, const std::string& name) {
    return std::string(kFilePrefix) + sdk::kind_name(kind) + "-" + name + std::string(kFileSuffix);
}

std::string create_alias_for(sdk::PluginKind kind) {
    return std::string(sdk::kCreateAlias) + "_" + sdk::kind_name(kind);
}

struct ParsedFileName {
    sdk::PluginKind kind;
    std::string name;
};

/// Splits "libsynergos-<kind>-<name>.so"; nullopt for any other file name.
std::optional<ParsedFileName> parse_file_name(std::string_view file_name) {
    if (file_name.size() <= kFilePrefix.size() + kFileSuffix.size() ||
        file_name.substr(0, kFilePrefix.size()) != kFilePrefix ||
        file_name.substr(file_name.size() - kFileSuffix.size()) != kFileSuffix) {
        return std::nullopt;
    }
    const std::string_view middle = file_name.substr(
        kFilePrefix.size(), file_name.size() - kFilePrefix.size() - kFileSuffix.size());
    const auto dash = middle.find('-');
    if (dash == std::string_view::npos) {
        return std::nullopt;
    }
    const std::string_view kind_text = middle.substr(0, dash);
    const std::string_view name = middle.substr(dash + 1);
    for (sdk::PluginKind kind : kAllKinds) {
        if (kind_text == sdk::kind_name(kind) && is_valid_identifier(name)) {
            return ParsedFileName{kind, std::string(name)};
        }
    }
    return std::nullopt;
}

std::string normalised(const std::string& path) {
    boost::system::error_code ec;
    fs::path absolute = fs::absolute(fs::path(path), fs::current_path(ec));
    return absolute.lexically_normal().string();
}

/// Plugin files of `kind` in `dir`, sorted by file name (nothing is loaded).
std::vector<fs::path> plugin_files_in(const std::string& dir) {
    std::vector<fs::path> files;
    boost::system::error_code ec;
    if (!fs::is_directory(dir, ec)) {
        return files;
    }
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string file_name = it->path().filename().string();
        if (file_name.size() > kFilePrefix.size() + kFileSuffix.size() &&
            file_name.compare(0, kFilePrefix.size(), kFilePrefix) == 0 &&
            file_name.compare(file_name.size() - kFileSuffix.size(), kFileSuffix.size(),
                              kFileSuffix) == 0) {
            files.push_back(it->path());
        }
    }
    std::sort(files.begin(), files.end());
    return files;
}

/// Names of `kind` plugins on the search path, in search order, without duplicates.
std::vector<std::string> available_names(const std::vector<std::string>& search_paths,
                                         sdk::PluginKind kind) {
    std::vector<std::string> names;
    for (const auto& dir : search_paths) {
        for (const auto& file : plugin_files_in(dir)) {
            auto parsed = parse_file_name(file.filename().string());
            if (parsed && parsed->kind == kind &&
                std::find(names.begin(), names.end(), parsed->name) == names.end()) {
                names.push_back(parsed->name);
            }
        }
    }
    return names;
}

/// The file to load: the explicit path, or the first match on the search path.
sdk::Result<std::string> resolve_file(const PluginRequest& request,
                                      const std::vector<std::string>& search_paths) {
    boost::system::error_code ec;
    if (!request.path.empty()) {
        const std::string path = normalised(request.path);
        if (!fs::exists(path, ec)) {
            return sdk::Error{sdk::ErrorCode::NotFound,
                              plugin_prefix(request.name, request.kind, path) + ": file not found"};
        }
        fs::path canonical = fs::canonical(path, ec);
        return ec ? path : canonical.string();
    }
    const std::string file_name = file_name_for(request.kind, request.name);
    for (const auto& dir : search_paths) {
        const fs::path candidate = fs::path(dir) / file_name;
        if (fs::exists(candidate, ec)) {
            fs::path canonical = fs::canonical(candidate, ec);
            return ec ? candidate.string() : canonical.string();
        }
    }
    return sdk::Error{sdk::ErrorCode::NotFound,
                      plugin_prefix(request.name, request.kind) + ": not found: no " + file_name +
                          " in [" + join(search_paths, ", ", "") + "]; available " +
                          sdk::kind_name(request.kind) +
                          " plugins: " + join(available_names(search_paths, request.kind))};
}

/// Refuses files another user could have replaced (osquery's safePermissions, STYLE.md L3).
std::optional<std::string> check_file_safety(const std::string& path) {
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) {
        return std::string("cannot stat file: ") + std::strerror(errno);
    }
    if (!S_ISREG(info.st_mode)) {
        return std::string("not a regular file");
    }
    if ((info.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(info.st_mode & 07777));
        return std::string(
                   "unsafe permissions: expected a file not writable by group or others, "
                   "found mode ") +
               mode;
    }
    const uid_t self = ::geteuid();
    if (info.st_uid != 0 && info.st_uid != self) {
        return "unsafe owner: expected uid 0 or " + std::to_string(self) + ", found uid " +
               std::to_string(info.st_uid);
    }
    return std::nullopt;
}

/// Boost.DLL reports every dlopen failure as "bad file descriptor"; ask dlopen for the reason.
std::string load_failure_reason(const std::string& path, const boost::system::error_code& ec) {
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) {
        ::dlclose(handle);
        return ec.message();
    }
    const char* reason = ::dlerror();
    return reason != nullptr ? sanitize(reason, 1024) : ec.message();
}

std::optional<std::string> check_abi(const sdk::AbiInfo* abi, const AbiExpectation& expected) {
    if (abi == nullptr) {
        return std::string("ABI record is null");
    }
    if (abi->struct_size < sizeof(sdk::AbiInfo)) {
        return "ABI record too small: expected at least " + std::to_string(sizeof(sdk::AbiInfo)) +
               " bytes, found " + std::to_string(abi->struct_size);
    }
    if (abi->abi_major != expected.abi_major) {
        return "ABI major mismatch: expected " + std::to_string(expected.abi_major) + ", found " +
               std::to_string(abi->abi_major);
    }
    if (abi->abi_minor > expected.abi_minor) {
        return "newer ABI minor: expected at most " + std::to_string(expected.abi_major) + "." +
               std::to_string(expected.abi_minor) + ", found " + std::to_string(abi->abi_major) +
               "." + std::to_string(abi->abi_minor);
    }
    if (abi->fingerprint == nullptr || expected.fingerprint != abi->fingerprint) {
        return "build fingerprint mismatch: expected '" + sanitize(expected.fingerprint) +
               "', found '" + read_plugin_string(abi->fingerprint) +
               "' (rebuild the plugin with the host's compiler, standard library and Boost)";
    }
    return std::nullopt;
}

std::optional<std::string> check_options_table(const sdk::PluginDescriptor& d) {
    if (d.option_count > kMaxOptions) {
        return "invalid descriptor: expected at most " + std::to_string(kMaxOptions) +
               " options, found " + std::to_string(d.option_count);
    }
    if (d.option_count > 0 && d.options == nullptr) {
        return "invalid descriptor: expected an option table of " + std::to_string(d.option_count) +
               " entries, found none";
    }
    std::set<std::string> keys;
    for (std::size_t i = 0; i < d.option_count; ++i) {
        const sdk::OptionSpec& spec = d.options[i];
        const std::string key = read_plugin_string(spec.key, 64);
        if (spec.key == nullptr || !is_valid_identifier(key)) {
            return "invalid descriptor: option " + std::to_string(i) +
                   " key: expected [a-z0-9_]+, found '" + key + "'";
        }
        if (!keys.insert(key).second) {
            return "invalid descriptor: option '" + key + "' declared twice";
        }
        const auto type = static_cast<int>(spec.type);
        if (type < static_cast<int>(sdk::OptionType::String) ||
            type > static_cast<int>(sdk::OptionType::Json)) {
            return "invalid descriptor: option '" + key + "' has unknown type " +
                   std::to_string(type);
        }
        // An empty default means "no default" (e.g. an optional file path left unset).
        if (spec.default_value != nullptr && spec.default_value[0] != '\0' &&
            !plugin_detail::normalise_option_value(spec.type, spec.default_value)) {
            return "invalid descriptor: default of option '" + key + "' expects " +
                   sdk::to_string(spec.type) + ", found '" +
                   (spec.secret ? std::string("***") : read_plugin_string(spec.default_value)) +
                   "'";
        }
    }
    return std::nullopt;
}

std::optional<std::string> check_descriptor(const sdk::PluginDescriptor* d,
                                            const PluginRequest& request) {
    if (d == nullptr) {
        return std::string("descriptor is null");
    }
    if (d->struct_size < sizeof(sdk::PluginDescriptor)) {
        return "descriptor too small: expected at least " +
               std::to_string(sizeof(sdk::PluginDescriptor)) + " bytes, found " +
               std::to_string(d->struct_size);
    }
    if (d->kind != request.kind) {
        return "wrong kind: expected " + describe_kind(request.kind) + ", found " +
               describe_kind(d->kind);
    }
    const std::string name = read_plugin_string(d->name, 64);
    if (d->name == nullptr || name != request.name) {
        return "name mismatch: expected '" + request.name + "', found '" + name + "'";
    }
    return check_options_table(*d);
}

std::string status_text(sdk::PluginStatus status) {
    switch (status) {
        case sdk::PluginStatus::Stable:
            return "stable";
        case sdk::PluginStatus::Alpha:
            return "alpha";
    }
    return "unknown";
}

std::string copy_or_empty(const char* text) {
    return text == nullptr ? std::string() : read_plugin_string(text, 4096);
}

PluginInfo make_info(const sdk::AbiInfo& abi, const sdk::PluginDescriptor& d,
                     const std::string& file) {
    PluginInfo info;
    info.name = copy_or_empty(d.name);
    info.kind = d.kind;
    info.version = copy_or_empty(d.version);
    info.description = copy_or_empty(d.description);
    info.vendor = copy_or_empty(d.vendor);
    info.status = status_text(d.status);
    info.abi_major = abi.abi_major;
    info.abi_minor = abi.abi_minor;
    info.fingerprint = copy_or_empty(abi.fingerprint);
    info.file = file;
    for (std::size_t i = 0; i < d.option_count; ++i) {
        const sdk::OptionSpec& spec = d.options[i];
        info.options.push_back(spec);
        info.option_keys.emplace_back(copy_or_empty(spec.key));
        info.option_descriptions.emplace_back(copy_or_empty(spec.description));
        info.option_defaults.emplace_back(copy_or_empty(spec.default_value));
        OptionInfo option;
        option.key = info.option_keys.back();
        option.type = spec.type;
        option.required = spec.required;
        if (spec.default_value != nullptr && spec.default_value[0] != '\0') {
            option.default_value = info.option_defaults.back();
        }
        option.description = info.option_descriptions.back();
        option.secret = spec.secret;
        info.option_info.push_back(std::move(option));
    }
    return info;
}

}  // namespace

PluginLoader::PluginLoader(std::vector<std::string> search_paths, AbiExpectation expected)
    : expected_(std::move(expected)) {
    for (const auto& path : search_paths) {
        if (path.empty()) {
            continue;
        }
        // A folder named twice (a --plugin-path that is also the default) is searched once:
        // otherwise each of its plugins would be reported as shadowed by itself.
        std::string dir = normalised(path);
        while (dir.size() > 2 && (dir.back() == '/' || dir.compare(dir.size() - 2, 2, "/.") == 0)) {
            dir.pop_back();  // "x/" and "x/." name x (boost's lexically_normal keeps them)
        }
        if (std::find(search_paths_.begin(), search_paths_.end(), dir) == search_paths_.end()) {
            search_paths_.push_back(std::move(dir));
        }
    }
}

PluginLoader::~PluginLoader() = default;

sdk::Result<std::shared_ptr<const PluginLibrary>> PluginLoader::open(const PluginRequest& request) {
    using sdk::ErrorCode;
    if (!is_known_kind(request.kind)) {
        std::vector<std::string> kinds;
        for (sdk::PluginKind kind : kAllKinds) {
            kinds.emplace_back(sdk::kind_name(kind));
        }
        return sdk::Error{ErrorCode::InvalidArgument,
                          plugin_prefix(request.name, request.kind) +
                              ": unknown plugin kind; expected one of " + join(kinds)};
    }
    if (!is_valid_identifier(request.name)) {
        return sdk::Error{ErrorCode::InvalidArgument,
                          plugin_prefix(request.name, request.kind) +
                              ": invalid name: expected [a-z0-9_]+ of at most 64 characters"};
    }
    auto resolved = resolve_file(request, search_paths_);
    if (!resolved) {
        return resolved.error();
    }
    const std::string file = resolved.value();
    const std::string prefix = plugin_prefix(request.name, request.kind, file);
    try {
        if (auto problem = check_file_safety(file)) {
            return sdk::Error{ErrorCode::PermissionDenied, prefix + ": " + *problem};
        }

        // From here the library is loaded; `library` unloads it on every early return.
        std::shared_ptr<PluginLibrary> library(new PluginLibrary());
        library->impl_ = std::make_unique<PluginLibrary::Impl>();
        boost::dll::shared_library& dll = library->impl_->library;
        boost::system::error_code ec;
        dll.load(fs::path(file),
                 boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
        if (ec || !dll.is_loaded()) {
            return sdk::Error{ErrorCode::FailedPrecondition,
                              prefix + ": cannot load: " + load_failure_reason(file, ec)};
        }

        // Entry points, before reading anything from the library (STYLE.md L3).
        const std::string create_alias = create_alias_for(request.kind);
        std::vector<std::string> missing;
        std::vector<std::string> found;
        for (const char* alias : {sdk::kAbiAlias, sdk::kDescriptorAlias}) {
            (dll.has(alias) ? found : missing).emplace_back(alias);
        }
        const bool has_create = dll.has(create_alias);
        bool has_other_create = false;
        for (sdk::PluginKind kind : kAllKinds) {
            if (dll.has(create_alias_for(kind))) {
                found.push_back(create_alias_for(kind));
                has_other_create = has_other_create || kind != request.kind;
            }
        }
        // A factory for another kind only is reported as a wrong kind by the descriptor check.
        if (!has_create && !has_other_create) {
            missing.push_back(create_alias);
        }
        if (!missing.empty()) {
            return sdk::Error{ErrorCode::FailedPrecondition,
                              prefix + ": missing entry point" + (missing.size() > 1 ? "s" : "") +
                                  " " + join(missing) + "; found: " + join(found)};
        }

        const auto* abi = static_cast<const sdk::AbiInfo*>(dll.get<const void*>(sdk::kAbiAlias));
        if (auto problem = check_abi(abi, expected_)) {
            return sdk::Error{ErrorCode::FailedPrecondition, prefix + ": " + *problem};
        }
        const auto* descriptor =
            static_cast<const sdk::PluginDescriptor*>(dll.get<const void*>(sdk::kDescriptorAlias));
        if (auto problem = check_descriptor(descriptor, request)) {
            return sdk::Error{ErrorCode::FailedPrecondition, prefix + ": " + *problem};
        }
        if (!has_create) {
            return sdk::Error{
                ErrorCode::FailedPrecondition,
                prefix + ": missing entry point " + create_alias + "; found: " + join(found)};
        }

        const std::string identity = std::string(sdk::kind_name(request.kind)) + "/" + request.name;
        auto previous = opened_.find(identity);
        if (previous != opened_.end() && previous->second != file) {
            return sdk::Error{ErrorCode::FailedPrecondition,
                              prefix +
                                  ": duplicate plugin: expected one file per kind and name, "
                                  "found it already loaded from " +
                                  previous->second};
        }

        library->factory_ = const_cast<void*>(dll.get<const void*>(create_alias));
        library->descriptor_ = descriptor;
        library->info_ = make_info(*abi, *descriptor, file);
        opened_[identity] = file;
        return std::shared_ptr<const PluginLibrary>(std::move(library));
    } catch (const std::exception& e) {
        return sdk::Error{ErrorCode::Internal,
                          prefix + ": unexpected error while loading: " + sanitize(e.what())};
    }
}

std::vector<PluginLoader::Discovered> PluginLoader::discover() {
    std::vector<Discovered> out;
    // Listing must not make a later open() of another file look like a duplicate.
    const auto opened_before = opened_;
    std::map<std::string, std::string> first_file;  // "<kind>/<name>" -> file
    for (const auto& dir : search_paths_) {
        for (const auto& path : plugin_files_in(dir)) {
            const std::string file = path.string();
            auto parsed = parse_file_name(path.filename().string());
            if (!parsed) {
                out.push_back({file,
                               sdk::Error{sdk::ErrorCode::InvalidArgument,
                                          "file " + sanitize(file, 4096) +
                                              ": name does not follow "
                                              "libsynergos-<kind>-<name>.so with a known kind"},
                               nullptr});
                continue;
            }
            const std::string identity =
                std::string(sdk::kind_name(parsed->kind)) + "/" + parsed->name;
            auto [first, inserted] = first_file.emplace(identity, file);
            if (!inserted) {
                out.push_back(
                    {file,
                     sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                plugin_prefix(parsed->name, parsed->kind, file) + ": shadowed by " +
                                    first->second + " earlier on the search path"},
                     nullptr, true});
                continue;
            }
            PluginRequest request;
            request.kind = parsed->kind;
            request.name = parsed->name;
            request.path = file;
            auto opened = open(request);
            if (!opened) {
                out.push_back({file, opened.error(), nullptr});
            } else {
                std::shared_ptr<const PluginLibrary> library = std::move(opened).value();
                out.push_back({file, library->info(), library});
            }
        }
    }
    opened_ = opened_before;
    return out;
}

std::map<std::string, std::string> redact_options(const PluginInfo& info,
                                                  const sdk::Options& options) {
    std::map<std::string, std::string> out = options.values();
    for (const auto& option : info.option_info) {
        auto it = out.find(option.key);
        if (option.secret && it != out.end()) {
            it->second = "***";
        }
    }
    return out;
}

namespace detail {

sdk::Error interface_mismatch(const PluginRequest& request, sdk::PluginKind interface_kind) {
    return sdk::Error{
        sdk::ErrorCode::InvalidArgument,
        plugin_detail::plugin_prefix(request.name, request.kind) + ": requested through the " +
            plugin_detail::describe_kind(interface_kind) + " interface: expected kind " +
            plugin_detail::describe_kind(interface_kind) + ", found " +
            plugin_detail::describe_kind(request.kind)};
}

sdk::Error factory_failed(const PluginLibrary& library, const sdk::Error& error) {
    const std::string reason = error.message.empty()
                                   ? std::string("factory failed without a message")
                                   : plugin_detail::sanitize(error.message, 1024);
    return sdk::Error{error.code, library.error_prefix() + ": " + reason};
}

sdk::Error factory_returned_null(const PluginLibrary& library) {
    return sdk::Error{sdk::ErrorCode::Internal,
                      library.error_prefix() + ": factory returned no object"};
}

}  // namespace detail
}  // namespace synergos::core
