// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file config_loader.hpp
/// Builds a RuntimeConfig: role defaults, then the YAML file, then command-line flags.
/// Every error is a ConfigError naming the file, line and key (or the flag).

#include <optional>
#include <string>
#include <vector>

#include <synergos/core/config/runtime_config.hpp>

namespace synergos::core {

/// Values given on the command line; an unset optional leaves the config file's value alone.
/// The original Synergos flags keep their meaning (see cli.hpp for the spelling).
struct FlagOverrides {
    std::optional<std::string> id;
    std::optional<std::vector<std::string>> queue;            ///< VARIANT [HOST PORT]
    std::optional<std::vector<std::string>> logging_variant;  ///< VARIANT [HOST PORT]
    std::optional<double> logging_resolution_s;
    std::optional<int> cpus;
    std::optional<int> gpus;
    bool censored = false;
    bool debug = false;
    std::optional<int> port;
    std::optional<std::string> host;  ///< `--host ADDRESS`
    bool allow_insecure = false;      ///< `--allow-insecure`
    std::optional<std::string> data_dir;
    std::optional<std::string> outputs_dir;
    std::optional<std::string> mlflow_dir;
    std::vector<std::string> plugin_paths;  ///< searched before the config's search paths
    std::optional<int> grid;
};

/// Reads the `node.role` of a YAML file without loading the rest; nullopt when not set.
/// Throws ConfigError when the file cannot be read or parsed.
std::optional<Role> peek_config_role(const std::string& path);

/// Overlays a YAML document on `base`. `source_name` names the document in errors; relative
/// paths in the document are resolved against `base_dir` (the file's folder).
/// Unknown keys (top-level and inside sections, except plugin `options`) are errors.
void overlay_yaml(RuntimeConfig& base, const std::string& yaml_text, const std::string& source_name,
                  const std::string& base_dir);

/// Overlays a YAML file on `base` (reads the file; errors name it).
void overlay_yaml_file(RuntimeConfig& base, const std::string& path);

/// Overlays flags on `config`. Throws ConfigError naming the flag on bad values, e.g.
/// `--queue rabbitmq` without HOST and PORT.
void apply_flags(RuntimeConfig& config, const FlagOverrides& flags);

/// Fills what is still unset (a random node id) and makes directories absolute.
void finalise(RuntimeConfig& config);

/// The whole path: defaults of `role` (or of the file's `node.role` when `role` is unset; a
/// director when neither says), the file when given, the flags, finalise, validate.
/// Throws ConfigError; a file whose `node.role` differs from `role` is an error.
RuntimeConfig build_config(std::optional<Role> role, const std::optional<std::string>& file,
                           const FlagOverrides& flags);

}  // namespace synergos::core
