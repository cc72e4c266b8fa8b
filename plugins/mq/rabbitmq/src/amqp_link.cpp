// SPDX-License-Identifier: Apache-2.0
#include "amqp_link.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <system_error>
#include <utility>

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace synergos::plugins::rabbitmq {

namespace {

std::string bytes_to_string(amqp_bytes_t bytes) {
    if (bytes.len == 0 || bytes.bytes == nullptr) {
        return {};
    }
    return std::string(static_cast<const char*>(bytes.bytes), bytes.len);
}

std::string reply_code_name(int code) {
    switch (code) {
        case AMQP_CONTENT_TOO_LARGE:
            return "CONTENT_TOO_LARGE";
        case AMQP_NO_ROUTE:
            return "NO_ROUTE";
        case AMQP_NO_CONSUMERS:
            return "NO_CONSUMERS";
        case AMQP_CONNECTION_FORCED:
            return "CONNECTION_FORCED";
        case AMQP_INVALID_PATH:
            return "INVALID_PATH";
        case AMQP_ACCESS_REFUSED:
            return "ACCESS_REFUSED";
        case AMQP_NOT_FOUND:
            return "NOT_FOUND";
        case AMQP_RESOURCE_LOCKED:
            return "RESOURCE_LOCKED";
        case AMQP_PRECONDITION_FAILED:
            return "PRECONDITION_FAILED";
        case AMQP_NOT_ALLOWED:
            return "NOT_ALLOWED";
        case AMQP_NOT_IMPLEMENTED:
            return "NOT_IMPLEMENTED";
        case AMQP_INTERNAL_ERROR:
            return "INTERNAL_ERROR";
        case AMQP_RESOURCE_ERROR:
            return "RESOURCE_ERROR";
        default:
            return "code " + std::to_string(code);
    }
}

/// The OpenSSL error queue as text (empty when it is empty); clears the queue.
std::string openssl_errors() {
    std::string text;
    while (unsigned long code = ERR_get_error()) {
        char buffer[256];
        ERR_error_string_n(code, buffer, sizeof(buffer));
        if (!text.empty()) {
            text += "; ";
        }
        text += buffer;
    }
    return text;
}

/// Renders one header value; nested tables and arrays (x-death) are not representable.
std::optional<std::string> field_to_string(const amqp_field_value_t& value) {
    switch (value.kind) {
        case AMQP_FIELD_KIND_UTF8:
        case AMQP_FIELD_KIND_BYTES:
            return bytes_to_string(value.value.bytes);
        case AMQP_FIELD_KIND_BOOLEAN:
            return value.value.boolean ? "true" : "false";
        case AMQP_FIELD_KIND_I8:
            return std::to_string(value.value.i8);
        case AMQP_FIELD_KIND_U8:
            return std::to_string(value.value.u8);
        case AMQP_FIELD_KIND_I16:
            return std::to_string(value.value.i16);
        case AMQP_FIELD_KIND_U16:
            return std::to_string(value.value.u16);
        case AMQP_FIELD_KIND_I32:
            return std::to_string(value.value.i32);
        case AMQP_FIELD_KIND_U32:
            return std::to_string(value.value.u32);
        case AMQP_FIELD_KIND_I64:
            return std::to_string(value.value.i64);
        case AMQP_FIELD_KIND_U64:
        case AMQP_FIELD_KIND_TIMESTAMP:
            return std::to_string(value.value.u64);
        case AMQP_FIELD_KIND_F32:
            return std::to_string(value.value.f32);
        case AMQP_FIELD_KIND_F64:
            return std::to_string(value.value.f64);
        default:
            return std::nullopt;
    }
}

constexpr int kMissedHeartbeats = 3;

int ms_until(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
        return 0;
    }
    // Round up so a wake-up never lands just before the deadline and spins.
    return static_cast<int>(std::min<long long>(left.count() + 1, INT_MAX));
}

}  // namespace

// --- publishing -------------------------------------------------------------------------------

amqp_basic_properties_t publish_properties(const sdk::Message& message, std::uint64_t seq,
                                           std::vector<amqp_table_entry_t>& headers) {
    const auto bytes_of = [](const std::string& text) {
        return amqp_bytes_t{text.size(), const_cast<char*>(text.data())};
    };
    headers.assign(message.headers.size() + 1, amqp_table_entry_t{});
    for (std::size_t i = 0; i < message.headers.size(); ++i) {
        headers[i].key = bytes_of(message.headers[i].first);
        headers[i].value.kind = AMQP_FIELD_KIND_UTF8;
        headers[i].value.value.bytes = bytes_of(message.headers[i].second);
    }
    amqp_table_entry_t& seq_entry = headers.back();
    seq_entry.key = amqp_cstring_bytes(kSeqHeader);
    seq_entry.value.kind = AMQP_FIELD_KIND_I64;
    seq_entry.value.value.i64 = static_cast<std::int64_t>(seq);

    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_PRIORITY_FLAG |
                   AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
    props.delivery_mode = 2;  // persistent
    props.priority = message.priority;
    props.timestamp =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
    props.headers = amqp_table_t{static_cast<int>(headers.size()), headers.data()};
    if (!message.content_type.empty()) {
        props._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
        props.content_type = bytes_of(message.content_type);
    }
    if (!message.id.empty()) {
        props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        props.message_id = bytes_of(message.id);
    }
    return props;
}

// --- error mapping ----------------------------------------------------------------------------

sdk::ErrorCode code_for_reply(int reply_code) {
    switch (reply_code) {
        case AMQP_CONNECTION_FORCED:
        case AMQP_NO_CONSUMERS:
        case AMQP_INTERNAL_ERROR:
            return sdk::ErrorCode::Unavailable;
        case AMQP_NO_ROUTE:
        case AMQP_NOT_FOUND:
            return sdk::ErrorCode::NotFound;
        case AMQP_ACCESS_REFUSED:
        case AMQP_NOT_ALLOWED:
            return sdk::ErrorCode::PermissionDenied;
        case AMQP_RESOURCE_LOCKED:
        case AMQP_PRECONDITION_FAILED:
            return sdk::ErrorCode::FailedPrecondition;
        case AMQP_INVALID_PATH:
            return sdk::ErrorCode::InvalidArgument;
        case AMQP_CONTENT_TOO_LARGE:
        case AMQP_RESOURCE_ERROR:
            return sdk::ErrorCode::ResourceExhausted;
        case AMQP_NOT_IMPLEMENTED:
            return sdk::ErrorCode::Unimplemented;
        default:
            return sdk::ErrorCode::Internal;
    }
}

sdk::ErrorCode code_for_library_error(int status) {
    switch (status) {
        case AMQP_STATUS_TIMEOUT:
            return sdk::ErrorCode::Timeout;
        case AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED:
        case AMQP_STATUS_CONNECTION_CLOSED:
        case AMQP_STATUS_SOCKET_ERROR:
        case AMQP_STATUS_SOCKET_CLOSED:
        case AMQP_STATUS_HEARTBEAT_TIMEOUT:
        case AMQP_STATUS_TCP_ERROR:
        case AMQP_STATUS_SSL_ERROR:
        case AMQP_STATUS_SSL_CONNECTION_FAILED:
            return sdk::ErrorCode::Unavailable;
        case AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED:
        case AMQP_STATUS_SSL_PEER_VERIFY_FAILED:
            return sdk::ErrorCode::PermissionDenied;
        case AMQP_STATUS_BROKER_UNSUPPORTED_SASL_METHOD:
        case AMQP_STATUS_INCOMPATIBLE_AMQP_VERSION:
            return sdk::ErrorCode::FailedPrecondition;
        case AMQP_STATUS_NO_MEMORY:
            return sdk::ErrorCode::ResourceExhausted;
        default:
            return sdk::ErrorCode::Internal;
    }
}

sdk::Status library_error(int status, const std::string& context) {
    return sdk::Status(code_for_library_error(status), context + ": " + amqp_error_string2(status));
}

sdk::Status close_method_status(const amqp_method_t& method, const std::string& context) {
    int code = 0;
    std::string text;
    if (method.id == AMQP_CONNECTION_CLOSE_METHOD && method.decoded != nullptr) {
        const auto* close = static_cast<const amqp_connection_close_t*>(method.decoded);
        code = close->reply_code;
        text = bytes_to_string(close->reply_text);
    } else if (method.id == AMQP_CHANNEL_CLOSE_METHOD && method.decoded != nullptr) {
        const auto* close = static_cast<const amqp_channel_close_t*>(method.decoded);
        code = close->reply_code;
        text = bytes_to_string(close->reply_text);
    } else {
        return sdk::Status(sdk::ErrorCode::Internal,
                           context + ": unexpected broker method " + amqp_method_name(method.id));
    }
    return sdk::Status(code_for_reply(code), context + ": broker replied " + std::to_string(code) +
                                                 " " + reply_code_name(code) + " (" + text + ")");
}

sdk::Status reply_status(const amqp_rpc_reply_t& reply, const std::string& context) {
    switch (reply.reply_type) {
        case AMQP_RESPONSE_NORMAL:
            return sdk::Status::ok();
        case AMQP_RESPONSE_NONE:
            return sdk::Status(sdk::ErrorCode::Internal, context + ": no reply from rabbitmq-c");
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            return library_error(reply.library_error, context);
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            return close_method_status(reply.reply, context);
    }
    return sdk::Status(sdk::ErrorCode::Internal, context + ": unknown reply type");
}

// --- WakeFd -----------------------------------------------------------------------------------

WakeFd::WakeFd() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (fd_ < 0) {
        throw std::system_error(errno, std::generic_category(), "eventfd");
    }
}

WakeFd::~WakeFd() { ::close(fd_); }

void WakeFd::signal() noexcept {
    const std::uint64_t one = 1;
    // A full counter (EAGAIN) still leaves the fd readable, which is all a wake-up needs.
    [[maybe_unused]] auto written = ::write(fd_, &one, sizeof(one));
}

void WakeFd::drain() noexcept {
    std::uint64_t value = 0;
    [[maybe_unused]] auto read = ::read(fd_, &value, sizeof(value));
}

// --- ContentAssembler -------------------------------------------------------------------------

bool ContentAssembler::starts_content(const amqp_frame_t& frame) {
    return frame.frame_type == AMQP_FRAME_METHOD &&
           (frame.payload.method.id == AMQP_BASIC_DELIVER_METHOD ||
            frame.payload.method.id == AMQP_BASIC_RETURN_METHOD);
}

void ContentAssembler::start(const amqp_frame_t& frame) {
    current_ = ContentMessage{};
    current_.method = frame.payload.method.id;
    current_.channel = frame.channel;
    if (current_.method == AMQP_BASIC_DELIVER_METHOD) {
        const auto* deliver =
            static_cast<const amqp_basic_deliver_t*>(frame.payload.method.decoded);
        current_.delivery_tag = deliver->delivery_tag;
        current_.redelivered = deliver->redelivered != 0;
        current_.routing_key = bytes_to_string(deliver->routing_key);
    } else {
        const auto* ret = static_cast<const amqp_basic_return_t*>(frame.payload.method.decoded);
        current_.reply_code = ret->reply_code;
        current_.reply_text = bytes_to_string(ret->reply_text);
        current_.routing_key = bytes_to_string(ret->routing_key);
    }
    busy_ = true;
    has_header_ = false;
    body_size_ = 0;
}

sdk::Result<std::optional<ContentMessage>> ContentAssembler::add(const amqp_frame_t& frame) {
    if (!busy_) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          "content frame without a deliver/return method on channel " +
                              std::to_string(frame.channel)};
    }
    if (frame.frame_type == AMQP_FRAME_HEADER) {
        if (has_header_) {
            return sdk::Error{sdk::ErrorCode::Internal, "second content header for one message"};
        }
        has_header_ = true;
        body_size_ = frame.payload.properties.body_size;
        const auto* props =
            static_cast<const amqp_basic_properties_t*>(frame.payload.properties.decoded);
        sdk::Message& message = current_.message;
        message.content_type.clear();
        if (props != nullptr) {
            if (props->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) {
                message.content_type = bytes_to_string(props->content_type);
            }
            if (props->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
                message.id = bytes_to_string(props->message_id);
            }
            if (props->_flags & AMQP_BASIC_PRIORITY_FLAG) {
                message.priority = props->priority;
            }
            if (props->_flags & AMQP_BASIC_HEADERS_FLAG) {
                for (int i = 0; i < props->headers.num_entries; ++i) {
                    const amqp_table_entry_t& entry = props->headers.entries[i];
                    std::string key = bytes_to_string(entry.key);
                    if (key == kSeqHeader) {
                        if (entry.value.kind == AMQP_FIELD_KIND_I64) {
                            current_.publish_seq =
                                static_cast<std::uint64_t>(entry.value.value.i64);
                        }
                        continue;
                    }
                    if (auto text = field_to_string(entry.value)) {
                        message.headers.emplace_back(std::move(key), std::move(*text));
                    }
                }
            }
        }
        // Body frames hold at most frame_max bytes each; reserve only a sane amount up front.
        message.body.reserve(
            static_cast<std::size_t>(std::min<std::uint64_t>(body_size_, 1 << 24)));
    } else if (frame.frame_type == AMQP_FRAME_BODY) {
        if (!has_header_) {
            return sdk::Error{sdk::ErrorCode::Internal, "content body before its header"};
        }
        const amqp_bytes_t& fragment = frame.payload.body_fragment;
        current_.message.body.append(static_cast<const char*>(fragment.bytes), fragment.len);
        if (current_.message.body.size() > body_size_) {
            return sdk::Error{sdk::ErrorCode::Internal, "content body longer than announced"};
        }
    } else {
        return sdk::Error{
            sdk::ErrorCode::Internal,
            "unexpected frame type " + std::to_string(frame.frame_type) + " inside a message"};
    }
    if (has_header_ && current_.message.body.size() == body_size_) {
        busy_ = false;
        return std::optional<ContentMessage>(std::move(current_));
    }
    return std::optional<ContentMessage>();
}

// --- publish-channel errors -------------------------------------------------------------------

std::vector<std::uint64_t> channel_error_culprits(const std::vector<PublishFacts>& inflight,
                                                  const std::string& reply_text) {
    if (inflight.size() == 1) {
        return {inflight.front().seq};  // the broker never confirms the publish it refused
    }
    std::vector<std::uint64_t> culprits;
    // 406 "message size N is larger than configured max size M": every publish that large.
    const std::string size_marker = "message size ";
    if (auto at = reply_text.find(size_marker); at != std::string::npos) {
        std::size_t size = 0;
        const char* begin = reply_text.data() + at + size_marker.size();
        const char* end = reply_text.data() + reply_text.size();
        auto [ptr, ec] = std::from_chars(begin, end, size);
        if (ec == std::errc() && ptr != begin) {
            for (const auto& facts : inflight) {
                if (facts.body_size == size) {
                    culprits.push_back(facts.seq);
                }
            }
        }
        return culprits;
    }
    // 406 "invalid message: {unacceptable_type_in_header,"CC",longstr}": every publish with
    // that header (the broker reads CC/BCC as routing headers).
    const std::string header_marker = "unacceptable_type_in_header,\"";
    if (auto at = reply_text.find(header_marker); at != std::string::npos) {
        const auto begin = at + header_marker.size();
        const auto close = reply_text.find('"', begin);
        if (close != std::string::npos) {
            const std::string name = reply_text.substr(begin, close - begin);
            for (const auto& facts : inflight) {
                if (std::find(facts.header_names.begin(), facts.header_names.end(), name) !=
                    facts.header_names.end()) {
                    culprits.push_back(facts.seq);
                }
            }
        }
    }
    return culprits;
}

// --- AmqpLink ---------------------------------------------------------------------------------

AmqpLink::AmqpLink(const BrokerSettings& settings, std::string connection_name)
    : settings_(settings), connection_name_(std::move(connection_name)) {}

AmqpLink::~AmqpLink() {
    if (conn_ != nullptr) {
        fd_.store(-1);
        amqp_destroy_connection(conn_);
        conn_ = nullptr;
    }
}

sdk::Status AmqpLink::tls_setup(amqp_socket_t* socket) {
    const std::string context = settings_.describe();
    amqp_ssl_socket_set_verify_peer(socket, settings_.tls_verify_peer ? 1 : 0);
    amqp_ssl_socket_set_verify_hostname(socket, settings_.tls_verify_peer ? 1 : 0);
    if (amqp_ssl_socket_set_ssl_versions(socket, AMQP_TLSv1_2, AMQP_TLSvLATEST) != AMQP_STATUS_OK) {
        return sdk::Status(sdk::ErrorCode::Internal, context + ": cannot require TLS 1.2+");
    }
    if (!settings_.tls_ca_file.empty()) {
        if (amqp_ssl_socket_set_cacert(socket, settings_.tls_ca_file.c_str()) != AMQP_STATUS_OK) {
            return sdk::Status(sdk::ErrorCode::InvalidArgument,
                               context + ": tls_ca_file '" + settings_.tls_ca_file +
                                   "' is not a usable PEM CA file (" + openssl_errors() + ")");
        }
    } else if (settings_.tls_verify_peer) {
        auto* ctx = static_cast<SSL_CTX*>(amqp_ssl_socket_get_context(socket));
        if (ctx != nullptr) {
            SSL_CTX_set_default_verify_paths(ctx);
        }
    }
    if (!settings_.tls_cert_file.empty()) {
        if (amqp_ssl_socket_set_key(socket, settings_.tls_cert_file.c_str(),
                                    settings_.tls_key_file.c_str()) != AMQP_STATUS_OK) {
            return sdk::Status(sdk::ErrorCode::InvalidArgument,
                               context + ": tls_cert_file '" + settings_.tls_cert_file +
                                   "' / tls_key_file '" + settings_.tls_key_file +
                                   "' are not a usable PEM certificate and key (" +
                                   openssl_errors() + ")");
        }
    }
    return sdk::Status::ok();
}

sdk::Status AmqpLink::open() {
    const std::string context = settings_.describe();
    conn_ = amqp_new_connection();
    if (conn_ == nullptr) {
        return sdk::Status(sdk::ErrorCode::ResourceExhausted,
                           context + ": cannot allocate a connection");
    }
    amqp_socket_t* socket = settings_.tls ? amqp_ssl_socket_new(conn_) : amqp_tcp_socket_new(conn_);
    if (socket == nullptr) {
        return sdk::Status(sdk::ErrorCode::Internal, context + ": cannot create a " +
                                                         (settings_.tls ? "TLS" : "TCP") +
                                                         " socket (" + openssl_errors() + ")");
    }
    if (settings_.tls) {
        if (auto status = tls_setup(socket); !status) {
            return status;
        }
    }
    const auto connect_ms = settings_.connect_timeout.count();
    timeval connect_tv{static_cast<time_t>(connect_ms / 1000),
                       static_cast<suseconds_t>((connect_ms % 1000) * 1000)};
    const auto rpc_ms = settings_.rpc_timeout.count();
    timeval rpc_tv{static_cast<time_t>(rpc_ms / 1000),
                   static_cast<suseconds_t>((rpc_ms % 1000) * 1000)};
    amqp_set_handshake_timeout(conn_, &connect_tv);
    amqp_set_rpc_timeout(conn_, &rpc_tv);

    errno = 0;
    const int opened =
        amqp_socket_open_noblock(socket, settings_.host.c_str(), settings_.port, &connect_tv);
    if (opened != AMQP_STATUS_OK) {
        const int system_error = errno;
        std::string detail = amqp_error_string2(opened);
        if (settings_.tls) {
            const std::string ssl = openssl_errors();
            if (!ssl.empty()) {
                detail += " (" + ssl + ")";
            }
        }
        if (system_error != 0 && opened != AMQP_STATUS_TIMEOUT) {
            detail += " (" + std::string(std::strerror(system_error)) + ")";
        }
        sdk::ErrorCode code = code_for_library_error(opened);
        if (opened == AMQP_STATUS_TIMEOUT) {
            code = sdk::ErrorCode::Unavailable;
            detail = "no connection within " + std::to_string(connect_ms) + " ms";
        }
        return sdk::Status(code, context + ": connect failed: " + detail);
    }
    fd_.store(amqp_get_sockfd(conn_));  // from here interrupt() can break a stuck login

    // Client properties: a readable connection name and the capabilities we handle.
    amqp_table_entry_t capability_entries[4];
    const char* capability_names[] = {"consumer_cancel_notify", "publisher_confirms", "basic.nack",
                                      "connection.blocked"};
    for (int i = 0; i < 4; ++i) {
        capability_entries[i].key = amqp_cstring_bytes(capability_names[i]);
        capability_entries[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
        capability_entries[i].value.value.boolean = 1;
    }
    amqp_table_entry_t property_entries[2];
    property_entries[0].key = amqp_cstring_bytes("connection_name");
    property_entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
    property_entries[0].value.value.bytes = amqp_cstring_bytes(connection_name_.c_str());
    property_entries[1].key = amqp_cstring_bytes("capabilities");
    property_entries[1].value.kind = AMQP_FIELD_KIND_TABLE;
    property_entries[1].value.value.table = amqp_table_t{4, capability_entries};
    amqp_table_t properties{2, property_entries};

    const amqp_rpc_reply_t login = amqp_login_with_properties(
        conn_, settings_.vhost.c_str(), 0, static_cast<int>(mq::kFrameMax), settings_.heartbeat_s,
        &properties, AMQP_SASL_METHOD_PLAIN, settings_.username.c_str(),
        settings_.password.c_str());
    if (auto status = reply_status(login, context + ": login as '" + settings_.username + "'");
        !status) {
        return status;
    }
    heartbeat_ = std::chrono::seconds(amqp_get_heartbeat(conn_));
    fd_.store(amqp_get_sockfd(conn_));
    last_send_ = last_recv_ = Clock::now();
    return sdk::Status::ok();
}

sdk::Status AmqpLink::open_channel(amqp_channel_t channel, const std::string& context) {
    amqp_channel_open(conn_, channel);
    note_sent();
    auto status = reply_status(amqp_get_rpc_reply(conn_), context);
    if (status) {
        note_received();
    }
    return status;
}

void AmqpLink::close(std::chrono::milliseconds timeout) noexcept {
    if (conn_ == nullptr) {
        return;
    }
    const auto ms = std::max<long long>(timeout.count(), 1);
    timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
    amqp_set_rpc_timeout(conn_, &tv);
    if (fd_.load() >= 0) {
        amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    }
    fd_.store(-1);
    amqp_destroy_connection(conn_);
    conn_ = nullptr;
}

void AmqpLink::interrupt() noexcept {
    const int fd = fd_.load();
    if (fd >= 0) {
        ::shutdown(fd, SHUT_RDWR);
    }
}

sdk::Result<std::optional<amqp_frame_t>> AmqpLink::next_frame() {
    // rabbitmq-c reads heartbeat frames itself and returns nothing for them: bytes waiting on
    // the socket are the broker's traffic, counted before the read swallows them. Without
    // this, a send that outlasted three heartbeat intervals (a large message on a slow link)
    // was followed by a read of the heartbeats that came meanwhile and then "no traffic from
    // the broker". Checked only once half an interval has passed without a frame.
    if (heartbeat_.count() != 0 && Clock::now() - last_recv_ > half_heartbeat()) {
        const int fd = fd_.load();
        int pending = 0;
        if (fd >= 0 && ::ioctl(fd, FIONREAD, &pending) == 0 && pending > 0) {
            note_received();
        }
    }
    amqp_frame_t frame;
    timeval zero{0, 0};
    const int status = amqp_simple_wait_frame_noblock(conn_, &frame, &zero);
    if (status == AMQP_STATUS_TIMEOUT) {
        return std::optional<amqp_frame_t>();
    }
    if (status != AMQP_STATUS_OK) {
        return library_error(status, settings_.describe() + ": read failed").error();
    }
    note_received();
    return std::optional<amqp_frame_t>(frame);
}

void AmqpLink::release_buffers() noexcept {
    if (!amqp_frames_enqueued(conn_) && !amqp_data_in_buffer(conn_)) {
        amqp_maybe_release_buffers(conn_);
    }
}

void AmqpLink::send_close_ok(amqp_channel_t channel, bool connection) noexcept {
    if (connection) {
        amqp_connection_close_ok_t ok{};
        amqp_send_method(conn_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    } else {
        amqp_channel_close_ok_t ok{};
        amqp_send_method(conn_, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    }
    note_sent();
}

sdk::Status AmqpLink::service_heartbeat() {
    if (heartbeat_.count() == 0) {
        return sdk::Status::ok();
    }
    const auto now = Clock::now();
    // RabbitMQ sends a heartbeat only after a full interval without other traffic, checked once
    // per interval, so a healthy broker can be silent for almost two intervals: allow three.
    if (now - last_recv_ > kMissedHeartbeats * heartbeat_) {
        return sdk::Status(sdk::ErrorCode::Unavailable,
                           settings_.describe() + ": no traffic from the broker for " +
                               std::to_string(kMissedHeartbeats * heartbeat_.count()) +
                               " s (three heartbeat intervals); the connection is presumed dead");
    }
    if (now - last_send_ >= half_heartbeat()) {
        amqp_frame_t heartbeat{};
        heartbeat.frame_type = AMQP_FRAME_HEARTBEAT;
        heartbeat.channel = 0;
        const int status = amqp_send_frame(conn_, &heartbeat);
        if (status != AMQP_STATUS_OK) {
            return library_error(status, settings_.describe() + ": heartbeat send failed");
        }
        note_sent();
    }
    return sdk::Status::ok();
}

bool AmqpLink::has_buffered() const {
    return amqp_frames_enqueued(conn_) || amqp_data_in_buffer(conn_);
}

Clock::time_point AmqpLink::wake_by(Clock::time_point deadline) const {
    if (heartbeat_.count() == 0) {
        return deadline;
    }
    return std::min(
        {deadline, last_send_ + half_heartbeat(), last_recv_ + kMissedHeartbeats * heartbeat_});
}

sdk::Status AmqpLink::wait(int wake_fd, Clock::time_point deadline, bool* woken) {
    *woken = false;
    if (has_buffered()) {
        return sdk::Status::ok();
    }
    const int fd = fd_.load();
    int pending = 0;
    if (fd >= 0 && ::ioctl(fd, FIONREAD, &pending) == 0 && pending > 0) {
        note_received();
        return sdk::Status::ok();
    }
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    const int ready = ::poll(fds, 2, ms_until(wake_by(deadline)));
    if (ready < 0) {
        if (errno == EINTR) {
            return sdk::Status::ok();
        }
        return sdk::Status(sdk::ErrorCode::Internal,
                           settings_.describe() + ": poll failed: " + std::strerror(errno));
    }
    if (fds[0].revents != 0) {
        note_received();  // data, or EOF/error that the next read reports
    }
    if (fds[1].revents & POLLIN) {
        *woken = true;
    }
    return sdk::Status::ok();
}

}  // namespace synergos::plugins::rabbitmq
