// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file client.hpp
/// The command-line client in the `synergos` executable: `submit JOB.yaml` walks the original
/// driver's whole journey against a director (collaboration, project, experiment, runs,
/// participants with their nodes and tags; then alignment, training, validation, prediction),
/// showing progress while jobs run and a table of the final metrics; `jobs` and `status` show
/// what the director is doing.

#include <chrono>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/status.hpp>

namespace synergos::core::client {

struct ClientOptions {
    std::string server = "http://127.0.0.1:5000";  ///< director base URL
    std::string token;                              ///< bearer token, when the director wants one
    std::string token_file;  ///< read the token from this file (when `token` is empty)
    std::string ca_file;     ///< https: CA that the director's certificate must chain to
    bool json = false;                              ///< machine-readable output
    std::chrono::seconds timeout{7200};             ///< bound on the whole command, each request within it
    std::chrono::milliseconds poll{500};            ///< job polling period
};

/// Reads a job file (YAML) into the JSON shape `submit` uses; errors name the file and field.
sdk::Result<nlohmann::json> load_job_file(const std::string& path);

/// Warnings for run fields of a loaded job file that look like misspellings of a known one
/// (`epoch` for `epochs`): runs store unknown keys as given, so a typo is otherwise silent.
std::vector<std::string> run_field_warnings(const nlohmann::json& job);

/// Runs a job file end to end. Exit code: 0 when every step succeeded, 1 when a job failed (its
/// reason is printed), 2 for a bad job file or an unreachable director.
int submit(const std::string& job_file, const ClientOptions& options, std::ostream& out, std::ostream& err);

/// Lists jobs (optionally of one state) as a table or JSON. Exit 0, or 2 when unreachable.
int list_jobs(const ClientOptions& options, const std::string& state, std::ostream& out, std::ostream& err);

/// The director's health, readiness and job counts. Exit 0 when ready, 1 when not, 2 unreachable.
int status(const ClientOptions& options, std::ostream& out, std::ostream& err);

}  // namespace synergos::core::client

namespace synergos::core::client {

/// Runs `synergos submit|jobs|status ...` when argv[1] names a client command; nullopt otherwise.
/// Flags: `--server URL` (or $SYNERGOS_SERVER; https:// for TLS), `--token T` (or
/// $SYNERGOS_TOKEN), `--token-file F` (or $SYNERGOS_TOKEN_FILE), `--ca-file F` (or
/// $SYNERGOS_CA_FILE), `--json`, `--timeout SECONDS` (submit), `--state S` (jobs).
std::optional<int> main_if_client(int argc, const char* const* argv);

}  // namespace synergos::core::client
