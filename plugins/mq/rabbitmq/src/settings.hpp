// SPDX-License-Identifier: Apache-2.0
#pragma once

/// Validated connection settings of the rabbitmq plugin, parsed once from the plugin options and
/// shared (read-only) by the publisher and every consumer.

#include <chrono>
#include <string>

#include <synergos/sdk/options.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::plugins::rabbitmq {

struct BrokerSettings {
    std::string host = "127.0.0.1";
    int port = 5672;
    std::string vhost = "/";
    std::string username = "guest";
    std::string password = "guest";
    int heartbeat_s = 30;
    std::chrono::milliseconds connect_timeout{5000};
    std::chrono::milliseconds rpc_timeout{10000};
    std::chrono::milliseconds reconnect_max_backoff{5000};
    bool tls = false;
    std::string tls_ca_file;
    std::string tls_cert_file;
    std::string tls_key_file;
    bool tls_verify_peer = true;
    /// Prefix of the AMQP connection name shown by `rabbitmqctl list_connections`.
    std::string client_name = "synergos";

    /// "rabbitmq broker 127.0.0.1:5672 vhost '/'", the prefix of every error message.
    std::string describe() const;
};

/// Parses and checks the options (types, ranges, TLS file pairs). Errors name the option and
/// are `InvalidArgument`. Files are checked for readability here, so a typo fails at start-up.
sdk::Result<BrokerSettings> parse_settings(const sdk::Options& options);

}  // namespace synergos::plugins::rabbitmq
