// SPDX-License-Identifier: Apache-2.0
#include "settings.hpp"

#include <charconv>
#include <fstream>
#include <string_view>

#include "descriptor.hpp"

namespace synergos::plugins::rabbitmq {

namespace {

const char* default_of(std::string_view key) {
    for (const auto& spec : kOptions) {
        if (key == spec.key) {
            return spec.default_value;
        }
    }
    return "";
}

std::string value_of(const sdk::Options& options, const char* key) {
    return options.get_string(key, default_of(key));
}

sdk::Error bad_option(const char* key, const std::string& value, const std::string& why) {
    return sdk::Error{
        sdk::ErrorCode::InvalidArgument,
        "option " + std::string(key) + " of mq plugin 'rabbitmq' " + why + ", got '" + value + "'"};
}

/// Parses a whole-string integer in [low, high].
sdk::Result<long long> integer_option(const sdk::Options& options, const char* key, long long low,
                                      long long high) {
    const std::string text = value_of(options, key);
    long long value = 0;
    const auto* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc() || ptr != end || value < low || value > high) {
        return bad_option(
            key, text,
            "must be an integer in " + std::to_string(low) + ".." + std::to_string(high));
    }
    return value;
}

sdk::Result<bool> bool_option(const sdk::Options& options, const char* key) {
    const std::string text = value_of(options, key);
    if (text == "true" || text == "1" || text == "yes" || text == "on") {
        return true;
    }
    if (text == "false" || text == "0" || text == "no" || text == "off") {
        return false;
    }
    return bad_option(key, text, "must be true or false");
}

sdk::Status readable_file(const char* key, const std::string& path) {
    std::ifstream file(path);
    if (!file.good()) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument, "option " + std::string(key) +
                                                                " of mq plugin 'rabbitmq': file '" +
                                                                path + "' cannot be read");
    }
    return sdk::Status::ok();
}

}  // namespace

std::string BrokerSettings::describe() const {
    return "rabbitmq broker " + host + ":" + std::to_string(port) + " vhost '" + vhost + "'";
}

sdk::Result<BrokerSettings> parse_settings(const sdk::Options& options) {
    BrokerSettings settings;
    settings.host = value_of(options, "host");
    if (settings.host.empty()) {
        return bad_option("host", settings.host, "must not be empty");
    }
    auto port = integer_option(options, "port", 1, 65535);
    if (!port) {
        return port.error();
    }
    settings.port = static_cast<int>(*port);
    settings.vhost = value_of(options, "vhost");
    if (settings.vhost.empty()) {
        return bad_option("vhost", settings.vhost, "must not be empty (the default vhost is '/')");
    }
    settings.username = value_of(options, "username");
    settings.password = value_of(options, "password");
    if (settings.username.empty()) {
        return bad_option("username", settings.username, "must not be empty");
    }
    auto heartbeat = integer_option(options, "heartbeat_s", 0, 3600);
    if (!heartbeat) {
        return heartbeat.error();
    }
    settings.heartbeat_s = static_cast<int>(*heartbeat);
    auto connect_timeout = integer_option(options, "connect_timeout_ms", 100, 600000);
    if (!connect_timeout) {
        return connect_timeout.error();
    }
    settings.connect_timeout = std::chrono::milliseconds(*connect_timeout);
    auto rpc_timeout = integer_option(options, "rpc_timeout_ms", 100, 600000);
    if (!rpc_timeout) {
        return rpc_timeout.error();
    }
    settings.rpc_timeout = std::chrono::milliseconds(*rpc_timeout);
    auto backoff = integer_option(options, "reconnect_max_backoff_ms", 100, 600000);
    if (!backoff) {
        return backoff.error();
    }
    settings.reconnect_max_backoff = std::chrono::milliseconds(*backoff);

    auto tls = bool_option(options, "tls");
    if (!tls) {
        return tls.error();
    }
    settings.tls = *tls;
    auto verify = bool_option(options, "tls_verify_peer");
    if (!verify) {
        return verify.error();
    }
    settings.tls_verify_peer = *verify;
    settings.tls_ca_file = value_of(options, "tls_ca_file");
    settings.tls_cert_file = value_of(options, "tls_cert_file");
    settings.tls_key_file = value_of(options, "tls_key_file");
    const bool has_tls_files = !settings.tls_ca_file.empty() || !settings.tls_cert_file.empty() ||
                               !settings.tls_key_file.empty();
    if (!settings.tls && has_tls_files) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          "mq plugin 'rabbitmq': tls_ca_file, tls_cert_file or tls_key_file is "
                          "set but tls is false (set tls: true to use them)"};
    }
    if (settings.tls_cert_file.empty() != settings.tls_key_file.empty()) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          "mq plugin 'rabbitmq': tls_cert_file and tls_key_file must be set "
                          "together"};
    }
    for (const auto& [key, path] :
         {std::pair<const char*, const std::string&>{"tls_ca_file", settings.tls_ca_file},
          {"tls_cert_file", settings.tls_cert_file},
          {"tls_key_file", settings.tls_key_file}}) {
        if (!path.empty()) {
            if (auto status = readable_file(key, path); !status) {
                return status.error();
            }
        }
    }
    return settings;
}

}  // namespace synergos::plugins::rabbitmq
