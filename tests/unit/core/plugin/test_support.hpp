// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file test_support.hpp
/// Helpers shared by the loader tests: fixture paths, temp dirs and fixture copies.

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

#include <synergos/core/plugin/loader.hpp>

namespace synergos::test {

/// Where the fixture plugins are built.
inline std::string fixture_dir() {
    return std::filesystem::canonical(SYNERGOS_TEST_FIXTURE_PLUGIN_DIR).string();
}

/// The canonical path of a fixture plugin file.
inline std::string fixture_file(const std::string& name) {
    return fixture_dir() + "/libsynergos-logging-" + name + ".so";
}

/// "plugin '<name>' (kind logging, file <fixture file>)".
inline std::string fixture_prefix(const std::string& name) {
    return "plugin '" + name + "' (kind logging, file " + fixture_file(name) + ")";
}

/// A fresh directory under the system temp dir, removed with its content on destruction.
class TempDir {
public:
    TempDir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "synergos-loader-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed for " + pattern);
        }
        path_ = std::filesystem::canonical(pattern);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    std::string str() const { return path_.string(); }

    /// Copies fixture `name` in as `file_name` (default: its own file name), mode 0755.
    std::string copy_fixture(const std::string& name, const std::string& file_name = {}) const {
        const auto target =
            path_ / (file_name.empty() ? "libsynergos-logging-" + name + ".so" : file_name);
        std::filesystem::copy_file(fixture_file(name), target,
                                   std::filesystem::copy_options::overwrite_existing);
        std::filesystem::permissions(target, std::filesystem::perms(0755));
        return target.string();
    }

private:
    std::filesystem::path path_;
};

/// A request for a fixture of kind logging.
inline core::PluginRequest fixture_request(const std::string& name) {
    core::PluginRequest request;
    request.kind = sdk::PluginKind::LogSink;
    request.name = name;
    return request;
}

}  // namespace synergos::test
