// SPDX-License-Identifier: Apache-2.0
// The role loops: what `synergos director`, `synergos ttp` and `synergos worker` run once the
// Runtime has loaded the plugins their config names.
#include <synergos/core/runtime/roles.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <synergos/core/config/security.hpp>
#include <synergos/core/http/client.hpp>
#include <synergos/core/http/server.hpp>
#include <synergos/core/jobs/job_service.hpp>
#include <synergos/core/jobs/ttp_runner.hpp>
#include <synergos/core/rest/connect_routes.hpp>
#include <synergos/core/roles/director_routes.hpp>
#include <synergos/core/roles/worker_client.hpp>
#include <synergos/core/runtime/runtime.hpp>
#include <synergos/core/worker/service.hpp>

#include "dashboard_routes.hpp"

namespace synergos::core {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

/// Records `plugin` as the one handling `what` and returns nullopt, or returns the plugin that
/// already does (two plugins claiming one job process or data type is a configuration error).
std::optional<std::string> claim(std::map<std::string, std::string>& owners, const std::string& what,
                                 const std::string& plugin) {
    auto [it, fresh] = owners.try_emplace(what, plugin);
    return fresh ? std::nullopt : std::optional<std::string>(it->second);
}

/// Which TTP function handles each job process (from each function's `processes()`). Two
/// functions claiming one process is a configuration error naming both: the one listed later
/// used to win silently (a fixture claiming `train` "succeeded" every training, writing nothing).
sdk::Result<jobs::FunctionRegistry> function_registry(Runtime& rt) {
    jobs::FunctionRegistry registry;
    std::map<std::string, std::string> owner;
    for (const auto& [name, fn] : rt.ttp_functions()) {
        std::vector<std::string> processes;
        try {
            processes = fn->processes();
        } catch (const std::exception& e) {
            return sdk::Error{sdk::ErrorCode::Internal,
                              "ttp function '" + name + "' failed to list its processes: " + e.what()};
        }
        for (const auto& process : processes) {
            if (auto other = claim(owner, process, name)) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument,
                                  "ttp function '" + name + "' claims process '" + process +
                                      "', already handled by ttp function '" + *other +
                                      "'; list only one of them"};
            }
            registry[process] = fn;
        }
    }
    return registry;
}

jobs::AggregatorLookup aggregator_lookup(Runtime& rt) {
    return [&rt](const std::string& name) -> sdk::Result<sdk::Aggregator*> {
        if (sdk::Aggregator* a = rt.aggregator(name)) {
            return a;
        }
        std::string known;
        for (const auto& n : rt.aggregator_names()) {
            known += (known.empty() ? "" : ", ") + n;
        }
        return sdk::Error{sdk::ErrorCode::Unimplemented,
                          "no aggregator plugin '" + name + "' is active (active: " + (known.empty() ? "none" : known) + ")"};
    };
}

/// Checks what no plugin provides (exposure, tokens, TLS files, the outputs folder), then starts
/// the plugins, or logs why not. Returns 0, or the exit code: kExitConfig for a setting no
/// restart can fix (a service manager need not try again), 1 for a failure to start.
/// A director's hold on its data directory, for as long as it runs: two directors on one store
/// both published its running jobs again at start and trained them together, over the same
/// checkpoints, into one model that reported success. Released when the process ends, however.
class DirectoryLock {
public:
    static sdk::Result<std::unique_ptr<DirectoryLock>> acquire(const std::string& dir) {
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        const std::string path = (std::filesystem::path(dir) / "director.lock").string();
        const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            return sdk::Error{sdk::ErrorCode::Unavailable,
                              "cannot open the lock file " + path + ": " + std::strerror(errno)};
        }
        auto lock = std::unique_ptr<DirectoryLock>(new DirectoryLock(fd));
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            const int error = errno;
            if (error != EWOULDBLOCK) {
                return sdk::Error{sdk::ErrorCode::Unavailable,
                                  "cannot lock " + path + ": " + std::strerror(error)};
            }
            char pid[32] = {};
            const ssize_t n = ::pread(fd, pid, sizeof pid - 1, 0);
            std::string holder = n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : std::string();
            while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) {
                holder.pop_back();
            }
            return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                              "the data directory " + dir + " is in use by another director" +
                                  (holder.empty() ? std::string() : " (pid " + holder + ")") +
                                  ", which holds " + path +
                                  ": two directors on one store would both run its jobs"};
        }
        const std::string me = std::to_string(::getpid()) + "\n";
        if (::ftruncate(fd, 0) == 0) {
            (void)!::pwrite(fd, me.data(), me.size(), 0);
        }
        return lock;
    }
    ~DirectoryLock() { ::close(fd_); }
    DirectoryLock(const DirectoryLock&) = delete;
    DirectoryLock& operator=(const DirectoryLock&) = delete;

private:
    explicit DirectoryLock(int fd) : fd_(fd) {}
    int fd_;
};

/// `lock`: where to keep the director's hold on its data directory, taken after the settings
/// are checked and before any plugin (the store) starts.
int start(Runtime& rt, std::unique_ptr<DirectoryLock>* lock = nullptr) {
    if (sdk::Status st = check_before_start(rt.config(), rt.logger()); !st) {
        rt.fatal("start-up refused", {{"error", st.message()}});
        rt.stop_all();
        return kExitConfig;
    }
    if (lock != nullptr) {
        auto held = DirectoryLock::acquire(rt.config().node.data_dir);
        if (!held) {
            rt.fatal("start-up refused", {{"error", held.error().message}});
            rt.stop_all();
            return 1;
        }
        *lock = std::move(*held);
    }
    if (sdk::Status st = rt.start_plugins(); !st) {
        rt.fatal("start-up failed", {{"error", st.message()}});
        rt.stop_all();
        return 1;
    }
    return 0;
}

int fail(Runtime& rt, const std::string& what, const std::string& error) {
    rt.fatal(what, {{"error", error}});
    rt.stop_all();
    return 1;
}

/// Announces the listening address on stdout, so scripts and tests started with port 0 can find
/// the server (logs may go elsewhere).
void announce(const std::string& role, const RuntimeConfig& cfg, std::uint16_t port) {
    const char* scheme = cfg.http.tls.cert_file.empty() ? "http" : "https";
    std::printf("synergos %s listening on %s://%s:%u\n", role.c_str(), scheme, cfg.http.host.c_str(),
                static_cast<unsigned>(port));
    std::fflush(stdout);
}

/// A TTP loop on `grid` with an HTTP worker client, owned by the runtime's component list.
struct TtpParts {
    std::unique_ptr<http::HttpClient> http;
    std::unique_ptr<roles::HttpWorkerClient> workers;
    std::unique_ptr<jobs::TtpRunner> runner;
};

sdk::Result<std::shared_ptr<TtpParts>> start_ttp_runner(Runtime& rt, sdk::MessageQueue& mq, int grid,
                                                        const std::string& ttp_id) {
    auto parts = std::make_shared<TtpParts>();
    auto client_options = worker_client_options(rt.config());
    if (!client_options) {
        return client_options.error();
    }
    parts->http = std::make_unique<http::HttpClient>(*client_options);
    parts->workers = std::make_unique<roles::HttpWorkerClient>(
        *parts->http, 1, 1, std::chrono::seconds(rt.config().worker_client.health_check_interval_s));
    jobs::TtpRunnerOptions o;
    o.grid = grid;
    o.ttp_id = ttp_id;
    o.outputs_dir = rt.config().node.outputs_dir;
    o.job_timeout = std::chrono::seconds(rt.config().jobs.job_timeout_s);
    o.retry_pause = std::chrono::milliseconds(rt.config().jobs.retry_pause_ms);
    o.retry_pause_max = std::chrono::milliseconds(rt.config().jobs.retry_pause_max_ms);
    auto registry = function_registry(rt);
    if (!registry) {
        return registry.error();
    }
    parts->runner = std::make_unique<jobs::TtpRunner>(mq, rt.host_context("ttp").logger(), std::move(*registry),
                                                      parts->workers.get(), aggregator_lookup(rt), o);
    if (auto st = parts->runner->start(); !st) {
        return st.error();
    }
    return parts;
}

}  // namespace

int run_director(Runtime& rt) {
    std::unique_ptr<DirectoryLock> lock;  // released when the director has stopped
    if (const int code = start(rt, &lock); code != 0) {
        return code;
    }
    const auto& cfg = rt.config();
    sdk::StorageBackend* storage = rt.storage();
    sdk::MessageQueue* mq = rt.message_queue();
    if (storage == nullptr || mq == nullptr) {
        return fail(rt, "start-up failed", "a director needs a storage plugin and a message_queue plugin");
    }
    sdk::Logger& jobs_logger = rt.host_context("jobs").logger();
    jobs::JobServiceOptions jo;
    jo.max_attempts = cfg.jobs.max_attempts;
    jo.outputs_dir = cfg.node.outputs_dir;
    // The in-process queue ends with the process: the service republishes at start what it held.
    jo.volatile_queue = cfg.message_queue.backend == "memory";
    auto registry = function_registry(rt);
    if (!registry) {
        return fail(rt, "start-up failed", registry.error().message);
    }
    auto service = std::make_shared<jobs::JobService>(*storage, *mq, jobs_logger, std::move(*registry), rt.tracker(), jo);
    if (auto st = service->start(); !st) {
        return fail(rt, "job service failed to start", st.message());
    }
    rt.add_component("job service", [service] { service->stop(); });

    // The embedded standalone director: without a broker, it runs the TTP of grid 0 itself.
    const bool embedded = cfg.message_queue.backend == "memory";
    if (embedded) {
        auto ttp = start_ttp_runner(rt, *mq, 0, cfg.node.id + "/ttp-0");
        if (!ttp) {
            return fail(rt, "embedded TTP failed to start", ttp.error().message);
        }
        auto parts = *ttp;
        rt.add_component("embedded ttp (grid 0)", [parts] { parts->runner->stop(); });
    }

    auto router = std::make_shared<http::Router>();
    sdk::Logger& rest_logger = rt.host_context("rest").logger();
    auto write_metrics = std::make_shared<rest::WriteMetrics>();
    auto merger = rest::register_connect_routes(*router, *storage, rest_logger, write_metrics);
    // Stopped after the server and before the plugins: a commit still running when the server
    // gives up on its answers ends before the store is stopped and freed (a write past the
    // server's 10 s crashed the process at exit).
    rt.add_component("rest writer", [merger] { merger->stop_writes(); });
    roles::register_director_routes(*router, {*storage, *service, rest_logger, rt.model(), merger});
    auto worker_client = worker_client_options(cfg);
    if (!worker_client) {
        return fail(rt, "worker client settings are invalid", worker_client.error().message);
    }
    roles::register_dashboard_routes(*router, {*storage, *service, rest_logger,
                                               roles::find_dashboard_dir(), cfg.node.outputs_dir,
                                               cfg.mlflow_store(), "", mq, {}, &*worker_client});
    auto options = server_options(cfg);  // the exposure rule was checked before start
    if (!options) {
        return fail(rt, "REST API failed to start", options.error().message);
    }
    // GET /metrics: the server's own, then the job service's and the connect routes' writer's.
    options->metrics_sources.push_back([service](std::string& out) { service->append_metrics(out); });
    options->metrics_sources.push_back([write_metrics](std::string& out) { write_metrics->append(out); });
    auto server = std::make_shared<http::HttpServer>(*options, *router, rest_logger);
    if (auto st = server->start(); !st) {
        return fail(rt, "REST API failed to start", st.message());
    }
    // Stopped first (reverse order): in-flight requests finish before the job service goes.
    rt.add_component("rest api", [server, router] { server->stop(10s); });
    announce("director", cfg, server->bound_port());
    rt.logger().info("role started", {{"role", "director"},
                                      {"node_id", cfg.node.id},
                                      {"port", server->bound_port()},
                                      {"embedded_ttp", embedded},
                                      {"components", rt.started_components()}});
    rt.wait_for_stop();
    rt.stop_all();
    return 0;
}

int run_ttp(Runtime& rt) {
    if (const int code = start(rt); code != 0) {
        return code;
    }
    const auto& cfg = rt.config();
    sdk::MessageQueue* mq = rt.message_queue();
    if (mq == nullptr) {
        return fail(rt, "start-up failed", "a TTP needs a message_queue plugin (--queue rabbitmq HOST PORT)");
    }
    auto ttp = start_ttp_runner(rt, *mq, cfg.ttp.grid, cfg.node.id);
    if (!ttp) {
        return fail(rt, "TTP failed to start", ttp.error().message);
    }
    auto parts = *ttp;
    rt.add_component("ttp runner", [parts] { parts->runner->stop(); });
    rt.logger().info("role started", {{"role", "ttp"}, {"node_id", cfg.node.id}, {"grid", cfg.ttp.grid},
                                      {"components", rt.started_components()}});
    rt.wait_for_stop();
    rt.stop_all();
    return 0;
}

int run_worker(Runtime& rt) {
    if (const int code = start(rt); code != 0) {
        return code;
    }
    const auto& cfg = rt.config();
    if (rt.model() == nullptr) {
        return fail(rt, "start-up failed", "a worker needs a model plugin (model: {backend: torch})");
    }
    worker::WorkerServiceConfig wc;
    wc.participant_id = cfg.node.id;
    wc.data_dir = cfg.node.data_dir;
    wc.outputs_dir = cfg.node.outputs_dir;
    std::map<std::string, std::string> pipeline_owner;
    for (const auto& [name, pipeline] : rt.data_pipelines()) {
        std::string datatype;
        try {
            datatype = pipeline->datatype();
        } catch (const std::exception& e) {
            return fail(rt, "start-up failed", "data plugin '" + name + "' failed to name its data type: " + e.what());
        }
        if (auto other = claim(pipeline_owner, datatype, name)) {
            return fail(rt, "start-up failed",
                        "data plugin '" + name + "' handles data type '" + datatype +
                            "', already handled by data plugin '" + *other + "'; list only one of them");
        }
        wc.pipelines[datatype] = pipeline;
    }
    wc.model = rt.model();
    wc.logger = &rt.host_context("worker").logger();
    wc.max_body_bytes = cfg.http.body_limit_bytes;
    auto service = std::make_shared<worker::WorkerService>(wc);

    auto router = std::make_shared<http::Router>();
    auto forward = [service](const http::Request& req) {
        worker::WorkerHttpRequest wr{req.method, req.path, req.header("content-type"), req.body};
        worker::WorkerHttpResponse out = service->handle(wr);
        http::Response resp;
        resp.status = out.status;
        resp.content_type = out.content_type;
        resp.body = std::move(out.body);
        return resp;
    };
    // On the I/O thread: health takes no run lock, so it answers even while every handler
    // thread serves (or waits for) a long training request.
    router->add("GET", "/v1/health", forward, http::Execution::Inline);
    router->add("POST", "/v1/projects/{collab_id}/{project_id}/poll", forward);
    for (const char* action : {"initialise", "train", "evaluate", "terminate"}) {
        router->add("POST", std::string("/v1/runs/{collab_id}/{project_id}/{expt_id}/{run_id}/") + action, forward);
    }
    auto options = server_options(cfg);  // the exposure rule was checked before start
    if (!options) {
        return fail(rt, "worker protocol server failed to start", options.error().message);
    }
    auto server = std::make_shared<http::HttpServer>(*options, *router, *wc.logger);
    if (auto st = server->start(); !st) {
        return fail(rt, "worker protocol server failed to start", st.message());
    }
    rt.add_component("worker protocol", [server, router, service] { server->stop(10s); });
    announce("worker", cfg, server->bound_port());
    rt.logger().info("role started", {{"role", "worker"}, {"node_id", cfg.node.id}, {"port", server->bound_port()},
                                      {"datatypes", json(wc.pipelines.size())},
                                      {"components", rt.started_components()}});
    rt.wait_for_stop();
    rt.stop_all();
    return 0;
}

}  // namespace synergos::core
