// SPDX-License-Identifier: Apache-2.0
#pragma once

/// A TCP proxy on 127.0.0.1 (port 0) in front of the broker, for fault and TLS tests:
/// - `cut()` resets every open connection (a network cut or a crashed peer);
/// - `freeze(true)` stops forwarding in both directions while keeping sockets open (a silent
///   partition: only heartbeats can detect it); new connections are refused while frozen;
/// - `stall_new(true)` accepts new connections but forwards nothing on them until
///   `stall_new(false)` (a peer that takes TCP but never answers AMQP);
/// - `limit_upload(bytes_per_second)` throttles client-to-broker bytes on connections accepted
///   afterwards, with a small receive buffer so a large send really waits on the link;
/// - `inject_to_client(frame)` inserts a raw AMQP frame into every open connection's
///   broker-to-client stream at a frame boundary (e.g. connection.blocked);
/// - with a `TlsServerConfig`, it terminates TLS (AMQPS) and forwards plain AMQP upstream,
///   optionally requiring a client certificate signed by the test CA.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace synergos::tests::mq {

/// PEM files of a throw-away PKI written into a temp directory.
struct TestPki {
    std::string dir;
    std::string ca_cert;      ///< the CA that signs server and client certificates
    std::string server_cert;  ///< CN/SAN 127.0.0.1
    std::string server_key;
    std::string client_cert;
    std::string client_key;
    std::string other_ca_cert;  ///< an unrelated CA (verification must fail with it)
};

/// Generates the PKI (EC P-256 keys) under a new temp directory; removed by `remove_pki`.
TestPki make_test_pki();
void remove_pki(const TestPki& pki);

struct TlsServerConfig {
    std::string cert_file;
    std::string key_file;
    std::string client_ca_file;  ///< non-empty: require a client certificate signed by it
};

class TestProxy {
public:
    TestProxy(std::string upstream_host, int upstream_port,
              std::optional<TlsServerConfig> tls = std::nullopt);
    ~TestProxy();
    TestProxy(const TestProxy&) = delete;
    TestProxy& operator=(const TestProxy&) = delete;

    int port() const { return port_; }
    /// Resets every current connection; new ones are still accepted.
    void cut();
    /// Stops (true) or resumes (false) forwarding.
    void freeze(bool frozen);
    /// Holds (true) or releases (false) connections accepted while stalled.
    void stall_new(bool stalled);
    /// Client-to-broker bandwidth of connections accepted from now on (0: unlimited).
    void limit_upload(std::size_t bytes_per_second) { upload_limit_ = bytes_per_second; }
    /// Sends `frame` (a whole AMQP frame) to every open connection's client.
    void inject_to_client(const std::string& frame);
    /// connection.blocked (with `reason`) and connection.unblocked frames, for inject_to_client.
    static std::string connection_blocked_frame(const std::string& reason);
    static std::string connection_unblocked_frame();
    /// Connections accepted so far (a reconnect shows as a new one).
    int accepted() const { return accepted_.load(); }

private:
    struct Connection;
    void accept_loop();
    void serve(const std::shared_ptr<Connection>& connection);

    std::string upstream_host_;
    int upstream_port_;
    std::optional<TlsServerConfig> tls_;
    void* ssl_ctx_ = nullptr;  ///< SSL_CTX*
    int listen_fd_ = -1;
    int stop_fd_ = -1;  ///< eventfd that ends the accept loop
    int port_ = 0;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> frozen_{false};
    std::atomic<bool> stalled_{false};
    std::atomic<std::size_t> upload_limit_{0};
    std::atomic<int> accepted_{0};
    std::mutex mutex_;
    std::vector<std::shared_ptr<Connection>> connections_;
    std::thread acceptor_;
};

}  // namespace synergos::tests::mq
