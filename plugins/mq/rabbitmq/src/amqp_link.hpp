// SPDX-License-Identifier: Apache-2.0
#pragma once

/// One AMQP connection on top of rabbitmq-c, plus the pieces the publisher and consumer I/O
/// threads share: error mapping, a wake-up eventfd, heartbeat bookkeeping and the assembly of
/// content frames (basic.deliver / basic.return + header + body) into messages.
///
/// Threading: rabbitmq-c connections are not thread-safe, so an `AmqpLink` belongs to exactly
/// one I/O thread; only `WakeFd::signal` and `AmqpLink::interrupt` are called from other threads.

#include <amqp.h>
#include <amqp_framing.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <synergos/sdk/message_queue.hpp>
#include <synergos/sdk/status.hpp>

#include "mq_validation.hpp"
#include "settings.hpp"

namespace synergos::plugins::rabbitmq {

using Clock = std::chrono::steady_clock;


/// Header carrying the publisher's confirm sequence number, so a basic.return can be matched to
/// its publish. Stripped from deliveries. (mq::content_header_bytes counts it.)
inline constexpr const char* kSeqHeader = mq::kPublishSeqHeader;

/// The properties a publish of `message` carries: persistent, its priority, the time, its
/// headers plus kSeqHeader = `seq`, and its content type and id when set
/// (mq::content_header_bytes is their encoded size). The result points into `message` and into
/// `headers`, which it fills.
amqp_basic_properties_t publish_properties(const sdk::Message& message, std::uint64_t seq,
                                           std::vector<amqp_table_entry_t>& headers);

/// Maps an AMQP reply code (404, 406, 320...) to an SDK error code.
sdk::ErrorCode code_for_reply(int reply_code);
/// Maps a rabbitmq-c library status (AMQP_STATUS_*) to an SDK error code.
sdk::ErrorCode code_for_library_error(int status);
/// "<context>: <rabbitmq-c text>" as a Status.
sdk::Status library_error(int status, const std::string& context);
/// Converts an RPC reply; `context` names broker, vhost, queue and operation.
sdk::Status reply_status(const amqp_rpc_reply_t& reply, const std::string& context);
/// A server-sent connection.close / channel.close method as a Status.
sdk::Status close_method_status(const amqp_method_t& method, const std::string& context);

/// What identifies an unconfirmed publish when the broker closes the publish channel.
struct PublishFacts {
    std::uint64_t seq = 0;  ///< confirm sequence number
    std::size_t body_size = 0;
    std::vector<std::string> header_names;
};

/// The publishes a channel.close on the publish channel refers to, from the broker's reply text
/// (or the only one in flight). Empty when it cannot be told: the broker names no publish.
std::vector<std::uint64_t> channel_error_culprits(const std::vector<PublishFacts>& inflight,
                                                  const std::string& reply_text);

/// An eventfd other threads signal to wake an I/O thread out of `poll`.
class WakeFd {
public:
    WakeFd();  ///< throws std::system_error when no eventfd can be created
    ~WakeFd();
    WakeFd(const WakeFd&) = delete;
    WakeFd& operator=(const WakeFd&) = delete;

    void signal() noexcept;
    void drain() noexcept;
    int fd() const noexcept { return fd_; }

private:
    int fd_;
};

/// A message-bearing method (deliver or return) with its content, once complete.
struct ContentMessage {
    amqp_method_number_t method = 0;
    amqp_channel_t channel = 0;
    std::uint64_t delivery_tag = 0;
    bool redelivered = false;
    int reply_code = 0;
    std::string reply_text;
    std::string routing_key;
    sdk::Message message;
    std::optional<std::uint64_t> publish_seq;  ///< from kSeqHeader, when present
};

/// Collects basic.deliver / basic.return + content header + body frames. One per channel.
class ContentAssembler {
public:
    /// True when `frame` starts a content-bearing method this assembler takes.
    static bool starts_content(const amqp_frame_t& frame);
    /// Begins a message from its method frame.
    void start(const amqp_frame_t& frame);
    /// Adds a header or body frame. Returns the message when it is complete; an error on a
    /// protocol violation (frame out of order).
    sdk::Result<std::optional<ContentMessage>> add(const amqp_frame_t& frame);
    bool busy() const { return busy_; }
    void reset() { busy_ = false; }

private:
    bool busy_ = false;
    bool has_header_ = false;
    std::uint64_t body_size_ = 0;
    ContentMessage current_;
};

/// One AMQP connection. Owned by one I/O thread.
class AmqpLink {
public:
    AmqpLink(const BrokerSettings& settings, std::string connection_name);
    ~AmqpLink();
    AmqpLink(const AmqpLink&) = delete;
    AmqpLink& operator=(const AmqpLink&) = delete;

    /// TCP (or TLS) connect, AMQP login with heartbeats, all within `connect_timeout`.
    sdk::Status open();
    /// Opens `channel` (an RPC).
    sdk::Status open_channel(amqp_channel_t channel, const std::string& context);
    /// Graceful close: connection.close with a short RPC timeout, then the socket is destroyed.
    void close(std::chrono::milliseconds timeout) noexcept;
    /// Breaks a blocked send/recv from another thread (shutdown(2) of the socket).
    void interrupt() noexcept;

    amqp_connection_state_t state() const { return conn_; }
    const BrokerSettings& settings() const { return settings_; }
    /// Negotiated heartbeat interval (0 when disabled).
    std::chrono::seconds heartbeat() const { return heartbeat_; }
    /// Half an interval, in milliseconds: `seconds / 2` truncates a 1 s heartbeat to 0, which
    /// sent heartbeats in a busy loop until a silent peer's full socket buffer blocked the send.
    std::chrono::milliseconds half_heartbeat() const {
        return std::chrono::duration_cast<std::chrono::milliseconds>(heartbeat_) / 2;
    }

    /// Reads the next complete frame without blocking. Empty when none is buffered.
    sdk::Result<std::optional<amqp_frame_t>> next_frame();
    /// Recycles rabbitmq-c's frame memory once nothing refers to it.
    void release_buffers() noexcept;
    /// Replies to a server-initiated channel.close / connection.close.
    void send_close_ok(amqp_channel_t channel, bool connection) noexcept;

    /// Record traffic (heartbeat bookkeeping).
    void note_sent() { last_send_ = Clock::now(); }
    void note_received() { last_recv_ = Clock::now(); }

    /// Sends a heartbeat when half an interval passed without sending; fails when the broker was
    /// silent for three intervals (dead peer or cut network).
    sdk::Status service_heartbeat();
    /// Waits until the socket has data, `wake_fd` is signalled, or `deadline` passes (earlier
    /// when a heartbeat is due). Returns at once when rabbitmq-c already buffers data.
    sdk::Status wait(int wake_fd, Clock::time_point deadline, bool* woken);
    /// True when rabbitmq-c holds unread data or frames (poll would not report them).
    bool has_buffered() const;
    /// The socket, for a thread that polls it without owning the link (it must not read).
    int fd() const { return fd_.load(); }
    /// `deadline`, or earlier when a heartbeat is due to be sent or checked.
    Clock::time_point wake_by(Clock::time_point deadline) const;

private:
    sdk::Status tls_setup(amqp_socket_t* socket);

    BrokerSettings settings_;
    std::string connection_name_;
    amqp_connection_state_t conn_ = nullptr;
    std::atomic<int> fd_{-1};
    std::chrono::seconds heartbeat_{0};
    Clock::time_point last_send_;
    Clock::time_point last_recv_;
};

}  // namespace synergos::plugins::rabbitmq
