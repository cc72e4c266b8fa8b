// SPDX-License-Identifier: Apache-2.0
// bench_training_rounds: the TTP's side of a federated round with a model of one million
// parameters (4 MB of F32) and 2 or 8 workers, every hop real: worker servers (the project's HTTP
// server, safetensors bodies, one process for all workers) on loopback ports, the TTP's worker
// client (HttpWorkerClient::call_all) and the real FedAvg server step, in a process of its own.
//
// Figures, per worker count:
// - round overhead: round time minus the slowest worker's local compute (as the worker reports
//   it). Local compute is a timed wait: in production workers are other machines, and on a
//   small box a busy-loop would only compete with the TTP for the CPU;
// - baseline: the same bytes (weights to every worker and back) over raw TCP on loopback, no
//   HTTP, no encoding, no aggregation, measured in the same TTP process;
// - peak TTP memory during the rounds: VmHWM after a reset (/proc/self/clear_refs) minus the
//   resident size before the rounds, against the model size.
//
// Usage: bench_training_rounds [--params N] [--workers 2,8] [--rounds R] [--compute-ms C]
//                              [--trace 1]   (each round's timeline, ms from its start)

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "fedavg.hpp"
#include "synergos/core/http/client.hpp"
#include "synergos/core/http/server.hpp"
#include "synergos/core/roles/worker_client.hpp"
#include "synergos/core/tensor/safetensors.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
namespace sdk = synergos::sdk;
namespace core = synergos::core;

struct Settings {
    std::int64_t params = 1000000;
    std::vector<int> workers = {2, 8};
    int rounds = 10;
    int compute_ms = 50;
    bool trace = false;  ///< print where each round's overhead went
};

double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

/// Monotonic clock in nanoseconds: the same clock in every process of the machine, so the
/// worker process's timestamps line up with the TTP's (--trace).
std::int64_t to_ns(Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
std::int64_t now_ns() { return to_ns(Clock::now()); }

double median(std::vector<double> v) {
    if (v.empty()) {
        return 0;
    }
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

/// A model of `params` F32 parameters: one Linear layer's weight and bias.
sdk::TensorMap make_model(std::int64_t params) {
    const std::int64_t out = 1000;
    const std::int64_t in = std::max<std::int64_t>(1, (params - out) / out);
    sdk::TensorMap m;
    for (auto [name, shape] :
         {std::pair<const char*, std::vector<std::int64_t>>{"0.weight", {out, in}},
          std::pair<const char*, std::vector<std::int64_t>>{"0.bias", {out}}}) {
        sdk::Tensor t;
        t.name = name;
        t.dtype = sdk::DType::F32;
        t.shape = shape;
        t.data.resize(static_cast<std::size_t>(t.numel()) * 4);
        float* f = t.f32();
        for (std::int64_t i = 0; i < t.numel(); ++i) {
            f[i] = static_cast<float>((i % 1000) - 500) * 1e-4f;
        }
        m.tensors.push_back(std::move(t));
    }
    return m;
}

std::size_t model_bytes(const sdk::TensorMap& m) {
    std::size_t n = 0;
    for (const auto& t : m.tensors) {
        n += t.data.size();
    }
    return n;
}

std::int64_t status_kb(const char* key) {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(key, 0) == 0) {
            return std::stoll(line.substr(std::strlen(key)));
        }
    }
    return -1;
}

/// The 1-minute load average: figures taken on a busy machine say so.
std::string load_average() {
    std::ifstream in("/proc/loadavg");
    std::string one;
    in >> one;
    return one;
}

/// Resets VmHWM to the current resident size (Linux >= 4.0).
bool reset_peak() {
    std::ofstream out("/proc/self/clear_refs");
    out << "5";
    return out.good();
}

// ---------------------------------------------------------------- worker process

/// Raw TCP peer of the baseline: reads `bytes`, answers with `bytes`, per connection.
void raw_echo_server(int listener, std::size_t bytes) {
    std::vector<char> reply(bytes, 1);
    while (true) {
        const int fd = ::accept(listener, nullptr, nullptr);
        if (fd < 0) {
            return;
        }
        std::thread([fd, bytes, &reply] {
            std::vector<char> in(1 << 20);
            std::size_t got = 0;
            while (got < bytes) {
                const ssize_t n = ::read(fd, in.data(), std::min(in.size(), bytes - got));
                if (n <= 0) {
                    ::close(fd);
                    return;
                }
                got += static_cast<std::size_t>(n);
            }
            std::size_t sent = 0;
            while (sent < bytes) {
                const ssize_t n = ::write(fd, reply.data() + sent, bytes - sent);
                if (n <= 0) {
                    break;
                }
                sent += static_cast<std::size_t>(n);
            }
            ::close(fd);
        }).detach();
    }
}

int listen_loopback() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(fd, 64) != 0) {
        std::perror("raw listener");
        std::_Exit(2);
    }
    return fd;
}

int port_of(int fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
}

/// Runs `n` worker servers and one raw echo listener; writes "ports raw p1 p2 ..." to `out_fd`
/// and serves until the parent closes `in_fd`.
[[noreturn]] void worker_process(int n, std::size_t bytes, int compute_ms, int out_fd, int in_fd) {
    sdk::testing::FakeHost host("/tmp", "bench-worker");
    core::http::Router router;
    router.add(
        "POST", "/v1/runs/{c}/{p}/{e}/{r}/train", [compute_ms](const core::http::Request& req) {
            const std::int64_t enter = now_ns();
            sdk::TensorMap w;
            core::tensor::Metadata md;
            if (auto st = core::tensor::decode_into(std::string_view(req.body), w, &md); !st) {
                return core::http::Response::error(400, st.message());
            }
            // Local training: a timed wait plus one pass over the weights.
            const auto t0 = Clock::now();
            std::this_thread::sleep_for(std::chrono::milliseconds(compute_ms));
            for (auto& t : w.tensors) {
                float* f = t.f32();
                for (std::int64_t i = 0; i < t.numel(); ++i) {
                    f[i] *= 0.999f;
                }
            }
            const double compute = ms_since(t0);
            const std::int64_t computed = now_ns();
            core::http::Response r;
            r.content_type = std::string(core::tensor::kSafetensorsContentType);
            auto enc = core::tensor::encode_into(
                w,
                {{"json",
                  json{{"samples", 100},
                       {"compute_ms", compute},
                       {"epoch_losses", {0.5}},
                       {"trace", {enter, to_ns(t0), computed, now_ns()}}}
                      .dump()}},
                r.body);
            if (!enc) {
                return core::http::Response::error(500, enc.message());
            }
            return r;
        });
    std::vector<std::unique_ptr<core::http::HttpServer>> servers;
    std::string line = "ports";
    const int raw = listen_loopback();
    line.append(" ").append(std::to_string(port_of(raw)));
    for (int i = 0; i < n; ++i) {
        core::http::ServerOptions so;
        so.port = 0;
        so.threads = 1;
        so.body_limit_bytes = 256u << 20;
        so.access_log = false;
        servers.push_back(std::make_unique<core::http::HttpServer>(so, router, host.logger()));
        if (!servers.back()->start()) {
            std::_Exit(2);
        }
        line.append(" ").append(std::to_string(servers.back()->bound_port()));
    }
    std::thread(raw_echo_server, raw, bytes).detach();
    line += "\n";
    (void)!::write(out_fd, line.data(), line.size());
    char c;
    while (::read(in_fd, &c, 1) > 0) {
    }
    std::_Exit(0);
}

// ---------------------------------------------------------------- TTP process

/// The TTP's fold, as the train function does it: a session that streams (SDK 1.1, FedAvg does)
/// gets each reply's F32 weights piece by piece while they arrive; any other gets whole replies.
class Fold final : public sdk::StreamingReplyVisitor {
public:
    explicit Fold(sdk::AggregationSession& s)
        : session_(s), streaming_(dynamic_cast<sdk::StreamingAggregationSession*>(&s)) {}

    bool on_reply_head(std::size_t index, const sdk::ReplyHead& head) noexcept override {
        head_ns[index] = now_ns();
        if (streaming_ == nullptr || head.status != 200) {
            return false;
        }
        const json j = json::parse(head.json, nullptr, false);
        auto update = streaming_->begin_update("p" + std::to_string(index),
                                               j.is_object() ? j.value("samples", 1) : 1,
                                               head.tensors);
        if (!update) {
            error = update.error().message;
        } else {
            updates_[index] = *update;
        }
        return true;
    }

    bool on_weights(std::size_t index, std::size_t tensor, std::uint64_t offset,
                    const float* values, std::size_t count) noexcept override {
        auto it = updates_.find(index);
        if (it == updates_.end()) {
            return false;
        }
        if (auto st = streaming_->fold(it->second, tensor, offset, values, count); !st) {
            error = st.message();
            updates_.erase(it);
            return false;
        }
        return true;
    }

    void on_reply(std::size_t index, sdk::Result<sdk::WorkerReply>&& reply) noexcept override {
        auto it = updates_.find(index);
        if (!reply || reply->status != 200) {
            error = reply ? "status " + std::to_string(reply->status) : reply.error().message;
            if (it != updates_.end()) {
                streaming_->abandon_update(it->second);
            }
            return;
        }
        const json j = json::parse(reply->json, nullptr, false);
        max_compute_ms = std::max(max_compute_ms, j.value("compute_ms", 0.0));
        if (j.contains("trace")) {
            worker_trace[index] = j["trace"].get<std::vector<std::int64_t>>();
        }
        if (it != updates_.end()) {
            for (const auto& t : reply->tensors.tensors) {
                if (auto st = streaming_->fold_tensor(it->second, t); !st) {
                    error = st.message();
                }
            }
            if (auto st = streaming_->end_update(it->second); !st) {
                error = st.message();
            }
            return;
        }
        if (auto st = session_.accumulate("p" + std::to_string(index), j.value("samples", 1),
                                          reply->tensors);
            !st) {
            error = st.message();
        }
    }
    double max_compute_ms = 0;
    std::string error;
    /// --trace: when each reply's head and end reached the TTP, and the worker's own times
    /// (handler entered with the whole body, compute began, compute ended, about to encode).
    std::map<std::size_t, std::int64_t> head_ns;
    std::map<std::size_t, std::vector<std::int64_t>> worker_trace;

private:
    sdk::AggregationSession& session_;
    sdk::StreamingAggregationSession* streaming_;
    std::map<std::size_t, sdk::StreamingAggregationSession::UpdateId> updates_;
};

/// Moves `bytes` to each of `n` connections and `bytes` back, concurrently; milliseconds.
double raw_tcp_round(int port, int n, const std::vector<char>& payload,
                     std::vector<std::vector<char>>& inbox) {
    std::vector<int> fds(n);
    for (int i = 0; i < n; ++i) {
        fds[i] = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(static_cast<std::uint16_t>(port));
        if (::connect(fds[i], reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            std::perror("raw connect");
            std::_Exit(2);
        }
    }
    const auto t0 = Clock::now();  // connections are pooled in the HTTP path too
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
        threads.emplace_back([&, i] {
            std::size_t sent = 0;
            while (sent < payload.size()) {
                const ssize_t k = ::write(fds[i], payload.data() + sent, payload.size() - sent);
                if (k <= 0) {
                    return;
                }
                sent += static_cast<std::size_t>(k);
            }
            std::size_t got = 0;
            while (got < inbox[i].size()) {
                const ssize_t k = ::read(fds[i], inbox[i].data() + got, inbox[i].size() - got);
                if (k <= 0) {
                    return;
                }
                got += static_cast<std::size_t>(k);
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    const double ms = ms_since(t0);
    for (int fd : fds) {
        ::close(fd);
    }
    return ms;
}

/// One round's timeline in ms from its start: the last request body complete at a worker, the
/// spread of compute starts, the slowest compute, the last compute done, the longest wait from
/// a worker's compute done to its reply head at the TTP (encoding, sending, scheduling), the last
/// reply at the TTP, and the aggregate finished.
std::string trace_line(std::int64_t t0, const Fold& fold, std::int64_t replied, std::int64_t end) {
    auto ms = [t0](std::int64_t t) { return static_cast<double>(t - t0) / 1e6; };
    std::int64_t last_enter = 0, first_c0 = INT64_MAX, last_c0 = 0, max_compute = 0;
    std::int64_t last_done = 0, first_head = INT64_MAX, max_wait = 0;
    std::int64_t max_decode = 0;
    for (const auto& [i, t] : fold.worker_trace) {
        if (t.size() != 4) {
            continue;
        }
        last_enter = std::max(last_enter, t[0]);
        max_decode = std::max(max_decode, t[1] - t[0]);
        first_c0 = std::min(first_c0, t[1]);
        last_c0 = std::max(last_c0, t[1]);
        max_compute = std::max(max_compute, t[2] - t[1]);
        last_done = std::max(last_done, t[3]);
        auto h = fold.head_ns.find(i);
        if (h != fold.head_ns.end()) {
            first_head = std::min(first_head, h->second);
            max_wait = std::max(max_wait, h->second - t[3]);
        }
    }
    char line[320];
    std::snprintf(line, sizeof line,
                  "bodies in %6.2f, decode <=%5.2f | compute starts %6.2f..%6.2f, longest %6.2f,"
                  " all done %6.2f | head wait <=%5.2f, first head %6.2f | replies in %6.2f |"
                  " aggregated %6.2f",
                  ms(last_enter), static_cast<double>(max_decode) / 1e6, ms(first_c0),
                  ms(last_c0), static_cast<double>(max_compute) / 1e6, ms(last_done),
                  static_cast<double>(max_wait) / 1e6, ms(first_head), ms(replied), ms(end));
    return line;
}

[[noreturn]] void ttp_process(const Settings& s, int n, int raw_port, const std::vector<int>& ports,
                              int out_fd) {
    sdk::testing::FakeHost host("/tmp", "bench-ttp");
    synergos::plugins::fedavg::FedAvg fedavg(host,
                                             sdk::Options(std::map<std::string, std::string>{}));
    auto session_r = fedavg.open("{}");
    if (!session_r) {
        std::fprintf(stderr, "fedavg: %s\n", session_r.error().message.c_str());
        std::_Exit(2);
    }
    auto session = std::move(*session_r);
    core::http::HttpClient http;
    core::roles::HttpWorkerClient client(http);
    std::vector<sdk::GridNode> nodes;
    for (int i = 0; i < n; ++i) {
        sdk::GridNode node;
        node.participant_id = "p" + std::to_string(i);
        node.host = "127.0.0.1";
        node.port = ports[static_cast<std::size_t>(i)];
        nodes.push_back(node);
    }
    // The process before it holds any model: what is above this at the peak is what the model
    // and its rounds cost (the global model itself included).
    const std::int64_t empty_kb = status_kb("VmRSS:");
    sdk::TensorMap global = make_model(s.params);
    const std::size_t bytes = model_bytes(global);
    std::vector<double> round_ms;
    std::vector<double> overhead_ms;
    std::vector<double> compute_ms;
    std::int64_t base_kb = 0;
    std::vector<std::string> traces;
    for (int r = -1; r < s.rounds; ++r) {  // round -1 warms up connections and the allocator
        if (r == 0) {
            reset_peak();
            base_kb = status_kb("VmRSS:");
        }
        const auto t0 = Clock::now();
        if (auto st = session->begin_round(global, r < 0 ? 0 : r); !st) {
            std::_Exit(3);
        }
        std::vector<sdk::WorkerRequest> reqs(static_cast<std::size_t>(n));
        const std::string args = json{{"round", r}, {"args", {{"epochs", 1}}}}.dump();
        for (auto& q : reqs) {
            q.path = "/v1/runs/c/p/e/r/train";
            q.json = args;
            q.tensors = &global;
            q.timeout = std::chrono::seconds(60);
        }
        Fold fold(*session);
        client.call_all(nodes, reqs, fold);
        if (!fold.error.empty()) {
            std::fprintf(stderr, "round failed: %s\n", fold.error.c_str());
            std::_Exit(3);
        }
        const std::int64_t replied = now_ns();
        auto next = session->finish_round();
        if (!next) {
            std::_Exit(3);
        }
        global = std::move(*next);
        const double ms = ms_since(t0);
        if (s.trace && r >= 0) {
            traces.push_back(trace_line(to_ns(t0), fold, replied, now_ns()));
        }
        if (r >= 0) {
            round_ms.push_back(ms);
            compute_ms.push_back(fold.max_compute_ms);
            overhead_ms.push_back(ms - fold.max_compute_ms);
        }
    }
    const std::int64_t hwm_kb = status_kb("VmHWM:");

    // Baseline: the same bytes over raw TCP (buffers allocated outside the timing).
    const std::vector<char> payload(bytes, 2);
    std::vector<std::vector<char>> inbox(static_cast<std::size_t>(n), std::vector<char>(bytes));
    std::vector<double> raw_ms;
    (void)raw_tcp_round(raw_port, n, payload, inbox);
    for (int r = 0; r < s.rounds; ++r) {
        raw_ms.push_back(raw_tcp_round(raw_port, n, payload, inbox));
    }
    // Attribution: what one worker's weights cost the TTP in copies and folding, one at a time.
    std::vector<double> copy_ms;
    std::vector<double> encode_ms;
    std::vector<double> decode_ms;
    std::vector<double> fold_ms;
    {
        std::string body;
        std::string copy;
        sdk::TensorMap decoded;
        for (int r = 0; r < s.rounds; ++r) {
            auto t = Clock::now();
            (void)core::tensor::encode_into(global, {{"json", "{}"}}, body);
            encode_ms.push_back(ms_since(t));
            t = Clock::now();
            copy.assign(body);  // what a request body copy costs
            copy_ms.push_back(ms_since(t));
            t = Clock::now();
            (void)core::tensor::decode_into(std::string_view(body), decoded, nullptr);
            decode_ms.push_back(ms_since(t));
            (void)session->begin_round(global, r);
            t = Clock::now();
            (void)session->accumulate("p0", 100, decoded);
            fold_ms.push_back(ms_since(t));
            (void)session->finish_round();
        }
    }
    const json out{{"workers", n},
                   {"copy_ms", median(copy_ms)},
                   {"encode_ms", median(encode_ms)},
                   {"decode_ms", median(decode_ms)},
                   {"fold_ms", median(fold_ms)},
                   {"bytes", bytes},
                   {"round_ms", median(round_ms)},
                   {"compute_ms", median(compute_ms)},
                   {"overhead_ms", median(overhead_ms)},
                   {"raw_ms", median(raw_ms)},
                   {"best_overhead_ms", *std::min_element(overhead_ms.begin(), overhead_ms.end())},
                   {"best_raw_ms", *std::min_element(raw_ms.begin(), raw_ms.end())},
                   {"base_kb", base_kb},
                   {"empty_kb", empty_kb},
                   {"hwm_kb", hwm_kb},
                   {"traces", traces}};
    const std::string line = out.dump() + "\n";
    (void)!::write(out_fd, line.data(), line.size());
    std::_Exit(0);
}

// ---------------------------------------------------------------- orchestration (no threads)

std::string read_line(int fd) {
    std::string line;
    char c;
    while (::read(fd, &c, 1) == 1 && c != '\n') {
        line.push_back(c);
    }
    return line;
}

json run_config(const Settings& s, int n) {
    const std::size_t bytes = static_cast<std::size_t>(s.params) * 4;
    int up[2];
    int hold[2];
    if (::pipe(up) != 0 || ::pipe(hold) != 0) {
        std::_Exit(2);
    }
    const pid_t workers = ::fork();
    if (workers == 0) {
        ::close(up[0]);
        ::close(hold[1]);
        worker_process(n, bytes, s.compute_ms, up[1], hold[0]);
    }
    ::close(up[1]);
    ::close(hold[0]);
    std::istringstream ports_line(read_line(up[0]));
    ::close(up[0]);
    std::string word;
    int raw_port = 0;
    std::vector<int> ports;
    ports_line >> word >> raw_port;
    for (int p; ports_line >> p;) {
        ports.push_back(p);
    }
    if (word != "ports" || static_cast<int>(ports.size()) != n) {
        std::fprintf(stderr, "worker process did not start\n");
        std::_Exit(2);
    }
    int res[2];
    if (::pipe(res) != 0) {
        std::_Exit(2);
    }
    const pid_t ttp = ::fork();
    if (ttp == 0) {
        ::close(res[0]);
        ::close(hold[1]);
        ttp_process(s, n, raw_port, ports, res[1]);
    }
    ::close(res[1]);
    const std::string result = read_line(res[0]);
    ::close(res[0]);
    int status = 0;
    ::waitpid(ttp, &status, 0);
    ::close(hold[1]);  // the worker process exits when this closes
    ::waitpid(workers, nullptr, 0);
    json j = json::parse(result, nullptr, false);
    if (!j.is_object()) {
        std::fprintf(stderr, "TTP process failed (status %d)\n", status);
        std::_Exit(1);
    }
    return j;
}

std::vector<int> parse_list(const std::string& text) {
    std::vector<int> v;
    std::stringstream ss(text);
    for (std::string item; std::getline(ss, item, ',');) {
        v.push_back(std::stoi(item));
    }
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    Settings s;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--params") {
            s.params = std::stoll(argv[i + 1]);
        } else if (a == "--workers") {
            s.workers = parse_list(argv[i + 1]);
        } else if (a == "--rounds") {
            s.rounds = std::stoi(argv[i + 1]);
        } else if (a == "--compute-ms") {
            s.compute_ms = std::stoi(argv[i + 1]);
        } else if (a == "--trace") {
            s.trace = std::string(argv[i + 1]) == "1";
        } else {
            std::fprintf(stderr, "unknown option %s\n", a.c_str());
            return 2;
        }
    }
    ::signal(SIGPIPE, SIG_IGN);
    std::printf(
        "bench_training_rounds: model of %lld parameters (%.1f MB F32), FedAvg, %d rounds "
        "(median), "
        "local compute %d ms per worker\n",
        static_cast<long long>(s.params), static_cast<double>(s.params) * 4 / 1e6, s.rounds,
        s.compute_ms);
    std::printf("%-8s %10s %10s %12s %12s %12s %10s %10s %12s %12s %12s\n", "workers", "round ms",
                "compute", "overhead ms", "raw TCP ms", "beyond raw", "GB/s", "raw GB/s", "peak MB",
                "peak/model", "total/model");
    std::vector<json> attribution;
    for (int n : s.workers) {
        const json r = run_config(s, n);
        const double moved = 2.0 * static_cast<double>(n) * r["bytes"].get<double>();
        const double overhead = r["overhead_ms"].get<double>();
        const double raw = r["raw_ms"].get<double>();
        const double peak_mb = static_cast<double>(r["hwm_kb"].get<std::int64_t>() -
                                                   r["base_kb"].get<std::int64_t>()) /
                               1024.0;
        const double model_mb = r["bytes"].get<double>() / (1024.0 * 1024.0);
        const double total_mb = static_cast<double>(r["hwm_kb"].get<std::int64_t>() -
                                                    r["empty_kb"].get<std::int64_t>()) /
                                1024.0;
        std::printf("%-8d %10.2f %10.2f %12.2f %12.2f %12.2f %10.2f %10.2f %12.1f %12.2f %12.2f\n",
                    n, r["round_ms"].get<double>(), r["compute_ms"].get<double>(), overhead, raw,
                    overhead - raw, moved / (overhead * 1e6), moved / (raw * 1e6), peak_mb,
                    peak_mb / model_mb, total_mb / model_mb);
        const double best = r["best_overhead_ms"].get<double>();
        const double best_raw = r["best_raw_ms"].get<double>();
        std::printf("%-8s %10s %10s %12.2f %12.2f %12.2f %10.2f %10.2f   (best of %d rounds)\n", "",
                    "", "", best, best_raw, best - best_raw, moved / (best * 1e6),
                    moved / (best_raw * 1e6), s.rounds);
        for (const auto& line : r["traces"]) {
            std::printf("  %d workers: %s\n", n, line.get<std::string>().c_str());
        }
        std::fflush(stdout);
        attribution.push_back(r);
    }
    std::printf(
        "\nload average at the end: %s\n"
        "per model (%.1f MB), one at a time in the TTP process: memcpy %.2f ms, safetensors "
        "encode %.2f ms, "
        "decode %.2f ms, FedAvg fold %.2f ms (from the %d-worker run)\n",
        load_average().c_str(), static_cast<double>(s.params) * 4 / 1e6,
        attribution.back()["copy_ms"].get<double>(), attribution.back()["encode_ms"].get<double>(),
        attribution.back()["decode_ms"].get<double>(), attribution.back()["fold_ms"].get<double>(),
        attribution.back()["workers"].get<int>());
    std::printf(
        "overhead = round - slowest worker's compute; raw TCP = the same bytes (weights to every "
        "worker "
        "and back) on loopback, no HTTP/encoding/aggregation; GB/s = bytes moved / time; peak = "
        "TTP VmHWM "
        "during the rounds minus its RSS before them (after a warm-up round); total = VmHWM minus "
        "the TTP's RSS before it made the model (the global model, kept buffers and the round's "
        "peak: the figure for the goal 'under twice the model plus a fixed overhead')\n");
    return 0;
}
