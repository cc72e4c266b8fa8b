// SPDX-License-Identifier: Apache-2.0
// A TTP killed with SIGKILL in the middle of a training job: the broker redelivers the job to a
// new TTP process, which resumes at the round after the newest complete checkpoint, and the model
// it ends with is the one an uninterrupted run with the same seed ends with.
//
// Real processes: a `synergos director` and `synergos ttp` on RabbitMQ (a vhost of its own, so
// nothing else on the broker sees these queues); the two workers serve the worker protocol from
// this process on loopback ports.

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <future>
#include <sstream>

#include "cluster.hpp"
#include "process.hpp"
#include "synergos/core/tensor/safetensors.hpp"

namespace synergos::e2e {
namespace {

struct Broker {
    std::string host = "127.0.0.1";
    std::string port = "5672";
    std::string username = "guest";
    std::string password = "guest";
};

/// The broker of SYNERGOS_TEST_AMQP_URL (amqp://user:pass@host:port/vhost).
Broker broker_from_env() {
    const char* url = std::getenv("SYNERGOS_TEST_AMQP_URL");
    if (url == nullptr) {
        FAIL(
            "SYNERGOS_TEST_AMQP_URL is not set: start a broker (scripts/start-rabbitmq.sh) and "
            "export "
            "SYNERGOS_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f, or exclude with -LE "
            "rabbitmq");
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

/// A vhost of the test's own, removed at the end (rabbitmqctl, bounded by `timeout`).
class Vhost {
public:
    Vhost(std::string ctl, std::string name, const std::string& user)
        : ctl_(std::move(ctl)), name_(std::move(name)) {
        REQUIRE(run("add_vhost '" + name_ + "'") == 0);
        REQUIRE(run("set_permissions -p '" + name_ + "' '" + user + "' '.*' '.*' '.*'") == 0);
    }
    ~Vhost() {
        (void)run("delete_vhost '" + name_ + "'");
    }
    const std::string& name() const {
        return name_;
    }

private:
    int run(const std::string& args) const {
        return std::system(("timeout 60 '" + ctl_ + "' -q " + args + " >/dev/null 2>&1").c_str());
    }
    std::string ctl_;
    std::string name_;
};

std::string rabbitmqctl_from_env() {
    const char* ctl = std::getenv("SYNERGOS_TEST_RABBITMQCTL");
    if (ctl == nullptr || *ctl == '\0') {
        FAIL(
            "SYNERGOS_TEST_RABBITMQCTL is not set (export SYNERGOS_TEST_RABBITMQCTL=$(command -v "
            "rabbitmqctl)): "
            "the test isolates its queues in a vhost of its own");
    }
    return ctl;
}

void write_text(const fs::path& p, const std::string& text) {
    std::ofstream out(p);
    out << text;
    REQUIRE(out.good());
}

json read_json_file(const fs::path& p) {
    std::ifstream in(p);
    INFO("reading " << p);
    REQUIRE(in.good());
    return json::parse(in);
}

std::string read_text(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

/// The records of a JSON-lines log file (the basic sink's `json_file`).
std::vector<json> log_records(const fs::path& p) {
    std::vector<json> out;
    std::ifstream in(p);
    std::string line;
    while (std::getline(in, line)) {
        json j = json::parse(line, nullptr, false);
        if (j.is_object()) {
            out.push_back(std::move(j));
        }
    }
    return out;
}

std::vector<json> events(const std::vector<json>& records, const std::string& event) {
    std::vector<json> out;
    for (const auto& r : records) {
        if (r.value("event", "") == event) {
            out.push_back(r);
        }
    }
    return out;
}

/// A config for one role: its own logs, the shared outputs folder, the test's vhost.
std::string role_config(const std::string& id, const std::string& role, const fs::path& root,
                        const Broker& b, const std::string& vhost) {
    std::ostringstream y;
    y << "node: {id: " << id << ", role: " << role << "}\n"
      << "paths: {data_dir: '" << (root / id / "data").string() << "', outputs_dir: '"
      << (root / "outputs").string() << "', mlflow_dir: '" << (root / id / "mlflow").string()
      << "'}\n"
      << "logging:\n  backend: basic\n  options: {output: '" << (root / (id + ".log")).string()
      << "', json_file: '" << (root / (id + ".jsonl")).string()
      << "', buffered: false, color: never}\n"
      << "  level: info\n  system_metrics: false\n"
      << "message_queue:\n  backend: rabbitmq\n  options: {host: '" << b.host
      << "', port: " << b.port << ", vhost: '" << vhost << "', username: '" << b.username
      << "', password: '" << b.password << "'}\n"
      << "storage: {backend: " << (role == "director" ? "sqlite" : "none") << "}\n"
      << "tracking: {backend: none}\n"
      << "ttp:\n  functions: [align, train]\n  grid: 0\n"
      << "aggregators: [fedavg]\n";
    if (role == "director") {
        y << "model: {backend: torch}\n"
          << "http: {host: 127.0.0.1, port: 0}\n"
          << "jobs: {max_attempts: 3}\n";
    }
    return y.str();
}

/// Rounds long enough (small batches, several epochs) that the kill lands between the second
/// round's checkpoint and the third's.
json resume_run(const std::string& id) {
    return {{"run_id", id}, {"algorithm", "FedAvg"},  {"rounds", 5},
            {"epochs", 8},  {"batch_size", 4},        {"optimizer", "Adam"},
            {"lr", 0.005},  {"criterion", "NLLLoss"}, {"lr_scheduler", ""},
            {"seed", 7},    {"patience", 100}};
}

sdk::TensorMap read_model(const fs::path& p) {
    const std::string bytes = read_text(p);
    REQUIRE_FALSE(bytes.empty());
    sdk::TensorMap tensors;
    INFO("decoding " << p);
    REQUIRE(core::tensor::decode_into(std::string_view(bytes), tensors, nullptr));
    return tensors;
}

/// The largest absolute difference between two models with the same tensors (F32).
double max_abs_diff(const sdk::TensorMap& a, const sdk::TensorMap& b) {
    REQUIRE(a.tensors.size() == b.tensors.size());
    double worst = 0;
    for (const auto& ta : a.tensors) {
        const sdk::Tensor* tb = nullptr;
        for (const auto& t : b.tensors) {
            if (t.name == ta.name) {
                tb = &t;
            }
        }
        INFO("tensor " << ta.name);
        REQUIRE(tb != nullptr);
        REQUIRE(tb->shape == ta.shape);
        REQUIRE(ta.dtype == sdk::DType::F32);
        REQUIRE(tb->dtype == sdk::DType::F32);
        for (std::int64_t i = 0; i < ta.numel(); ++i) {
            worst = std::max(worst, std::abs(static_cast<double>(ta.f32()[i]) -
                                             static_cast<double>(tb->f32()[i])));
        }
    }
    return worst;
}

}  // namespace

TEST_CASE(
    "a TTP killed with SIGKILL after round 2 of 5 resumes at round 3 and ends with the "
    "uninterrupted model",
    "[e2e][resume][rabbitmq]") {
    const Broker broker = broker_from_env();
    const fs::path root = temp_root("resume");
    Vhost vhost(rabbitmqctl_from_env(), "synergos-resume-" + root.filename().string(),
                broker.username);
    const fs::path data = fs::path(SYNERGOS_TEST_SOURCE_DIR) / "examples" / "data";
    const std::string exe = SYNERGOS_EXE;
    const std::string plugins = SYNERGOS_TEST_PLUGIN_DIR;
    write_text(root / "director.yaml",
               role_config("director", "director", root, broker, vhost.name()));
    write_text(root / "ttp-1.yaml", role_config("ttp-1", "ttp", root, broker, vhost.name()));
    write_text(root / "ttp-2.yaml", role_config("ttp-2", "ttp", root, broker, vhost.name()));

    // Step 1 kills the TTP as soon as r1's second round's checkpoint is complete (its
    // state.json is written last, atomically). p1 holds r1's third round (a train request
    // that comes after that checkpoint) until the kill, so the TTP cannot get further however
    // slowly the test looks.
    const fs::path r1_dir = root / "outputs" / "resume" / "rp" / "e1" / "r1";
    const fs::path round_2_done = r1_dir / "checkpoints" / "round_1" / "state.json";
    std::promise<void> release_round_3;
    std::shared_future<void> round_3_released = release_round_3.get_future().share();
    Worker w1("p1", root, data);
    Worker w2("p2", root, data);
    w1.before_request = [round_3_released, round_2_done](const core::http::Request& req) {
        const std::string_view path = req.path;
        const std::string_view r1_train = "/r1/train";
        if (path.size() >= r1_train.size() &&
            path.substr(path.size() - r1_train.size()) == r1_train && fs::exists(round_2_done)) {
            round_3_released.wait_for(60s);
        }
    };
    Release let_round_3_go{release_round_3};
    Process director(
        exe, {"director", "--config", (root / "director.yaml").string(), "--plugin-path", plugins},
        (root / "director.stderr").string());
    REQUIRE(director.pid() > 0);
    const auto announced = director.read_line_with("listening on http://", 60s);
    INFO("director log: " << read_text(root / "director.log")
                          << read_text(root / "director.stderr"));
    REQUIRE(announced);
    const int director_port = std::stoi(announced->substr(announced->rfind(':') + 1));
    auto ttp1 = std::make_unique<Process>(
        exe,
        std::vector<std::string>{"ttp", "--config", (root / "ttp-1.yaml").string(), "--plugin-path",
                                 plugins},
        (root / "ttp-1.stderr").string());
    REQUIRE(ttp1->pid() > 0);

    Client client(director_port);
    client.setup("resume", "rp", "classify",
                 read_json_file(data / "heart_disease" / "architecture.json"), resume_run("r1"),
                 {{"p1", w1.port()}, {"p2", w2.port()}},
                 {{{"train", {{"heart_disease", "data1", "iid_1"}}},
                   {"evaluate", {{"heart_disease", "data1", "non_iid_1"}}}},
                  {{"train", {{"heart_disease", "data2", "iid_2"}}},
                   {"evaluate", {{"heart_disease", "data2", "non_iid_2"}}}}});
    client.call("POST", "/ttp/connect/collaborations/resume/projects/rp/experiments/e1/runs",
                resume_run("r2"), 201);
    client.wait_jobs(client.call("POST", "/ttp/train/collaborations/resume/projects/rp/alignments",
                                 {{"auto_align", true}, {"auto_fix", true}}, 201),
                     60s);

    // 1. Train r1; kill the TTP after its second round.
    const json r1_answer = client.call(
        "POST", "/ttp/train/collaborations/resume/projects/rp/models/e1/r1", json::object(), 200);
    {
        const auto deadline = std::chrono::steady_clock::now() + 60s;
        while (!fs::exists(round_2_done)) {
            INFO("TTP log: " << read_text(root / "ttp-1.log"));
            REQUIRE(std::chrono::steady_clock::now() < deadline);
            // The TTP writes the file in another process: there is nothing to wait on but the
            // file itself.
            std::this_thread::sleep_for(5ms);
        }
    }
    const int status = ttp1->kill(SIGKILL);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
    let_round_3_go.now();  // the dead TTP's request may run now; the next TTP's must not wait
    REQUIRE_FALSE(fs::exists(r1_dir / "checkpoints" / "round_2" / "state.json"));
    CHECK_FALSE(fs::exists(r1_dir / "global_model.safetensors"));
    const auto before = log_records(root / "ttp-1.jsonl");
    CHECK(events(before, "training resumed from checkpoint").empty());
    REQUIRE(events(before, "job started").size() == 2);  // alignment, then training r1

    // 2. A new TTP process gets the job back from the broker and finishes it from round 3.
    auto ttp2 = std::make_unique<Process>(
        exe,
        std::vector<std::string>{"ttp", "--config", (root / "ttp-2.yaml").string(), "--plugin-path",
                                 plugins},
        (root / "ttp-2.stderr").string());
    REQUIRE(ttp2->pid() > 0);
    const auto r1 = client.wait_jobs(r1_answer, 90s);
    const json r1_summary = r1.at(0).at("outputs").at("summary");
    CHECK(r1_summary["resumed_at"] == 2);
    CHECK(r1_summary["rounds_run"] == 5);
    const std::string job_id = r1_answer["jobs"][0]["job_id"];
    const auto after = log_records(root / "ttp-2.jsonl");
    const auto resumed = events(after, "training resumed from checkpoint");
    REQUIRE(resumed.size() == 1);
    CHECK(resumed[0]["fields"]["round"] == 2);
    CHECK(resumed[0]["fields"]["job_id"] == job_id);
    const auto started = events(after, "job started");
    REQUIRE(started.size() == 1);
    CHECK(started[0]["fields"]["job_id"] == job_id);
    CHECK(started[0]["fields"]["redelivered"] == true);
    CHECK(started[0]["fields"]["attempt"] == 1);  // redelivered, not a retry of a failure
    // Each participant's local model of the last round, written by the resumed attempt.
    for (const char* pid : {"p1", "p2"}) {
        INFO("participant " << pid);
        CHECK(fs::exists(r1_dir / ("local_model_" + std::string(pid) + ".safetensors")));
    }
    const json history = read_json_file(r1_dir / "global_loss_history.json");
    CHECK(history["train"].size() == 5);
    CHECK(history["evaluate"].size() == 5);

    // 3. The same run uninterrupted (another run id, the same seed and settings).
    const auto r2 = client.wait_jobs(
        client.call("POST", "/ttp/train/collaborations/resume/projects/rp/models/e1/r2",
                    json::object(), 200),
        90s);
    CHECK(r2.at(0)["outputs"]["summary"]["resumed_at"] == 0);
    CHECK(r2.at(0)["outputs"]["summary"]["rounds_run"] == 5);
    const fs::path r2_dir = root / "outputs" / "resume" / "rp" / "e1" / "r2";
    const auto resumed_model = read_model(r1_dir / "global_model.safetensors");
    const auto clean_model = read_model(r2_dir / "global_model.safetensors");
    const double diff = max_abs_diff(resumed_model, clean_model);
    WARN("largest difference between the resumed and the uninterrupted model: " << diff);
    CHECK(diff <= 1e-6);
    // Training moved the weights: the comparison is not between two untouched models (the
    // last round alone moves them; only the newest two checkpoints are kept).
    const double moved = max_abs_diff(clean_model, read_model(r2_dir / "checkpoints" / "round_3" /
                                                              "global_model.safetensors"));
    WARN("largest change of the last round: " << moved);
    CHECK(moved > 1e-3);
    CHECK_FALSE(fs::exists(r2_dir / "checkpoints" / "round_2"));
    // And the loss histories agree round by round.
    const json clean_history = read_json_file(r2_dir / "global_loss_history.json");
    for (const auto& [round, loss] : clean_history["evaluate"].items()) {
        INFO("round " << round);
        CHECK(std::abs(loss.get<double>() - history["evaluate"][round].get<double>()) <= 1e-6);
    }

    ttp2.reset();
    std::error_code ec;
    fs::remove_all(root, ec);
}

}  // namespace synergos::e2e
