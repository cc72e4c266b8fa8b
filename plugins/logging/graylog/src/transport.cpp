// SPDX-License-Identifier: Apache-2.0
#include "transport.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <random>

namespace synergos::plugins::graylog {

namespace {

std::string errno_text(int err) {
    return std::strerror(err);
}

/// splitmix64: spreads a counter into well-mixed 64-bit message ids.
std::uint64_t next_id(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

std::uint64_t random_seed() {
    std::random_device device;
    const auto now = static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
    return (static_cast<std::uint64_t>(device()) << 32 ^ device()) ^ now;
}

}  // namespace

void write_chunk_header(unsigned char* out, std::uint64_t message_id, std::uint8_t sequence,
                        std::uint8_t count) {
    out[0] = 0x1e;
    out[1] = 0x0f;
    for (int i = 0; i < 8; ++i) {
        out[2 + i] = static_cast<unsigned char>(message_id >> (56 - 8 * i));
    }
    out[10] = sequence;
    out[11] = count;
}

std::size_t chunk_count(std::size_t size, std::size_t chunk_size) {
    if (size <= chunk_size) {
        return 1;
    }
    return (size + chunk_size - 1) / chunk_size;
}

Compressor::~Compressor() {
    for (Stream* stream : {&small_, &large_}) {
        if (stream->initialised) {
            deflateEnd(&stream->z);
        }
    }
}

bool Compressor::compress(std::string_view in, std::string& out) {
    // Up to 4 KiB, use a 512-entry hash (memLevel 2) instead of zlib's 32768 entries
    // (memLevel 8): clearing the hash on each reset was the largest cost per record. The window
    // stays at 32 KiB (windowBits 15) because Graylog only recognises zlib streams whose first
    // byte is 0x78, which encodes that window size.
    constexpr std::size_t kSmallLimit = 4096;
    const bool small = in.size() <= kSmallLimit;
    Stream& stream = small ? small_ : large_;
    if (!stream.initialised) {
        // windowBits + 16 writes a gzip stream instead of a zlib one. Level 1: log records
        // compress well even at the fastest level, and the sender thread is the bottleneck.
        const int window_bits = 15 + (mode_ == Compression::Gzip ? 16 : 0);
        if (deflateInit2(&stream.z, Z_BEST_SPEED, Z_DEFLATED, window_bits, small ? 2 : 8,
                         Z_DEFAULT_STRATEGY) != Z_OK) {
            return false;
        }
        stream.initialised = true;
    } else if (deflateReset(&stream.z) != Z_OK) {
        return false;
    }
    if (in.size() > UINT_MAX / 2) {
        return false;
    }
    z_stream& z = stream.z;
    out.resize(deflateBound(&z, static_cast<uLong>(in.size())));
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
        return false;
    }
    out.resize(out.size() - z.avail_out);
    return true;
}

StopSignal::~StopSignal() {
    if (event_fd_ >= 0) {
        ::close(event_fd_);
    }
}

sdk::Status StopSignal::open() {
    if (event_fd_ >= 0) {
        return {};
    }
    event_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (event_fd_ < 0) {
        return {sdk::ErrorCode::Internal,
                "graylog: cannot create an eventfd: " + errno_text(errno)};
    }
    return {};
}

void StopSignal::request(Clock::time_point deadline) noexcept {
    deadline_ns_.store(deadline.time_since_epoch().count(), std::memory_order_relaxed);
    requested_.store(true, std::memory_order_release);
    if (event_fd_ >= 0) {
        const std::uint64_t one = 1;
        // A full counter still leaves the eventfd readable, which is all a wake needs.
        [[maybe_unused]] const ssize_t n = ::write(event_fd_, &one, sizeof(one));
    }
}

Clock::time_point StopSignal::deadline() const noexcept {
    return Clock::time_point(Clock::duration(deadline_ns_.load(std::memory_order_relaxed)));
}

Clock::time_point StopSignal::bound(Clock::time_point deadline) const noexcept {
    return requested() ? std::min(deadline, this->deadline()) : deadline;
}

int StopSignal::wait(int fd, short events, Clock::time_point deadline) const noexcept {
    while (true) {
        const bool stopping = requested();
        const auto effective = bound(deadline);
        const auto now = Clock::now();
        if (now >= effective) {
            return 0;
        }
        const auto remaining =
            std::chrono::ceil<std::chrono::milliseconds>(effective - now).count();
        const int timeout_ms = static_cast<int>(std::min<long long>(remaining, INT_MAX));
        // Once stopping, the (still readable) eventfd is left out: only the deadline counts.
        pollfd fds[2] = {{fd, events, 0}, {event_fd_, POLLIN, 0}};
        const nfds_t count = (stopping || event_fd_ < 0) ? 1 : 2;
        const int ready = ::poll(fds, count, timeout_ms);
        if (ready < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (ready > 0 && fds[0].revents != 0) {
            return 1;
        }
    }
}

namespace {

/// The endpoint for the first IPv4 address in `results`, else the first one.
Endpoint choose_endpoint(const addrinfo* results, const std::string& text) {
    Endpoint endpoint;
    // Prefer IPv4: Graylog inputs commonly bind 0.0.0.0 only.
    const addrinfo* chosen = results;
    for (const addrinfo* ai = results; ai != nullptr; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            chosen = ai;
            break;
        }
    }
    std::memcpy(&endpoint.address, chosen->ai_addr, chosen->ai_addrlen);
    endpoint.length = chosen->ai_addrlen;
    endpoint.text = text;
    return endpoint;
}

sdk::Error resolve_error(const std::string& text, const std::string& cause) {
    return sdk::Error{sdk::ErrorCode::Unavailable,
                      "graylog: cannot resolve '" + text + "': " + cause};
}

}  // namespace

sdk::Result<Endpoint> resolve_endpoint(const std::string& host, int port, bool tcp) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = tcp ? SOCK_STREAM : SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* results = nullptr;
    const std::string service = std::to_string(port);
    const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &results);
    const std::string text = host + ":" + service;
    if (rc != 0) {
        return resolve_error(text, rc == EAI_SYSTEM ? errno_text(errno) : ::gai_strerror(rc));
    }
    Endpoint endpoint = choose_endpoint(results, text);
    ::freeaddrinfo(results);
    return endpoint;
}

/// One asynchronous lookup; glibc writes into `request` until gai_error says it is done.
/// Owns everything glibc reads, since a lookup may outlive the Resolver (see the destructor).
struct Resolver::Lookup {
    gaicb request{};
    addrinfo hints{};
    std::string name;
    std::string service;
};

Resolver::Resolver(std::string host, int port, bool tcp)
    : host_(std::move(host)),
      service_(std::to_string(port)),
      text_(host_ + ":" + service_),
      tcp_(tcp) {}

Resolver::~Resolver() {
    if (pending_ == nullptr) {
        return;
    }
    const int rc = ::gai_cancel(&pending_->request);
    if (rc == EAI_NOTCANCELED) {
        // A resolver thread is still filling the request in: it must stay valid. This happens at
        // most once per sink, when it is destroyed during a slow lookup.
        return;
    }
    if (pending_->request.ar_result != nullptr) {
        ::freeaddrinfo(pending_->request.ar_result);
    }
    delete pending_;
}

sdk::Result<Endpoint> Resolver::resolve(const StopSignal& stop, Clock::time_point deadline) {
#if defined(__SANITIZE_THREAD__)
    // ThreadSanitizer does not see the threads glibc starts for getaddrinfo_a and crashes in
    // them: look up synchronously in TSan builds only.
    (void)stop;
    (void)deadline;
    lookups_.fetch_add(1, std::memory_order_relaxed);
    return resolve_endpoint(host_, std::stoi(service_), tcp_);
#endif
    if (pending_ == nullptr) {
        auto lookup = std::make_unique<Lookup>();
        lookup->hints.ai_family = AF_UNSPEC;
        lookup->hints.ai_socktype = tcp_ ? SOCK_STREAM : SOCK_DGRAM;
        lookup->hints.ai_flags = AI_NUMERICSERV;
        lookup->name = host_;
        lookup->service = service_;
        lookup->request.ar_name = lookup->name.c_str();
        lookup->request.ar_service = lookup->service.c_str();
        lookup->request.ar_request = &lookup->hints;
        gaicb* list[] = {&lookup->request};
        const int rc = ::getaddrinfo_a(GAI_NOWAIT, list, 1, nullptr);
        if (rc != 0) {
            return resolve_error(text_, rc == EAI_SYSTEM ? errno_text(errno) : ::gai_strerror(rc));
        }
        pending_ = lookup.release();
        lookups_.fetch_add(1, std::memory_order_relaxed);
    }
    while (true) {
        const int rc = ::gai_error(&pending_->request);
        if (rc != EAI_INPROGRESS) {
            addrinfo* results = pending_->request.ar_result;
            delete pending_;
            pending_ = nullptr;
            if (rc != 0 || results == nullptr) {
                if (results != nullptr) {
                    ::freeaddrinfo(results);
                }
                return resolve_error(text_, rc == 0 ? "no address" : ::gai_strerror(rc));
            }
            Endpoint endpoint = choose_endpoint(results, text_);
            ::freeaddrinfo(results);
            return endpoint;
        }
        const auto now = Clock::now();
        const auto effective = stop.bound(deadline);
        if (now >= effective) {
            return sdk::Error{sdk::ErrorCode::Timeout,
                              "graylog: cannot resolve '" + text_ + "' yet: the lookup is slow"};
        }
        // Short slices: gai_suspend cannot watch the stop eventfd, so re-check the deadline.
        const auto slice =
            std::min<Clock::duration>(effective - now, std::chrono::milliseconds(20));
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(slice).count();
        const timespec timeout{static_cast<time_t>(ns / 1000000000),
                               static_cast<long>(ns % 1000000000)};
        const gaicb* list[] = {&pending_->request};
        ::gai_suspend(list, 1, &timeout);
    }
}

UdpSender::UdpSender(std::size_t chunk_size, Compression compression)
    : chunk_size_(chunk_size),
      compression_(compression),
      compressor_(compression),
      id_state_(random_seed()) {}

UdpSender::~UdpSender() {
    close();
}

sdk::Status UdpSender::open(const Endpoint& endpoint) {
    close();
    const int fd =
        ::socket(endpoint.address.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return {sdk::ErrorCode::Unavailable, "graylog: cannot create a UDP socket for " +
                                                 endpoint.text + ": " + errno_text(errno)};
    }
    // Connected, so ICMP errors (nothing listening) come back on this socket; unconnected UDP
    // never reports them and a Graylog that is down would go unnoticed.
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&endpoint.address), endpoint.length) != 0) {
        const std::string cause = errno_text(errno);
        ::close(fd);
        return {sdk::ErrorCode::Unavailable,
                "graylog: cannot connect a UDP socket to " + endpoint.text + ": " + cause};
    }
    fd_ = fd;
    endpoint_ = endpoint;
    datagrams_ = 0;
    first_datagram_at_ = {};
    return {};
}

namespace {

std::string udp_error_text(const std::string& endpoint, int err) {
    if (err == ECONNREFUSED) {
        return "sending to " + endpoint +
               " failed: port unreachable (nothing listens there: Graylog down or restarting)";
    }
    return "sending to " + endpoint + " failed: " + errno_text(err);
}

}  // namespace

bool UdpSender::check_error() {
    if (fd_ < 0) {
        return true;
    }
    int err = 0;
    socklen_t length = sizeof(err);
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &length) != 0) {
        err = errno;
    }
    if (err == 0) {
        return true;
    }
    last_error_ = udp_error_text(endpoint_.text, err);
    return false;
}

void UdpSender::close() {
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
}

bool UdpSender::send_datagram(const unsigned char* header, std::size_t header_size,
                              const char* data, std::size_t size, const StopSignal& stop,
                              Clock::time_point deadline) {
    iovec parts[2] = {{const_cast<unsigned char*>(header), header_size},
                      {const_cast<char*>(data), size}};
    msghdr message{};  // no address: the socket is connected
    message.msg_iov = header_size > 0 ? parts : parts + 1;
    message.msg_iovlen = header_size > 0 ? 2 : 1;
    while (true) {
        if (::sendmsg(fd_, &message, MSG_NOSIGNAL) >= 0) {
            if (datagrams_++ == 0) {
                first_datagram_at_ = Clock::now();
            }
            return true;
        }
        const int err = errno;
        if (err == EINTR) {
            continue;
        }
        if (err == EAGAIN || err == EWOULDBLOCK) {
            const int ready = stop.wait(fd_, POLLOUT, deadline);
            if (ready > 0) {
                continue;
            }
            last_error_ = ready == 0 ? "timed out waiting for the UDP socket to accept data"
                                     : "poll failed: " + errno_text(errno);
            return false;
        }
        last_error_ = udp_error_text(endpoint_.text, err);
        return false;
    }
}

SendOutcome UdpSender::send(std::string_view message, const StopSignal& stop,
                            Clock::time_point deadline) {
    std::string_view payload = message;
    if (compression_ != Compression::None) {
        if (!compressor_.compress(message, compressed_)) {
            last_error_ = "compression failed";
            return SendOutcome::Failed;
        }
        payload = compressed_;
    }
    const std::size_t count = chunk_count(payload.size(), chunk_size_);
    if (count > kMaxChunks) {
        return SendOutcome::TooLarge;
    }
    if (count == 1) {
        return send_datagram(nullptr, 0, payload.data(), payload.size(), stop, deadline)
                   ? SendOutcome::Sent
                   : SendOutcome::Failed;
    }
    const std::uint64_t id = next_id(id_state_);
    unsigned char header[kChunkHeaderSize];
    for (std::size_t i = 0; i < count; ++i) {
        write_chunk_header(header, id, static_cast<std::uint8_t>(i),
                           static_cast<std::uint8_t>(count));
        const std::size_t offset = i * chunk_size_;
        const std::size_t size = std::min(chunk_size_, payload.size() - offset);
        if (!send_datagram(header, sizeof(header), payload.data() + offset, size, stop, deadline)) {
            return SendOutcome::Failed;
        }
    }
    return SendOutcome::Sent;
}

TcpSender::~TcpSender() {
    close();
}

sdk::Status TcpSender::connect(const Endpoint& endpoint, const StopSignal& stop,
                               Clock::time_point deadline) {
    close();
    const int fd =
        ::socket(endpoint.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return {sdk::ErrorCode::Unavailable, "graylog: cannot create a TCP socket for " +
                                                 endpoint.text + ": " + errno_text(errno)};
    }
    int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&endpoint.address), endpoint.length);
    if (rc != 0 && errno == EINPROGRESS) {
        const int ready = stop.wait(fd, POLLOUT, deadline);
        if (ready <= 0) {
            const std::string cause =
                ready == 0 ? "timed out" : "poll failed: " + errno_text(errno);
            ::close(fd);
            return {sdk::ErrorCode::Timeout,
                    "graylog: connecting to " + endpoint.text + " " + cause};
        }
        int so_error = 0;
        socklen_t length = sizeof(so_error);
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &length) != 0) {
            so_error = errno;
        }
        errno = so_error;
        rc = so_error == 0 ? 0 : -1;
    }
    if (rc != 0) {
        const std::string cause = errno_text(errno);
        ::close(fd);
        return {sdk::ErrorCode::Unavailable,
                "graylog: cannot connect to " + endpoint.text + ": " + cause};
    }
    // Log records are small and should leave promptly; batching happens in the sink.
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fd_ = fd;
    return {};
}

void TcpSender::close() {
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
}

bool TcpSender::peer_closed() {
    if (fd_ < 0) {
        return true;
    }
    pollfd pfd{fd_, POLLIN, 0};
    if (::poll(&pfd, 1, 0) <= 0) {
        return false;
    }
    if ((pfd.revents & (POLLERR | POLLHUP)) != 0) {
        return true;
    }
    // Graylog never writes on a GELF input: readable means EOF (or stray bytes to discard).
    char scratch[256];
    const ssize_t n = ::recv(fd_, scratch, sizeof(scratch), MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

std::size_t TcpSender::send(std::string_view frames, const StopSignal& stop,
                            Clock::time_point deadline) {
    std::size_t sent = 0;
    while (sent < frames.size() && fd_ >= 0) {
        const ssize_t n = ::send(fd_, frames.data() + sent, frames.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
            continue;
        }
        const int err = errno;
        if (n < 0 && err == EINTR) {
            continue;
        }
        if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
            const int ready = stop.wait(fd_, POLLOUT, deadline);
            if (ready > 0) {
                continue;
            }
            last_error_ = ready == 0 ? "Graylog did not accept data in time (send timeout)"
                                     : "poll failed: " + errno_text(errno);
        } else {
            last_error_ = "send failed: " + errno_text(n < 0 ? err : EPIPE);
        }
        close();
    }
    return sent;
}

}  // namespace synergos::plugins::graylog
