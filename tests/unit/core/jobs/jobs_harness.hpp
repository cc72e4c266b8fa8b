// SPDX-License-Identifier: Apache-2.0
#pragma once

// A director job service and TTP runners wired to a real store (sqlite), a real queue backend
// (memory, or a RabbitMQ broker from SYNERGOS_TEST_AMQP_URL) and the fixture TTP function.

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "fixture_function.hpp"
#include "memory_queue.hpp"
#if SYNERGOS_HAVE_RABBITMQ
#include "rabbitmq_queue.hpp"
#endif
#include "sqlite_storage.hpp"
#include "synergos/core/jobs/job_service.hpp"
#include "synergos/core/jobs/ttp_runner.hpp"
#include <synergos/sdk/testing/fake_host.hpp>

namespace synergos::test {

using nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

enum class Backend { Memory, RabbitMq };

inline sdk::Options opts(std::map<std::string, std::string> values) { return sdk::Options(std::move(values)); }

inline std::string random_suffix() {
    std::mt19937_64 rng{std::random_device{}()};
    return std::to_string(rng() % 1000000000ULL);
}

/// Broker options from SYNERGOS_TEST_AMQP_URL (amqp://user:pass@host:port/vhost).
inline std::map<std::string, std::string> amqp_options() {
    const char* url = std::getenv("SYNERGOS_TEST_AMQP_URL");
    if (url == nullptr) {
        FAIL("SYNERGOS_TEST_AMQP_URL is not set: start a broker (scripts/start-rabbitmq.sh) and export "
             "SYNERGOS_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f, or exclude with -LE rabbitmq");
    }
    std::string u = url;
    std::map<std::string, std::string> o{{"host", "127.0.0.1"}, {"port", "5672"}, {"vhost", "/"},
                                         {"username", "guest"}, {"password", "guest"}};
    auto rest = u.substr(u.find("://") + 3);
    if (auto at = rest.find('@'); at != std::string::npos) {
        auto cred = rest.substr(0, at);
        o["username"] = cred.substr(0, cred.find(':'));
        o["password"] = cred.substr(cred.find(':') + 1);
        rest = rest.substr(at + 1);
    }
    auto slash = rest.find('/');
    auto hostport = rest.substr(0, slash);
    o["host"] = hostport.substr(0, hostport.find(':'));
    if (hostport.find(':') != std::string::npos) {
        o["port"] = hostport.substr(hostport.find(':') + 1);
    }
    return o;
}

struct Harness {
    explicit Harness(Backend backend, int grids = 2)
        : backend(backend),
          dir(fs::temp_directory_path() / ("synergos-jobs-" + random_suffix())),
          host(dir.string(), "test") {
        fs::create_directories(dir / "data");
        fs::create_directories(dir / "logs");
        storage = std::make_unique<plugins::sqlite::SqliteStorage>(
            host, opts({{"path", (dir / "data" / "store.db").string()}}));
        REQUIRE(storage->start());
        fixture = std::make_unique<fixtures::FixtureFunction>(
            host, opts({{"processes", "noop,preprocess,train,validate"}}));
        for (const char* p : {"noop", "preprocess", "train", "validate"}) {
            registry[p] = fixture.get();
        }
        topology.prefix = "synergos-test-" + random_suffix();
        for (int g = 0; g < grids; ++g) {
            grid_nodes.push_back(json::array({json{{"participant_id", "p1"}, {"host", "127.0.0.1"}, {"port", 1}}}));
        }
    }

    ~Harness() {
        lose_memory_broker();
        std::error_code ec;
        fs::remove_all(dir, ec);
    }

    /// A process restart with the in-process broker: every role stopped, and the broker, with
    /// all it held, gone. The next new_queue() starts an empty one.
    void lose_memory_broker() {
        for (auto& t : ttps) {
            t->stop();
        }
        if (service) {
            service->stop();
        }
        ttps.clear();
        service.reset();
        for (auto& q : queues) {
            q->stop();
        }
        queues.clear();
    }

    sdk::MessageQueue& new_queue() {
        if (backend == Backend::Memory && !queues.empty()) {
            return *queues.front();  // one in-process broker shared by every role
        }
        std::unique_ptr<sdk::MessageQueue> q;
        if (backend == Backend::Memory) {
            q = std::make_unique<plugins::memory::MemoryQueue>(host, opts(memory_options));
        } else {
#if SYNERGOS_HAVE_RABBITMQ
            q = std::make_unique<plugins::rabbitmq::RabbitMqQueue>(host, opts(amqp_options()));
#else
            FAIL("the rabbitmq plugin was not built (librabbitmq-dev missing?)");
#endif
        }
        REQUIRE(q->start());
        queues.push_back(std::move(q));
        return *queues.back();
    }

    /// A new director service on the harness's store and queue (replacing a stopped one: a
    /// restart), running `director_processes` itself.
    void start_director(int max_attempts = 3, std::set<std::string> director_processes = {"optimize"}) {
        core::jobs::JobServiceOptions o;
        o.max_attempts = max_attempts;
        o.director_processes = std::move(director_processes);
        o.outputs_dir = (dir / "outputs").string();
        o.topology = topology;
        o.volatile_queue = volatile_queue;
        o.publish_timeout = publish_timeout;
        sdk::StorageBackend& store = service_storage != nullptr ? *service_storage : *storage;
        service = std::make_unique<core::jobs::JobService>(store, new_queue(), host.logger(), registry, nullptr, o);
        REQUIRE(service->start());
    }

    core::jobs::TtpRunner& start_ttp(int grid, std::chrono::milliseconds job_timeout = std::chrono::hours(24)) {
        core::jobs::TtpRunnerOptions o;
        o.grid = grid;
        o.job_timeout = job_timeout;
        o.retry_pause = retry_pause;
        if (started_delay) {
            o.started_delay = *started_delay;
        }
        o.receive_timeout = ttp_receive_timeout;
        o.ttp_id = "ttp-" + std::to_string(grid);
        o.outputs_dir = (dir / "outputs").string();
        o.topology = topology;
        ttps.push_back(std::make_unique<core::jobs::TtpRunner>(new_queue(), host.logger(), registry, workers,
                                                               nullptr, o));
        REQUIRE(ttps.back()->start());
        return *ttps.back();
    }

    core::jobs::JobSpec spec(const std::string& process, json params, int grid = -1) {
        params["log_dir"] = (dir / "logs").string();
        core::jobs::JobSpec s;
        s.process = process;
        s.filters = {"c1", "p1", "e1", "r1"};
        s.keys = {{"collab_id", "c1"}, {"project_id", "p1"}, {"expt_id", "e1"}, {"run_id", "r1"}};
        s.grids = grid_nodes;
        s.parameters = std::move(params);
        s.grid = grid;
        return s;
    }

    /// Writes a train job's record straight into the store, as a crash or an earlier process
    /// left it; its message is what the service publishes for `params` on grid 0.
    core::jobs::JobRecord put_job(const std::string& id, const std::string& state, const std::string& reason,
                                  json params, int attempts = 0) {
        params["log_dir"] = (dir / "logs").string();
        core::jobs::JobRecord job;
        job.job_id = id;
        job.process = "train";
        job.state = state;
        job.reason = reason;
        job.attempts = attempts;
        job.message = {{"job_id", id},          {"process", "train"}, {"keys", {"c1", "p1", "e1", "r1"}},
                       {"grid", 0},             {"grids", grid_nodes}, {"parameters", std::move(params)},
                       {"attempt", 1},          {"max_attempts", 3}};
        REQUIRE(storage->apply({core::jobs::JobStore(*storage).insert_mutation(job)}));
        return job;
    }

    std::vector<std::string> submit(const std::vector<core::jobs::JobSpec>& specs) {
        auto jobs = service->submit(specs);
        INFO("submit: " << (jobs ? std::string("ok") : jobs.error().message));
        REQUIRE(jobs);
        std::vector<std::string> ids;
        for (const auto& j : *jobs) {
            ids.push_back(j.job_id);
        }
        return ids;
    }

    /// Waits (bounded) until grid `grid`'s job queue holds `count` ready jobs: a submit returns
    /// once its records are durable, and its jobs are published just after.
    void await_published(int grid, std::uint64_t count, std::chrono::milliseconds timeout = 10s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        std::uint64_t seen = 0;
        while (std::chrono::steady_clock::now() < deadline) {
            auto depth = queues.front()->depth(topology.jobs(grid));
            REQUIRE(depth);
            seen = *depth;
            if (seen >= count) {
                return;
            }
            std::this_thread::sleep_for(5ms);
        }
        FAIL("grid " << grid << " holds " << seen << " jobs, not " << count << ", after " << timeout.count() << " ms");
    }

    core::jobs::JobRecord wait(const std::string& id, std::chrono::milliseconds timeout = 60s) {
        auto j = service->wait(id, timeout);
        REQUIRE(j);
        return *j;
    }

    /// Lines of logs/<file> split into their first field (the job id), counted.
    std::map<std::string, int> log_counts(const char* file) const {
        std::map<std::string, int> counts;
        std::ifstream in(dir / "logs" / file);
        std::string id;
        std::string line;
        while (std::getline(in, line)) {
            counts[line.substr(0, line.find(' '))]++;
        }
        return counts;
    }
    std::vector<std::string> log_lines(const char* file) const {
        std::vector<std::string> lines;
        std::ifstream in(dir / "logs" / file);
        std::string line;
        while (std::getline(in, line)) {
            lines.push_back(line);
        }
        return lines;
    }
    /// The lines of `file` once it has `count` (steps after a commit, such as a function's
    /// after_unsuccessful, run after the job's state is visible), or what it has after 15 s.
    std::vector<std::string> log_lines_once(const char* file, std::size_t count) const {
        for (int i = 0; i < 300; ++i) {
            auto lines = log_lines(file);
            if (lines.size() >= count) {
                return lines;
            }
            std::this_thread::sleep_for(50ms);
        }
        return log_lines(file);
    }

    Backend backend;
    bool volatile_queue = false;  ///< start_director: the service treats the queue as volatile
    sdk::StorageBackend* service_storage = nullptr;  ///< start_director: a double over `storage`
    std::chrono::milliseconds publish_timeout{30000};  ///< start_director: the service's bound
    std::chrono::milliseconds retry_pause{10};  ///< start_ttp: short, so retried jobs stay fast
    std::chrono::milliseconds ttp_receive_timeout{250};  ///< start_ttp: its loops' longest wait
    fs::path dir;
    sdk::testing::FakeHost host;
    std::unique_ptr<plugins::sqlite::SqliteStorage> storage;
    std::unique_ptr<fixtures::FixtureFunction> fixture;
    core::jobs::FunctionRegistry registry;
    core::jobs::Topology topology;
    json grid_nodes = json::array();
    sdk::WorkerClient* workers = nullptr;  ///< the TTPs' worker client (none by default)
    std::optional<std::chrono::milliseconds> started_delay;  ///< start_ttp: the TTP's default if unset
    std::vector<std::unique_ptr<sdk::MessageQueue>> queues;
    std::map<std::string, std::string> memory_options;  ///< for the memory backend
    std::unique_ptr<core::jobs::JobService> service;
    std::vector<std::unique_ptr<core::jobs::TtpRunner>> ttps;
};

}  // namespace synergos::test
