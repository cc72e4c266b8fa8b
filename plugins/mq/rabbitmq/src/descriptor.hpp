// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <iterator>

#include <synergos/sdk/plugin.hpp>

namespace synergos::plugins::rabbitmq {

/// Option table of the `rabbitmq` mq plugin (plain data, no dynamic initialisation).
inline constexpr sdk::OptionSpec kOptions[] = {
    {"host", sdk::OptionType::String, false, "127.0.0.1", "broker host name or address", false},
    {"port", sdk::OptionType::Int, false, "5672", "broker AMQP port (usually 5671 for TLS)", false},
    {"vhost", sdk::OptionType::String, false, "/", "virtual host", false},
    {"username", sdk::OptionType::String, false, "guest", "user name (SASL PLAIN)", false},
    {"password", sdk::OptionType::String, false, "guest", "password (SASL PLAIN)", true},
    {"heartbeat_s", sdk::OptionType::Int, false, "30",
     "AMQP heartbeat interval in seconds (0 disables; a broker silent for three is presumed dead)",
     false},
    {"connect_timeout_ms", sdk::OptionType::DurationMs, false, "5000",
     "time allowed for TCP connect, TLS handshake and AMQP login", false},
    {"rpc_timeout_ms", sdk::OptionType::DurationMs, false, "10000",
     "time allowed for one broker round trip (declare, depth, consumer count)", false},
    {"reconnect_max_backoff_ms", sdk::OptionType::DurationMs, false, "5000",
     "longest pause between reconnection attempts (the pause starts at 100 ms and doubles)", false},
    {"tls", sdk::OptionType::Bool, false, "false", "connect with TLS (AMQPS)", false},
    {"tls_ca_file", sdk::OptionType::Path, false, "",
     "PEM file of CA certificates that sign the broker certificate (system CAs when empty)", false},
    {"tls_cert_file", sdk::OptionType::Path, false, "",
     "PEM client certificate (chain) for mutual TLS; needs tls_key_file", false},
    {"tls_key_file", sdk::OptionType::Path, false, "",
     "PEM private key of tls_cert_file (unencrypted)", false},
    {"tls_verify_peer", sdk::OptionType::Bool, false, "true",
     "verify the broker certificate and that it names `host`", false},
};

inline constexpr sdk::PluginDescriptor kDescriptor{
    sizeof(sdk::PluginDescriptor),
    "rabbitmq",
    sdk::PluginKind::MessageQueue,
    "0.1.0",
    "RabbitMQ (AMQP 0-9-1) queue: durable queues, confirms, priorities, dead letters, reconnects",
    "Synergos",
    sdk::PluginStatus::Stable,
    kOptions,
    std::size(kOptions)};

}  // namespace synergos::plugins::rabbitmq
