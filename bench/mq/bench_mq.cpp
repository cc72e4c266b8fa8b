// SPDX-License-Identifier: Apache-2.0
// bench_mq: messages per second through the rabbitmq plugin (publish with confirm; consume with
// manual ack and a prefetch) next to the bare rabbitmq-c baseline, both in the same run against
// the same broker, alternating in small blocks, median of several rounds.
//
// Usage: bench_mq [--url amqp://...] [--messages N] [--body-bytes B] [--rounds R]
//                 [--prefetch P[,P...]]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <memory>
#include <utility>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <synergos/sdk/testing/fake_host.hpp>

#include "amqp_baseline.hpp"
#include "rabbitmq_queue.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using synergos::bench::mq::BaselineOptions;
constexpr std::size_t kBlock = 50;  ///< messages per alternation block
constexpr std::size_t kWarmup = 50;
namespace sdk = synergos::sdk;

struct Config {
    std::string url = "amqp://guest:guest@127.0.0.1:5672/%2f";
    std::size_t messages = 2000;
    std::size_t body_bytes = 256;
    int rounds = 3;
    std::vector<std::uint16_t> prefetches = {1, 32};
};

std::string unique_queue(const std::string& base) {
    std::random_device device;
    std::ostringstream name;
    name << "synergos-bench-" << base << "-" << std::hex << device() << device();
    return name.str();
}

double rate(std::size_t messages, Clock::duration elapsed) {
    const double seconds = std::chrono::duration<double>(elapsed).count();
    return seconds > 0 ? static_cast<double>(messages) / seconds : 0.0;
}

/// The same workload as AmqpBaselineClient, through MessageQueue/Consumer.
class PluginSide {
public:
    PluginSide(const Config& config, std::uint16_t prefetch)
        : url_(config.url),
          name_(unique_queue("plugin")),
          body_(config.body_bytes, 'x'),
          prefetch_(prefetch),
          queue_(host_, sdk::Options(synergos::bench::mq::plugin_options(config.url))) {
        check(queue_.start(), "start");
        check(queue_.declare({name_, 0, ""}), "declare");
    }
    ~PluginSide() {
        if (consumer_) {
            consumer_->close();
            consumer_.reset();
        }
        queue_.stop();
        try {
            synergos::bench::mq::delete_amqp_queue(url_, name_);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "bench_mq: cannot delete queue %s: %s\n", name_.c_str(), e.what());
        }
    }

    void publish(std::size_t count) {
        for (std::size_t i = 0; i < count; ++i) {
            sdk::Message message;
            message.id = "plugin-" + std::to_string(++published_);
            message.body = body_;
            check(queue_.publish(name_, message, std::chrono::seconds(10)), "publish");
        }
    }

    void consume(std::size_t count) {
        if (!consumer_) {
            auto consumer = queue_.consume(name_, prefetch_);
            check(consumer.status(), "consume");
            consumer_ = std::move(*consumer);
        }
        for (std::size_t i = 0; i < count; ++i) {
            auto delivery = consumer_->receive(std::chrono::seconds(10));
            check(delivery.status(), "receive");
            if (!delivery->has_value()) {
                throw std::runtime_error("plugin receive: no message within 10 s");
            }
            check(consumer_->ack((*delivery)->tag), "ack");
        }
    }

private:
    static void check(const sdk::Status& status, const char* what) {
        if (!status) {
            throw std::runtime_error(std::string("plugin ") + what + ": " + status.message());
        }
    }

    std::string url_;
    std::string name_;
    std::string body_;
    std::uint16_t prefetch_;
    std::uint64_t published_ = 0;
    sdk::testing::FakeHost host_;
    synergos::plugins::rabbitmq::RabbitMqQueue queue_;
    std::unique_ptr<sdk::Consumer> consumer_;
};

struct Rates {
    double publish = 0;
    double consume = 0;
    double overall = 0;
};

/// One round: baseline and plugin alternate in blocks (order flipped every block), so both see
/// the same load on a shared machine; each side's rate comes from its own summed time.
std::pair<Rates, Rates> run_round(const Config& config, std::uint16_t prefetch) {
    synergos::bench::mq::AmqpBaselineClient base(config.url, unique_queue("baseline"),
                                                 BaselineOptions{config.body_bytes, prefetch});
    PluginSide plugin(config, prefetch);
    // Warm-up, not timed: first frames, queue processes, consumer subscription.
    base.publish(kWarmup);
    plugin.publish(kWarmup);
    base.consume(kWarmup);
    plugin.consume(kWarmup);

    Clock::duration base_publish{};
    Clock::duration plugin_publish{};
    Clock::duration base_consume{};
    Clock::duration plugin_consume{};
    auto timed = [](auto&& step, Clock::duration& total) {
        const auto begin = Clock::now();
        step();
        total += Clock::now() - begin;
    };
    const std::size_t blocks = (config.messages + kBlock - 1) / kBlock;
    for (std::size_t b = 0; b < blocks; ++b) {
        const std::size_t count = std::min(kBlock, config.messages - b * kBlock);
        auto base_step = [&] { timed([&] { base.publish(count); }, base_publish); };
        auto plugin_step = [&] { timed([&] { plugin.publish(count); }, plugin_publish); };
        if (b % 2 == 0) {
            base_step();
            plugin_step();
        } else {
            plugin_step();
            base_step();
        }
    }
    for (std::size_t b = 0; b < blocks; ++b) {
        const std::size_t count = std::min(kBlock, config.messages - b * kBlock);
        auto base_step = [&] { timed([&] { base.consume(count); }, base_consume); };
        auto plugin_step = [&] { timed([&] { plugin.consume(count); }, plugin_consume); };
        if (b % 2 == 0) {
            base_step();
            plugin_step();
        } else {
            plugin_step();
            base_step();
        }
    }
    const std::size_t n = config.messages;
    return {
        Rates{rate(n, base_publish), rate(n, base_consume), rate(n, base_publish + base_consume)},
        Rates{rate(n, plugin_publish), rate(n, plugin_consume),
              rate(n, plugin_publish + plugin_consume)}};
}

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    const std::size_t n = values.size();
    return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

void print_row(const std::string& label, double baseline, double plugin) {
    std::printf("  %-28s baseline rabbitmq-c %9.0f msg/s   plugin %9.0f msg/s   ratio %.2f\n",
                label.c_str(), baseline, plugin, baseline > 0 ? plugin / baseline : 0.0);
}

Config parse(int argc, char** argv) {
    Config config;
    for (const char* env : {"SYNERGOS_BENCH_AMQP_URL", "SYNERGOS_TEST_AMQP_URL"}) {
        if (const char* value = std::getenv(env); value != nullptr && *value != '\0') {
            config.url = value;
            break;
        }
    }
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (i + 1 >= argc) {
            throw std::runtime_error("missing value after " + arg);
        }
        const std::string value = argv[++i];
        if (arg == "--url") {
            config.url = value;
        } else if (arg == "--messages") {
            config.messages = std::stoul(value);
        } else if (arg == "--body-bytes") {
            config.body_bytes = std::stoul(value);
        } else if (arg == "--rounds") {
            config.rounds = std::max(1, std::stoi(value));
        } else if (arg == "--prefetch") {
            config.prefetches.clear();
            std::stringstream list(value);
            std::string item;
            while (std::getline(list, item, ',')) {
                const unsigned long prefetch = std::stoul(item);
                if (prefetch == 0 || prefetch > 65535) {
                    throw std::runtime_error("--prefetch values must be 1..65535");
                }
                config.prefetches.push_back(static_cast<std::uint16_t>(prefetch));
            }
        } else {
            throw std::runtime_error("unknown argument " + arg);
        }
    }
    if (config.messages == 0 || config.prefetches.empty()) {
        throw std::runtime_error("--messages and --prefetch must not be empty or zero");
    }
    return config;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Config config = parse(argc, argv);
        std::printf(
            "bench_mq: %zu messages of %zu B per run, durable queue, persistent, "
            "confirmed one by one, manual ack; baseline and plugin alternate in blocks of "
            "%zu; median of %d rounds\n",
            config.messages, config.body_bytes, kBlock, config.rounds);
        std::vector<double> publish_base;
        std::vector<double> publish_plugin;
        std::map<std::uint16_t, std::vector<double>> consume_base;
        std::map<std::uint16_t, std::vector<double>> consume_plugin;
        std::map<std::uint16_t, std::vector<double>> overall_base;
        std::map<std::uint16_t, std::vector<double>> overall_plugin;
        for (int round = 0; round < config.rounds; ++round) {
            for (std::uint16_t prefetch : config.prefetches) {
                const auto [base, plugin] = run_round(config, prefetch);
                publish_base.push_back(base.publish);
                publish_plugin.push_back(plugin.publish);
                consume_base[prefetch].push_back(base.consume);
                consume_plugin[prefetch].push_back(plugin.consume);
                overall_base[prefetch].push_back(base.overall);
                overall_plugin[prefetch].push_back(plugin.overall);
            }
        }
        print_row("publish + confirm", median(publish_base), median(publish_plugin));
        for (std::uint16_t prefetch : config.prefetches) {
            print_row("consume + ack (prefetch " + std::to_string(prefetch) + ")",
                      median(consume_base[prefetch]), median(consume_plugin[prefetch]));
        }
        for (std::uint16_t prefetch : config.prefetches) {
            print_row("overall (prefetch " + std::to_string(prefetch) + ")",
                      median(overall_base[prefetch]), median(overall_plugin[prefetch]));
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr,
                     "bench_mq: %s\nA RabbitMQ broker is needed: rabbitmq-server -detached && "
                     "rabbitmqctl await_startup (as root), then set SYNERGOS_BENCH_AMQP_URL or "
                     "pass --url.\n",
                     e.what());
        return 1;
    }
}
