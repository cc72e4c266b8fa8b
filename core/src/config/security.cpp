// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/config/security.hpp>

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <utility>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <synergos/core/http/auth.hpp>

namespace synergos::core {

namespace {

std::string trim(std::string text) {
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) {
        return {};
    }
    const auto last = text.find_last_not_of(" \t\r\n");
    return text.substr(first, last - first + 1);
}

sdk::Error secret_error(const std::string& key, const std::string& message) {
    return sdk::Error{sdk::ErrorCode::InvalidArgument, key + ": " + message};
}

/// The file at `path` (when set) can be opened for reading; else an error naming key and path.
sdk::Status readable(const std::string& path, const std::string& key) {
    if (path.empty()) {
        return {};
    }
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument, key + ": '" + path + "' is a directory, not a file");
    }
    // Opening a FIFO waits for a writer: check-config hung on `cert_file: /dev/stdin`.
    if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec)) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument, key + ": '" + path + "' is not a regular file");
    }
    errno = 0;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        const int error = errno;
        return sdk::Status(sdk::ErrorCode::InvalidArgument,
                           key + ": cannot read '" + path + "': " +
                               (error != 0 ? std::strerror(error) : "cannot be opened"));
    }
    return {};
}

/// Each file (path, key) that is set can be read; else the first error.
sdk::Status readable(std::initializer_list<std::pair<const std::string*, const char*>> files) {
    for (const auto& [path, key] : files) {
        if (auto st = readable(*path, key); !st) {
            return st;
        }
    }
    return {};
}

/// The outputs folder exists (created if not, unless `create` is false: then only one that
/// exists is checked) and takes a file.
sdk::Status writable_folder(const std::string& path, const std::string& key, bool create) {
    namespace fs = std::filesystem;
    if (path.empty()) {
        return {};
    }
    std::error_code ec;
    if (!create) {
        if (!fs::exists(path, ec)) {
            return {};
        }
        if (!fs::is_directory(path, ec)) {
            return sdk::Status(sdk::ErrorCode::InvalidArgument,
                               key + ": cannot use '" + path + "' as a folder: it is not a directory");
        }
        if (::access(path.c_str(), W_OK | X_OK) != 0) {
            const int error = errno;
            return sdk::Status(sdk::ErrorCode::InvalidArgument,
                               key + ": cannot write into '" + path + "': " + std::strerror(error));
        }
        return {};
    }
    fs::create_directories(path, ec);
    if (ec || !fs::is_directory(path)) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument,
                           key + ": cannot use '" + path + "' as a folder: " +
                               (ec ? ec.message() : std::string("it is not a directory")));
    }
    const fs::path probe = fs::path(path) / (".synergos-write-check-" + std::to_string(::getpid()));
    errno = 0;
    {
        std::ofstream out(probe, std::ios::binary | std::ios::trunc);
        if (!out) {
            const int error = errno;
            return sdk::Status(sdk::ErrorCode::InvalidArgument,
                               key + ": cannot write into '" + path + "': " +
                                   (error != 0 ? std::strerror(error) : "cannot create a file"));
        }
    }
    fs::remove(probe, ec);
    return {};
}

}  // namespace

sdk::Result<std::string> read_secret(const SecretSource& source, const std::string& key) {
    std::string value;
    std::string where;
    if (!source.file.empty()) {
        where = "file '" + source.file + "'";
        std::error_code ec;
        // Not a device, FIFO or directory (read to no end, waited on, or "too short").
        if (std::filesystem::exists(source.file, ec) && (!std::filesystem::is_regular_file(source.file, ec) ||
                                                         std::filesystem::file_size(source.file, ec) > 65536)) {
            return secret_error(key, "the token " + where + " is not a regular file of at most 64 KiB");
        }
        std::ifstream in(source.file, std::ios::binary);
        if (!in) {
            return secret_error(key, "cannot read the token " + where);
        }
        std::ostringstream text;
        text << in.rdbuf();
        value = trim(text.str());
    } else if (!source.env.empty()) {
        where = "environment variable '" + source.env + "'";
        const char* env = std::getenv(source.env.c_str());
        if (env == nullptr) {
            return secret_error(key, "the token " + where + " is not set");
        }
        value = trim(env);
    } else {
        return secret_error(key, "names neither a token file nor an environment variable");
    }
    if (value.size() < kMinTokenLength) {
        return secret_error(key, "the token in the " + where + " is shorter than " +
                                     std::to_string(kMinTokenLength) + " characters");
    }
    for (const char c : value) {
        if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) {
            return secret_error(
                key, "the token in the " + where + " must be printable ASCII without spaces");
        }
    }
    return value;
}

sdk::Result<http::ServerOptions> server_options(const RuntimeConfig& config) {
    const auto& c = config.http;
    http::ServerOptions o;
    o.host = c.host == "localhost" ? "127.0.0.1" : c.host;
    o.port = static_cast<std::uint16_t>(c.port);
    o.threads = c.threads;
    o.body_limit_bytes = c.body_limit_bytes;
    o.header_timeout = std::chrono::milliseconds(c.header_timeout_ms);
    o.body_timeout = std::chrono::milliseconds(c.body_timeout_ms);
    o.max_connections = static_cast<std::size_t>(c.max_connections);
    o.max_connections_per_peer = static_cast<std::size_t>(c.max_connections_per_peer);
    o.tls.cert_file = c.tls.cert_file;
    o.tls.key_file = c.tls.key_file;
    o.tls.ca_file = c.tls.ca_file;
    o.tls.require_client_cert = c.tls.require_client_cert;
    for (std::size_t i = 0; i < c.tokens.size(); ++i) {
        const std::string key = "http.tokens[" + std::to_string(i) + "]";
        auto secret = read_secret(c.tokens[i].source, key);
        if (!secret) {
            return secret.error();
        }
        http::BearerToken token;
        token.secret = std::move(*secret);
        token.scope = c.tokens[i].scope == "read" ? http::Scope::Read : http::Scope::Admin;
        token.label = key;
        o.tokens.push_back(std::move(token));
    }
    return o;
}

sdk::Result<http::ClientOptions> worker_client_options(const RuntimeConfig& config) {
    const auto& w = config.worker_client;
    http::ClientOptions o;
    o.tls.enabled = w.tls;
    o.tls.ca_file = w.ca_file;
    o.tls.cert_file = w.cert_file;
    o.tls.key_file = w.key_file;
    if (!w.token.empty()) {
        auto secret = read_secret(w.token, "worker_client.token");
        if (!secret) {
            return secret.error();
        }
        o.default_headers.emplace_back("Authorization", "Bearer " + *secret);
    }
    return o;
}

sdk::Status check_exposure(const RuntimeConfig& config, const std::string& role,
                           sdk::Logger& logger) {
    const auto& c = config.http;
    if (http::is_loopback_host(c.host)) {
        return {};
    }
    const bool tls = !c.tls.cert_file.empty();
    const bool tokens = !c.tokens.empty();
    if (tls && tokens) {
        return {};
    }
    std::string missing = !tls && !tokens ? "TLS and tokens" : (!tls ? "TLS" : "tokens");
    const std::string where = c.host + ":" + std::to_string(c.port);
    if (!c.allow_insecure) {
        return sdk::Status(
            sdk::ErrorCode::FailedPrecondition,
            role + " refuses to serve " + where + " without " + missing +
                ": other hosts could reach it. Configure http.tls and http.tokens, bind "
                "127.0.0.1 (--host), or accept the risk with --allow-insecure "
                "(http.allow_insecure: true)");
    }
    logger.warn("INSECURE: serving a non-loopback address without " + missing,
                nlohmann::json{{"role", role},
                               {"address", where},
                               {"tls", tls},
                               {"tokens", tokens},
                               {"allowed_by", "allow_insecure"}}
                    .dump());
    return {};
}

sdk::Status check_before_start(const RuntimeConfig& config, sdk::Logger& logger, bool create_outputs) {
    const Role role = config.node.role;
    const bool serves = role == Role::Director || role == Role::Worker;  // a TTP serves no HTTP
    const bool calls_workers = role == Role::Director || role == Role::Ttp;
    if (serves) {
        if (auto st = check_exposure(config, role_name(role), logger); !st) {
            return st;
        }
        const auto& tls = config.http.tls;
        if (auto st = readable({{&tls.cert_file, "http.tls.cert_file"},
                                {&tls.key_file, "http.tls.key_file"},
                                {&tls.ca_file, "http.tls.ca_file"}});
            !st) {
            return st;
        }
        if (auto options = server_options(config); !options) {
            return options.error();  // reads every token
        }
    }
    if (calls_workers) {
        const auto& w = config.worker_client;
        if (auto st = readable({{&w.ca_file, "worker_client.ca_file"},
                                {&w.cert_file, "worker_client.cert_file"},
                                {&w.key_file, "worker_client.key_file"}});
            !st) {
            return st;
        }
        if (auto options = worker_client_options(config); !options) {
            return options.error();
        }
    }
    return writable_folder(config.node.outputs_dir, "paths.outputs_dir", create_outputs);
}

}  // namespace synergos::core
