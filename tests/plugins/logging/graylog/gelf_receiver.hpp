// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file gelf_receiver.hpp
/// A minimal Graylog for tests: a UDP socket and a TCP listener on 127.0.0.1 port 0 that
/// reassemble chunks, inflate zlib/gzip (windowBits 15 + 32), split NUL-delimited TCP frames,
/// and check each message against the GELF 1.1 rules. Every wait is a poll() with a timeout.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

#include <zlib.h>
#include <nlohmann/json.hpp>

namespace synergos::test {

using TestClock = std::chrono::steady_clock;
inline constexpr auto kReceiveTimeout = std::chrono::seconds(10);

/// Waits for `fd` to become readable until `deadline`; false on timeout.
inline bool wait_readable(int fd, TestClock::time_point deadline) {
    while (true) {
        const auto now = TestClock::now();
        if (now >= deadline) {
            return false;
        }
        const auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
        pollfd pfd{fd, POLLIN, 0};
        const int ready = ::poll(&pfd, 1, static_cast<int>(ms));
        if (ready > 0) {
            return true;
        }
        if (ready < 0 && errno != EINTR) {
            return false;
        }
    }
}

/// How a message arrived.
enum class Encoding { Plain, Zlib, Gzip };

/// Inflates a zlib or gzip payload (auto-detected with windowBits 15 + 32).
inline std::string inflate_payload(const std::string& payload) {
    z_stream stream{};
    if (inflateInit2(&stream, 15 + 32) != Z_OK) {
        throw std::runtime_error("inflateInit2 failed");
    }
    std::string out;
    char buffer[16384];
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(payload.data()));
    stream.avail_in = static_cast<uInt>(payload.size());
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
        stream.next_out = reinterpret_cast<Bytef*>(buffer);
        stream.avail_out = sizeof(buffer);
        rc = inflate(&stream, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) {
            inflateEnd(&stream);
            throw std::runtime_error("inflate failed: " + std::to_string(rc));
        }
        out.append(buffer, sizeof(buffer) - stream.avail_out);
        if (rc == Z_OK && stream.avail_in == 0 && stream.avail_out != 0) {
            inflateEnd(&stream);
            throw std::runtime_error("truncated compressed payload");
        }
    }
    inflateEnd(&stream);
    return out;
}

inline Encoding detect_encoding(const std::string& payload) {
    if (payload.size() >= 2 && static_cast<unsigned char>(payload[0]) == 0x1f &&
        static_cast<unsigned char>(payload[1]) == 0x8b) {
        return Encoding::Gzip;
    }
    if (payload.size() >= 2 && static_cast<unsigned char>(payload[0]) == 0x78 &&
        ((static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1])) %
                31 ==
            0) {
        return Encoding::Zlib;
    }
    return Encoding::Plain;
}

/// Every way `message` breaks GELF 1.1 (empty when it is valid).
inline std::vector<std::string> gelf_violations(const nlohmann::json& message) {
    static const std::regex kFieldName(R"(^_[\w\.\-]*$)");
    std::vector<std::string> problems;
    if (!message.is_object()) {
        return {"not a JSON object"};
    }
    if (message.value("version", "") != "1.1") {
        problems.push_back("version is not \"1.1\"");
    }
    if (!message.contains("host") || !message["host"].is_string() ||
        message["host"].get<std::string>().empty()) {
        problems.push_back("host missing or empty");
    }
    if (!message.contains("short_message") || !message["short_message"].is_string() ||
        message["short_message"].get<std::string>().empty()) {
        problems.push_back("short_message missing or empty");
    }
    if (message.contains("full_message") && !message["full_message"].is_string()) {
        problems.push_back("full_message is not a string");
    }
    if (!message.contains("timestamp") || !message["timestamp"].is_number() ||
        message["timestamp"].get<double>() <= 0) {
        problems.push_back("timestamp missing or not a positive number");
    }
    if (!message.contains("level") || !message["level"].is_number_integer() ||
        message["level"].get<int>() < 0 || message["level"].get<int>() > 7) {
        problems.push_back("level missing or not a syslog level 0-7");
    }
    for (const auto& [key, value] : message.items()) {
        if (key == "version" || key == "host" || key == "short_message" || key == "full_message" ||
            key == "timestamp" || key == "level") {
            continue;
        }
        if (key == "_id") {
            problems.push_back("_id is not allowed");
        }
        if (!std::regex_match(key, kFieldName)) {
            problems.push_back("field '" + key +
                               "' is not an additional field matching ^_[\\w.-]*$");
        }
        if (!value.is_string() && !value.is_number()) {
            problems.push_back("field '" + key + "' is neither a string nor a number");
        }
    }
    return problems;
}

/// One received message.
struct GelfMessage {
    nlohmann::json json;
    Encoding encoding = Encoding::Plain;
    std::size_t chunks = 0;  ///< 0 for an unchunked datagram or a TCP frame
};

/// A GELF UDP input on 127.0.0.1, on `port` (0: chosen by the kernel).
class UdpGelfReceiver {
public:
    explicit UdpGelfReceiver(int port = 0) {
        fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) {
            throw std::runtime_error("socket failed");
        }
        const int size = 8 * 1024 * 1024;  // the kernel caps this at rmem_max
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = htons(static_cast<std::uint16_t>(port));
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
            ::close(fd_);
            throw std::runtime_error("bind failed");
        }
        socklen_t length = sizeof(address);
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
        port_ = ntohs(address.sin_port);
    }
    UdpGelfReceiver(const UdpGelfReceiver&) = delete;
    UdpGelfReceiver& operator=(const UdpGelfReceiver&) = delete;
    ~UdpGelfReceiver() { ::close(fd_); }

    int port() const { return port_; }

    /// The next complete message, or nothing after `timeout`. Throws on a malformed datagram.
    std::optional<GelfMessage> receive(std::chrono::milliseconds timeout = kReceiveTimeout) {
        const auto deadline = TestClock::now() + timeout;
        while (wait_readable(fd_, deadline)) {
            std::string datagram(65536, '\0');
            const ssize_t n = ::recv(fd_, datagram.data(), datagram.size(), 0);
            if (n <= 0) {
                continue;
            }
            datagram.resize(static_cast<std::size_t>(n));
            if (auto message = accept_datagram(datagram)) {
                return message;
            }
        }
        return std::nullopt;
    }

private:
    struct Partial {
        std::size_t count = 0;
        std::map<std::size_t, std::string> parts;
    };

    std::optional<GelfMessage> accept_datagram(const std::string& datagram) {
        const auto* bytes = reinterpret_cast<const unsigned char*>(datagram.data());
        if (datagram.size() >= 2 && bytes[0] == 0x1e && bytes[1] == 0x0f) {
            if (datagram.size() < 12) {
                throw std::runtime_error("chunk shorter than its 12-byte header");
            }
            std::uint64_t id = 0;
            for (int i = 0; i < 8; ++i) {
                id = (id << 8) | bytes[2 + i];
            }
            const std::size_t sequence = bytes[10];
            const std::size_t count = bytes[11];
            if (count == 0 || count > 128 || sequence >= count) {
                throw std::runtime_error("bad chunk sequence " + std::to_string(sequence) + "/" +
                                         std::to_string(count));
            }
            Partial& partial = partials_[id];
            if (partial.count != 0 && partial.count != count) {
                throw std::runtime_error("chunk count changed within one message");
            }
            partial.count = count;
            partial.parts[sequence] = datagram.substr(12);
            if (partial.parts.size() < count) {
                return std::nullopt;
            }
            std::string payload;
            for (auto& [seq, part] : partial.parts) {
                payload += part;
            }
            partials_.erase(id);
            auto message = decode(payload);
            message.chunks = count;
            return message;
        }
        return decode(datagram);
    }

    static GelfMessage decode(const std::string& payload) {
        GelfMessage message;
        message.encoding = detect_encoding(payload);
        const std::string text =
            message.encoding == Encoding::Plain ? payload : inflate_payload(payload);
        message.json = nlohmann::json::parse(text);
        return message;
    }

    int fd_ = -1;
    int port_ = 0;
    std::map<std::uint64_t, Partial> partials_;
};

/// A GELF TCP input on 127.0.0.1. With `listen_now` false the port is bound but refuses
/// connections until `listen()` is called (a Graylog that is down, then comes back).
class TcpGelfReceiver {
public:
    explicit TcpGelfReceiver(bool listen_now = true) {
        listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        const int one = 1;
        ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (listener_ < 0 ||
            ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
            throw std::runtime_error("bind failed");
        }
        socklen_t length = sizeof(address);
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
        port_ = ntohs(address.sin_port);
        if (listen_now) {
            listen();
        }
    }
    TcpGelfReceiver(const TcpGelfReceiver&) = delete;
    TcpGelfReceiver& operator=(const TcpGelfReceiver&) = delete;
    ~TcpGelfReceiver() {
        close_connection();
        ::close(listener_);
    }

    int port() const { return port_; }
    void listen() {
        if (::listen(listener_, 16) != 0) {
            throw std::runtime_error("listen failed");
        }
    }

    /// Accepts the next connection; false after `timeout`.
    bool accept(std::chrono::milliseconds timeout = kReceiveTimeout) {
        if (!wait_readable(listener_, TestClock::now() + timeout)) {
            return false;
        }
        close_connection();
        connection_ = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        buffer_.clear();
        return connection_ >= 0;
    }

    void close_connection() {
        if (connection_ >= 0) {
            ::close(connection_);
            connection_ = -1;
        }
    }

    /// The next NUL-terminated frame as a message; nothing after `timeout` or at EOF.
    std::optional<GelfMessage> receive(std::chrono::milliseconds timeout = kReceiveTimeout) {
        const auto deadline = TestClock::now() + timeout;
        while (true) {
            const auto nul = buffer_.find('\0');
            if (nul != std::string::npos) {
                GelfMessage message;
                message.json = nlohmann::json::parse(buffer_.substr(0, nul));
                buffer_.erase(0, nul + 1);
                return message;
            }
            if (connection_ < 0 || !wait_readable(connection_, deadline)) {
                return std::nullopt;
            }
            char chunk[65536];
            const ssize_t n = ::recv(connection_, chunk, sizeof(chunk), 0);
            if (n <= 0) {
                return std::nullopt;
            }
            buffer_.append(chunk, static_cast<std::size_t>(n));
        }
    }

private:
    int listener_ = -1;
    int connection_ = -1;
    int port_ = 0;
    std::string buffer_;
};

/// A UDP port with nothing listening on it (bound, then released).
inline int unused_udp_port() {
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    socklen_t length = sizeof(address);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    ::close(fd);
    return ntohs(address.sin_port);
}

}  // namespace synergos::test
