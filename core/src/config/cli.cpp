// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/config/cli.hpp>

#include <sstream>

#include <boost/program_options.hpp>

namespace synergos::core {

namespace {

namespace po = boost::program_options;

struct CommandName {
    const char* name;
    Command command;
    const char* summary;
};

constexpr CommandName kCommands[] = {
    {"director", Command::Director, "serve the REST API and schedule federated jobs"},
    {"ttp", Command::Ttp, "run a trusted third party for one grid (--grid N)"},
    {"worker", Command::Worker, "run a participant's worker"},
    {"plugins", Command::Plugins,
     "list every plugin on the search path (--format text|json|markdown)"},
    {"check-config", Command::CheckConfig,
     "check-config FILE: validate a config and every plugin's options; connects to nothing"},
};

const char* command_name(Command command) {
    for (const auto& c : kCommands) {
        if (c.command == command) {
            return c.name;
        }
    }
    return "synergos";
}

/// Flags shared by the roles and check-config (the original director's, plus the new ones).
po::options_description run_options() {
    po::options_description d("Options");
    // clang-format off
    d.add_options()
        ("help,h", "show this help")
        ("config", po::value<std::string>()->value_name("FILE"),
         "YAML config file (flags override it)")
        ("id,i", po::value<std::string>()->value_name("ID"), "node id (default: random)")
        ("queue", po::value<std::vector<std::string>>()->multitoken()
             ->value_name("VARIANT [HOST PORT]"),
         "message queue: 'rabbitmq HOST PORT' or 'memory' (alias -mq; a director whose config "
         "names no queue either runs an in-process queue)")
        ("logging_variant,l", po::value<std::vector<std::string>>()->multitoken()
             ->value_name("VARIANT [HOST PORT]"),
         "log sink: 'basic' (default) or 'graylog [HOST PORT]'")
        ("logging_resolution,r", po::value<double>()->value_name("SECONDS"),
         "system-metrics interval in seconds (default 5)")
        ("cpus", po::value<int>()->value_name("N"), "CPUs to compute on: libtorch threads (0: its default)")
        ("gpus", po::value<int>()->value_name("N"), "GPUs to use (this build runs on CPUs only)")
        ("censored,c", po::bool_switch(), "redact paths, hosts and credentials in logs")
        ("debug,d", po::bool_switch(), "log at debug level")
        ("data-dir", po::value<std::string>()->value_name("DIR"), "data directory")
        ("outputs-dir", po::value<std::string>()->value_name("DIR"), "outputs directory")
        ("mlflow-dir", po::value<std::string>()->value_name("DIR"), "MLflow file-store directory")
        ("plugin-path", po::value<std::vector<std::string>>()->composing()->value_name("DIR"),
         "plugin folder searched first (repeatable)");
    // clang-format on
    return d;
}

/// Flags of the roles that listen (director, worker; check-config checks any role's config).
/// A TTP serves nothing, so `synergos ttp` neither lists nor takes them.
po::options_description listen_options() {
    po::options_description d("Listening options");
    // clang-format off
    d.add_options()
        ("port", po::value<int>()->value_name("PORT"), "REST port (default 5000; 0: any free port)")
        ("host", po::value<std::string>()->value_name("ADDRESS"),
         "address to listen on (default 127.0.0.1; 0.0.0.0: every interface)")
        ("allow-insecure", po::bool_switch(),
         "serve a non-loopback address without TLS and tokens (warns)");
    // clang-format on
    return d;
}

po::options_description ttp_options() {
    po::options_description d("TTP options");
    d.add_options()("grid,g", po::value<int>()->value_name("N"),
                    "grid index of this TTP (default 0)");
    return d;
}

po::options_description plugins_options() {
    po::options_description d("Options");
    // clang-format off
    d.add_options()
        ("help,h", "show this help")
        ("format", po::value<std::string>()->value_name("FORMAT")->default_value("text"),
         "text, json or markdown")
        ("config", po::value<std::string>()->value_name("FILE"),
         "take plugins.search_paths from FILE")
        ("plugin-path", po::value<std::vector<std::string>>()->composing()->value_name("DIR"),
         "plugin folder searched first (repeatable)");
    // clang-format on
    return d;
}

po::options_description options_for(Command command) {
    po::options_description all;
    if (command == Command::Plugins) {
        all.add(plugins_options());
        return all;
    }
    all.add(run_options());
    if (command != Command::Ttp) {
        all.add(listen_options());
    }
    if (command == Command::Ttp || command == Command::CheckConfig) {
        all.add(ttp_options());
    }
    return all;
}

template <typename T>
std::optional<T> opt(const po::variables_map& vm, const char* name) {
    if (vm.count(name) == 0) {
        return std::nullopt;
    }
    return vm[name].as<T>();
}

FlagOverrides flags_from(const po::variables_map& vm) {
    FlagOverrides f;
    f.id = opt<std::string>(vm, "id");
    f.queue = opt<std::vector<std::string>>(vm, "queue");
    f.logging_variant = opt<std::vector<std::string>>(vm, "logging_variant");
    f.logging_resolution_s = opt<double>(vm, "logging_resolution");
    f.cpus = opt<int>(vm, "cpus");
    f.gpus = opt<int>(vm, "gpus");
    f.censored = vm.count("censored") != 0 && vm["censored"].as<bool>();
    f.debug = vm.count("debug") != 0 && vm["debug"].as<bool>();
    f.port = opt<int>(vm, "port");
    f.host = opt<std::string>(vm, "host");
    f.allow_insecure = vm.count("allow-insecure") != 0 && vm["allow-insecure"].as<bool>();
    f.data_dir = opt<std::string>(vm, "data-dir");
    f.outputs_dir = opt<std::string>(vm, "outputs-dir");
    f.mlflow_dir = opt<std::string>(vm, "mlflow-dir");
    if (auto paths = opt<std::vector<std::string>>(vm, "plugin-path")) {
        f.plugin_paths = *paths;
    }
    f.grid = opt<int>(vm, "grid");
    return f;
}

}  // namespace

std::optional<Role> role_of(Command command) noexcept {
    switch (command) {
        case Command::Director: return Role::Director;
        case Command::Ttp: return Role::Ttp;
        case Command::Worker: return Role::Worker;
        default: return std::nullopt;
    }
}

std::string help_text(std::optional<Command> command) {
    std::ostringstream out;
    if (!command || *command == Command::Help || *command == Command::Version) {
        out << "Usage: synergos COMMAND [OPTIONS]\n\n"
            << "Synergos Director: a federated-learning job orchestrator built from plugins.\n\n"
            << "Commands:\n";
        for (const auto& c : kCommands) {
            out << "  " << c.name << std::string(14 - std::string(c.name).size(), ' ') << c.summary
                << "\n";
        }
        out << "\nGlobal options:\n  -h, --help     show this help (also: synergos COMMAND "
               "--help)\n"
            << "  -V, --version  show the version\n\n"
            << "Precedence: command-line flags, then the YAML config file, then defaults.\n";
        return out.str();
    }
    if (*command == Command::CheckConfig) {
        out << "Usage: synergos check-config FILE [OPTIONS]\n\n"
            << "Loads FILE, applies the flags, validates everything and opens every plugin it\n"
            << "names (options checked against each plugin's table). Exits 0 when valid,\n"
            << "otherwise 78 (EX_CONFIG) with one line naming the file and key.\n"
            << "It checks the file and every plugin's options; nothing is started or connected\n"
            << "to, so a broker or Graylog that is unreachable or refuses the credentials still\n"
            << "passes.\n\n";
    } else if (*command == Command::Plugins) {
        out << "Usage: synergos plugins [--format text|json|markdown] [--plugin-path DIR]...\n\n"
            << "Lists every plugin library on the search path: --plugin-path folders, the\n"
            << "config's plugins.search_paths, $SYNERGOS_PLUGIN_PATH, then the built-in "
               "folders.\n\n";
    } else {
        out << "Usage: synergos " << command_name(*command) << " [OPTIONS]\n\n";
    }
    out << options_for(*command);
    return out.str();
}

CliInvocation parse_command_line(int argc, const char* const* argv) {
    CliInvocation inv;
    if (argc < 2) {
        inv.command = Command::Help;
        return inv;
    }
    const std::string first = argv[1];
    if (first == "-h" || first == "--help" || first == "help") {
        inv.command = Command::Help;
        return inv;
    }
    if (first == "-V" || first == "--version" || first == "version") {
        inv.command = Command::Version;
        return inv;
    }
    std::optional<Command> command;
    for (const auto& c : kCommands) {
        if (first == c.name) {
            command = c.command;
        }
    }
    if (!command) {
        if (!first.empty() && first[0] == '-') {
            throw UsageError("missing command before '" + first +
                             "' (director, ttp, worker, plugins, check-config)");
        }
        throw UsageError("unknown command '" + first +
                         "' (valid: director, ttp, worker, plugins, check-config)");
    }
    inv.command = *command;

    // The original CLI spells the queue flag "-mq", which Program_options cannot express.
    std::vector<std::string> args;
    for (int i = 2; i < argc; ++i) {
        const std::string arg = argv[i];
        args.push_back(arg == "-mq" ? std::string("--queue") : arg);
    }

    po::options_description description = options_for(*command);
    po::positional_options_description positional;
    if (*command == Command::CheckConfig) {
        description.add_options()("file", po::value<std::string>(), "config file");
        positional.add("file", 1);
    }
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(args).options(description).positional(positional).run(),
                  vm);
        po::notify(vm);
    } catch (const po::error& e) {
        throw UsageError(std::string("synergos ") + command_name(*command) + ": " + e.what());
    }
    if (vm.count("help") != 0) {
        inv.help_for = *command;
        inv.command = Command::Help;
        return inv;
    }
    inv.config_file = opt<std::string>(vm, "config");
    if (*command == Command::Plugins) {
        inv.format = vm["format"].as<std::string>();
        if (inv.format != "text" && inv.format != "json" && inv.format != "markdown") {
            throw UsageError("synergos plugins: --format must be text, json or markdown, got '" +
                             inv.format + "'");
        }
        if (auto paths = opt<std::vector<std::string>>(vm, "plugin-path")) {
            inv.flags.plugin_paths = *paths;
        }
        return inv;
    }
    inv.flags = flags_from(vm);
    if (*command == Command::CheckConfig) {
        auto file = opt<std::string>(vm, "file");
        // A multi-token flag takes the positional FILE after it (`-l basic cfg.yaml`): a variant
        // is 1 token (basic, memory) or 3 (VARIANT HOST PORT), so a 2nd or 4th is the FILE.
        for (auto* variant : {&inv.flags.logging_variant, &inv.flags.queue}) {
            if (!file && *variant && ((*variant)->size() == 2 || (*variant)->size() == 4)) {
                file = (*variant)->back();
                (*variant)->pop_back();
            }
        }
        if (file && inv.config_file && *file != *inv.config_file) {
            throw UsageError("synergos check-config: give the file once (FILE or --config)");
        }
        if (!file && !inv.config_file) {
            throw UsageError("synergos check-config: missing FILE");
        }
        inv.config_file = file ? file : inv.config_file;
    }
    return inv;
}

}  // namespace synergos::core
