// SPDX-License-Identifier: Apache-2.0
#pragma once

// A whole Synergos deployment in one test process, every hop real: a director (sqlite store,
// in-process queue, job service, REST API on a loopback port) with its embedded TTP for grid 0
// (the real align/train/validate/predict functions, fedavg/fedprox, worker calls over HTTP), and
// workers (tabular data, libtorch models) each serving the worker protocol on its own port.

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "align_function.hpp"
#include "evaluation.hpp"
#include "fedavg.hpp"
#include "fedprox.hpp"
#if __has_include("image_pipeline.hpp")  // the image plugin is built only where stb is installed
#include "image_pipeline.hpp"
#define SYNERGOS_E2E_HAVE_IMAGE 1
#endif
#include "memory_queue.hpp"
#include "sqlite_storage.hpp"
#include "synergos/core/http/client.hpp"
#include "synergos/core/http/server.hpp"
#include "synergos/core/jobs/job_service.hpp"
#include "synergos/core/jobs/ttp_runner.hpp"
#include "synergos/core/rest/connect_routes.hpp"
#include "synergos/core/roles/director_routes.hpp"
#include "synergos/core/roles/worker_client.hpp"
#include "synergos/core/worker/service.hpp"
#include "tabular_pipeline.hpp"
#include "torch_backend.hpp"
#include "train_function.hpp"
#include <synergos/sdk/testing/fake_host.hpp>

namespace synergos::e2e {

using nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

inline sdk::Options opts(std::map<std::string, std::string> v = {}) { return sdk::Options(std::move(v)); }

inline fs::path temp_root(const std::string& name) {
    std::mt19937_64 rng{std::random_device{}()};
    fs::path p = fs::temp_directory_path() / ("synergos-e2e-" + name + "-" + std::to_string(rng() % 1000000000ULL));
    fs::create_directories(p);
    return p;
}

/// Serves a worker service's protocol routes on a loopback port (started, or the test fails).
/// `before` (when set) runs ahead of each request, on the server's thread: a test holds a
/// call there to make it slow.
inline std::unique_ptr<core::http::HttpServer> serve_worker(
    core::worker::WorkerService& service, core::http::Router& router, sdk::Logger& logger,
    std::function<void(const core::http::Request&)> before = {}) {
    auto forward = [&service, before = std::move(before)](const core::http::Request& req) {
        if (before) {
            before(req);
        }
        auto out = service.handle({req.method, req.path, req.header("content-type"), req.body});
        core::http::Response r;
        r.status = out.status;
        r.content_type = out.content_type;
        r.body = std::move(out.body);
        return r;
    };
    router.add("GET", "/v1/health", forward);
    router.add("POST", "/v1/projects/{c}/{p}/poll", forward);
    for (const char* a : {"initialise", "train", "evaluate", "terminate"}) {
        router.add("POST", std::string("/v1/runs/{c}/{p}/{e}/{r}/") + a, forward);
    }
    core::http::ServerOptions so;
    so.port = 0;
    so.body_limit_bytes = 256 << 20;
    so.access_log = false;
    auto server = std::make_unique<core::http::HttpServer>(so, router, logger);
    REQUIRE(server->start());
    return server;
}

/// Sets a promise once: at `now()`, or at the latest when it goes out of scope, so a failed
/// REQUIRE never leaves a request the test holds waiting on it.
struct Release {
    std::promise<void>& promise;
    bool done = false;
    void now() {
        if (!done) {
            done = true;
            promise.set_value();
        }
    }
    ~Release() { now(); }
};

/// One participant's worker: its own data folder (the shared examples), outputs and port.
struct Worker {
    Worker(const std::string& id, const fs::path& root, const fs::path& data_dir)
        : host((root / id).string(), "worker"),
          tabular(host, opts()),
#if defined(SYNERGOS_E2E_HAVE_IMAGE)
          image(host, opts()),
#endif
          model(host, opts()) {
        core::worker::WorkerServiceConfig c;
        c.participant_id = id;
        c.data_dir = data_dir.string();
        c.outputs_dir = (root / id / "outputs").string();
        c.pipelines["tabular"] = &tabular;
#if defined(SYNERGOS_E2E_HAVE_IMAGE)
        c.pipelines["image"] = &image;
#endif
        c.model = &model;
        c.logger = &host.logger();
        service = std::make_unique<core::worker::WorkerService>(c);
        server = serve_worker(*service, router, host.logger(), [this](const core::http::Request& req) {
            if (before_request) {
                before_request(req);
            }
        });
    }
    ~Worker() { server->stop(5s); }
    int port() const { return server->bound_port(); }

    /// Set before the worker is used (not while it serves): runs ahead of each request.
    std::function<void(const core::http::Request&)> before_request;
    sdk::testing::FakeHost host;
    plugins::tabular::TabularPipeline tabular;
#if defined(SYNERGOS_E2E_HAVE_IMAGE)
    plugins::image::ImagePipeline image;
#endif
    plugins::torch::TorchBackend model;
    std::unique_ptr<core::worker::WorkerService> service;
    core::http::Router router;
    std::unique_ptr<core::http::HttpServer> server;
};

/// The standalone director with its embedded TTP for grid 0.
struct Director {
    /// `extra` adds aggregators (owned by the caller) to fedavg and fedprox.
    explicit Director(const fs::path& root, std::map<std::string, sdk::Aggregator*> extra = {})
        : host(root.string(), "director"),
          storage(host, opts({{"path", (root / "store.db").string()}})),
          mq(host, opts()),
          align(host, opts()),
          train(host, opts()),
          validate({"validate", "evaluate", "Validation", false}, host, opts()),
          predict({"predict", "predict", "Prediction", false}, host, opts()),
          fedavg(host, opts()),
          fedprox(host, opts()),
          aggregators(std::move(extra)),
          workers(http) {
        aggregators.emplace("fedavg", &fedavg);
        aggregators.emplace("fedprox", &fedprox);
        REQUIRE(storage.start());
        REQUIRE(mq.start());
        core::jobs::FunctionRegistry registry{
            {"preprocess", &align}, {"train", &train}, {"validate", &validate}, {"predict", &predict}};
        core::jobs::JobServiceOptions jo;
        jo.outputs_dir = (root / "outputs").string();
        jobs = std::make_unique<core::jobs::JobService>(storage, mq, host.logger(), registry, nullptr, jo);
        REQUIRE(jobs->start());
        start_ttp(registry, root);
        auto merger = core::rest::register_connect_routes(router, storage, host.logger());
        core::roles::register_director_routes(router,
                                              {storage, *jobs, host.logger(), &model_check, merger});
        core::http::ServerOptions so;
        so.port = 0;
        so.access_log = false;
        server = std::make_unique<core::http::HttpServer>(so, router, host.logger());
        REQUIRE(server->start());
    }
    ~Director() {
        server->stop(5s);
        if (ttp) {
            ttp->stop();
        }
        jobs->stop();
    }

    void start_ttp(const core::jobs::FunctionRegistry& registry, const fs::path& root) {
        core::jobs::TtpRunnerOptions to;
        to.grid = 0;
        to.outputs_dir = (root / "outputs").string();
        ttp = std::make_unique<core::jobs::TtpRunner>(
            mq, host.logger(), registry, &workers,
            [this](const std::string& name) -> sdk::Result<sdk::Aggregator*> {
                const auto it = aggregators.find(name);
                if (it == aggregators.end()) {
                    return sdk::Error{sdk::ErrorCode::Unimplemented, "no aggregator '" + name + "'"};
                }
                return it->second;
            },
            to);
        REQUIRE(ttp->start());
    }

    int port() const { return server->bound_port(); }

    sdk::testing::FakeHost host;
    plugins::sqlite::SqliteStorage storage;
    plugins::memory::MemoryQueue mq;
    plugins::align::AlignFunction align;
    plugins::train::TrainFunction train;
    plugins::ttp::EvaluationFunction validate;
    plugins::ttp::EvaluationFunction predict;
    plugins::fedavg::FedAvg fedavg;
    plugins::fedprox::FedProx fedprox;
    std::map<std::string, sdk::Aggregator*> aggregators;
    plugins::torch::TorchBackend model_check{host, opts()};
    core::http::HttpClient http;
    core::roles::HttpWorkerClient workers;
    std::unique_ptr<core::jobs::JobService> jobs;
    std::unique_ptr<core::jobs::TtpRunner> ttp;
    core::http::Router router;
    std::unique_ptr<core::http::HttpServer> server;
};

/// The Synergos journey over HTTP, as the original driver walks it.
struct Client {
    explicit Client(int port) : port(port) {}

    json call(const std::string& method, const std::string& path, const json& body = nullptr,
              int expect = 0) {
        auto r = http.request(method, "127.0.0.1", static_cast<std::uint16_t>(port), path,
                              body.is_null() ? std::string() : body.dump(), "application/json", 60s);
        REQUIRE(r);
        INFO(method << " " << path << " -> " << r->status << " " << r->body);
        if (expect != 0) {
            REQUIRE(r->status == expect);
        } else {
            REQUIRE(r->status < 300);
        }
        return json::parse(r->body);
    }

    /// Polls the job route until the job ends (the test fails after `timeout`); its last state.
    json finished_job(const std::string& id, std::chrono::seconds timeout = 900s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (true) {
            json j = call("GET", "/v1/jobs/" + id)["data"];
            const std::string s = j["state"];
            if (s == "succeeded" || s == "failed" || s == "cancelled") {
                return j;
            }
            REQUIRE(std::chrono::steady_clock::now() < deadline);
            std::this_thread::sleep_for(100ms);  // polling the REST API, as a client does
        }
    }

    /// Waits for every job of a POST answer; returns the last state of each.
    std::vector<json> wait_jobs(const json& answer, std::chrono::seconds timeout = 900s) {
        std::vector<json> out;
        for (const auto& job : answer.at("jobs")) {
            const std::string id = job["job_id"];
            const json j = finished_job(id, timeout);
            INFO("job " << id << ": " << j.dump());
            REQUIRE(j["state"] == "succeeded");
            out.push_back(j);
        }
        return out;
    }

    /// Registers everything for one project with two participants on the given worker ports.
    void setup(const std::string& c, const std::string& p, const std::string& action, const json& model,
               const json& run, const std::vector<std::pair<std::string, int>>& participants,
               const std::vector<json>& tags) {
        call("POST", "/ttp/connect/collaborations", {{"collab_id", c}}, 201);
        call("POST", "/ttp/connect/collaborations/" + c + "/projects",
             {{"project_id", p}, {"action", action}, {"incentives", {{"tier_1", json::array()}}}}, 201);
        call("POST", "/ttp/connect/collaborations/" + c + "/projects/" + p + "/experiments",
             {{"expt_id", "e1"}, {"model", model}}, 201);
        json r = run;
        r["run_id"] = "r1";
        call("POST", "/ttp/connect/collaborations/" + c + "/projects/" + p + "/experiments/e1/runs", r, 201);
        for (std::size_t i = 0; i < participants.size(); ++i) {
            const auto& [pid, wport] = participants[i];
            call("POST", "/ttp/connect/participants", {{"id", pid}}, 201);
            const std::string reg = "/ttp/connect/collaborations/" + c + "/projects/" + p + "/participants/" + pid +
                                    "/registration";
            call("POST", reg,
                 {{"role", i == 0 ? "host" : "guest"},
                  {"n_count", 1},
                  {"node_0", {{"host", "127.0.0.1"}, {"port", 8020}, {"f_port", wport}, {"log_msgs", false},
                              {"verbose", false}}}},
                 201);
            call("POST", reg + "/tags", tags[i], 201);
        }
    }

    core::http::HttpClient http;
    int port;
};

/// Overall accuracy from the per-class counts: sum(TP) / sum(TP + FN) (every row has exactly one
/// true class, so the denominator is the row count).
inline double overall_accuracy(const json& statistics) {
    double tp = 0;
    double rows = 0;
    for (std::size_t c = 0; c < statistics.at("TPs").size(); ++c) {
        tp += statistics["TPs"][c].get<double>();
        rows += statistics["TPs"][c].get<double>() + statistics["FNs"][c].get<double>();
    }
    return rows > 0 ? tp / rows : 0.0;
}

}  // namespace synergos::e2e
