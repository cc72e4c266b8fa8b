// SPDX-License-Identifier: Apache-2.0
#pragma once

/// What the broker tests share: the broker address from SYNERGOS_TEST_AMQP_URL (the tests fail,
/// never skip, when it is unset), a raw rabbitmq-c admin connection used to delete test queues
/// and to check what the plugin declared, `rabbitmqctl` for restarts, and the scenario backend.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <synergos/sdk/message_queue.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "plugins/mq/memory/mq_scenarios.hpp"

namespace synergos::tests::mq {

/// Extra plugin options for a test.
using Extra = std::map<std::string, std::string>;

struct BrokerUrl {
    std::string host;
    int port = 5672;
    std::string vhost;
    std::string username;
    std::string password;
    /// "host:port", as the plugin's error messages print it.
    std::string endpoint() const { return host + ":" + std::to_string(port); }
};

/// The broker from SYNERGOS_TEST_AMQP_URL; FAILs the test with instructions when unset or bad.
BrokerUrl require_broker_url();

/// Plugin options for `url`, plus `extra` (which wins).
sdk::Options broker_options(const BrokerUrl& url,
                            const std::map<std::string, std::string>& extra = {});

/// A plain rabbitmq-c connection for test bookkeeping (never used by the code under test).
class AmqpAdmin {
public:
    explicit AmqpAdmin(const BrokerUrl& url);
    ~AmqpAdmin();
    AmqpAdmin(const AmqpAdmin&) = delete;
    AmqpAdmin& operator=(const AmqpAdmin&) = delete;

    /// Deletes a queue (missing queues are fine).
    void delete_queue(const std::string& name);
    /// Declares `name` durable or not, with `x-max-priority` (0: none) and optional dead-letter
    /// routing. Returns "" on success, else the broker's refusal text (e.g. PRECONDITION_FAILED).
    std::string declare(const std::string& name, bool durable, int max_priority,
                        const std::string& dead_letter_queue);
    /// True when the queue exists (passive declare).
    bool exists(const std::string& name);

private:
    void reconnect();
    void reopen_channel();

    BrokerUrl url_;
    void* conn_ = nullptr;  ///< amqp_connection_state_t, kept out of this header
};

/// Runs `rabbitmqctl <args>` from SYNERGOS_TEST_RABBITMQCTL (FAILs with instructions when
/// unset); returns its exit code.
int rabbitmqctl(const std::string& args);

/// Stops the broker application; the destructor starts it again (and waits for it) if the test
/// did not, so a failing test never leaves the broker down.
class BrokerRestart {
public:
    BrokerRestart();
    ~BrokerRestart();
    void stop_app();
    void start_app();

private:
    bool stopped_ = false;
};

/// The scenario backend for a real broker.
class RabbitBackend final : public Backend {
public:
    explicit RabbitBackend(std::map<std::string, std::string> extra = {});
    ~RabbitBackend() override;

    std::unique_ptr<sdk::MessageQueue> make_queue() override;
    std::string unique_queue(const std::string& base) override;
    bool requeue_keeps_position() const override { return false; }

    /// A queue built with the backend's options plus `extra`, not started.
    std::unique_ptr<sdk::MessageQueue> make_unstarted(
        const std::map<std::string, std::string>& extra = {});
    const BrokerUrl& url() const { return url_; }
    AmqpAdmin& admin() { return *admin_; }
    sdk::testing::FakeHost& host() { return host_; }

private:
    BrokerUrl url_;
    std::map<std::string, std::string> extra_;
    std::unique_ptr<AmqpAdmin> admin_;
    std::vector<std::string> queues_;
    sdk::testing::FakeHost host_;
};

}  // namespace synergos::tests::mq
