// SPDX-License-Identifier: Apache-2.0
// The director's dashboard routes on a real store, job service and queue: static files (types,
// caching, traversal), the cluster page's worker health against real HTTP servers, job
// listings with live round history, and the collaboration tree.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <synergos/core/http/router.hpp>
#include <synergos/core/http/server.hpp>
#include "dashboard_routes.hpp"
#include "jobs_harness.hpp"

namespace {

using synergos::test::Backend;
using synergos::test::Harness;
using namespace synergos;
namespace http = synergos::core::http;
using nlohmann::json;
namespace fs = std::filesystem;

void write(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
}

http::Response get(const http::Router& router, const std::string& target,
                   std::map<std::string, std::string> headers = {}) {
    http::Request req;
    req.method = "GET";
    req.target = target;
    const auto q = target.find('?');
    req.path = target.substr(0, q);
    req.query = q == std::string::npos ? "" : target.substr(q + 1);
    req.headers = std::move(headers);
    return router.route(req);
}

json data_of(const http::Response& r) {
    INFO(r.body);
    REQUIRE(r.status == 200);
    return json::parse(r.body).at("data");
}

void insert(sdk::StorageBackend& s, const std::string& kind, sdk::Key key, json doc) {
    REQUIRE(s.apply({{sdk::WriteMode::Insert, kind, std::move(key), doc.dump()}}));
}

struct Fixture {
    Harness h{Backend::Memory, 1};
    fs::path www = h.dir / "www";
    http::Router router;

    explicit Fixture(bool with_files = true, std::string mlflow_dir = "") {
        if (with_files) {
            write(www / "index.html",
                  "<!doctype html><script src=\"/assets/app-1a2b.js\"></script>");
            write(www / "assets" / "app-1a2b.js", "console.log('dashboard');");
            write(www / "assets" / "style-9f.css", "body{}");
            write(h.dir / "secret.txt", "not to be served");
            fs::create_symlink(h.dir / "secret.txt", www / "assets" / "link.js");
        }
        h.start_director();
        core::roles::register_dashboard_routes(
            router, {*h.storage, *h.service, h.host.logger(), www.string(),
                     (h.dir / "outputs").string(), mlflow_dir, ""});
    }
};

}  // namespace

TEST_CASE("the page and its assets are served with their types and cache headers", "[dashboard]") {
    Fixture f;
    auto index = get(f.router, "/");
    REQUIRE(index.status == 200);
    CHECK(index.content_type == "text/html; charset=utf-8");
    CHECK(index.header("Cache-Control") == "no-cache");
    CHECK(index.body.find("/assets/app-1a2b.js") != std::string::npos);
    const std::string etag = index.header("ETag");
    REQUIRE_FALSE(etag.empty());
    auto again = get(f.router, "/", {{"if-none-match", etag}});
    CHECK(again.status == 304);
    CHECK(again.body.empty());
    CHECK(get(f.router, "/index.html").status == 200);

    auto js = get(f.router, "/assets/app-1a2b.js");
    REQUIRE(js.status == 200);
    CHECK(js.content_type == "text/javascript; charset=utf-8");
    CHECK(js.header("Cache-Control") == "public, max-age=31536000, immutable");
    CHECK(js.header("X-Content-Type-Options") == "nosniff");
    CHECK(js.body == "console.log('dashboard');");
    CHECK(get(f.router, "/assets/style-9f.css").content_type == "text/css; charset=utf-8");
}

TEST_CASE("no request reads outside the dashboard folder", "[dashboard]") {
    Fixture f;
    for (const char* bad :
         {"/assets/..%2fsecret.txt", "/assets/..%2f..%2fsecret.txt", "/assets/%2e%2e",
          "/assets/.hidden", "/assets/../secret.txt", "/assets/link.js", "/assets/missing.js",
          "/assets/a%00.js", "/assets/", "/secret.txt"}) {
        INFO(bad);
        auto r = get(f.router, bad);
        CHECK((r.status == 404 || r.status == 400));
        CHECK(r.body.find("not to be served") == std::string::npos);
    }
    CHECK(core::roles::is_safe_asset_name("index-Dvj56Xn6.js"));
    CHECK_FALSE(core::roles::is_safe_asset_name(".."));
    CHECK_FALSE(core::roles::is_safe_asset_name("a/b.js"));
    CHECK_FALSE(core::roles::is_safe_asset_name(std::string(256, 'a')));
    CHECK(core::roles::content_type_for("x.SVG") == "image/svg+xml");
    CHECK(core::roles::content_type_for("x.bin") == "application/octet-stream");
}

TEST_CASE("without a built dashboard the page says so and the log says where it looked",
          "[dashboard]") {
    Fixture f(false);
    auto r = get(f.router, "/");
    CHECK(r.status == 404);
    CHECK(r.body.find("not installed") != std::string::npos);
    // The page is open to anybody: installation paths go to the operator's log only.
    CHECK(r.body.find(f.www.string()) == std::string::npos);
    bool logged = false;
    for (const auto& line : f.h.host.captured().lines()) {
        logged = logged || (line.event.find("dashboard not installed") != std::string::npos &&
                            line.fields_json.find(f.www.string()) != std::string::npos);
    }
    CHECK(logged);
    // The API routes work regardless.
    CHECK(get(f.router, "/v1/dashboard/jobs").status == 200);
}

TEST_CASE("the cluster page probes every registered worker", "[dashboard]") {
    Fixture f;
    // A live worker (a real server answering /v1/health) and one on a port nobody listens on.
    http::Router worker_router;
    worker_router.add("GET", "/v1/health", [](const http::Request&) {
        return http::Response::json(200, {{"status", "ok"}, {"participant_id", "alive"}, {"runs_loaded", 2},
                                          {"secret", "whatever answered at a registered address"}});
    });
    http::ServerOptions so;
    so.host = "127.0.0.1";
    so.port = 0;
    http::HttpServer worker(so, worker_router, f.h.host.logger());
    REQUIRE(worker.start());
    // Up, but its data directory is missing: it cannot align or train.
    http::Router dataless_router;
    dataless_router.add("GET", "/v1/health", [](const http::Request&) {
        return http::Response::json(200, {{"participant_id", "dataless"}, {"runs_loaded", 0},
                                          {"data_dir_found", false}});
    });
    http::HttpServer dataless(so, dataless_router, f.h.host.logger());
    REQUIRE(dataless.start());
    int dead_port = 0;
    {
        http::HttpServer closed(so, worker_router, f.h.host.logger());
        REQUIRE(closed.start());
        dead_port = closed.bound_port();
        closed.stop(std::chrono::milliseconds(0));
    }
    auto reg = [&](const std::string& pid, int port) {
        insert(*f.h.storage, "Registration",
               {{"collab_id", "c1"}, {"project_id", "p1"}, {"participant_id", pid}},
               {{"role", "host"},
                {"n_count", 1},
                {"node_0", {{"host", "127.0.0.1"}, {"port", port}, {"f_port", port}}}});
    };
    reg("alive", worker.bound_port());
    reg("dead", dead_port);
    reg("dataless", dataless.bound_port());
    const auto answer = get(f.router, "/v1/dashboard/cluster");
    const json d = data_of(answer);
    CHECK(std::find(answer.headers.begin(), answer.headers.end(),
                    std::pair<std::string, std::string>{"Cache-Control", "no-store"}) != answer.headers.end());
    REQUIRE(d["grids"].size() == 1);
    const json& g = d["grids"][0];
    CHECK(g["grid"] == 0);
    std::map<std::string, json> by_id;
    for (const auto& w : g["workers"]) {
        by_id[w["participant_id"].get<std::string>()] = w;
    }
    REQUIRE(by_id.size() == 3);
    CHECK(by_id["alive"]["health"] == "ok");
    // What a worker's health says, not the reply's text (a registration may name any address).
    CHECK(by_id["alive"]["detail"] == "HTTP 200, participant alive, 2 runs loaded");
    CHECK(by_id["alive"]["projects"] == json::array({"c1/p1"}));
    CHECK(by_id["dead"]["health"] == "unreachable");
    CHECK_FALSE(by_id["dead"]["detail"].get<std::string>().empty());
    CHECK(by_id["dataless"]["health"] == "error");
    CHECK(by_id["dataless"]["detail"] == "HTTP 200, participant dataless, 0 runs loaded, data directory not found");
    dataless.stop(std::chrono::milliseconds(0));
    worker.stop(std::chrono::milliseconds(0));
}

namespace {
/// Threads of this process now (Linux).
int thread_count() {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("Threads:", 0) == 0) {
            return std::stoi(line.substr(8));
        }
    }
    return -1;
}
/// A loopback port that accepts connections and never answers (listening, never accepting).
struct SilentPort {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    int port = 0;
    SilentPort() {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd, 16) == 0);
        socklen_t len = sizeof a;
        REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        port = ntohs(a.sin_port);
    }
    ~SilentPort() { ::close(fd); }
};
}  // namespace

TEST_CASE("the cluster page probes a bounded number of workers with a bounded number of threads",
          "[dashboard]") {
    Fixture f;
    // One registration naming 300 nodes: 48 that never answer and 252 where nothing listens.
    std::vector<std::unique_ptr<SilentPort>> silent;
    for (int i = 0; i < 48; ++i) {
        silent.push_back(std::make_unique<SilentPort>());
    }
    std::vector<int> closed;
    {
        std::vector<std::unique_ptr<SilentPort>> taken;
        for (int i = 0; i < 252; ++i) {
            taken.push_back(std::make_unique<SilentPort>());
            closed.push_back(taken.back()->port);
        }
    }  // closed now: connections are refused
    json doc{{"role", "host"}, {"n_count", 300}};
    for (int g = 0; g < 300; ++g) {
        const int port = g < 48 ? silent[static_cast<std::size_t>(g)]->port : closed[static_cast<std::size_t>(g - 48)];
        doc["node_" + std::to_string(g)] = {{"host", "127.0.0.1"}, {"f_port", port}};
    }
    insert(*f.h.storage, "Registration", {{"collab_id", "c1"}, {"project_id", "p1"}, {"participant_id", "many"}}, doc);
    const int before = thread_count();
    std::atomic<bool> done{false};
    std::atomic<int> most{before};
    std::thread watch([&] {
        while (!done) {
            most = std::max(most.load(), thread_count());
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
    });
    const auto r = get(f.router, "/v1/dashboard/cluster");
    done = true;
    watch.join();
    const json d = data_of(r);
    // Before, one thread per address (300, and as many again per page open at the time).
    CHECK(most - before <= 32 + 2);
    std::map<std::string, int> states;
    for (const auto& grid : d["grids"]) {
        for (const auto& w : grid["workers"]) {
            states[w["health"].get<std::string>()]++;
        }
    }
    CHECK(states["unknown"] == 300 - 256);
    CHECK(states["unreachable"] == 256);
}

TEST_CASE("a job's MLflow link is the run it logged to or else the latest attempt of its run", "[dashboard]") {
    const fs::path store = fs::temp_directory_path() / ("synergos-dash-mlflow-" + std::to_string(::getpid()));
    Fixture f(true, store.string());
    f.h.start_ttp(0);
    auto ids = f.h.submit({f.h.spec("noop", json::object(), 0)});
    REQUIRE(f.h.wait(ids[0]).state == "succeeded");
    // Run r1 of e1 trained three times (three MLflow runs of one name); the second by this job.
    write(store / "7" / "meta.yaml", "experiment_id: '7'\nname: c1_>_p1_>_e1\n");
    const auto run = [&](const std::string& id, const std::string& attempt, const std::string& job) {
        write(store / "7" / id / "tags" / "mlflow.runName", "r1");
        write(store / "7" / id / "tags" / "synergos.attempt", attempt);
        write(store / "7" / id / "tags" / "synergos.training_job", job);
    };
    run("aaa", "1", "job-other-1");
    run("bbb", "2", ids[0]);
    run("ccc", "3", "job-other-3");
    // Before, the first run of that name in directory order.
    CHECK(data_of(get(f.router, "/v1/dashboard/jobs/" + ids[0]))["mlflow"]["run_id"] == "bbb");
    fs::remove_all(store / "7" / "bbb");
    CHECK(data_of(get(f.router, "/v1/dashboard/jobs/" + ids[0]))["mlflow"]["run_id"] == "ccc");
    std::error_code ec;
    fs::remove_all(store, ec);
}

TEST_CASE("job listings, a job's page data and the TTPs that ran them", "[dashboard]") {
    Fixture f;
    f.h.start_ttp(0);
    auto ids = f.h.submit({f.h.spec("noop", json::object(), 0)});
    REQUIRE(ids.size() == 1);
    auto done = f.h.wait(ids[0]);
    REQUIRE(done.state == "succeeded");

    const json jobs = data_of(get(f.router, "/v1/dashboard/jobs"));
    REQUIRE(jobs.size() == 1);
    CHECK(jobs[0]["job_id"] == ids[0]);
    CHECK(jobs[0]["state"] == "succeeded");
    CHECK_FALSE(jobs[0].contains("parameters"));  // compact: no job message

    const json one = data_of(get(f.router, "/v1/dashboard/jobs/" + ids[0]));
    CHECK(one["job"]["job_id"] == ids[0]);
    CHECK(one["history_source"] == "live");
    CHECK(one["validations"] == json::array());
    CHECK(one["mlflow"]["experiment_name"] == "c1_>_p1_>_e1");
    CHECK_FALSE(one.contains("model_url"));  // no Model record yet

    CHECK(get(f.router, "/v1/dashboard/jobs/nope").status == 404);

    const json cluster = data_of(get(f.router, "/v1/dashboard/cluster"));
    REQUIRE(cluster["grids"].size() == 1);
    REQUIRE(cluster["grids"][0]["ttps"].size() == 1);
    CHECK(cluster["grids"][0]["ttps"][0]["ttp_id"] == "ttp-0");
    CHECK(cluster["jobs"]["succeeded"] == 1);
}

TEST_CASE("the jobs listing keeps every unfinished job and the latest finished ones asked for", "[dashboard]") {
    // The page polled every job ever run, each with its progress, every second.
    Fixture f;
    f.h.put_job("job-1", "succeeded", "", json::object());
    f.h.put_job("job-2", "failed", "boom", json::object());
    f.h.put_job("job-3", "queued", "", json::object());
    f.h.put_job("job-4", "cancelled", "", json::object());
    f.h.put_job("job-5", "running", "", json::object());
    const auto ids = [&](const std::string& target) {
        std::vector<std::string> out;
        for (const auto& j : data_of(get(f.router, target))) {
            out.push_back(j["job_id"].get<std::string>());
        }
        return out;
    };
    CHECK(ids("/v1/dashboard/jobs").size() == 5);
    CHECK(ids("/v1/dashboard/jobs?finished=2") == std::vector<std::string>{"job-2", "job-3", "job-4", "job-5"});
    CHECK(ids("/v1/dashboard/jobs?finished=0") == std::vector<std::string>{"job-3", "job-5"});
    CHECK(ids("/v1/dashboard/jobs?state=failed") == std::vector<std::string>{"job-2"});
    CHECK(ids("/v1/dashboard/jobs?process=optimize").empty());
    CHECK(ids("/v1/dashboard/jobs?process=train&finished=1") == std::vector<std::string>{"job-3", "job-4", "job-5"});
    const auto bad_value = get(f.router, "/v1/dashboard/jobs?finished=-1");
    CHECK(bad_value.status == 400);
    CHECK_THAT(bad_value.body, Catch::Contains("finished"));
    CHECK(get(f.router, "/v1/dashboard/jobs?state=").status == 400);
    CHECK(get(f.router, "/v1/dashboard/jobs?state=done").status == 400);  // as on /v1/jobs
    CHECK(get(f.router, "/v1/dashboard/jobs?state=failed&state=queued").status == 400);
    const auto bad_name = get(f.router, "/v1/dashboard/jobs?limit=3");
    CHECK(bad_name.status == 400);
    CHECK_THAT(bad_name.body, Catch::Contains("limit"));
}

TEST_CASE("a finished run shows its history, model link and validation metrics", "[dashboard]") {
    Fixture f;
    f.h.start_ttp(0);
    auto ids = f.h.submit({f.h.spec("noop", json::object(), 0)});
    REQUIRE(f.h.wait(ids[0]).state == "succeeded");
    const sdk::Key run{
        {"collab_id", "c1"}, {"project_id", "p1"}, {"expt_id", "e1"}, {"run_id", "r1"}};
    insert(*f.h.storage, "Model", run, {{"global", {{"path", "/x/global_model.safetensors"}}}});
    insert(*f.h.storage, "Validation",
           {{"participant_id", "w1"},
            {"collab_id", "c1"},
            {"project_id", "p1"},
            {"expt_id", "e1"},
            {"run_id", "r1"}},
           {{"evaluate", {{"statistics", {{"accuracy", 0.75}, {"f1_score", 0.5}}}}}});
    const json one = data_of(get(f.router, "/v1/dashboard/jobs/" + ids[0]));
    CHECK(one["model_url"] == "/ttp/train/collaborations/c1/projects/p1/models/e1/r1");
    CHECK(one["model_path"] == "/x/global_model.safetensors");
    REQUIRE(one["validations"].size() == 1);
    CHECK(one["validations"][0]["participant_id"] == "w1");
    CHECK(one["validations"][0]["meta"] == "evaluate");
    CHECK(one["validations"][0]["statistics"]["accuracy"] == 0.75);
}

TEST_CASE("a running job's page shows its own checkpoint's rounds and not another training's", "[dashboard]") {
    Fixture f;
    core::jobs::JobRecord job = f.h.put_job("job-watched", "running", "", json::object(), 1);
    job.filters = {"c1", "p1", "e1", "r1"};
    job.progress = {{"round", 2}, {"rounds", 5}, {"train_loss", 0.5}};
    REQUIRE(f.h.storage->apply({core::jobs::JobStore(*f.h.storage).update_mutation(job)}));
    const fs::path state = f.h.dir / "outputs" / "c1" / "p1" / "e1" / "r1" / "checkpoints" / "round_1" / "state.json";
    const json history = {{"train", {{"0", 0.9}, {"1", 0.5}}}, {"evaluate", json::object()},
                          {"local", {{"w1", {{"0", 0.8}, {"1", 0.4}}}}}};
    // A later training of the same run (this job was cancelled, the run trained again) wrote
    // round 1 over this job's.
    write(state, json({{"job_id", "job-retrain"}, {"history", history}}).dump());
    json one = data_of(get(f.router, "/v1/dashboard/jobs/job-watched"));
    INFO(one.dump());
    CHECK(one["history_source"] == "live");
    CHECK(one["history"].value("local", json::object()).empty());
    write(state, json({{"job_id", "job-watched"}, {"history", history}}).dump());
    one = data_of(get(f.router, "/v1/dashboard/jobs/job-watched"));
    CHECK(one["history_source"] == "checkpoint");
    CHECK(one["history"]["local"]["w1"]["1"] == 0.4);
}

TEST_CASE("the tree nests collaborations, projects, experiments, runs and their jobs",
          "[dashboard]") {
    Fixture f;
    insert(*f.h.storage, "Collaboration", {{"collab_id", "c1"}}, json::object());
    insert(*f.h.storage, "Project", {{"collab_id", "c1"}, {"project_id", "p1"}},
           {{"action", "regress"}});
    insert(*f.h.storage, "Experiment",
           {{"collab_id", "c1"}, {"project_id", "p1"}, {"expt_id", "e1"}},
           {{"model", json::array()}});
    insert(*f.h.storage, "Run",
           {{"collab_id", "c1"}, {"project_id", "p1"}, {"expt_id", "e1"}, {"run_id", "r1"}},
           {{"algorithm", "FedProx"}, {"rounds", 3}});
    insert(*f.h.storage, "Registration",
           {{"collab_id", "c1"}, {"project_id", "p1"}, {"participant_id", "w1"}}, {{"n_count", 1}});
    auto ids = f.h.submit({f.h.spec("noop", json::object(), 0)});
    const json tree = data_of(get(f.router, "/v1/dashboard/tree"));
    REQUIRE(tree.size() == 1);
    CHECK(tree[0]["collab_id"] == "c1");
    const json& p = tree[0]["projects"][0];
    CHECK(p["project_id"] == "p1");
    CHECK(p["action"] == "regress");
    CHECK(p["participants"] == json::array({"w1"}));
    const json& r = p["experiments"][0]["runs"][0];
    CHECK(r["run_id"] == "r1");
    CHECK(r["algorithm"] == "FedProx");
    CHECK(r["rounds"] == 3);
    REQUIRE(r["jobs"].size() == 1);
    CHECK(r["jobs"][0]["job_id"] == ids[0]);
}
