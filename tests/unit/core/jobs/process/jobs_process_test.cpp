// SPDX-License-Identifier: Apache-2.0
// Issue 4 acceptance 2 with real processes: a `synergos director` and a `synergos ttp` on
// RabbitMQ (in a vhost of the test's own); the TTP is killed with SIGKILL in the middle of a job,
// a second TTP starts on the same grid, the broker redelivers the job to it, it completes, and
// the director archives it exactly once.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

extern char** environ;

namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

/// A `synergos` child process: stdout through a pipe (the director announces its port there),
/// stderr to a file; SIGKILL and reaped on destruction if still running.
class Child {
public:
    Child(const std::string& exe, const std::vector<std::string>& args, const fs::path& err) {
        REQUIRE(::pipe2(out_, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out_[1], STDOUT_FILENO);
        posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err.c_str(),
                                         O_WRONLY | O_CREAT | O_APPEND, 0644);
        std::vector<char*> argv{const_cast<char*>(exe.c_str())};
        for (const auto& a : args) {
            argv.push_back(const_cast<char*>(a.c_str()));
        }
        argv.push_back(nullptr);
        const int spawned = ::posix_spawn(&pid_, exe.c_str(), &actions, nullptr, argv.data(),
                                          environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(out_[1]);
        REQUIRE(spawned == 0);
    }
    ~Child() {
        kill_and_reap(SIGKILL);
        ::close(out_[0]);
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    pid_t pid() const { return pid_; }

    /// The first stdout line containing `needle` within `timeout`.
    std::optional<std::string> line_with(const std::string& needle,
                                         std::chrono::milliseconds timeout) {
        const auto deadline = Clock::now() + timeout;
        while (Clock::now() < deadline) {
            for (auto nl = buffer_.find('\n'); nl != std::string::npos; nl = buffer_.find('\n')) {
                std::string line = buffer_.substr(0, nl);
                buffer_.erase(0, nl + 1);
                if (line.find(needle) != std::string::npos) {
                    return line;
                }
            }
            pollfd pfd{out_[0], POLLIN, 0};
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (::poll(&pfd, 1, static_cast<int>(std::max<long long>(left.count(), 0))) <= 0) {
                continue;
            }
            char chunk[4096];
            const ssize_t got = ::read(out_[0], chunk, sizeof(chunk));
            if (got <= 0) {
                return std::nullopt;  // the process closed stdout (exited)
            }
            buffer_.append(chunk, static_cast<std::size_t>(got));
        }
        return std::nullopt;
    }

    /// Sends `sig` and waits (bounded) for the exit. Returns the wait status, or -1.
    int kill_and_reap(int sig, std::chrono::milliseconds timeout = 30s) {
        if (pid_ <= 0) {
            return status_;
        }
        ::kill(pid_, sig);
        const auto deadline = Clock::now() + timeout;
        while (Clock::now() < deadline) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                status_ = status;
                return status;
            }
            std::this_thread::sleep_for(10ms);  // waitpid has no timeout; bounded by deadline
        }
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status_, 0);
        pid_ = -1;
        return -1;
    }

private:
    pid_t pid_ = -1;
    int out_[2] = {-1, -1};
    int status_ = -1;
    std::string buffer_;
};

/// One HTTP/1.1 request with `Connection: close`; returns (status, body). Bounded by SO_*TIMEO.
std::pair<int, json> http(int port, const std::string& method, const std::string& path,
                          const json& body = nullptr) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
        ::close(fd);
        FAIL("cannot connect to the director on port " << port);
    }
    const std::string payload = body.is_null() ? std::string() : body.dump();
    std::ostringstream request;
    request << method << " " << path << " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    if (!body.is_null()) {
        request << "Content-Type: application/json\r\n";
    }
    request << "Content-Length: " << payload.size() << "\r\n\r\n" << payload;
    const std::string text = request.str();
    REQUIRE(::send(fd, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size()));
    std::string response;
    char chunk[8192];
    ssize_t got = 0;
    while ((got = ::recv(fd, chunk, sizeof(chunk), 0)) > 0) {
        response.append(chunk, static_cast<std::size_t>(got));
    }
    ::close(fd);
    INFO(method << " " << path << " answered: " << response);
    REQUIRE(response.rfind("HTTP/1.1 ", 0) == 0);
    const int status = std::stoi(response.substr(9, 3));
    const auto split = response.find("\r\n\r\n");
    REQUIRE(split != std::string::npos);
    std::string content = response.substr(split + 4);
    if (response.find("chunked") != std::string::npos && response.find("chunked") < split) {
        std::string plain;  // de-chunk (the server may stream)
        std::size_t at = 0;
        while (at < content.size()) {
            const auto eol = content.find("\r\n", at);
            const std::size_t size = std::stoul(content.substr(at, eol - at), nullptr, 16);
            if (size == 0) {
                break;
            }
            plain += content.substr(eol + 2, size);
            at = eol + 2 + size + 2;
        }
        content = plain;
    }
    return {status, json::parse(content, nullptr, false)};
}

struct Broker {
    std::string host = "127.0.0.1";
    std::string port = "5672";
    std::string username = "guest";
    std::string password = "guest";
};

Broker broker_from_env() {
    const char* url = std::getenv("SYNERGOS_TEST_AMQP_URL");
    if (url == nullptr) {
        FAIL("SYNERGOS_TEST_AMQP_URL is not set: start a broker (scripts/start-rabbitmq.sh) and "
             "export SYNERGOS_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f");
    }
    Broker b;
    std::string rest = url;
    rest = rest.substr(rest.find("://") == std::string::npos ? 0 : rest.find("://") + 3);
    if (auto at = rest.find('@'); at != std::string::npos) {
        const std::string cred = rest.substr(0, at);
        b.username = cred.substr(0, cred.find(':'));
        b.password = cred.substr(cred.find(':') + 1);
        rest = rest.substr(at + 1);
    }
    const std::string hostport = rest.substr(0, rest.find('/'));
    b.host = hostport.substr(0, hostport.find(':'));
    if (hostport.find(':') != std::string::npos) {
        b.port = hostport.substr(hostport.find(':') + 1);
    }
    return b;
}

/// A vhost of the test's own (the director's queue names are fixed), deleted at the end.
class Vhost {
public:
    Vhost(const std::string& name, const std::string& user) : name_(name) {
        const char* ctl = std::getenv("SYNERGOS_TEST_RABBITMQCTL");
        if (ctl == nullptr || *ctl == '\0') {
            FAIL("SYNERGOS_TEST_RABBITMQCTL is not set (export "
                 "SYNERGOS_TEST_RABBITMQCTL=$(command -v rabbitmqctl)): the test isolates its "
                 "queues in a vhost of its own");
        }
        ctl_ = ctl;
        REQUIRE(run("add_vhost '" + name_ + "'") == 0);
        REQUIRE(run("set_permissions -p '" + name_ + "' '" + user + "' '.*' '.*' '.*'") == 0);
    }
    ~Vhost() { (void)run("delete_vhost '" + name_ + "'"); }

private:
    int run(const std::string& args) const {
        return std::system(("timeout 60 '" + ctl_ + "' -q " + args + " >/dev/null 2>&1").c_str());
    }
    std::string ctl_;
    std::string name_;
};

/// "<job id> <pid>" lines of a probe log, by job id.
std::map<std::string, std::vector<std::string>> probe_log(const fs::path& file) {
    std::map<std::string, std::vector<std::string>> out;
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
        const auto space = line.find(' ');
        out[line.substr(0, space)].push_back(line.substr(space + 1));
    }
    return out;
}

std::string role_config(const std::string& id, const std::string& role, const fs::path& root,
                        const Broker& b, const std::string& vhost, int run_ms) {
    std::ostringstream y;
    y << "node: {id: " << id << ", role: " << role << "}\n"
      << "paths: {data_dir: '" << (root / id / "data").string() << "', outputs_dir: '"
      << (root / "outputs").string() << "', mlflow_dir: '" << (root / id / "mlflow").string()
      << "'}\n"
      << "plugins: {search_paths: ['" << SYNERGOS_JOBS_PROBE_PLUGIN_DIR << "', '"
      << SYNERGOS_TEST_PLUGIN_DIR << "']}\n"
      << "logging:\n  backend: basic\n  options: {output: '" << (root / (id + ".log")).string()
      << "', color: never}\n  level: info\n"
      << "message_queue:\n  backend: rabbitmq\n  options: {host: '" << b.host
      << "', port: " << b.port << ", vhost: '" << vhost << "', username: '" << b.username
      << "', password: '" << b.password << "', heartbeat_s: 5}\n"
      << "storage: {backend: " << (role == "director" ? "sqlite" : "none") << "}\n"
      << "tracking: {backend: none}\n"
      << "ttp:\n  functions:\n    - name: probe\n      options: {processes: preprocess, run_ms: "
      << run_ms << ", log_dir: '" << root.string() << "'}\n  grid: 0\n"
      << "aggregators: []\n"
      << "model: {backend: none}\n";
    return y.str();
}

void write_text(const fs::path& p, const std::string& text) {
    std::ofstream out(p);
    out << text;
    REQUIRE(out.good());
}

std::string random_suffix() {
    std::mt19937_64 rng{std::random_device{}()};
    return std::to_string(rng() % 1000000000ULL);
}

}  // namespace

TEST_CASE("A TTP process killed with SIGKILL mid-job: the job is redelivered, completes and is "
          "archived once",
          "[jobs][rabbitmq][process]") {
    const Broker broker = broker_from_env();
    const std::string suffix = random_suffix();
    const fs::path root = fs::temp_directory_path() / ("synergos-jobs-process-" + suffix);
    fs::create_directories(root);
    Vhost vhost("synergos-jobs-process-" + suffix, broker.username);
    const std::string vhost_name = "synergos-jobs-process-" + suffix;
    const std::string exe = SYNERGOS_TEST_BINARY_DIR "/bin/synergos";
    REQUIRE(fs::exists(exe));

    // The job runs 15 s on the first TTP: the kill lands in its middle however slowly the
    // director records its start (the second TTP, below, runs it in 4 s).
    write_text(root / "director.yaml", role_config("director", "director", root, broker,
                                                   vhost_name, 4000));
    write_text(root / "ttp.yaml", role_config("ttp-a", "ttp", root, broker, vhost_name, 15000));

    Child director(exe, {"director", "--config", (root / "director.yaml").string(), "--port", "0"},
                   root / "director.err");
    auto announced = director.line_with("listening on", 60s);
    INFO("director stderr: " << root / "director.err" << ", log: " << root / "director.log");
    REQUIRE(announced);
    const int port = std::stoi(announced->substr(announced->rfind(':') + 1));

    auto first = std::make_unique<Child>(
        exe, std::vector<std::string>{"ttp", "--config", (root / "ttp.yaml").string(), "--grid",
                                      "0", "--id", "ttp-a"},
        root / "ttp-a.err");

    // A project with one participant serving grid 0, then one preprocessing job through the
    // original clients' REST route.
    const std::string c = "/ttp/connect/collaborations";
    const auto create = [&](const std::string& path, const json& body) {
        auto [code, answer] = http(port, "POST", path, body);
        INFO("POST " << path << " answered " << code << ": " << answer.dump());
        REQUIRE(code == 201);
    };
    create(c, {{"collab_id", "c1"}});
    create(c + "/c1/projects",
           {{"project_id", "p1"},
            {"action", "classify"},
            {"incentives", {{"tier_1", json::array()}, {"tier_2", json::array()}}}});
    create("/ttp/connect/participants", {{"id", "w1"},
                                         {"category", nullptr},
                                         {"summary", nullptr},
                                         {"phone", nullptr},
                                         {"email", nullptr},
                                         {"socials", nullptr}});
    const std::string reg = c + "/c1/projects/p1/participants/w1/registration";
    create(reg, {{"role", "host"},
                 {"n_count", 1},
                 {"node_0", {{"host", "127.0.0.1"}, {"port", 8020}, {"f_port", 5000}}}});
    create(reg + "/tags", {{"train", json::array({json::array({"d", "train"})})},
                           {"evaluate", json::array()},
                           {"predict", json::array()}});
    // The TTP consumes grid 0 before the POST, so the answer can say where the job waits.
    const auto log_has = [&](const fs::path& log, const std::string& text) {
        std::ifstream in(log);
        const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        return content.find(text) != std::string::npos;
    };
    auto consuming_by = Clock::now() + 60s;
    while (!log_has(root / "ttp-a.log", "ttp consuming jobs") && Clock::now() < consuming_by) {
        std::this_thread::sleep_for(20ms);  // polls a file another process writes, bounded
    }
    REQUIRE(log_has(root / "ttp-a.log", "ttp consuming jobs"));
    auto [status, posted] =
        http(port, "POST", "/ttp/train/collaborations/c1/projects/p1/alignments/",
             {{"auto_align", true}});
    INFO("alignments POST: " << posted.dump());
    REQUIRE(status == 201);
    REQUIRE(posted["jobs"].size() == 1);
    const std::string job_id = posted["jobs"][0].value("job_id", "");
    REQUIRE_FALSE(job_id.empty());
    // The answer explains a queued job as GET /v1/jobs/{id} does.
    if (posted["jobs"][0].value("state", "") == "queued") {
        CHECK(posted["jobs"][0].value("reason", "") == "next in line on grid 0");
    }

    // Wait until the first TTP is inside the job, then kill it.
    const auto job_state = [&] {
        auto [code, body] = http(port, "GET", "/v1/jobs/" + job_id);
        REQUIRE(code == 200);
        CHECK(body["params"] == json{{"job_id", job_id}});
        return body.contains("data") ? body["data"] : body;
    };
    const std::string first_pid = std::to_string(first->pid());
    auto deadline = Clock::now() + 60s;
    while (probe_log(root / "executed.log")[job_id].empty() && Clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);  // polls a file another process writes, bounded
    }
    REQUIRE(probe_log(root / "executed.log")[job_id] == std::vector<std::string>{first_pid});
    // The TTP's confirmed "started" event precedes the function; the director records it.
    deadline = Clock::now() + 30s;
    while (job_state().value("state", "") != "running" && Clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);  // polls the REST API, bounded
    }
    REQUIRE(job_state().value("state", "") == "running");
    const int killed = first->kill_and_reap(SIGKILL);
    REQUIRE(WIFSIGNALED(killed));
    REQUIRE(WTERMSIG(killed) == SIGKILL);
    first.reset();
    CHECK(job_state().value("state", "") == "running");  // nobody finished it

    // A second TTP on the same grid gets the redelivered job and finishes it.
    write_text(root / "ttp-b.yaml", role_config("ttp-b", "ttp", root, broker, vhost_name, 4000));
    Child second(exe, {"ttp", "--config", (root / "ttp-b.yaml").string(), "--grid", "0", "--id",
                       "ttp-b"},
                 root / "ttp-b.err");
    const std::string second_pid = std::to_string(second.pid());
    json job;
    deadline = Clock::now() + 90s;
    while (Clock::now() < deadline) {
        job = job_state();
        if (job.value("state", "") == "succeeded" || job.value("state", "") == "failed") {
            break;
        }
        std::this_thread::sleep_for(50ms);  // polls the REST API, bounded
    }
    INFO("job: " << job.dump());
    REQUIRE(job.value("state", "") == "succeeded");

    // The list's filters: matching, not matching, and a misspelt or unknown one refused.
    const auto listed = [&](const std::string& query) {
        auto [code, body] = http(port, "GET", "/v1/jobs" + query);
        INFO(query << ": " << body.dump());
        REQUIRE(code == 200);
        std::vector<std::string> ids;
        for (const auto& j : body["data"]) {
            ids.push_back(j.value("job_id", ""));
        }
        return ids;
    };
    CHECK(listed("?state=succeeded&process=preprocess&collab_id=c1&project_id=p1") ==
          std::vector<std::string>{job_id});
    CHECK(listed("?state=failed").empty());
    CHECK(listed("?process=train").empty());
    CHECK(listed("?collab_id=c2").empty());
    for (const auto& [query, field] : std::vector<std::pair<std::string, std::string>>{
             {"?status=failed", "status"}, {"?state=done", "state"}, {"?limit=5", "limit"},
             // An empty filter listed every job; a repeated one kept its last value only.
             {"?state=", "state"}, {"?state=running&state=failed", "state"}}) {
        auto [code, body] = http(port, "GET", "/v1/jobs" + query);
        INFO(query << ": " << body.dump());
        CHECK(code == 400);
        CHECK(body.dump().find("'" + field + "'") != std::string::npos);
    }

    // Stop both gracefully: anything still in flight would be archived before the director ends.
    CHECK(WIFEXITED(second.kill_and_reap(SIGTERM)));
    CHECK(WIFEXITED(director.kill_and_reap(SIGTERM)));

    const auto executed = probe_log(root / "executed.log");
    const auto archived = probe_log(root / "archived.log");
    REQUIRE(executed.count(job_id) == 1);
    const auto& runs = executed.at(job_id);
    REQUIRE(runs.size() == 2);  // started on the killed TTP, run again on the second
    CHECK(runs[0] == first_pid);
    CHECK(runs[1] == second_pid);
    REQUIRE(archived.count(job_id) == 1);
    CHECK(archived.at(job_id).size() == 1);  // archived exactly once, by the director
    std::error_code ignored;
    fs::remove_all(root, ignored);
}
