// SPDX-License-Identifier: Apache-2.0
// The real `synergos director` process: the exposure rule (a non-loopback bind without TLS and
// tokens needs --allow-insecure, and warns), and a director configured with TLS and tokens that
// refuses plain, untrusted and token-less peers while the client commands, given the CA and a
// token, get through.

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/child_process.hpp"

#include <synergos/core/http/client.hpp>

#include "certs.hpp"

namespace {

using synergos::core::http::HttpClient;

struct TempDir {
    TempDir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "synergos-sec-XXXXXX").string();
        path = mkdtemp(pattern.data());
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string path;
};

using synergos::tests::Child;

constexpr std::chrono::seconds kTimeout(30);
constexpr const char* kAdminToken = "process-admin-token-0123456789";
constexpr const char* kReadToken = "process-read-token-0123456789";

/// A minimal director config: basic logging to stderr as JSON lines, memory queue, SQLite.
std::string director_config(const TempDir& dir, const std::string& http) {
    const std::string file = dir.path + "/director.yaml";
    std::ofstream(file) << "node: {id: sec-director}\n"
                           "paths: {data_dir: data, outputs_dir: outputs, mlflow_dir: mlflow}\n"
                           "logging:\n"
                           "  backend: basic\n"
                           "  options: {output: none, json_file: stderr}\n"
                           "  system_metrics: false\n"
                           "message_queue: memory\n"
                           "storage: sqlite\n"
                           "tracking: none\n"
                           "ttp: {functions: []}\n"
                           "aggregators: []\n"
                           "model: none\n"
                        << http;
    return file;
}

bool has(const std::vector<std::string>& lines, const std::string& text) {
    for (const auto& l : lines) {
        if (l.find(text) != std::string::npos) {
            return true;
        }
    }
    return false;
}

/// The port from "synergos director listening on http://HOST:PORT".
std::uint16_t listening_port(Child& child) {
    std::uint16_t port = 0;
    child.read_until(
        [&](const auto&) {
            for (const auto& l : child.out_lines()) {
                const auto at = l.find("listening on ");
                if (at != std::string::npos) {
                    port = static_cast<std::uint16_t>(std::stoi(l.substr(l.rfind(':') + 1)));
                    return true;
                }
            }
            return false;
        },
        kTimeout);
    return port;
}

TEST_CASE("director process: a non-loopback bind without TLS and tokens needs --allow-insecure",
          "[security][process]") {
    TempDir dir;
    const auto config = director_config(dir, "");
    {
        Child refused({"director", "--config", config, "--port", "0", "--host", "0.0.0.0"});
        const auto code = refused.wait(kTimeout);
        REQUIRE(code.has_value());
        CHECK(*code == 78);  // EX_CONFIG: refused before anything started, not worth a restart
        CHECK(has(refused.err_lines(), "--allow-insecure"));
        CHECK(has(refused.err_lines(), "0.0.0.0"));
    }
    {
        Child allowed({"director", "--config", config, "--port", "0", "--host", "0.0.0.0",
                       "--allow-insecure"});
        const auto port = listening_port(allowed);
        REQUIRE(port != 0);
        CHECK(has(allowed.err_lines(), "INSECURE"));
        HttpClient client;
        auto health = client.request("GET", "127.0.0.1", port, "/healthz");
        REQUIRE(health.has_value());
        CHECK(health->status == 200);
        allowed.signal(SIGTERM);
        CHECK(allowed.wait(kTimeout) == std::optional<int>(0));
    }
}

TEST_CASE(
    "director process with TLS and tokens: refuses plain, untrusted and token-less peers, "
    "the client commands get through with the CA and a token",
    "[security][process][tls]") {
    TempDir dir;
    const auto& certs = synergos::testing::test_certs();
    std::ofstream(dir.path + "/admin.token") << kAdminToken << "\n";
    std::ofstream(dir.path + "/read.token") << kReadToken << "\n";
    const auto config = director_config(dir,
                                        "http:\n"
                                        "  tls: {cert_file: " +
                                            certs.server_cert + ", key_file: " + certs.server_key +
                                            "}\n"
                                            "  tokens:\n"
                                            "    - {scope: admin, file: admin.token}\n"
                                            "    - {scope: read, file: read.token}\n");
    // 0.0.0.0 with TLS and tokens needs no allowance.
    Child director({"director", "--config", config, "--port", "0", "--host", "0.0.0.0"});
    const auto port = listening_port(director);
    REQUIRE(port != 0);
    CHECK_FALSE(has(director.err_lines(), "INSECURE"));
    CHECK(has(director.out_lines(), "listening on https://0.0.0.0:"));

    HttpClient plain;
    CHECK_FALSE(plain.request("GET", "127.0.0.1", port, "/healthz").has_value());
    synergos::core::http::ClientOptions rogue_options;
    rogue_options.tls.enabled = true;
    rogue_options.tls.ca_file = certs.rogue_ca;
    HttpClient rogue(rogue_options);
    CHECK_FALSE(rogue.request("GET", "127.0.0.1", port, "/healthz").has_value());
    synergos::core::http::ClientOptions good_options;
    good_options.tls.enabled = true;
    good_options.tls.ca_file = certs.ca;
    HttpClient good(good_options);
    auto jobs = good.request("GET", "127.0.0.1", port, "/v1/jobs");
    REQUIRE(jobs.has_value());
    CHECK(jobs->status == 401);
    auto read_post =
        good.request("POST", "127.0.0.1", port, "/ttp/connect/collaborations",
                     R"({"collab_id": "p1"})", "application/json", std::chrono::seconds(10),
                     {{"Authorization", std::string("Bearer ") + kReadToken}});
    REQUIRE(read_post.has_value());
    CHECK(read_post->status == 403);

    const std::string server = "https://127.0.0.1:" + std::to_string(port);
    {
        Child status({"status", "--server", server, "--ca-file", certs.ca, "--token-file",
                      dir.path + "/read.token", "--json"});
        CHECK(status.wait(kTimeout) == std::optional<int>(0));
        CHECK_THAT(status.out_text(), Catch::Contains("\"ready\": true"));
    }
    {
        // No token: the client says why instead of printing an empty list.
        Child jobs_cmd({"jobs", "--server", server, "--ca-file", certs.ca});
        CHECK(jobs_cmd.wait(kTimeout) == std::optional<int>(2));
        CHECK(has(jobs_cmd.err_lines(), "401"));
    }
    {
        // Without the CA the client refuses the director's certificate.
        Child untrusting({"status", "--server", server, "--token-file", dir.path + "/read.token"});
        CHECK(untrusting.wait(kTimeout) == std::optional<int>(2));
    }
    // The tokens never reach the log.
    director.signal(SIGTERM);
    CHECK(director.wait(kTimeout) == std::optional<int>(0));
    for (const auto& line : director.err_lines()) {
        CHECK(line.find(kAdminToken) == std::string::npos);
        CHECK(line.find(kReadToken) == std::string::npos);
    }
}

}  // namespace
