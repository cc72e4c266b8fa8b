// SPDX-License-Identifier: Apache-2.0
// `synergos`: parses the command line, builds the config, dispatches to a role or a tool, and
// turns the outcome into an exit code (0 ok, 1 failure, 2 command-line mistake, 78 a config
// no restart can fix).
#include <algorithm>
#include <filesystem>
#include <iostream>

#include <synergos/core/client/client.hpp>
#include <synergos/core/config/cli.hpp>
#include <synergos/core/config/config_loader.hpp>
#include <synergos/core/config/security.hpp>
#include <synergos/core/plugin/listing.hpp>
#include <synergos/core/plugin/loader.hpp>
#include <synergos/core/runtime/cpu_limit.hpp>
#include <synergos/core/runtime/roles.hpp>
#include <synergos/core/runtime/runtime.hpp>
#include <synergos/sdk/version.hpp>

#ifndef SYNERGOS_VERSION
#define SYNERGOS_VERSION "0.0.0"
#endif

namespace {

namespace core = synergos::core;
namespace sdk = synergos::sdk;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

std::string exe_dir() {
    std::error_code ec;
    const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    return ec ? std::string() : exe.parent_path().string();
}

core::RuntimeConfig load(const core::CliInvocation& inv) {
    core::RuntimeConfig config =
        core::build_config(core::role_of(inv.command), inv.config_file, inv.flags);
    config.plugin_search_paths =
        core::default_plugin_search_path(config.plugin_search_paths, exe_dir());
    return config;
}

int run_role(const core::CliInvocation& inv) {
    core::RuntimeConfig config = load(inv);
    // Before the runtime loads the model plugin (libtorch reads OMP_NUM_THREADS once).
    const core::CpuLimit cpus = core::apply_cpu_limit(config.cpus);
    const int gpus = config.gpus;
    core::RuntimeOptions options;
    options.handle_signals = true;
    core::Runtime runtime(std::move(config), std::move(options));
    runtime.logger().info("synergos " SYNERGOS_VERSION,
                          {{"version", SYNERGOS_VERSION},
                           {"sdk_abi", std::to_string(synergos::sdk::kAbiMajor) + "." +
                                           std::to_string(synergos::sdk::kAbiMinor)},
                           {"cpus", cpus.used},
                           {"cpus_available", cpus.available}});
    if (gpus > 0) {
        runtime.logger().warn("gpus: this build's torch runs on CPUs only; training uses the CPUs",
                              {{"gpus", gpus}});
    }
    switch (inv.command) {
        case core::Command::Ttp: return core::run_ttp(runtime);
        case core::Command::Worker: return core::run_worker(runtime);
        default: return core::run_director(runtime);
    }
}

int list_plugins(const core::CliInvocation& inv) {
    std::vector<std::string> paths = inv.flags.plugin_paths;
    if (inv.config_file) {
        paths = core::build_config(std::nullopt, inv.config_file, inv.flags).plugin_search_paths;
    }
    core::PluginLoader loader(core::default_plugin_search_path(paths, exe_dir()));
    const auto found = loader.discover();
    std::cout << core::render_plugin_listing(found, inv.format);
    // A file that fails to load is an installation fault a script must see (a shadowed one is
    // a deliberate override: listed, not a failure).
    const auto failed = std::count_if(found.begin(), found.end(),
                                      [](const auto& d) { return !d.info && !d.shadowed; });
    if (failed > 0) {
        std::cerr << "synergos: " << failed << " plugin file" << (failed == 1 ? "" : "s")
                  << " could not be loaded (see the listing)\n";
        return kExitFailure;
    }
    return kExitOk;
}

/// check-config's logger: the checks' warnings, one line each on stderr.
class WarningsToStderr final : public sdk::Logger {
public:
    void log(sdk::Level level, std::string_view event, std::string_view fields_json,
             sdk::SourceLocation) noexcept override {
        if (level >= sdk::Level::Warn) {
            std::cerr << "synergos: warning: " << event << (fields_json.empty() ? "" : " ") << fields_json
                      << "\n";
        }
    }
    bool enabled(sdk::Level level) const noexcept override { return level >= sdk::Level::Warn; }
};

int check_config(const core::CliInvocation& inv) {
    const core::RuntimeConfig config = load(inv);
    core::PluginLoader loader(config.plugin_search_paths);
    std::size_t checked = 0;
    std::vector<std::string> warnings;
    if (auto status = core::check_configured_plugins(config, loader, &checked, &warnings);
        !status) {
        std::cerr << "synergos: " << status.message() << "\n";
        return core::kExitConfig;
    }
    // Tokens, TLS files, the exposure rule and the outputs folder, as the role checks them
    // before it starts anything (no folder is created here).
    WarningsToStderr stderr_logger;
    if (auto status = core::check_before_start(config, stderr_logger, false); !status) {
        std::cerr << "synergos: " << (config.source_file.empty() ? std::string("config") : config.source_file)
                  << ": " << status.message() << "\n";
        return core::kExitConfig;
    }
    for (const auto& warning : warnings) {
        std::cerr << "synergos: warning: " << warning << "\n";
    }
    std::cout << *inv.config_file << ": ok (role " << core::role_name(config.node.role) << ", "
              << checked << " plugin" << (checked == 1 ? "" : "s")
              << " checked; nothing was started or connected to)\n";
    return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        // The client commands (submit, jobs, status) talk to a director; they start no runtime.
        if (auto rc = synergos::core::client::main_if_client(argc, argv)) {
            return *rc;
        }
        const core::CliInvocation inv = core::parse_command_line(argc, argv);
        switch (inv.command) {
            case core::Command::Help:
                std::cout << core::help_text(inv.help_for);
                if (!inv.help_for) {
                    std::cout << "\nClient commands (talk to a running director):\n"
                                 "  submit JOB.yaml   walk a whole job file: register, align, train, validate, predict\n"
                                 "  jobs              list jobs with their state, progress and reason\n"
                                 "  status            the director's readiness and job counts\n";
                }
                return kExitOk;
            case core::Command::Version:
                std::cout << "synergos " SYNERGOS_VERSION " (SDK ABI " << synergos::sdk::kAbiMajor
                          << "." << synergos::sdk::kAbiMinor << ", " << synergos::sdk::kFingerprint
                          << ")\n";
                return kExitOk;
            case core::Command::Plugins: return list_plugins(inv);
            case core::Command::CheckConfig: return check_config(inv);
            default: return run_role(inv);
        }
    } catch (const core::UsageError& e) {
        std::cerr << "synergos: " << e.what() << " (see synergos --help)\n";
        return kExitUsage;
    } catch (const core::ConfigError& e) {
        std::cerr << "synergos: config error: " << e.what() << "\n";
        return core::kExitConfig;
    } catch (const std::exception& e) {
        std::cerr << "synergos: " << e.what() << "\n";
        return kExitFailure;
    }
}
