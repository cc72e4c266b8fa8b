// SPDX-License-Identifier: Apache-2.0
#pragma once

// A director built from parts for the optimize and MLflow suites: any queue backend (in-process
// or a RabbitMQ broker), an optional tracker, the optimize function, and TTP runners started per
// grid, each with its own queue connection and outputs folder as separate TTP processes have.
// Workers and the REST client come from cluster.hpp.

#include <cstdlib>

#include "cluster.hpp"
#include "optimize_function.hpp"

namespace synergos::e2e {

/// Broker options from SYNERGOS_TEST_AMQP_URL (amqp://user:pass@host:port/vhost).
inline std::map<std::string, std::string> amqp_options_from_env() {
    const char* url = std::getenv("SYNERGOS_TEST_AMQP_URL");
    if (url == nullptr) {
        FAIL(
            "SYNERGOS_TEST_AMQP_URL is not set: start a broker (scripts/start-rabbitmq.sh) and "
            "export "
            "SYNERGOS_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f, or exclude with -LE "
            "rabbitmq");
    }
    std::string rest = url;
    rest = rest.substr(rest.find("://") + 3);
    std::map<std::string, std::string> o{{"host", "127.0.0.1"},
                                         {"port", "5672"},
                                         {"vhost", "/"},
                                         {"username", "guest"},
                                         {"password", "guest"}};
    if (auto at = rest.find('@'); at != std::string::npos) {
        const std::string cred = rest.substr(0, at);
        o["username"] = cred.substr(0, cred.find(':'));
        o["password"] = cred.substr(cred.find(':') + 1);
        rest = rest.substr(at + 1);
    }
    const std::string hostport = rest.substr(0, rest.find('/'));
    o["host"] = hostport.substr(0, hostport.find(':'));
    if (hostport.find(':') != std::string::npos) {
        o["port"] = hostport.substr(hostport.find(':') + 1);
    }
    return o;
}

/// One TTP: its runner, its worker client and its own outputs folder.
struct Ttp {
    core::http::HttpClient http;
    std::unique_ptr<core::roles::HttpWorkerClient> workers;
    std::unique_ptr<core::jobs::TtpRunner> runner;
    std::string outputs;
};

struct Rig {
    /// `queue_for` makes a started queue connection per role (the director, then each TTP).
    Rig(const fs::path& root, std::function<sdk::MessageQueue&()> queue_for, sdk::Tracker* tracker,
        core::jobs::Topology topology = {})
        : root(root),
          host(root.string(), "director"),
          storage(host, opts({{"path", (root / "store.db").string()}})),
          align(host, opts()),
          train(host, opts()),
          validate({"validate", "evaluate", "Validation", true}, host, opts()),
          predict({"predict", "predict", "Prediction", false}, host, opts()),
          optimize(host, opts({{"poll_ms", "500"}})),
          fedavg(host, opts()),
          queue_for(std::move(queue_for)),
          topology(std::move(topology)) {
        REQUIRE(storage.start());
        registry = {{"preprocess", &align},
                    {"train", &train},
                    {"validate", &validate},
                    {"predict", &predict},
                    {"optimize", &optimize}};
        core::jobs::JobServiceOptions jo;
        jo.outputs_dir = (root / "outputs").string();
        jo.topology = this->topology;
        jobs = std::make_unique<core::jobs::JobService>(storage, this->queue_for(), host.logger(),
                                                        registry, tracker, jo);
        REQUIRE(jobs->start());
        auto merger = core::rest::register_connect_routes(router, storage, host.logger());
        core::roles::register_director_routes(router,
                                              {storage, *jobs, host.logger(), &model_check, merger});
        core::http::ServerOptions so;
        so.port = 0;
        so.access_log = false;
        server = std::make_unique<core::http::HttpServer>(so, router, host.logger());
        REQUIRE(server->start());
    }
    ~Rig() {
        server->stop(5s);
        for (auto& t : ttps) {
            t->runner->stop();
        }
        jobs->stop();
    }

    /// Starts the TTP of `grid` (train, validate, predict, align; fedavg).
    void start_ttp(int grid) {
        auto t = std::make_unique<Ttp>();
        t->workers = std::make_unique<core::roles::HttpWorkerClient>(t->http);
        t->outputs = (root / ("ttp-" + std::to_string(grid)) / "outputs").string();
        core::jobs::TtpRunnerOptions to;
        to.grid = grid;
        to.ttp_id = "ttp-" + std::to_string(grid);
        to.outputs_dir = t->outputs;
        to.topology = topology;
        core::jobs::FunctionRegistry functions{{"preprocess", &align},
                                               {"train", &train},
                                               {"validate", &validate},
                                               {"predict", &predict}};
        t->runner = std::make_unique<core::jobs::TtpRunner>(
            queue_for(), host.logger(), functions, t->workers.get(),
            [this](const std::string& name) -> sdk::Result<sdk::Aggregator*> {
                if (name == "fedavg") {
                    return static_cast<sdk::Aggregator*>(&fedavg);
                }
                return sdk::Error{sdk::ErrorCode::Unimplemented, "no aggregator '" + name + "'"};
            },
            to);
        REQUIRE(t->runner->start());
        ttps.push_back(std::move(t));
    }

    int port() const {
        return server->bound_port();
    }

    fs::path root;
    sdk::testing::FakeHost host;
    plugins::sqlite::SqliteStorage storage;
    plugins::align::AlignFunction align;
    plugins::train::TrainFunction train;
    plugins::ttp::EvaluationFunction validate;
    plugins::ttp::EvaluationFunction predict;
    plugins::optimize::OptimizeFunction optimize;
    plugins::fedavg::FedAvg fedavg;
    plugins::torch::TorchBackend model_check{host, opts()};
    std::function<sdk::MessageQueue&()> queue_for;
    core::jobs::Topology topology;
    core::jobs::FunctionRegistry registry;
    std::unique_ptr<core::jobs::JobService> jobs;
    std::vector<std::unique_ptr<Ttp>> ttps;
    core::http::Router router;
    std::unique_ptr<core::http::HttpServer> server;
};

/// The heart_disease run every trial starts from (the trials' samples override it).
inline json heart_base_run() {
    return {{"algorithm", "FedAvg"},  {"rounds", 2},         {"epochs", 1},
            {"batch_size", 32},       {"optimizer", "Adam"}, {"lr", 0.01},
            {"criterion", "NLLLoss"}, {"lr_scheduler", ""},  {"seed", 42},
            {"patience", 10}};
}

/// heart_disease tags of participant `n` (1 or 2).
inline json heart_tags(int n) {
    const std::string d = "data" + std::to_string(n);
    return {{"train", {{"heart_disease", d, "iid_" + std::to_string(n)}}},
            {"evaluate", {{"heart_disease", d, "non_iid_" + std::to_string(n)}}},
            {"predict", {{"heart_disease", d, "non_iid_" + std::to_string(n)}}}};
}

}  // namespace synergos::e2e
