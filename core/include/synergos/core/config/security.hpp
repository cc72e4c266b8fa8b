// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file security.hpp
/// Turns the security part of a RuntimeConfig into what the HTTP server and client take: TLS
/// files, bearer tokens (read from their files or environment variables at start-up, never
/// logged) and the exposure rule: a server bound to a non-loopback address without TLS and
/// tokens starts only when `http.allow_insecure` (`--allow-insecure`) says so, and warns.

#include <string>

#include <synergos/core/config/runtime_config.hpp>
#include <synergos/core/http/client.hpp>
#include <synergos/core/http/server.hpp>
#include <synergos/sdk/log.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::core {

/// Shortest token accepted: a guessable token is no protection.
inline constexpr std::size_t kMinTokenLength = 16;

/// Reads a secret: the file's content or the variable's value, surrounding whitespace dropped.
/// Errors name `key` and the file or variable, never the value.
sdk::Result<std::string> read_secret(const SecretSource& source, const std::string& key);

/// The server options of `config.http`, tokens read. Errors name the config key.
sdk::Result<http::ServerOptions> server_options(const RuntimeConfig& config);

/// The TTP's worker-protocol client options (`worker_client`), its token as a default
/// `Authorization` header.
sdk::Result<http::ClientOptions> worker_client_options(const RuntimeConfig& config);

/// The exposure rule for `role`'s server: fails (naming the address and the fix) when the
/// server would be reachable from other hosts without both TLS and tokens, unless
/// `http.allow_insecure`; then it logs a warning and succeeds.
sdk::Status check_exposure(const RuntimeConfig& config, const std::string& role,
                           sdk::Logger& logger);

/// What the role's HTTP server and worker client need that no plugin provides, checked before
/// anything starts (and by check-config): the exposure rule, every token (read now), and every
/// TLS file (readable), each error naming its key and path; and the outputs folder (created,
/// writable). A bad token file used to be found only after the store was opened and the
/// embedded TTP had taken jobs. `logger` gets the exposure rule's warning. `create_outputs`
/// false (check-config): a missing outputs folder is not created, and not an error.
sdk::Status check_before_start(const RuntimeConfig& config, sdk::Logger& logger, bool create_outputs = true);

}  // namespace synergos::core
