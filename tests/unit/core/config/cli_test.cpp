// SPDX-License-Identifier: Apache-2.0
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <synergos/core/config/cli.hpp>

using synergos::core::CliInvocation;
using synergos::core::Command;
using synergos::core::parse_command_line;
using synergos::core::UsageError;

namespace {

CliInvocation parse(std::vector<std::string> args) {
    args.insert(args.begin(), "synergos");
    std::vector<const char*> argv;
    for (const auto& a : args) {
        argv.push_back(a.c_str());
    }
    return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

TEST_CASE("The CLI parses the original director flags", "[unit][config][cli]") {
    const auto inv = parse({"director",
                            "-i",
                            "sync_director",
                            "-mq",
                            "rabbitmq",
                            "10.0.0.2",
                            "5672",
                            "-l",
                            "graylog",
                            "10.0.0.3",
                            "9200",
                            "-r",
                            "5",
                            "--cpus",
                            "2",
                            "-c",
                            "-d",
                            "--port",
                            "0",
                            "--plugin-path",
                            "/a",
                            "--plugin-path",
                            "/b"});
    CHECK(inv.command == Command::Director);
    CHECK(inv.flags.id == "sync_director");
    CHECK(*inv.flags.queue == std::vector<std::string>{"rabbitmq", "10.0.0.2", "5672"});
    CHECK(*inv.flags.logging_variant == std::vector<std::string>{"graylog", "10.0.0.3", "9200"});
    CHECK(inv.flags.logging_resolution_s == 5.0);
    CHECK(inv.flags.cpus == 2);
    CHECK(inv.flags.censored);
    CHECK(inv.flags.debug);
    CHECK(inv.flags.port == 0);
    CHECK(inv.flags.plugin_paths == std::vector<std::string>{"/a", "/b"});
}

TEST_CASE("The CLI knows its subcommands", "[unit][config][cli]") {
    CHECK(parse({}).command == Command::Help);
    CHECK(parse({"--help"}).command == Command::Help);
    CHECK(parse({"--version"}).command == Command::Version);
    CHECK(parse({"-V"}).command == Command::Version);

    const auto ttp = parse({"ttp", "--grid", "4", "--queue", "rabbitmq", "h", "1"});
    CHECK(ttp.command == Command::Ttp);
    CHECK(ttp.flags.grid == 4);

    const auto check = parse({"check-config", "configs/ttp.yaml"});
    CHECK(check.command == Command::CheckConfig);
    CHECK(check.config_file == "configs/ttp.yaml");
    // A multi-token flag before FILE took it as one of its own (before: "missing FILE").
    const auto after_flag = parse({"check-config", "-l", "basic", "x.yaml"});
    CHECK(after_flag.config_file == "x.yaml");
    CHECK(after_flag.flags.logging_variant == std::vector<std::string>{"basic"});
    const auto after_queue = parse({"check-config", "--queue", "rabbitmq", "mq", "5672", "x.yaml"});
    CHECK(after_queue.config_file == "x.yaml");
    CHECK(after_queue.flags.queue == std::vector<std::string>{"rabbitmq", "mq", "5672"});
    CHECK_THAT(synergos::core::help_text(Command::CheckConfig), Catch::Contains("otherwise 78"));

    const auto plugins = parse({"plugins", "--format", "json", "--plugin-path", "/p"});
    CHECK(plugins.command == Command::Plugins);
    CHECK(plugins.format == "json");
    CHECK(plugins.flags.plugin_paths == std::vector<std::string>{"/p"});

    const auto help = parse({"worker", "--help"});
    CHECK(help.command == Command::Help);
    CHECK(help.help_for == Command::Worker);
    CHECK_THAT(synergos::core::help_text(Command::Worker), Catch::Contains("--logging_variant"));
    CHECK_THAT(synergos::core::help_text(Command::Ttp), Catch::Contains("--grid"));
    // A TTP listens on nothing: its help leaves out the listening flags the others have.
    for (const char* flag : {"--port", "--host", "--allow-insecure"}) {
        CHECK_THAT(synergos::core::help_text(Command::Ttp), !Catch::Contains(flag));
        CHECK_THAT(synergos::core::help_text(Command::Director), Catch::Contains(flag));
        CHECK_THAT(synergos::core::help_text(Command::Worker), Catch::Contains(flag));
        CHECK_THAT(synergos::core::help_text(Command::CheckConfig), Catch::Contains(flag));
    }
    CHECK_THAT(synergos::core::help_text(std::nullopt), Catch::Contains("check-config"));
}

TEST_CASE("The CLI refuses mistakes with one clear line", "[unit][config][cli]") {
    CHECK_THROWS_WITH(parse({"directr"}), Catch::Contains("unknown command 'directr'"));
    CHECK_THROWS_WITH(parse({"director", "--frobnicate"}), Catch::Contains("frobnicate"));
    CHECK_THROWS_WITH(parse({"director", "--grid", "1"}), Catch::Contains("grid"));
    CHECK_THROWS_WITH(parse({"director", "--port", "http"}), Catch::Contains("port"));
    CHECK_THROWS_WITH(parse({"ttp", "--port", "5000"}), Catch::Contains("port"));
    CHECK_THROWS_WITH(parse({"plugins", "--format", "yaml"}),
                      Catch::Contains("text, json or markdown"));
    CHECK_THROWS_WITH(parse({"check-config"}), Catch::Contains("missing FILE"));
    CHECK_THROWS_AS(parse({"--id", "x"}), UsageError);
}
