// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file cli.hpp
/// The `synergos` command line: subcommands and flags (Boost.Program_options). Parsing only;
/// core/app/main.cpp dispatches. The original Synergos flags keep their spelling and meaning,
/// including the short forms (`-i`, `-mq`, `-l`, `-r`, `-c`, `-d`, `-g`).

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <synergos/core/config/config_loader.hpp>

namespace synergos::core {

/// What the user asked for.
enum class Command { Help, Version, Director, Ttp, Worker, Plugins, CheckConfig };

/// A command-line mistake; `what()` is one line, the caller adds "see --help".
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// The parsed command line.
struct CliInvocation {
    Command command = Command::Help;
    std::optional<Command> help_for;         ///< `synergos director --help`
    std::optional<std::string> config_file;  ///< `--config FILE` or check-config's FILE
    FlagOverrides flags;
    std::string format = "text";  ///< `plugins --format text|json|markdown`
};

/// Parses `argv` (argv[0] is the program). Throws UsageError.
CliInvocation parse_command_line(int argc, const char* const* argv);

/// The help text: the overview when `command` is unset or Help, otherwise that command's flags.
std::string help_text(std::optional<Command> command);

/// The role a run command plays; nullopt for Help/Version/Plugins/CheckConfig.
std::optional<Role> role_of(Command command) noexcept;

}  // namespace synergos::core
