// SPDX-License-Identifier: Apache-2.0
#include "dashboard_routes.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include <synergos/core/http/client.hpp>
#include <synergos/core/rest/connect_routes.hpp>
#include <synergos/core/rest/error_mapping.hpp>
#include <synergos/core/rest/record_store.hpp>
#include <synergos/core/rest/schemas.hpp>
#include <synergos/core/roles/director_routes.hpp>

namespace synergos::core::roles {

namespace fs = std::filesystem;
using http::Request;
using http::Response;
using nlohmann::json;

namespace {

constexpr std::uintmax_t kMaxStaticBytes = 32U << 20U;
constexpr auto kHealthTtl = std::chrono::seconds(2);
constexpr auto kHealthTimeout = std::chrono::milliseconds(1500);
constexpr std::size_t kMaxLiveJobs = 256;
/// Worker addresses probed for one listing, and threads probing them: a registration may name
/// up to 1024 nodes at any address, and each listing started one thread per address (three
/// pages on 300 silent addresses: 900 threads).
constexpr std::size_t kMaxProbedAddresses = 256;
constexpr std::size_t kProbeThreads = 32;

Response ok(const std::string& method, const Request& req, json data) {
    Response r = Response::json(200, rest::envelope(200, method, rest::envelope_params(req), std::move(data)));
    r.headers.emplace_back("Cache-Control", "no-store");  // live state; may be behind a token
    return r;
}

json document(const sdk::Record& rec) {
    json doc = json::parse(rec.document, nullptr, false);
    return doc.is_object() ? doc : json::object();
}

std::string key_value(const sdk::Record& rec, const std::string& name) {
    for (const auto& f : rec.key) {
        if (f.name == name) {
            return f.value;
        }
    }
    return {};
}

/// The job fields the pages show (not the job message: tags, alignment and model are large).
json compact(const jobs::JobRecord& j) {
    return {{"job_id", j.job_id},
            {"process", j.process},
            {"filters", j.filters},
            {"keys", j.keys},
            {"grid", j.grid},
            {"state", j.state},
            {"attempts", j.attempts},
            {"max_attempts", j.max_attempts},
            {"created_at", j.created_at},
            {"started_at", j.started_at},
            {"finished_at", j.finished_at},
            {"reason", j.reason},
            {"ttp_id", j.ttp_id},
            {"progress", j.progress}};
}

/// A key value usable as one path segment of the outputs tree (ids are checked by the API, but
/// the file system is not trusted with anything else).
bool safe_segment(const std::string& s) {
    return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
           s.find('\0') == std::string::npos;
}

std::optional<std::string> read_small_file(const fs::path& p, std::uintmax_t limit) {
    std::error_code ec;
    const auto size = fs::file_size(p, ec);
    if (ec || size > limit) {
        return std::nullopt;
    }
    std::ifstream in(p, std::ios::binary);
    if (!in) {
        return std::nullopt;
    }
    std::string data(static_cast<std::size_t>(size), '\0');
    in.read(data.data(), static_cast<std::streamsize>(size));
    if (static_cast<std::uintmax_t>(in.gcount()) != size) {
        return std::nullopt;
    }
    return data;
}

std::string trim(std::string s) {
    const auto b = s.find_first_not_of(" \t\r\n'\"");
    const auto e = s.find_last_not_of(" \t\r\n'\"");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::string executable_dir() {
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    return ec ? std::string() : exe.parent_path().string();
}

class Dashboard : public std::enable_shared_from_this<Dashboard> {
public:
    explicit Dashboard(DashboardRoutesDeps deps) : d_(std::move(deps)) {
        http::ClientOptions o = d_.worker_client != nullptr ? *d_.worker_client : http::ClientOptions{};
        o.connect_timeout = std::chrono::milliseconds(1000);
        o.max_response_bytes = 1U << 20U;
        o.user_agent = "synergos-dashboard";
        client_ = std::make_unique<http::HttpClient>(o);
        if (const char* ui = std::getenv("SYNERGOS_MLFLOW_UI_URL");
            d_.mlflow_ui_url.empty() && ui != nullptr) {
            d_.mlflow_ui_url = ui;
        }
        std::error_code ec;
        if (!d_.static_dir.empty()) {
            root_ = fs::weakly_canonical(d_.static_dir, ec);
            if (ec) {
                root_.clear();
            }
        }
        if (root_.empty() || !fs::exists(root_ / "index.html", ec)) {
            // Where it looked goes to the operator's log, not to whoever asks for the page.
            std::string where;
            for (const auto& c : dashboard_dir_candidates()) {
                where += (where.empty() ? "" : ", ") + c;
            }
            d_.logger.warn("dashboard not installed: / answers 404",
                           nlohmann::json{{"looked_in", d_.static_dir.empty() ? where : d_.static_dir},
                                          {"fix", "build it with SYNERGOS_BUILD_DASHBOARD=ON or set "
                                                  "SYNERGOS_DASHBOARD_DIR"}}
                               .dump());
        }
    }

    void add(http::Router& r) {
        auto self = shared_from_this();
        auto bind = [self](Response (Dashboard::*fn)(const Request&)) {
            return [self, fn](const Request& req) {
                try {
                    return ((*self).*fn)(req);
                } catch (const sdk::Error& e) {
                    return rest::error_response(e);
                }
            };
        };
        r.add("GET", "/", bind(&Dashboard::index));
        r.add("GET", "/index.html", bind(&Dashboard::index));
        r.add("GET", "/assets/{file}", bind(&Dashboard::asset));
        r.add("GET", "/v1/dashboard/cluster", bind(&Dashboard::cluster));
        r.add("GET", "/v1/dashboard/jobs/", bind(&Dashboard::jobs));
        r.add("GET", "/v1/dashboard/jobs/{job_id}", bind(&Dashboard::job));
        r.add("GET", "/v1/dashboard/tree", bind(&Dashboard::tree));
    }

private:
    template <typename T>
    static T must(sdk::Result<T> r) {
        if (!r) {
            throw r.error();
        }
        return std::move(*r);
    }

    std::vector<sdk::Record> list(const std::string& kind, sdk::Key match = {}) {
        return must(d_.storage.list(sdk::Query{kind, std::move(match)}));
    }

    // ---- static files --------------------------------------------------------------------

    Response not_installed() const {
        return Response::error(404, "the dashboard is not installed on this server (its log at "
                                    "start-up says where it looked)");
    }

    Response serve(const fs::path& file, const Request& req, bool immutable) const {
        std::error_code ec;
        const fs::path real = fs::weakly_canonical(file, ec);
        // A symlink out of the dashboard folder is refused like a missing file.
        const auto rel = real.lexically_relative(root_);
        if (ec || rel.empty() || *rel.begin() == ".." || !fs::is_regular_file(real, ec)) {
            return Response::error(404, "no dashboard file '" + file.filename().string() + "'");
        }
        const auto size = fs::file_size(real, ec);
        const auto mtime = fs::last_write_time(real, ec);
        std::ostringstream tag;
        tag << '"' << std::hex << size << '-'
            << static_cast<std::uint64_t>(mtime.time_since_epoch().count()) << '"';
        Response resp;
        resp.headers.emplace_back("ETag", tag.str());
        resp.headers.emplace_back("Cache-Control",
                                  immutable ? "public, max-age=31536000, immutable" : "no-cache");
        resp.headers.emplace_back("X-Content-Type-Options", "nosniff");
        resp.content_type = content_type_for(real.filename().string());
        if (req.header("if-none-match") == tag.str()) {
            resp.status = 304;
            return resp;
        }
        auto body = read_small_file(real, kMaxStaticBytes);
        if (!body) {
            return Response::error(
                500, "dashboard file '" + real.filename().string() + "' cannot be read");
        }
        resp.body = std::move(*body);
        return resp;
    }

    Response index(const Request& req) {
        if (root_.empty() || !fs::exists(root_ / "index.html")) {
            return not_installed();
        }
        Response r = serve(root_ / "index.html", req, false);
        r.headers.emplace_back(
            "Content-Security-Policy",
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "frame-ancestors 'none'");
        return r;
    }

    Response asset(const Request& req) {
        const std::string& name = req.param("file");
        if (!is_safe_asset_name(name)) {
            return Response::field_error(404, "no dashboard file '" + name + "'", "file");
        }
        if (root_.empty()) {
            return not_installed();
        }
        // Vite names assets by content hash: they never change under the same name.
        return serve(root_ / "assets" / name, req, true);
    }

    // ---- cluster ---------------------------------------------------------------------------

    struct Health {
        std::string state;  // ok, unreachable, error
        std::string detail;
        long latency_ms = 0;
        std::chrono::steady_clock::time_point at;
    };

    Health probe(const std::string& host, int port) {
        const auto t0 = std::chrono::steady_clock::now();
        auto resp = client_->request("GET", host, static_cast<std::uint16_t>(port), "/v1/health",
                                     {}, "application/json", kHealthTimeout);
        Health h;
        h.at = std::chrono::steady_clock::now();
        h.latency_ms = static_cast<long>(
            std::chrono::duration_cast<std::chrono::milliseconds>(h.at - t0).count());
        if (!resp) {
            h.state = "unreachable";
            h.detail = resp.error().message;
            return h;
        }
        // Only what a worker's health says, never the reply's text: a registration may name any
        // address, and the page would show whatever answered there.
        h.state = resp->status == 200 ? "ok" : "error";
        h.detail = "HTTP " + std::to_string(resp->status);
        const json body = json::parse(resp->body, nullptr, false);
        if (resp->status == 200 && body.is_object()) {
            if (body.contains("participant_id") && body["participant_id"].is_string() &&
                rest::id_problem(body["participant_id"].get<std::string>()) == std::nullopt) {
                h.detail += ", participant " + body["participant_id"].get<std::string>();
            }
            if (body.contains("runs_loaded") && body["runs_loaded"].is_number_unsigned()) {
                h.detail += ", " + std::to_string(body["runs_loaded"].get<std::uint64_t>()) + " runs loaded";
            }
            // Up, but it cannot serve alignment or training until its data shows up.
            if (body.contains("data_dir_found") && body["data_dir_found"] == false) {
                h.state = "error";
                h.detail += ", data directory not found";
            }
        }
        return h;
    }

    /// Health of every address, probed in parallel (each bounded by kHealthTimeout), cached for
    /// kHealthTtl so several open pages do not multiply the probes.
    /// At most kMaxProbedAddresses addresses are probed, by at most kProbeThreads threads; an
    /// address another listing is probing now is awaited, not probed again.
    std::map<std::pair<std::string, int>, Health> health_of(
        const std::set<std::pair<std::string, int>>& addrs) {
        using Addr = std::pair<std::string, int>;
        std::map<Addr, Health> out;
        std::vector<std::pair<Addr, std::shared_future<Health>>> awaited;
        std::vector<std::pair<Addr, std::packaged_task<Health()>>> mine;
        const auto now = std::chrono::steady_clock::now();
        {
            std::lock_guard lock(mu_);
            std::size_t probed = 0;
            for (const auto& a : addrs) {
                auto it = health_.find(a);
                if (it != health_.end() && now - it->second.at < kHealthTtl) {
                    out[a] = it->second;
                } else if (auto running = probing_.find(a); running != probing_.end()) {
                    awaited.emplace_back(a, running->second);
                } else if (probed++ < kMaxProbedAddresses) {
                    std::packaged_task<Health()> task([this, a] { return probe(a.first, a.second); });
                    probing_.emplace(a, task.get_future().share());
                    awaited.emplace_back(a, probing_.at(a));
                    mine.emplace_back(a, std::move(task));
                } else {
                    out[a] = Health{"unknown",
                                    "not probed: the cluster names more than " +
                                        std::to_string(kMaxProbedAddresses) + " worker addresses",
                                    0, now};
                }
            }
        }
        std::atomic<std::size_t> next{0};
        const auto run = [&] {
            for (std::size_t i = next++; i < mine.size(); i = next++) {
                mine[i].second();  // probe() catches nothing it needs to: request() does not throw
            }
        };
        std::vector<std::thread> threads;
        for (std::size_t t = 1; t < std::min(kProbeThreads, mine.size()); ++t) {
            try {
                threads.emplace_back(run);
            } catch (const std::system_error&) {
                break;  // no more threads: this one runs what is left
            }
        }
        run();
        for (auto& t : threads) {
            t.join();
        }
        {
            std::lock_guard lock(mu_);
            for (const auto& [a, task] : mine) {
                probing_.erase(a);
            }
        }
        for (auto& [a, f] : awaited) {
            // Each probe ends by kHealthTimeout; a generous bound guards the wait all the same.
            if (f.wait_for(kHealthTimeout * 4) != std::future_status::ready) {
                out[a] = Health{"unknown", "health probe still running", 0, now};
                continue;
            }
            out[a] = f.get();
            std::lock_guard lock(mu_);
            health_[a] = out[a];
        }
        return out;
    }

    Response cluster(const Request& req) {
        struct Worker {
            std::string participant;
            std::string host;
            int port = 0;
            std::set<std::string> projects;
        };
        // grid -> (participant, host, port) -> worker
        std::map<int, std::map<std::tuple<std::string, std::string, int>, Worker>> grids;
        for (const auto& reg : list("Registration")) {
            const json doc = document(reg);
            const std::string pid = key_value(reg, "participant_id");
            const std::string project =
                key_value(reg, "collab_id") + "/" + key_value(reg, "project_id");
            const int n = doc.contains("n_count") && doc["n_count"].is_number_integer()
                              ? doc["n_count"].get<int>()
                              : 1;
            for (int g = 0; g < n && g < 1024; ++g) {
                const json node = doc.value("node_" + std::to_string(g), json::object());
                if (!node.is_object()) {
                    continue;
                }
                const std::string host = node.contains("host") && node["host"].is_string()
                                             ? node["host"].get<std::string>()
                                             : "";
                int port = 0;
                for (const char* f : {"f_port", "port"}) {
                    if (port == 0 && node.contains(f) && node[f].is_number_integer()) {
                        port = node[f].get<int>();
                    }
                }
                auto& w = grids[g][{pid, host, port}];
                w.participant = pid;
                w.host = host;
                w.port = port;
                w.projects.insert(project);
            }
        }
        std::set<std::pair<std::string, int>> addrs;
        for (const auto& [g, workers] : grids) {
            for (const auto& [k, w] : workers) {
                if (!w.host.empty() && w.port > 0 && w.port < 65536) {
                    addrs.insert({w.host, w.port});
                }
            }
        }
        auto health = health_of(addrs);

        // TTPs are known by the jobs they took: the latest job of each TTP id, per grid.
        auto all = must(d_.jobs.list({}));
        std::map<int, std::map<std::string, const jobs::JobRecord*>> ttps;
        json counts = json::object();
        std::set<int> job_grids;
        for (const auto& j : all) {
            counts[j.state] = counts.value(j.state, 0) + 1;
            job_grids.insert(j.grid);
            if (j.ttp_id.empty()) {
                continue;
            }
            auto& slot = ttps[j.grid][j.ttp_id];
            if (slot == nullptr || slot->started_at < j.started_at) {
                slot = &j;
            }
            grids[j.grid];  // a grid served by a TTP shows even without registrations
        }
        json out = json::array();
        for (const auto& [g, workers] : grids) {
            json ws = json::array();
            for (const auto& [k, w] : workers) {
                json wj = {{"participant_id", w.participant},
                           {"host", w.host},
                           {"port", w.port},
                           {"projects", w.projects}};
                auto it = health.find({w.host, w.port});
                if (it == health.end()) {
                    wj["health"] = "error";
                    wj["detail"] = "the registration has no usable host and port";
                } else {
                    wj["health"] = it->second.state;
                    wj["detail"] = it->second.detail;
                    wj["latency_ms"] = it->second.latency_ms;
                }
                ws.push_back(std::move(wj));
            }
            json ts = json::array();
            for (const auto& [id, j] : ttps[g]) {
                ts.push_back({{"ttp_id", id},
                              {"last_job", j->job_id},
                              {"last_state", j->state},
                              {"last_started_at", j->started_at}});
            }
            json grid = {{"grid", g}, {"workers", std::move(ws)}, {"ttps", std::move(ts)}};
            if (d_.mq != nullptr && job_grids.count(g) != 0) {
                if (auto n = d_.mq->consumer_count(d_.topology.jobs(g)); n) {
                    grid["ttps_connected"] = *n;
                }
            }
            out.push_back(std::move(grid));
        }
        return ok("dashboard.cluster.get", req,
                  {{"grids", std::move(out)}, {"jobs", std::move(counts)}});
    }

    // ---- jobs ------------------------------------------------------------------------------

    /// Keeps the rounds of running train jobs seen by the pages (the job record holds only the
    /// latest round's progress; the full history arrives with the result).
    void record(const jobs::JobRecord& j) {
        std::lock_guard lock(mu_);
        if (j.is_terminal()) {
            live_.erase(j.job_id);
            return;
        }
        if (j.state != "running" || !j.progress.contains("round") ||
            !j.progress["round"].is_number_integer()) {
            return;
        }
        if (!live_.count(j.job_id) && live_.size() >= kMaxLiveJobs) {
            live_.erase(live_.begin());
        }
        json& h = live_[j.job_id];
        if (!h.is_object()) {
            h = {{"train", json::object()},
                 {"evaluate", json::object()},
                 {"local", json::object()},
                 {"metrics", json::object()}};
        }
        const std::string rk = std::to_string(j.progress["round"].get<int>() - 1);
        if (j.progress.contains("train_loss") && j.progress["train_loss"].is_number()) {
            h["train"][rk] = j.progress["train_loss"];
        }
        if (j.progress.contains("evaluate_loss") && j.progress["evaluate_loss"].is_number()) {
            h["evaluate"][rk] = j.progress["evaluate_loss"];
        }
        if (j.progress.contains("metrics") && j.progress["metrics"].is_object()) {
            for (const auto& [name, v] : j.progress["metrics"].items()) {
                h["metrics"][name][rk] = v;
            }
        }
    }

    json live_history(const std::string& job_id) {
        std::lock_guard lock(mu_);
        auto it = live_.find(job_id);
        return it == live_.end() ? json::object() : it->second;
    }

    /// The latest checkpoint's history when this director shares the TTP's outputs folder
    /// (standalone: embedded TTP) and the checkpoint is this job's: every round so far, global
    /// and per participant.
    json checkpoint_history(const jobs::JobRecord& j) {
        if (d_.outputs_dir.empty() || j.filters.size() < 4 || !j.progress.contains("round") ||
            !j.progress["round"].is_number_integer()) {
            return nullptr;
        }
        fs::path dir = d_.outputs_dir;
        for (std::size_t i = 0; i < 4; ++i) {
            if (!safe_segment(j.filters[i])) {
                return nullptr;
            }
            dir /= j.filters[i];
        }
        const int round = j.progress["round"].get<int>() - 1;
        auto text = read_small_file(
            dir / "checkpoints" / ("round_" + std::to_string(round)) / "state.json", 8U << 20U);
        if (!text) {
            return nullptr;
        }
        json state = json::parse(*text, nullptr, false);
        if (!state.is_object() || !state.contains("history") || !state["history"].is_object()) {
            return nullptr;
        }
        // Another training of the same run (a retrain after this job was cancelled) writes the
        // same folder: its rounds are not this job's.
        if (state.value("job_id", json()) != json(j.job_id)) {
            return nullptr;
        }
        return state["history"];
    }

    /// Every unfinished job, and the finished ones (all, or the latest `finished` of them: a
    /// page polling every job ever run grew without end); `process` and `state` filter as on
    /// /v1/jobs.
    Response jobs(const Request& req) {
        std::map<std::string, std::string> q;
        if (auto bad = roles::parse_filters(req.query, {"process", "state", "finished"}, q)) {
            return std::move(*bad);
        }
        std::size_t finished = std::numeric_limits<std::size_t>::max();
        if (q.count("finished") != 0) {
            const std::string& v = q["finished"];
            if (v.empty() || v.size() > 6 ||
                !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
                return Response::field_error(
                    400, "query 'finished' must be a number of jobs (0 to 999999)", "finished");
            }
            finished = static_cast<std::size_t>(std::stoul(v));
        }
        const auto all = must(d_.jobs.list({q["state"], q["process"], "", ""}));
        std::size_t terminal = 0;
        for (const auto& j : all) {
            terminal += j.is_terminal() ? 1 : 0;
        }
        // Listed oldest first: the finished jobs kept are the last ones.
        std::size_t skip = terminal > finished ? terminal - finished : 0;
        json data = json::array();
        for (const auto& j : all) {
            if (j.is_terminal() && skip > 0) {
                --skip;
                continue;
            }
            record(j);
            data.push_back(compact(j));
        }
        return ok("dashboard.jobs.get", req, std::move(data));
    }

    /// The MLflow run of Synergos run `r`: a run is trained again under the same name (a new
    /// MLflow run, tagged synergos.attempt), so the one this job logged to (tagged
    /// synergos.training_job) is taken when there is one, else the latest attempt.
    json mlflow_of(const std::string& c, const std::string& p, const std::string& e,
                   const std::string& r, const std::string& job_id) {
        const std::string experiment = c + "_>_" + p + "_>_" + e;
        json m = {{"experiment_name", experiment}, {"run_name", r}};
        if (d_.mlflow_dir.empty()) {
            return m;
        }
        m["store"] = d_.mlflow_dir;
        const fs::path store(d_.mlflow_dir);
        std::error_code ec;
        // A job's own run never changes: found once, it is only checked to still be there (a
        // run page polls, and each search read every experiment's meta.yaml and every run's tags).
        {
            std::lock_guard lock(mlflow_mu_);
            if (auto it = mlflow_found_.find(job_id); it != mlflow_found_.end()) {
                if (fs::is_directory(store / it->second["experiment_id"].get<std::string>() /
                                         it->second["run_id"].get<std::string>(),
                                     ec)) {
                    return it->second;
                }
                mlflow_found_.erase(it);
            }
        }
        std::optional<fs::path> folder;
        {
            std::lock_guard lock(mlflow_mu_);
            if (auto it = experiment_folders_.find(experiment); it != experiment_folders_.end()) {
                folder = store / it->second;
            }
        }
        if (!folder || !names_experiment(*folder, experiment)) {
            folder.reset();
            for (fs::directory_iterator it(store, ec), end; !ec && it != end; it.increment(ec)) {
                if (names_experiment(it->path(), experiment)) {
                    folder = it->path();
                    std::lock_guard lock(mlflow_mu_);
                    if (experiment_folders_.size() >= kMaxRemembered) {
                        experiment_folders_.clear();
                    }
                    experiment_folders_[experiment] = it->path().filename().string();
                    break;
                }
            }
        }
        if (!folder) {
            return m;
        }
        const std::string eid = folder->filename().string();
        m["experiment_id"] = eid;
        std::string best;
        long best_rank = -1;
        for (fs::directory_iterator rt(*folder, ec), rend; !ec && rt != rend; rt.increment(ec)) {
            auto name = read_small_file(rt->path() / "tags" / "mlflow.runName", 4096);
            if (!name || trim(*name) != r) {
                continue;
            }
            const auto job = read_small_file(rt->path() / "tags" / "synergos.training_job", 4096);
            const auto attempt = read_small_file(rt->path() / "tags" / "synergos.attempt", 64);
            long rank = 1;
            try {
                rank = attempt ? std::stol(trim(*attempt)) : 1;
            } catch (const std::exception&) {
            }
            if (job && !job_id.empty() && trim(*job) == job_id) {
                rank = std::numeric_limits<long>::max();  // the run this very job logged to
            }
            if (rank > best_rank) {
                best_rank = rank;
                best = rt->path().filename().string();
            }
        }
        if (!best.empty()) {
            m["run_id"] = best;
            if (!d_.mlflow_ui_url.empty()) {
                m["url"] = d_.mlflow_ui_url + "/#/experiments/" + eid + "/runs/" + best;
            }
        }
        if (best_rank == std::numeric_limits<long>::max()) {
            std::lock_guard lock(mlflow_mu_);
            if (mlflow_found_.size() >= kMaxRemembered) {
                mlflow_found_.clear();
            }
            mlflow_found_[job_id] = m;
        }
        return m;
    }

    /// True when MLflow experiment folder `dir`'s meta.yaml names `experiment`.
    static bool names_experiment(const fs::path& dir, const std::string& experiment) {
        auto meta = read_small_file(dir / "meta.yaml", 1U << 16U);
        if (!meta) {
            return false;
        }
        std::istringstream lines(*meta);
        std::string line;
        while (std::getline(lines, line)) {
            if (line.rfind("name:", 0) == 0 && trim(line.substr(5)) == experiment) {
                return true;
            }
        }
        return false;
    }

    Response job(const Request& req) {
        const auto j = must(d_.jobs.get(req.param("job_id")));
        record(j);
        json data = {{"job", compact(j)}};
        const json params = j.message.value("parameters", json::object());
        data["hyperparameters"] = params.value("run", json::object());
        if (j.outputs.contains("history") && j.outputs["history"].is_object()) {
            data["history"] = j.outputs["history"];
            data["history_source"] = "outputs";
        } else if (json ck = checkpoint_history(j); ck.is_object()) {
            data["history"] = std::move(ck);
            data["history_source"] = "checkpoint";
        } else {
            data["history"] = live_history(j.job_id);
            data["history_source"] = "live";
        }
        if (j.process == "optimize") {
            // The optimize function's summary: {metric, optimize_mode, trials: [{run_id,
            // hyperparameters, state, score, ...}], best, finished, total}; progress until done.
            const json& src = j.outputs.contains("trials") ? j.outputs : j.progress;
            json o = json::object();
            for (const char* k : {"metric", "optimize_mode", "strategy", "finished", "failed", "total"}) {
                if (src.contains(k)) {
                    o[k] = src[k];
                }
            }
            o["trials"] = src.contains("trials") && src["trials"].is_array() ? src["trials"] : json::array();
            o["best"] = src.contains("best") ? src["best"] : json(nullptr);
            data["optimization"] = std::move(o);
        }
        if (j.filters.size() >= 4) {
            const std::string &c = j.filters[0], &p = j.filters[1], &e = j.filters[2],
                              &r = j.filters[3];
            const sdk::Key key{{"collab_id", c}, {"project_id", p}, {"expt_id", e}, {"run_id", r}};
            auto model = d_.storage.get("Model", key);
            if (model) {
                const json doc = document(*model);
                data["model_url"] =
                    "/ttp/train/collaborations/" + c + "/projects/" + p + "/models/" + e + "/" + r;
                if (doc.contains("global") && doc["global"].is_object()) {
                    data["model_path"] = doc["global"].value("path", "");
                }
            }
            json vals = json::array();
            for (const auto& v : list("Validation", key)) {
                const json doc = document(v);  // named: items() of a temporary would dangle
                for (const auto& [meta, result] : doc.items()) {
                    if (result.is_object()) {
                        vals.push_back(
                            {{"participant_id", key_value(v, "participant_id")},
                             {"meta", meta},
                             {"statistics", result.value("statistics", json::object())}});
                    }
                }
            }
            data["validations"] = std::move(vals);
            data["mlflow"] = mlflow_of(c, p, e, r, j.job_id);
        }
        return ok("dashboard.job.get", req, std::move(data));
    }

    // ---- collaborations / projects / experiments / runs ------------------------------------

    Response tree(const Request& req) {
        // Jobs by run, for the badges next to each run.
        std::map<std::string, json> run_jobs;
        for (const auto& j : must(d_.jobs.list({}))) {
            if (j.filters.size() >= 4) {
                const std::string k =
                    j.filters[0] + "/" + j.filters[1] + "/" + j.filters[2] + "/" + j.filters[3];
                run_jobs[k].push_back(
                    {{"job_id", j.job_id}, {"process", j.process}, {"state", j.state}});
            }
        }
        json out = json::array();
        for (const auto& collab : list("Collaboration")) {
            const std::string c = key_value(collab, "collab_id");
            json projects = json::array();
            for (const auto& project : list("Project", {{"collab_id", c}})) {
                const std::string p = key_value(project, "project_id");
                std::vector<std::string> participants;
                for (const auto& reg :
                     list("Registration", {{"collab_id", c}, {"project_id", p}})) {
                    participants.push_back(key_value(reg, "participant_id"));
                }
                json experiments = json::array();
                for (const auto& expt : list("Experiment", {{"collab_id", c}, {"project_id", p}})) {
                    const std::string e = key_value(expt, "expt_id");
                    json runs = json::array();
                    for (const auto& run :
                         list("Run", {{"collab_id", c}, {"project_id", p}, {"expt_id", e}})) {
                        const std::string r = key_value(run, "run_id");
                        const json doc = document(run);
                        json rj = {{"run_id", r},
                                   {"jobs", run_jobs[c + "/" + p + "/" + e + "/" + r]}};
                        if (doc.contains("algorithm")) {
                            rj["algorithm"] = doc["algorithm"];
                        }
                        if (doc.contains("rounds")) {
                            rj["rounds"] = doc["rounds"];
                        }
                        if (rj["jobs"].is_null()) {
                            rj["jobs"] = json::array();
                        }
                        runs.push_back(std::move(rj));
                    }
                    experiments.push_back({{"expt_id", e}, {"runs", std::move(runs)}});
                }
                projects.push_back({{"project_id", p},
                                    {"action", document(project).value("action", "classify")},
                                    {"participants", participants},
                                    {"experiments", std::move(experiments)}});
            }
            out.push_back({{"collab_id", c}, {"projects", std::move(projects)}});
        }
        return ok("dashboard.tree.get", req, std::move(out));
    }

    DashboardRoutesDeps d_;
    fs::path root_;
    std::unique_ptr<http::HttpClient> client_;
    std::mutex mu_;
    static constexpr std::size_t kMaxRemembered = 4096;  ///< entries of each MLflow memo below
    std::mutex mlflow_mu_;
    std::map<std::string, std::string> experiment_folders_;  ///< MLflow experiment name -> folder
    std::map<std::string, json> mlflow_found_;  ///< job -> the MLflow run tagged with it
    std::map<std::pair<std::string, int>, Health> health_;
    /// Probes in flight, shared by concurrent listings (guarded by mu_).
    std::map<std::pair<std::string, int>, std::shared_future<Health>> probing_;
    std::map<std::string, json> live_;
};

}  // namespace

std::vector<std::string> dashboard_dir_candidates() {
    std::vector<std::string> out;
    if (const char* env = std::getenv("SYNERGOS_DASHBOARD_DIR"); env != nullptr && *env != '\0') {
        out.emplace_back(env);
    }
    if (const std::string exe = executable_dir(); !exe.empty()) {
        out.push_back((fs::path(exe) / ".." / "share" / "synergos" / "dashboard")
                          .lexically_normal()
                          .string());
    }
#ifdef SYNERGOS_DASHBOARD_INSTALL_DIR
    out.emplace_back(SYNERGOS_DASHBOARD_INSTALL_DIR);
#endif
#ifdef SYNERGOS_DASHBOARD_BUILD_DIR
    out.emplace_back(SYNERGOS_DASHBOARD_BUILD_DIR);
#endif
    return out;
}

std::string find_dashboard_dir() {
    for (const auto& c : dashboard_dir_candidates()) {
        std::error_code ec;
        if (fs::is_regular_file(fs::path(c) / "index.html", ec)) {
            return c;
        }
    }
    return {};
}

std::string content_type_for(const std::string& file_name) {
    static const std::map<std::string, std::string> kTypes{
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".map", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".ico", "image/x-icon"},
        {".woff2", "font/woff2"},
        {".woff", "font/woff"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const auto dot = file_name.rfind('.');
    if (dot == std::string::npos) {
        return "application/octet-stream";
    }
    std::string ext = file_name.substr(dot);
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    auto it = kTypes.find(ext);
    return it == kTypes.end() ? "application/octet-stream" : it->second;
}

bool is_safe_asset_name(const std::string& name) {
    if (name.empty() || name.size() > 255 || name.front() == '.') {
        return false;
    }
    return std::all_of(name.begin(), name.end(), [](unsigned char ch) {
        return std::isalnum(ch) != 0 || ch == '.' || ch == '_' || ch == '-';
    });
}

void register_dashboard_routes(http::Router& router, DashboardRoutesDeps deps) {
    std::make_shared<Dashboard>(std::move(deps))->add(router);
}

}  // namespace synergos::core::roles
