// SPDX-License-Identifier: Apache-2.0
#include "test_proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace synergos::tests::mq {

namespace {

// --- PKI --------------------------------------------------------------------------------------

struct KeyDeleter {
    void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct CertDeleter {
    void operator()(X509* cert) const { X509_free(cert); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyDeleter>;
using Cert = std::unique_ptr<X509, CertDeleter>;

[[noreturn]] void openssl_fail(const std::string& what) {
    char buffer[256] = {0};
    ERR_error_string_n(ERR_get_error(), buffer, sizeof(buffer));
    throw std::runtime_error("test PKI: " + what + ": " + buffer);
}

Key make_key() {
    Key key(EVP_EC_gen("P-256"));
    if (!key) {
        openssl_fail("EC key generation");
    }
    return key;
}

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    if (extension == nullptr) {
        openssl_fail(std::string("extension ") + value);
    }
    X509_add_ext(cert, extension, -1);
    X509_EXTENSION_free(extension);
}

/// A certificate for `key`, signed by `issuer` (self-signed when null).
Cert make_cert(EVP_PKEY* key, const std::string& common_name, X509* issuer, EVP_PKEY* issuer_key,
               bool is_ca, const char* extended_usage, long serial) {
    Cert cert(X509_new());
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7 * 24 * 3600);
    X509_set_pubkey(cert.get(), key);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                               0);
    X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
    X509* signer = issuer != nullptr ? issuer : cert.get();
    add_extension(cert.get(), signer, NID_subject_key_identifier, "hash");
    add_extension(cert.get(), signer, NID_authority_key_identifier, "keyid:always");
    if (is_ca) {
        add_extension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
        add_extension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_extension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
        add_extension(cert.get(), signer, NID_key_usage, "critical,digitalSignature");
        add_extension(cert.get(), signer, NID_ext_key_usage, extended_usage);
        add_extension(cert.get(), signer, NID_subject_alt_name,
                      "DNS:127.0.0.1,DNS:localhost,IP:127.0.0.1");
    }
    if (X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0) {
        openssl_fail("signing " + common_name);
    }
    return cert;
}

void write_cert(const std::string& path, X509* cert) {
    FILE* file = std::fopen(path.c_str(), "w");
    if (file == nullptr || PEM_write_X509(file, cert) != 1) {
        throw std::runtime_error("test PKI: cannot write " + path);
    }
    std::fclose(file);
}

void write_key(const std::string& path, EVP_PKEY* key) {
    FILE* file = std::fopen(path.c_str(), "w");
    if (file == nullptr ||
        PEM_write_PrivateKey(file, key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
        throw std::runtime_error("test PKI: cannot write " + path);
    }
    std::fclose(file);
}

// --- sockets ----------------------------------------------------------------------------------

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

void signal_fd(int fd) {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto written = ::write(fd, &one, sizeof(one));
}

void drain_fd(int fd) {
    std::uint64_t value = 0;
    [[maybe_unused]] auto read = ::read(fd, &value, sizeof(value));
}

/// Waits for `events` on `fd` (bounded, so a stuck peer never hangs the test).
bool wait_fd(int fd, short events, int timeout_ms = 10000) {
    pollfd pfd{fd, events, 0};
    return ::poll(&pfd, 1, timeout_ms) > 0;
}

bool send_all(int fd, const char* data, std::size_t size) {
    while (size > 0) {
        const ssize_t sent = ::send(fd, data, size, MSG_NOSIGNAL);
        if (sent > 0) {
            data += sent;
            size -= static_cast<std::size_t>(sent);
        } else if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_fd(fd, POLLOUT)) {
                return false;
            }
        } else if (sent < 0 && errno == EINTR) {
            continue;
        } else {
            return false;
        }
    }
    return true;
}

bool ssl_write_all(SSL* ssl, int fd, const char* data, std::size_t size) {
    while (size > 0) {
        const int written = SSL_write(ssl, data, static_cast<int>(size));
        if (written > 0) {
            data += written;
            size -= static_cast<std::size_t>(written);
            continue;
        }
        const int error = SSL_get_error(ssl, written);
        if (error == SSL_ERROR_WANT_WRITE) {
            if (!wait_fd(fd, POLLOUT)) {
                return false;
            }
        } else if (error == SSL_ERROR_WANT_READ) {
            if (!wait_fd(fd, POLLIN)) {
                return false;
            }
        } else {
            return false;
        }
    }
    return true;
}

}  // namespace

TestPki make_test_pki() {
    char pattern[] = "/tmp/synergos-mq-pki-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) {
        throw std::runtime_error("test PKI: mkdtemp failed");
    }
    TestPki pki;
    pki.dir = pattern;
    pki.ca_cert = pki.dir + "/ca.pem";
    pki.server_cert = pki.dir + "/server.pem";
    pki.server_key = pki.dir + "/server.key";
    pki.client_cert = pki.dir + "/client.pem";
    pki.client_key = pki.dir + "/client.key";
    pki.other_ca_cert = pki.dir + "/other-ca.pem";

    Key ca_key = make_key();
    Cert ca = make_cert(ca_key.get(), "synergos test CA", nullptr, nullptr, true, nullptr, 1);
    Key server_key = make_key();
    Cert server =
        make_cert(server_key.get(), "127.0.0.1", ca.get(), ca_key.get(), false, "serverAuth", 2);
    Key client_key = make_key();
    Cert client = make_cert(client_key.get(), "synergos test client", ca.get(), ca_key.get(), false,
                            "clientAuth", 3);
    Key other_key = make_key();
    Cert other = make_cert(other_key.get(), "unrelated CA", nullptr, nullptr, true, nullptr, 4);

    write_cert(pki.ca_cert, ca.get());
    write_cert(pki.server_cert, server.get());
    write_key(pki.server_key, server_key.get());
    write_cert(pki.client_cert, client.get());
    write_key(pki.client_key, client_key.get());
    write_cert(pki.other_ca_cert, other.get());
    return pki;
}

void remove_pki(const TestPki& pki) {
    std::error_code ignored;
    std::filesystem::remove_all(pki.dir, ignored);
}

// --- TestProxy --------------------------------------------------------------------------------

struct TestProxy::Connection {
    std::mutex mutex;  ///< guards the fds against cut() racing with close
    int client_fd = -1;
    int upstream_fd = -1;
    int wake_fd = -1;
    SSL* ssl = nullptr;
    std::thread thread;
    bool held = false;             ///< accepted while stalled: waits for stall_new(false)
    std::size_t upload_limit = 0;  ///< client-to-broker bytes per second (0: unlimited)
    std::string inject;            ///< frames to insert towards the client (under mutex)

    void shutdown_sockets() {
        std::lock_guard<std::mutex> lock(mutex);
        if (client_fd >= 0) {
            ::shutdown(client_fd, SHUT_RDWR);
        }
        if (upstream_fd >= 0) {
            ::shutdown(upstream_fd, SHUT_RDWR);
        }
        if (wake_fd >= 0) {
            signal_fd(wake_fd);
        }
    }
    void wake() {
        std::lock_guard<std::mutex> lock(mutex);
        if (wake_fd >= 0) {
            signal_fd(wake_fd);
        }
    }
    void close_all() {
        std::lock_guard<std::mutex> lock(mutex);
        if (ssl != nullptr) {
            SSL_free(ssl);
            ssl = nullptr;
        }
        for (int* fd : {&client_fd, &upstream_fd, &wake_fd}) {
            if (*fd >= 0) {
                ::close(*fd);
                *fd = -1;
            }
        }
    }
};

TestProxy::TestProxy(std::string upstream_host, int upstream_port,
                     std::optional<TlsServerConfig> tls)
    : upstream_host_(std::move(upstream_host)),
      upstream_port_(upstream_port),
      tls_(std::move(tls)) {
    // OpenSSL writes to the client socket with write(2): a peer that already left must give
    // EPIPE, not kill the test process.
    ::signal(SIGPIPE, SIG_IGN);
    if (tls_) {
        SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
        if (SSL_CTX_use_certificate_chain_file(ctx, tls_->cert_file.c_str()) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, tls_->key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
            SSL_CTX_free(ctx);
            openssl_fail("proxy server certificate");
        }
        if (!tls_->client_ca_file.empty()) {
            SSL_CTX_load_verify_locations(ctx, tls_->client_ca_file.c_str(), nullptr);
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
        }
        ssl_ctx_ = ctx;
    }
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::listen(listen_fd_, 64) != 0) {
        throw std::runtime_error("test proxy: cannot listen on 127.0.0.1");
    }
    socklen_t length = sizeof(address);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    acceptor_ = std::thread([this] { accept_loop(); });
}

TestProxy::~TestProxy() {
    stopping_ = true;
    signal_fd(stop_fd_);
    acceptor_.join();
    std::vector<std::shared_ptr<Connection>> connections;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        connections.swap(connections_);
    }
    for (auto& connection : connections) {
        connection->shutdown_sockets();
        if (connection->thread.joinable()) {
            connection->thread.join();
        }
    }
    ::close(listen_fd_);
    ::close(stop_fd_);
    if (ssl_ctx_ != nullptr) {
        SSL_CTX_free(static_cast<SSL_CTX*>(ssl_ctx_));
    }
}

void TestProxy::cut() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& connection : connections_) {
        connection->shutdown_sockets();
    }
}

void TestProxy::freeze(bool frozen) {
    frozen_ = frozen;
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& connection : connections_) {
        connection->wake();
    }
}

void TestProxy::stall_new(bool stalled) {
    stalled_ = stalled;
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& connection : connections_) {
        connection->wake();
    }
}

void TestProxy::inject_to_client(const std::string& frame) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& connection : connections_) {
        {
            std::lock_guard<std::mutex> guard(connection->mutex);
            connection->inject += frame;
        }
        connection->wake();
    }
}

namespace {

std::string method_frame(std::uint16_t class_id, std::uint16_t method_id, const std::string& args) {
    std::string payload;
    for (std::uint16_t part : {class_id, method_id}) {
        payload += static_cast<char>(part >> 8);
        payload += static_cast<char>(part & 0xff);
    }
    payload += args;
    std::string frame;
    frame += '\x01';  // method frame, channel 0
    frame += '\0';
    frame += '\0';
    const auto size = static_cast<std::uint32_t>(payload.size());
    for (int shift = 24; shift >= 0; shift -= 8) {
        frame += static_cast<char>((size >> shift) & 0xff);
    }
    frame += payload;
    frame += '\xce';  // frame end
    return frame;
}

}  // namespace

std::string TestProxy::connection_blocked_frame(const std::string& reason) {
    return method_frame(10, 60, std::string(1, static_cast<char>(reason.size())) + reason);
}

std::string TestProxy::connection_unblocked_frame() { return method_frame(10, 61, ""); }

void TestProxy::accept_loop() {
    while (!stopping_) {
        pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0 && errno != EINTR) {
            return;
        }
        if (fds[1].revents != 0 || stopping_) {
            return;
        }
        if ((fds[0].revents & POLLIN) == 0) {
            continue;
        }
        const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) {
            continue;
        }
        if (frozen_) {
            ::close(client);  // a partitioned network: nobody answers
            continue;
        }
        ++accepted_;
        auto connection = std::make_shared<Connection>();
        connection->client_fd = client;
        connection->held = stalled_;
        connection->upload_limit = upload_limit_;
        if (connection->upload_limit > 0) {
            // A small window, so the client's send waits on the throttled link, not on buffers.
            const int size = 64 * 1024;
            ::setsockopt(client, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
        }
        connection->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        std::lock_guard<std::mutex> lock(mutex_);
        connections_.push_back(connection);
        connection->thread = std::thread([this, connection] { serve(connection); });
    }
}

void TestProxy::serve(const std::shared_ptr<Connection>& connection) {
    Connection& c = *connection;
    // A stalled connection: TCP is up, but nothing is forwarded (no AMQP answer) until released.
    while (c.held && stalled_ && !stopping_) {
        pollfd wake{c.wake_fd, POLLIN, 0};
        ::poll(&wake, 1, 100);
        drain_fd(c.wake_fd);
    }
    // Upstream: the broker, plain AMQP.
    const int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(upstream_port_));
    ::inet_pton(AF_INET, upstream_host_.c_str(), &address.sin_addr);
    if (::connect(upstream, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
        ::close(upstream);
        c.close_all();
        return;
    }
    {
        std::lock_guard<std::mutex> lock(c.mutex);
        c.upstream_fd = upstream;
    }
    const int one = 1;
    ::setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ::setsockopt(c.client_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    set_nonblocking(upstream);
    set_nonblocking(c.client_fd);

    if (ssl_ctx_ != nullptr) {
        SSL* ssl = SSL_new(static_cast<SSL_CTX*>(ssl_ctx_));
        SSL_set_fd(ssl, c.client_fd);
        {
            std::lock_guard<std::mutex> lock(c.mutex);
            c.ssl = ssl;
        }
        while (true) {
            const int accepted = SSL_accept(ssl);
            if (accepted == 1) {
                break;
            }
            const int error = SSL_get_error(ssl, accepted);
            const short events = error == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
            if ((error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) ||
                !wait_fd(c.client_fd, events)) {
                ERR_clear_error();
                c.close_all();
                return;
            }
        }
    }

    // Broker-to-client frames are tracked so injected frames land between two frames.
    unsigned char header[7];
    std::size_t header_len = 0;
    std::size_t frame_left = 0;  ///< payload + frame-end bytes of the current frame
    auto to_client = [&](const char* data, std::size_t size) {
        return c.ssl != nullptr ? ssl_write_all(c.ssl, c.client_fd, data, size)
                                : send_all(c.client_fd, data, size);
    };
    auto flush_inject = [&]() {
        if (header_len != 0 || frame_left != 0) {
            return true;  // mid-frame: after this frame
        }
        std::string frames;
        {
            std::lock_guard<std::mutex> lock(c.mutex);
            frames.swap(c.inject);
        }
        return frames.empty() || to_client(frames.data(), frames.size());
    };
    auto forward_down = [&](const char* data, std::size_t size) {
        while (size > 0) {
            std::size_t take = 0;
            if (frame_left == 0) {
                take = std::min(sizeof(header) - header_len, size);
                std::memcpy(header + header_len, data, take);
                header_len += take;
                if (header_len == sizeof(header)) {
                    frame_left = ((std::size_t{header[3]} << 24) | (std::size_t{header[4]} << 16) |
                                  (std::size_t{header[5]} << 8) | std::size_t{header[6]}) +
                                 1;
                }
            } else {
                take = std::min(frame_left, size);
                frame_left -= take;
                if (frame_left == 0) {
                    header_len = 0;
                }
            }
            if (!to_client(data, take)) {
                return false;
            }
            data += take;
            size -= take;
            if (!flush_inject()) {
                return false;
            }
        }
        return true;
    };
    char buffer[65536];
    // Throttled reads are small, so the pause after each stays short.
    const std::size_t up_chunk = c.upload_limit > 0 ? 16384 : sizeof(buffer);
    while (!stopping_) {
        if (frozen_) {
            pollfd wake{c.wake_fd, POLLIN, 0};
            ::poll(&wake, 1, -1);
            drain_fd(c.wake_fd);
            continue;
        }
        const bool tls_pending = c.ssl != nullptr && SSL_pending(c.ssl) > 0;
        pollfd fds[3] = {{c.client_fd, POLLIN, 0}, {upstream, POLLIN, 0}, {c.wake_fd, POLLIN, 0}};
        if (::poll(fds, 3, tls_pending ? 0 : -1) < 0 && errno != EINTR) {
            break;
        }
        if (fds[2].revents != 0) {
            drain_fd(c.wake_fd);
            if (frozen_) {
                continue;
            }
        }
        if (!flush_inject()) {
            break;
        }
        if ((fds[0].revents & (POLLHUP | POLLERR)) != 0 ||
            (fds[1].revents & (POLLHUP | POLLERR)) != 0) {
            break;
        }
        bool failed = false;
        if (tls_pending || (fds[0].revents & POLLIN) != 0) {
            if (c.ssl != nullptr) {
                while (true) {
                    const int got = SSL_read(c.ssl, buffer, sizeof(buffer));
                    if (got > 0) {
                        if (!send_all(upstream, buffer, static_cast<std::size_t>(got))) {
                            failed = true;
                            break;
                        }
                        continue;
                    }
                    const int error = SSL_get_error(c.ssl, got);
                    failed = error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE;
                    break;
                }
            } else {
                const ssize_t got = ::recv(c.client_fd, buffer, up_chunk, 0);
                failed = got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR) ||
                         (got > 0 && !send_all(upstream, buffer, static_cast<std::size_t>(got)));
                if (got > 0 && c.upload_limit > 0) {
                    std::this_thread::sleep_for(std::chrono::microseconds(
                        static_cast<long long>(got) * 1000000 /
                        static_cast<long long>(c.upload_limit)));
                }
            }
        }
        if (!failed && (fds[1].revents & POLLIN) != 0) {
            const ssize_t got = ::recv(upstream, buffer, sizeof(buffer), 0);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                failed = true;
            } else if (got > 0) {
                failed = !forward_down(buffer, static_cast<std::size_t>(got));
            }
        }
        if (failed) {
            break;
        }
    }
    c.close_all();
}

}  // namespace synergos::tests::mq
