// SPDX-License-Identifier: Apache-2.0
#pragma once

// Helpers for the HTTP tests: a raw TCP connection (to send malformed or partial requests) and a
// condition wait with a timeout.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

namespace synergos::testing {

inline bool wait_until(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return condition();
        }
        std::this_thread::yield();
    }
    return true;
}

/// A listening TCP socket on 127.0.0.1 with a port the kernel chose (`port` gets it), for raw
/// socket servers in tests; -1 when it cannot be set up.
inline int listen_loopback(std::uint16_t& port, int backlog = 16) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(fd, backlog) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        if (fd >= 0) {
            ::close(fd);
        }
        return -1;
    }
    port = ntohs(a.sin_port);
    return fd;
}

/// Reads one HTTP/1.1 request from `fd` (head, then a Content-Length body), or up to the peer's
/// close or a read error, for raw socket servers in tests.
inline std::string read_request(int fd) {
    std::string in;
    char buf[65536];
    std::size_t need = std::string::npos;
    while (need == std::string::npos || in.size() < need) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) {
            break;
        }
        in.append(buf, static_cast<std::size_t>(n));
        const auto end = in.find("\r\n\r\n");
        if (need == std::string::npos && end != std::string::npos) {
            std::string head = in.substr(0, end);
            for (auto& c : head) {
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            }
            const auto at = head.find("content-length:");
            need = end + 4 + (at == std::string::npos ? 0 : std::stoul(head.substr(at + 15)));
        }
    }
    return in;
}

/// A blocking TCP connection to 127.0.0.1 whose reads (and blocked sends) time out after
/// `read_timeout`.
class RawConnection {
public:
    /// `from`: the local address to connect from (another loopback address: another peer).
    explicit RawConnection(std::uint16_t port,
                           std::chrono::milliseconds read_timeout = std::chrono::seconds(5),
                           const char* from = nullptr) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        if (from != nullptr) {
            sockaddr_in local{};
            local.sin_family = AF_INET;
            ::inet_pton(AF_INET, from, &local.sin_addr);
            if (::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
                return;  // not connected
            }
        }
        timeval tv{};
        tv.tv_sec = static_cast<long>(read_timeout.count() / 1000);
        tv.tv_usec = static_cast<long>((read_timeout.count() % 1000) * 1000);
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));  // a send blocks no longer
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
        connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    }
    ~RawConnection() { ::close(fd_); }
    RawConnection(const RawConnection&) = delete;
    RawConnection& operator=(const RawConnection&) = delete;

    bool connected() const { return connected_; }
    bool send(const std::string& bytes) {
        std::size_t sent = 0;
        while (sent < bytes.size()) {
            const auto n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) {
                return false;
            }
            sent += static_cast<std::size_t>(n);
        }
        return true;
    }
    /// What one read returns: empty when the peer closed or the read timeout passed.
    std::string read_some() {
        char buffer[4096];
        const auto n = ::recv(fd_, buffer, sizeof(buffer), 0);
        return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string();
    }
    /// Reads until what was read contains `marker`, the peer closes or a read times out.
    std::string read_until(const std::string& marker) {
        std::string out;
        while (out.find(marker) == std::string::npos) {
            const std::string more = read_some();
            if (more.empty()) {
                break;
            }
            out += more;
        }
        return out;
    }
    /// Reads until the peer closes or the read timeout passes; `closed` tells which.
    std::string read_all(bool* closed = nullptr) {
        std::string out;
        char buffer[4096];
        for (;;) {
            const auto n = ::recv(fd_, buffer, sizeof(buffer), 0);
            if (n == 0) {
                if (closed != nullptr) {
                    *closed = true;
                }
                return out;
            }
            if (n < 0) {
                if (closed != nullptr) {
                    *closed = false;
                }
                return out;
            }
            out.append(buffer, static_cast<std::size_t>(n));
        }
    }

private:
    int fd_ = -1;
    bool connected_ = false;
};

}  // namespace synergos::testing
