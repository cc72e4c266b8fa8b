// SPDX-License-Identifier: Apache-2.0
#include "amqp_baseline.hpp"

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

namespace synergos::bench::mq {

namespace {

using Clock = std::chrono::steady_clock;

struct ConnectionDeleter {
    void operator()(amqp_connection_state_t conn) const {
        amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(conn);
    }
};
using Connection = std::unique_ptr<amqp_connection_state_t_, ConnectionDeleter>;

std::string reply_text(const amqp_rpc_reply_t& reply) {
    switch (reply.reply_type) {
        case AMQP_RESPONSE_NORMAL:
            return "ok";
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            return amqp_error_string2(reply.library_error);
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                const auto* close = static_cast<const amqp_channel_close_t*>(reply.reply.decoded);
                return std::string(static_cast<const char*>(close->reply_text.bytes),
                                   close->reply_text.len);
            }
            if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
                const auto* close =
                    static_cast<const amqp_connection_close_t*>(reply.reply.decoded);
                return std::string(static_cast<const char*>(close->reply_text.bytes),
                                   close->reply_text.len);
            }
            return "server exception";
        default:
            return "no reply";
    }
}

void check(const amqp_rpc_reply_t& reply, const std::string& what) {
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
        throw std::runtime_error("amqp baseline: " + what + ": " + reply_text(reply));
    }
}

Connection connect(const std::string& url) {
    std::vector<char> buffer(url.begin(), url.end());
    buffer.push_back('\0');
    amqp_connection_info info{};
    if (amqp_parse_url(buffer.data(), &info) != AMQP_STATUS_OK) {
        throw std::runtime_error("amqp baseline: '" + url + "' is not an amqp:// URL");
    }
    Connection conn(amqp_new_connection());
    amqp_socket_t* socket = amqp_tcp_socket_new(conn.get());
    timeval timeout{10, 0};
    const int opened = amqp_socket_open_noblock(socket, info.host, info.port, &timeout);
    if (opened != AMQP_STATUS_OK) {
        throw std::runtime_error("amqp baseline: cannot connect to " + std::string(info.host) +
                                 ":" + std::to_string(info.port) + ": " +
                                 amqp_error_string2(opened));
    }
    // The plugin's default heartbeat, so both sides carry the same protocol overhead.
    check(amqp_login(conn.get(), info.vhost, 0, 131072, 30, AMQP_SASL_METHOD_PLAIN, info.user,
                     info.password),
          "login");
    amqp_set_rpc_timeout(conn.get(), &timeout);
    amqp_channel_open(conn.get(), 1);
    check(amqp_get_rpc_reply(conn.get()), "channel.open");
    return conn;
}

double rate(std::size_t messages, Clock::duration elapsed) {
    const double seconds = std::chrono::duration<double>(elapsed).count();
    return seconds > 0 ? static_cast<double>(messages) / seconds : 0.0;
}

}  // namespace

struct AmqpBaselineClient::State {
    State(const std::string& url_in, const std::string& queue_in, const BaselineOptions& in)
        : conn(connect(url_in)),
          queue(queue_in),
          options(in),
          body(in.body_bytes, 'x'),
          url(url_in) {}

    Connection conn;  ///< publishes (confirm mode)
    std::string queue;
    BaselineOptions options;
    std::string body;
    std::string content_type = "application/json";
    std::uint64_t published = 0;
    std::string url;
    Connection consumer;  ///< its own connection, as the plugin's consumers have

    amqp_bytes_t queue_bytes() const {
        return amqp_bytes_t{queue.size(), const_cast<char*>(queue.data())};
    }
};

AmqpBaselineClient::AmqpBaselineClient(const std::string& url, const std::string& queue,
                                       const BaselineOptions& options)
    : state_(new State(url, queue, options)) {
    amqp_connection_state_t c = state_->conn.get();
    try {
        amqp_queue_declare(c, 1, state_->queue_bytes(), 0, 1, 0, 0, amqp_empty_table);
        check(amqp_get_rpc_reply(c), "declare queue '" + queue + "'");
        amqp_confirm_select(c, 1);
        check(amqp_get_rpc_reply(c), "confirm.select");
    } catch (...) {
        delete state_;
        throw;
    }
}

AmqpBaselineClient::~AmqpBaselineClient() {
    state_->consumer.reset();
    amqp_queue_delete(state_->conn.get(), 1, state_->queue_bytes(), 0, 0);
    amqp_get_rpc_reply(state_->conn.get());
    delete state_;
}

void AmqpBaselineClient::publish(std::size_t count) {
    amqp_connection_state_t c = state_->conn.get();
    // One message at a time, waiting for its confirm, as MessageQueue::publish does.
    for (std::size_t i = 0; i < count; ++i) {
        const std::uint64_t seq = ++state_->published;
        const std::string id = "baseline-" + std::to_string(seq);
        amqp_basic_properties_t props{};
        props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                       AMQP_BASIC_MESSAGE_ID_FLAG;
        props.content_type = amqp_bytes_t{state_->content_type.size(),
                                          const_cast<char*>(state_->content_type.data())};
        props.delivery_mode = 2;
        props.message_id = amqp_bytes_t{id.size(), const_cast<char*>(id.data())};
        const amqp_bytes_t body{state_->body.size(), const_cast<char*>(state_->body.data())};
        const int sent =
            amqp_basic_publish(c, 1, amqp_empty_bytes, state_->queue_bytes(), 1, 0, &props, body);
        if (sent != AMQP_STATUS_OK) {
            throw std::runtime_error(std::string("amqp baseline: publish: ") +
                                     amqp_error_string2(sent));
        }
        bool confirmed = false;
        while (!confirmed) {
            amqp_frame_t frame;
            timeval timeout{10, 0};
            const int got = amqp_simple_wait_frame_noblock(c, &frame, &timeout);
            if (got != AMQP_STATUS_OK) {
                throw std::runtime_error(std::string("amqp baseline: waiting for confirm: ") +
                                         amqp_error_string2(got));
            }
            if (frame.frame_type != AMQP_FRAME_METHOD) {
                continue;
            }
            if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
                const auto* ack =
                    static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
                confirmed = ack->delivery_tag == seq || (ack->multiple && ack->delivery_tag >= seq);
            } else if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD ||
                       frame.payload.method.id == AMQP_BASIC_RETURN_METHOD) {
                throw std::runtime_error("amqp baseline: message " + id + " was not stored");
            }
        }
        amqp_maybe_release_buffers(c);
    }
}

void AmqpBaselineClient::consume(std::size_t count) {
    if (!state_->consumer) {
        state_->consumer = connect(state_->url);
        amqp_connection_state_t c = state_->consumer.get();
        // Manual ack with the same prefetch the plugin's consumer gets.
        amqp_basic_qos(c, 1, 0, state_->options.prefetch, 0);
        check(amqp_get_rpc_reply(c), "basic.qos");
        amqp_basic_consume(c, 1, state_->queue_bytes(), amqp_empty_bytes, 0, 0, 0,
                           amqp_empty_table);
        check(amqp_get_rpc_reply(c), "basic.consume");
    }
    amqp_connection_state_t c = state_->consumer.get();
    for (std::size_t i = 0; i < count; ++i) {
        amqp_envelope_t envelope;
        timeval timeout{10, 0};
        amqp_maybe_release_buffers(c);
        check(amqp_consume_message(c, &envelope, &timeout, 0), "consume message");
        const int acked = amqp_basic_ack(c, 1, envelope.delivery_tag, 0);
        amqp_destroy_envelope(&envelope);
        if (acked != AMQP_STATUS_OK) {
            throw std::runtime_error(std::string("amqp baseline: ack: ") +
                                     amqp_error_string2(acked));
        }
    }
}

BaselineResult run_amqp_baseline(const std::string& url, const std::string& queue,
                                 std::size_t messages, const BaselineOptions& options) {
    AmqpBaselineClient client(url, queue, options);
    const auto publish_begin = Clock::now();
    client.publish(messages);
    const auto publish_elapsed = Clock::now() - publish_begin;
    const auto consume_begin = Clock::now();
    client.consume(messages);
    const auto consume_elapsed = Clock::now() - consume_begin;

    BaselineResult result;
    result.messages = messages;
    result.publish_msgs_per_s = rate(messages, publish_elapsed);
    result.consume_msgs_per_s = rate(messages, consume_elapsed);
    result.msgs_per_s = rate(messages, publish_elapsed + consume_elapsed);
    return result;
}

std::map<std::string, std::string> plugin_options(const std::string& url) {
    std::vector<char> buffer(url.begin(), url.end());
    buffer.push_back('\0');
    amqp_connection_info info{};
    if (amqp_parse_url(buffer.data(), &info) != AMQP_STATUS_OK) {
        throw std::runtime_error("'" + url + "' is not an amqp:// URL");
    }
    return {{"host", info.host},
            {"port", std::to_string(info.port)},
            {"vhost", info.vhost},
            {"username", info.user},
            {"password", info.password}};
}

void delete_amqp_queue(const std::string& url, const std::string& queue) {
    Connection conn = connect(url);
    amqp_queue_delete(conn.get(), 1, amqp_bytes_t{queue.size(), const_cast<char*>(queue.data())}, 0,
                      0);
    amqp_get_rpc_reply(conn.get());  // a missing queue closes the channel; nothing to clean up
}

double amqp_baseline_msgs_per_s(const std::string& url, const std::string& queue,
                                std::size_t messages) {
    return run_amqp_baseline(url, queue, messages).msgs_per_s;
}

}  // namespace synergos::bench::mq
