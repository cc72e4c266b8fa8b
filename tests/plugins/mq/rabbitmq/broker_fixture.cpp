// SPDX-License-Identifier: Apache-2.0
#include "broker_fixture.hpp"

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <cstdlib>
#include <cstring>
#include <sys/wait.h>
#include <vector>

#include <catch2/catch.hpp>

#include "rabbitmq_queue.hpp"

namespace synergos::tests::mq {

namespace {

constexpr const char* kHowToStart =
    "These tests need a real RabbitMQ broker. Start one (as root) with\n"
    "    rabbitmq-server -detached && rabbitmqctl await_startup\n"
    "then export SYNERGOS_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f\n"
    "(and SYNERGOS_TEST_RABBITMQCTL=$(command -v rabbitmqctl) for the restart tests).\n"
    "To leave broker tests out on purpose: ctest -LE rabbitmq";

amqp_connection_state_t state(void* conn) { return static_cast<amqp_connection_state_t>(conn); }

std::string reply_text(const amqp_rpc_reply_t& reply) {
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
        return "";
    }
    if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* close = static_cast<const amqp_channel_close_t*>(reply.reply.decoded);
        return std::string(static_cast<const char*>(close->reply_text.bytes),
                           close->reply_text.len);
    }
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        return amqp_error_string2(reply.library_error);
    }
    return "server exception";
}

}  // namespace

BrokerUrl require_broker_url() {
    const char* raw = std::getenv("SYNERGOS_TEST_AMQP_URL");
    if (raw == nullptr || *raw == '\0') {
        FAIL("SYNERGOS_TEST_AMQP_URL is not set.\n" << kHowToStart);
    }
    std::vector<char> buffer(raw, raw + std::strlen(raw) + 1);
    amqp_connection_info info{};
    if (amqp_parse_url(buffer.data(), &info) != AMQP_STATUS_OK) {
        FAIL("SYNERGOS_TEST_AMQP_URL='" << raw << "' is not an amqp:// URL.\n" << kHowToStart);
    }
    BrokerUrl url;
    url.host = info.host;
    url.port = info.port;
    url.vhost = info.vhost;
    url.username = info.user;
    url.password = info.password;
    return url;
}

sdk::Options broker_options(const BrokerUrl& url, const std::map<std::string, std::string>& extra) {
    std::map<std::string, std::string> values{{"host", url.host},
                                              {"port", std::to_string(url.port)},
                                              {"vhost", url.vhost},
                                              {"username", url.username},
                                              {"password", url.password},
                                              {"connect_timeout_ms", "5000"},
                                              {"reconnect_max_backoff_ms", "1000"}};
    for (const auto& [key, value] : extra) {
        values[key] = value;
    }
    return sdk::Options(values);
}

// --- AmqpAdmin --------------------------------------------------------------------------------

AmqpAdmin::AmqpAdmin(const BrokerUrl& url) : url_(url) { reconnect(); }

AmqpAdmin::~AmqpAdmin() {
    if (conn_ != nullptr) {
        amqp_connection_close(state(conn_), AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(state(conn_));
    }
}

void AmqpAdmin::reconnect() {
    if (conn_ != nullptr) {
        amqp_destroy_connection(state(conn_));
        conn_ = nullptr;
    }
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t* socket = amqp_tcp_socket_new(conn);
    timeval timeout{10, 0};
    if (amqp_socket_open_noblock(socket, url_.host.c_str(), url_.port, &timeout) !=
        AMQP_STATUS_OK) {
        amqp_destroy_connection(conn);
        FAIL("cannot reach the broker at " << url_.endpoint() << ".\n" << kHowToStart);
    }
    amqp_rpc_reply_t login =
        amqp_login(conn, url_.vhost.c_str(), 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                   url_.username.c_str(), url_.password.c_str());
    if (login.reply_type != AMQP_RESPONSE_NORMAL) {
        amqp_destroy_connection(conn);
        FAIL("cannot log in to the broker at " << url_.endpoint() << ": " << reply_text(login));
    }
    amqp_set_rpc_timeout(conn, &timeout);
    conn_ = conn;
    reopen_channel();
}

void AmqpAdmin::reopen_channel() {
    amqp_channel_open(state(conn_), 1);
    amqp_rpc_reply_t reply = amqp_get_rpc_reply(state(conn_));
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
        FAIL("admin channel: " << reply_text(reply));
    }
}

void AmqpAdmin::delete_queue(const std::string& name) {
    amqp_queue_delete(state(conn_), 1, amqp_cstring_bytes(name.c_str()), 0, 0);
    amqp_rpc_reply_t reply = amqp_get_rpc_reply(state(conn_));
    if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
        amqp_channel_close_ok_t ok{};
        amqp_send_method(state(conn_), 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        reopen_channel();
    } else if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
        reconnect();  // e.g. after a broker restart
        amqp_queue_delete(state(conn_), 1, amqp_cstring_bytes(name.c_str()), 0, 0);
    }
}

std::string AmqpAdmin::declare(const std::string& name, bool durable, int max_priority,
                               const std::string& dead_letter_queue) {
    amqp_table_entry_t entries[3];
    int count = 0;
    if (max_priority > 0) {
        entries[count].key = amqp_cstring_bytes("x-max-priority");
        entries[count].value.kind = AMQP_FIELD_KIND_I32;
        entries[count].value.value.i32 = max_priority;
        ++count;
    }
    if (!dead_letter_queue.empty()) {
        entries[count].key = amqp_cstring_bytes("x-dead-letter-exchange");
        entries[count].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[count].value.value.bytes = amqp_empty_bytes;
        ++count;
        entries[count].key = amqp_cstring_bytes("x-dead-letter-routing-key");
        entries[count].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[count].value.value.bytes = amqp_cstring_bytes(dead_letter_queue.c_str());
        ++count;
    }
    amqp_table_t arguments{count, entries};
    amqp_queue_declare(state(conn_), 1, amqp_cstring_bytes(name.c_str()), 0, durable ? 1 : 0, 0, 0,
                       arguments);
    amqp_rpc_reply_t reply = amqp_get_rpc_reply(state(conn_));
    std::string text = reply_text(reply);
    if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
        amqp_channel_close_ok_t ok{};
        amqp_send_method(state(conn_), 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        reopen_channel();
    }
    return text;
}

bool AmqpAdmin::exists(const std::string& name) {
    amqp_queue_declare(state(conn_), 1, amqp_cstring_bytes(name.c_str()), 1, 0, 0, 0,
                       amqp_empty_table);
    amqp_rpc_reply_t reply = amqp_get_rpc_reply(state(conn_));
    if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
        amqp_channel_close_ok_t ok{};
        amqp_send_method(state(conn_), 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        reopen_channel();
        return false;
    }
    return reply.reply_type == AMQP_RESPONSE_NORMAL;
}

// --- rabbitmqctl ------------------------------------------------------------------------------

int rabbitmqctl(const std::string& args) {
    const char* ctl = std::getenv("SYNERGOS_TEST_RABBITMQCTL");
    if (ctl == nullptr || *ctl == '\0') {
        FAIL(
            "SYNERGOS_TEST_RABBITMQCTL is not set: this test restarts the broker with "
            "`rabbitmqctl stop_app; rabbitmqctl start_app` and needs its path, e.g. "
            "export SYNERGOS_TEST_RABBITMQCTL=$(command -v rabbitmqctl) (run as a user allowed "
            "to control the broker).\n"
            << kHowToStart);
    }
    // `timeout` bounds the wait even if the broker hangs.
    const std::string command = "timeout 180 " + std::string(ctl) + " " + args + " >/dev/null 2>&1";
    const int status = std::system(command.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

BrokerRestart::BrokerRestart() = default;

BrokerRestart::~BrokerRestart() {
    if (stopped_) {
        rabbitmqctl("start_app");
        rabbitmqctl("await_startup");
    }
}

void BrokerRestart::stop_app() {
    REQUIRE(rabbitmqctl("stop_app") == 0);
    stopped_ = true;
}

void BrokerRestart::start_app() {
    REQUIRE(rabbitmqctl("start_app") == 0);
    stopped_ = false;
    REQUIRE(rabbitmqctl("await_startup") == 0);
}

// --- RabbitBackend ----------------------------------------------------------------------------

RabbitBackend::RabbitBackend(std::map<std::string, std::string> extra)
    : url_(require_broker_url()),
      extra_(std::move(extra)),
      admin_(std::make_unique<AmqpAdmin>(url_)) {}

RabbitBackend::~RabbitBackend() {
    for (const auto& name : queues_) {
        admin_->delete_queue(name);
    }
}

std::unique_ptr<sdk::MessageQueue> RabbitBackend::make_unstarted(
    const std::map<std::string, std::string>& extra) {
    auto values = extra_;
    for (const auto& [key, value] : extra) {
        values[key] = value;
    }
    return std::make_unique<plugins::rabbitmq::RabbitMqQueue>(host_, broker_options(url_, values));
}

std::unique_ptr<sdk::MessageQueue> RabbitBackend::make_queue() {
    auto queue = make_unstarted();
    require_ok(queue->start());
    return queue;
}

std::string RabbitBackend::unique_queue(const std::string& base) {
    std::string name = "synergos-test-" + base + "-" + random_suffix();
    queues_.push_back(name);
    return name;
}

}  // namespace synergos::tests::mq
