// SPDX-License-Identifier: Apache-2.0
// The train function (plugins/ttp/train) driving workers on loopback sockets through the real
// HttpWorkerClient and the real FedAvg session. Workers are raw sockets so one can fail in the
// middle of its reply: a round whose sums hold part of a failed reply is run again without it
// (quorum) or fails naming it. The streamed rounds give the bits of whole-reply rounds.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/core/http/client.hpp>
#include <synergos/core/roles/worker_client.hpp>
#include <synergos/core/tensor/safetensors.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "fedavg.hpp"
#include "support/archive_context.hpp"
#include "train_function.hpp"
#include "unit/core/http/http_test_util.hpp"
#include "weighted_mean.hpp"

namespace {

namespace sdk = synergos::sdk;
namespace tensor = synergos::core::tensor;
namespace fs = std::filesystem;
using nlohmann::json;

/// The initial model: a [1000, 700] weight (2.8 MB: six 512 KiB pieces when streamed, so half
/// a reply has folded some), a bias and an I64 counter (folded whole).
sdk::TensorMap initial_model() {
    sdk::TensorMap m;
    for (auto [name, shape] : {std::pair<const char*, std::vector<std::int64_t>>{"l.weight", {1000, 700}},
                               std::pair<const char*, std::vector<std::int64_t>>{"l.bias", {1000}}}) {
        sdk::Tensor t;
        t.name = name;
        t.shape = shape;
        t.data.resize(static_cast<std::size_t>(t.numel()) * 4);
        for (std::int64_t i = 0; i < t.numel(); ++i) {
            t.f32()[i] = static_cast<float>((i * 7919) % 2001 - 1000) * 1e-3f;
        }
        m.tensors.push_back(std::move(t));
    }
    sdk::Tensor counter;
    counter.name = "bn.num_batches_tracked";
    counter.dtype = sdk::DType::I64;
    counter.data.resize(8);
    m.tensors.push_back(std::move(counter));
    return m;
}

/// Worker k's "local training": w * (1 + k/8) + k/100 for F32, counter + k + 1.
sdk::TensorMap local_update(const sdk::TensorMap& global, int k) {
    sdk::TensorMap w = global;
    for (auto& t : w.tensors) {
        if (t.dtype == sdk::DType::F32) {
            for (std::int64_t i = 0; i < t.numel(); ++i) {
                t.f32()[i] = t.f32()[i] * (1.0f + static_cast<float>(k) / 8.0f) +
                             static_cast<float>(k) / 100.0f;
            }
        } else {
            std::int64_t v = 0;
            std::memcpy(&v, t.data.data(), 8);
            v += k + 1;
            std::memcpy(t.data.data(), &v, 8);
        }
    }
    return w;
}

/// A worker on a raw socket, one request per connection (`Connection: close`). The first
/// `break_trains` train calls answer half of their safetensors body, then close.
class RawWorker {
public:
    /// `evaluates` false: no evaluate split (init says evaluate_rows 0, /evaluate answers 422).
    /// `fails_init`: /initialise answers 500.
    RawWorker(int k, std::int64_t samples, int break_trains = 0, bool evaluates = true,
              bool fails_init = false)
        : k_(k), samples_(samples), break_trains_(break_trains), evaluates_(evaluates),
          fails_init_(fails_init) {
        std::uint16_t port = 0;
        listener_ = synergos::testing::listen_loopback(port);
        REQUIRE(listener_ >= 0);
        node.participant_id = "p" + std::to_string(k);
        node.host = "127.0.0.1";
        node.port = port;
        thread_ = std::thread([this] { serve(); });
    }
    ~RawWorker() {
        frozen_trains = false;  // a held /train ends: its connection closes
        ::shutdown(listener_, SHUT_RDWR);
        thread_.join();
        ::close(listener_);
    }
    RawWorker(const RawWorker&) = delete;
    RawWorker& operator=(const RawWorker&) = delete;

    sdk::GridNode node;
    std::atomic<int> trains{0};
    std::atomic<int> evaluations{0};
    std::atomic<int> inits{0};
    std::atomic<int> inits_with_weights{0};  ///< initialise calls that asked for the weights

    // Misbehaviours, set before the job runs.
    std::atomic<bool> weights_unasked{false};  ///< /initialise always sends a model of its own
    std::atomic<int> init_delay_ms{0};         ///< /initialise answers this late
    std::atomic<std::int64_t> claimed_samples{0};  ///< /train claims these samples (0: its rows)
    std::atomic<std::int64_t> claimed_rows{0};     ///< /evaluate claims these rows (0: 10)
    std::atomic<double> eval_loss{0.25};           ///< /evaluate's loss
    std::atomic<bool> rising_loss{false};          ///< each /evaluate's loss 0.125 above the last
    std::atomic<int> failing_evaluation{0};        ///< the /evaluate call with this number answers 500
    std::atomic<bool> frozen_trains{false};        ///< /train never answers (a frozen process)

private:
    void serve() {
        while (true) {
            const int fd = ::accept(listener_, nullptr, nullptr);
            if (fd < 0) {
                return;
            }
            handle(fd);
            ::close(fd);
        }
    }

    static void send_all(int fd, const std::string& bytes) {
        std::size_t sent = 0;
        while (sent < bytes.size()) {
            const ssize_t n = ::write(fd, bytes.data() + sent, bytes.size() - sent);
            if (n <= 0) {
                return;
            }
            sent += static_cast<std::size_t>(n);
        }
    }

    static void answer(int fd, const std::string& type, const std::string& body, std::size_t cut) {
        send_all(fd, "HTTP/1.1 200 OK\r\nContent-Type: " + type +
                         "\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
                         "\r\n\r\n" + body.substr(0, cut));
    }

    /// Catch2's assertions are not thread-safe, so this thread makes none: a step that fails
    /// answers 500, which fails the training the test checks.
    static void refuse(int fd, const std::string& why) {
        send_all(fd, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                     "Connection: close\r\nContent-Length: " +
                         std::to_string(why.size()) + "\r\n\r\n" + why);
    }

    void handle(int fd) {
        const std::string request = synergos::testing::read_request(fd);
        const auto space = request.find(' ');
        const std::string path = request.substr(space + 1, request.find(' ', space + 1) - space - 1);
        const auto head_end = request.find("\r\n\r\n");
        const std::string body = head_end == std::string::npos ? "" : request.substr(head_end + 4);
        const std::string st(tensor::kSafetensorsContentType);
        std::string out;
        auto ends_with = [&](const char* suffix) {
            const std::string s(suffix);
            return path.size() >= s.size() && path.compare(path.size() - s.size(), s.size(), s) == 0;
        };
        if (ends_with("/initialise")) {
            ++inits;
            std::this_thread::sleep_for(std::chrono::milliseconds(init_delay_ms.load()));
            if (fails_init_) {
                return refuse(fd, "this worker cannot load its data");
            }
            const json meta{{"train_rows", samples_}, {"evaluate_rows", evaluates_ ? 10 : 0}};
            const json asked = json::parse(body, nullptr, false);
            const bool weights = asked.is_object() && asked.value("return_weights", false) == true;
            if (!weights && weights_unasked) {
                // Not asked, and sends a model of its choosing anyway.
                if (!tensor::encode_into(local_update(initial_model(), 7), {{"json", meta.dump()}}, out).is_ok()) {
                    return refuse(fd, "the unasked model could not be encoded");
                }
                answer(fd, st, out, out.size());
                return;
            }
            if (!weights) {
                answer(fd, "application/json", meta.dump(), std::string::npos);
                return;
            }
            ++inits_with_weights;
            if (!tensor::encode_into(initial_model(), {{"json", meta.dump()}}, out).is_ok()) {
                return refuse(fd, "the initial model could not be encoded");
            }
            answer(fd, st, out, out.size());
        } else if (ends_with("/train")) {
            if (frozen_trains) {
                // Holds the connection open with no answer, for at most 30 s.
                for (int i = 0; i < 3000 && frozen_trains; ++i) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(10));
                }
                return;
            }
            auto decoded = tensor::decode(std::string_view(body));
            if (!decoded) {
                return refuse(fd, "the global model sent could not be decoded");
            }
            const json meta{{"samples", claimed_samples != 0 ? claimed_samples.load() : samples_},
                            {"epoch_losses", {0.5 + k_}}};
            if (!tensor::encode_into(local_update(decoded->tensors, k_), {{"json", meta.dump()}}, out).is_ok()) {
                return refuse(fd, "the local update could not be encoded");
            }
            const int n = ++trains;
            answer(fd, st, out, n <= break_trains_ ? out.size() / 2 : out.size());
        } else if (ends_with("/evaluate")) {
            const int n = ++evaluations;
            if (n == failing_evaluation) {
                return refuse(fd, "this worker lost its evaluate split");
            }
            if (!evaluates_) {
                const std::string why = R"({"message": "run has no evaluate split"})";
                send_all(fd, "HTTP/1.1 422 Unprocessable Entity\r\nContent-Type: application/json\r\n"
                             "Connection: close\r\nContent-Length: " +
                                 std::to_string(why.size()) + "\r\n\r\n" + why);
                return;
            }
            const double loss = eval_loss + (rising_loss ? 0.125 * (n - 1) : 0.0);
            const std::int64_t rows = claimed_rows != 0 ? claimed_rows.load() : 10;
            answer(fd, "application/json", json{{"rows", rows}, {"loss", loss}}.dump(), std::string::npos);
        } else {
            answer(fd, "application/json", "{}", std::string::npos);
        }
    }

    int k_;
    std::int64_t samples_;
    int break_trains_;
    bool evaluates_;
    bool fails_init_;
    int listener_ = -1;
    std::thread thread_;
};

/// SDK 1.0-style strategy: FedAvg's sums behind a session that only knows `accumulate`.
class PlainSession final : public sdk::AggregationSession {
public:
    sdk::Status begin_round(const sdk::TensorMap& global, int round) noexcept override {
        return inner_.begin_round(global, round);
    }
    sdk::Status accumulate(const std::string& participant, std::int64_t samples,
                           const sdk::TensorMap& weights) noexcept override {
        ++accumulated;
        return inner_.accumulate(participant, samples, weights);
    }
    sdk::Result<sdk::TensorMap> finish_round() noexcept override { return inner_.finish_round(); }
    sdk::Result<sdk::TensorMap> save_state() noexcept override { return inner_.save_state(); }
    sdk::Status load_state(const sdk::TensorMap& state) noexcept override {
        return inner_.load_state(state);
    }
    static inline std::atomic<int> accumulated{0};

private:
    synergos::plugins::fedavg::WeightedMeanSession inner_{"plain"};
};

class PlainAggregator final : public sdk::Aggregator {
public:
    sdk::Status validate(std::string_view) noexcept override { return sdk::Status::ok(); }
    sdk::Result<std::unique_ptr<sdk::AggregationSession>> open(std::string_view) noexcept override {
        return std::unique_ptr<sdk::AggregationSession>(new PlainSession());
    }
    std::string worker_arguments(std::string_view) noexcept override { return "{}"; }
};

/// The TTP's side of a job: real worker client, files in a temporary directory.
class Ctx final : public sdk::JobContext {
public:
    Ctx(std::vector<sdk::GridNode> nodes, const std::string& outputs)
        : nodes_(std::move(nodes)),
          outputs_(outputs),
          fedavg_(host_, sdk::Options(std::map<std::string, std::string>{})),
          client_(http_) {}

    sdk::Logger& logger() noexcept override { return logger_; }
    const std::string& job_id() const noexcept override { return job_id_; }
    int grid() const noexcept override { return 0; }
    const std::vector<sdk::GridNode>& nodes() const noexcept override { return nodes_; }
    std::string outputs_dir() const override { return outputs_; }
    bool is_cancelled() const noexcept override { return cancelled.load(); }
    void report_progress(std::string_view progress) noexcept override {
        progress_.emplace_back(progress);
    }
    /// As the TTP's: calls still waiting once the job is cancelled are given up.
    sdk::WorkerClient& workers() noexcept override { return stoppable_; }
    sdk::Result<sdk::Aggregator*> aggregator(const std::string& name) noexcept override {
        if (name == "fedavg") {
            return static_cast<sdk::Aggregator*>(&fedavg_);
        }
        if (name == "plain") {
            return static_cast<sdk::Aggregator*>(&plain_);
        }
        return sdk::Error{sdk::ErrorCode::NotFound, "no aggregator '" + name + "'"};
    }
    sdk::Result<std::string> submit_job(std::string_view) noexcept override {
        return sdk::Error{sdk::ErrorCode::Unimplemented, "not in this test"};
    }
    sdk::Result<std::string> wait_job(const std::string&, std::chrono::milliseconds) noexcept override {
        return sdk::Error{sdk::ErrorCode::Unimplemented, "not in this test"};
    }
    sdk::Status write_tensors(const std::string& path, const sdk::TensorMap& tensors,
                              std::string_view metadata) noexcept override {
        tensor::Metadata md;
        const json meta = json::parse(metadata, nullptr, false);
        if (!meta.is_object()) {
            return {sdk::ErrorCode::InvalidArgument, "metadata is not a JSON object"};
        }
        for (auto& [k, v] : meta.items()) {
            md[k] = v.is_string() ? v.get<std::string>() : v.dump();
        }
        auto encoded = tensor::encode_to_string(tensors, md);
        if (!encoded) {
            return encoded.status();
        }
        return write_file(path, *encoded);
    }
    sdk::Result<sdk::TensorMap> read_tensors(const std::string& path) noexcept override {
        std::ifstream in(path, std::ios::binary);
        if (!in) {
            return sdk::Error{sdk::ErrorCode::NotFound, "no file " + path};
        }
        const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        auto decoded = tensor::decode(std::string_view(bytes));
        if (!decoded) {
            return decoded.error();
        }
        return std::move(decoded->tensors);
    }
    sdk::Status write_file(const std::string& path, std::string_view content) noexcept override {
        std::error_code ec;
        fs::create_directories(fs::path(path).parent_path(), ec);
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(content.data(), static_cast<std::streamsize>(content.size()));
        return out ? sdk::Status::ok() : sdk::Status{sdk::ErrorCode::Internal, "cannot write " + path};
    }

    sdk::testing::CapturingLogger logger_;

private:
    sdk::testing::FakeHost host_;
    std::string job_id_ = "job-1";
    std::vector<sdk::GridNode> nodes_;
    std::string outputs_;
    std::vector<std::string> progress_;
    synergos::plugins::fedavg::FedAvg fedavg_;
    PlainAggregator plain_;
    synergos::core::http::HttpClient http_;
    synergos::core::roles::HttpWorkerClient client_;

    class Stoppable final : public sdk::WorkerClient {
    public:
        Stoppable(synergos::core::roles::HttpWorkerClient& client, const std::atomic<bool>& cancelled)
            : client_(client), stop_([&cancelled] { return cancelled.load(); }) {}
        sdk::Result<sdk::WorkerReply> call(const sdk::GridNode& node, const sdk::WorkerRequest& request) noexcept override {
            return client_.call(node, request, stop_);
        }
        void call_all(const std::vector<sdk::GridNode>& nodes, const std::vector<sdk::WorkerRequest>& requests,
                      sdk::ReplyVisitor& visitor) noexcept override {
            client_.call_all(nodes, requests, visitor, stop_);
        }

    private:
        synergos::core::roles::HttpWorkerClient& client_;
        synergos::core::jobs::StoppableWorkerClient::StopCheck stop_;
    };

public:
    std::atomic<bool> cancelled{false};

private:
    Stoppable stoppable_{client_, cancelled};
};

struct TempDir {
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "synergos-train-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string path;
};

std::string job(const std::vector<sdk::GridNode>& nodes, const json& run,
                const std::string& job_id = "job-1") {
    json tags = json::object();
    for (const auto& n : nodes) {
        tags[n.participant_id] = {{"train", json::array({json::array({"x"})})}};
    }
    return json{{"job_id", job_id},
                {"process", "train"},
                {"keys", {"c", "p", "e", "r"}},
                {"grid", 0},
                {"parameters",
                 {{"run", run}, {"experiment", {{"model", json::array({{{"activation", "relu"}}})}}},
                  {"tags", tags}}}}
        .dump();
}

/// What `rounds` rounds of FedAvg over workers `ks` (weights `samples`) give, whole replies
/// folded in the order of `ks`.
sdk::TensorMap expected_global(const std::vector<int>& ks, const std::vector<std::int64_t>& samples,
                               int rounds) {
    sdk::TensorMap global = initial_model();
    synergos::plugins::fedavg::WeightedMeanSession session("fedavg");
    for (int r = 0; r < rounds; ++r) {
        REQUIRE(session.begin_round(global, r).is_ok());
        for (std::size_t i = 0; i < ks.size(); ++i) {
            REQUIRE(session.accumulate("p" + std::to_string(ks[i]), samples[i],
                                       local_update(global, ks[i])).is_ok());
        }
        auto next = session.finish_round();
        REQUIRE(next.has_value());
        global = std::move(*next);
    }
    return global;
}

sdk::TensorMap run_train(Ctx& ctx, const std::vector<sdk::GridNode>& nodes, const json& run,
                         bool save_local_models, json* outputs = nullptr,
                         const std::string& job_id = "job-1") {
    sdk::testing::FakeHost host;
    synergos::plugins::train::TrainFunction train(
        host, sdk::Options(std::map<std::string, std::string>{
                  {"save_local_models", save_local_models ? "true" : "false"}}));
    auto out = train.execute(ctx, job(nodes, run, job_id));
    INFO((out ? std::string() : out.error().message));
    REQUIRE(out.has_value());
    const json o = json::parse(*out);
    if (outputs != nullptr) {
        *outputs = o;
    }
    auto global = ctx.read_tensors(o["global"]["path"].get<std::string>());
    REQUIRE(global.has_value());
    return std::move(*global);
}

void check_same(const sdk::TensorMap& got, const sdk::TensorMap& expected) {
    REQUIRE(got.tensors.size() == expected.tensors.size());
    for (std::size_t t = 0; t < expected.tensors.size(); ++t) {
        INFO("tensor " << expected.tensors[t].name);
        CHECK(got.tensors[t].name == expected.tensors[t].name);
        CHECK(got.tensors[t].data == expected.tensors[t].data);  // bit for bit
    }
}

}  // namespace

TEST_CASE("train: streamed FedAvg rounds give the bits of whole-reply rounds, also through a "
          "1.0-style session",
          "[unit][ttp][train]") {
    RawWorker w0(0, 30);
    RawWorker w1(1, 70);
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node};
    const sdk::TensorMap expected = expected_global({0, 1}, {30, 70}, 3);
    TempDir dir;

    Ctx streamed(nodes, dir.path + "/streamed");
    json outputs;
    check_same(run_train(streamed, nodes, {{"rounds", 3}, {"algorithm", "FedAvg"}}, false, &outputs),
               expected);
    CHECK(outputs["summary"]["rounds_run"] == 3);
    CHECK(outputs["summary"]["dropped"].empty());
    CHECK(outputs["history"]["local"]["p1"]["2"] == 1.5);

    PlainSession::accumulated = 0;
    Ctx plain(nodes, dir.path + "/plain");
    check_same(run_train(plain, nodes, {{"rounds", 3}, {"algorithm", "plain"}}, false), expected);
    CHECK(PlainSession::accumulated == 6);  // every reply came whole through accumulate
    CHECK(w0.trains == 6);
}

TEST_CASE("train: the round that saves local models streams each worker's weights into its file",
          "[unit][ttp][train]") {
    RawWorker w0(0, 5);
    RawWorker w1(1, 9);
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node};
    const sdk::TensorMap after_round0 = expected_global({0, 1}, {5, 9}, 1);
    TempDir dir;
    for (const char* algorithm : {"fedavg", "plain"}) {  // streamed, and whole through 1.0
        INFO(algorithm);
        const std::string out = dir.path + "/" + algorithm;
        Ctx ctx(nodes, out);
        check_same(run_train(ctx, nodes, {{"rounds", 2}, {"algorithm", algorithm}}, true),
                   expected_global({0, 1}, {5, 9}, 2));
        // Round 1 (the last) saved each worker's weights: its update of round 0's global.
        for (int k : {0, 1}) {
            const std::string path =
                out + "/c/p/e/r/local_model_p" + std::to_string(k) + ".safetensors";
            std::ifstream in(path, std::ios::binary);
            const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            auto decoded = tensor::decode(std::string_view(bytes));
            REQUIRE(decoded.has_value());
            check_same(decoded->tensors, local_update(after_round0, k));
            CHECK(decoded->metadata["round"] == "1");
            CHECK(decoded->metadata["participant"] == "p" + std::to_string(k));
        }
    }
}

TEST_CASE("train: a worker failing mid-reply in the round that saves local models leaves no "
          "file of its own, the round runs again",
          "[unit][ttp][train]") {
    RawWorker w0(0, 10);
    RawWorker w1(1, 20, /*break_trains=*/1);
    RawWorker w2(2, 40);
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node, w2.node};
    TempDir dir;
    Ctx ctx(nodes, dir.path);
    check_same(run_train(ctx, nodes, {{"rounds", 1}, {"algorithm", "fedavg"}, {"quorum", 2}}, true),
               expected_global({0, 2}, {10, 40}, 1));
    const std::string run = dir.path + "/c/p/e/r";
    auto local = ctx.read_tensors(run + "/local_model_p2.safetensors");
    REQUIRE(local.has_value());
    check_same(*local, local_update(initial_model(), 2));
    CHECK_FALSE(fs::exists(run + "/local_model_p1.safetensors"));
    for (const auto& entry : fs::directory_iterator(run)) {
        CHECK(entry.path().extension() != ".tmp");
    }
}

TEST_CASE("train: a worker failing mid-reply after part of it was folded makes the round run "
          "again without it when the quorum allows",
          "[unit][ttp][train]") {
    RawWorker w0(0, 10);
    RawWorker w1(1, 20, /*break_trains=*/1);  // its first train reply stops halfway
    RawWorker w2(2, 40);
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node, w2.node};
    TempDir dir;
    Ctx ctx(nodes, dir.path);
    json outputs;
    const auto got =
        run_train(ctx, nodes, {{"rounds", 2}, {"algorithm", "fedavg"}, {"quorum", 2}}, false, &outputs);
    check_same(got, expected_global({0, 2}, {10, 40}, 2));
    CHECK(outputs["summary"]["dropped"] == json::array({"p1"}));
    CHECK(w1.trains == 1);
    // Round 0 ran twice for the others (the first attempt's sums held half of p1's reply).
    CHECK(w0.trains == 3);
    CHECK(w2.trains == 3);
    CHECK(ctx.logger_.contains("round run again"));
    CHECK(ctx.logger_.contains("worker dropped from the round"));
}

TEST_CASE("train: a worker failing mid-reply fails the round, naming it, when the quorum needs it",
          "[unit][ttp][train]") {
    RawWorker w0(0, 10);
    RawWorker w1(1, 20, /*break_trains=*/1);
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node};
    TempDir dir;
    Ctx ctx(nodes, dir.path);
    sdk::testing::FakeHost host;
    synergos::plugins::train::TrainFunction train(
        host, sdk::Options(std::map<std::string, std::string>{{"save_local_models", "false"}}));
    auto out = train.execute(ctx, job(nodes, {{"rounds", 2}, {"algorithm", "fedavg"}}));
    REQUIRE_FALSE(out.has_value());
    INFO(out.error().message);
    CHECK(out.error().message.find("round 0 failed") != std::string::npos);
    CHECK(out.error().message.find("worker 'p1'") != std::string::npos);
    CHECK(out.error().message.find("'p0'") == std::string::npos);
    CHECK_FALSE(fs::exists(dir.path + "/c/p/e/r/checkpoints/round_0/state.json"));
}

TEST_CASE("train: a job cancelled while a worker never answers its round keeps no round made without it",
          "[unit][ttp][train]") {
    RawWorker w0(0, 10);
    RawWorker w1(1, 20);
    RawWorker w2(2, 30);
    w2.frozen_trains = true;
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node, w2.node};
    TempDir dir;
    Ctx ctx(nodes, dir.path);
    // Cancelled once the two others have answered round 0: the frozen worker's call is given
    // up. Dropping it (the quorum of 2 allows a drop) would finish the round without it.
    std::thread canceller([&] {
        for (int i = 0; i < 3000 && (w0.trains < 1 || w1.trains < 1); ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        ctx.cancelled = true;
    });
    sdk::testing::FakeHost host;
    synergos::plugins::train::TrainFunction train(
        host, sdk::Options(std::map<std::string, std::string>{{"save_local_models", "false"}}));
    const auto began = std::chrono::steady_clock::now();
    auto out = train.execute(ctx, job(nodes, {{"rounds", 3}, {"algorithm", "fedavg"}, {"quorum", 2}}));
    canceller.join();
    CHECK(std::chrono::steady_clock::now() - began < std::chrono::seconds(20));
    REQUIRE_FALSE(out.has_value());
    INFO(out.error().message);
    CHECK(out.error().code == sdk::ErrorCode::Cancelled);
    CHECK(out.error().message == "stopped in round 0");
    CHECK_FALSE(fs::exists(dir.path + "/c/p/e/r/checkpoints/round_0"));
}

TEST_CASE("train: a run's model is archived only under its run and a trial's under its experiment",
          "[unit][ttp][train]") {
    sdk::testing::FakeHost host;
    synergos::plugins::train::TrainFunction train(host, sdk::Options(std::map<std::string, std::string>{}));
    synergos::testing::NoStoreArchiveContext ctx;
    const std::string outputs = R"({"global":{"path":"g"},"local_0":{"origin":"p0"}})";
    const auto archived = [&](const json& parameters) {
        const json job_msg = {{"job_id", "j1"},
                              {"process", "train"},
                              {"keys", {"c", "p", "e", "r"}},
                              {"grid", 0},
                              {"parameters", parameters}};
        auto batch = train.archive(ctx, job_msg.dump(), outputs);
        INFO((batch ? std::string() : batch.error().message));
        REQUIRE(batch.has_value());
        REQUIRE(batch->size() == 2);
        CHECK(batch->at(0).mode == sdk::WriteMode::Require);
        CHECK(batch->at(1).kind == "Model");
        return batch->at(0);
    };
    // A run deleted while it trained: the Require fails the archive (NotFound), the job fails.
    const sdk::Mutation plain = archived(json::object());
    CHECK(plain.kind == "Run");
    using Fields = std::vector<std::pair<std::string, std::string>>;
    const auto fields = [](const sdk::Key& key) {
        Fields out;
        for (const auto& f : key) {
            out.emplace_back(f.name, f.value);
        }
        return out;
    };
    CHECK(fields(plain.key) == Fields{{"collab_id", "c"}, {"project_id", "p"}, {"expt_id", "e"}, {"run_id", "r"}});
    // An optimization's trial trains before its Run record is written.
    const sdk::Mutation trial = archived({{"optimization", "opt-job"}});
    CHECK(trial.kind == "Experiment");
    CHECK(fields(trial.key) == Fields{{"collab_id", "c"}, {"project_id", "p"}, {"expt_id", "e"}});
}

TEST_CASE("train: a second training of a run starts over instead of resuming the first one's "
          "checkpoints",
          "[unit][ttp][train]") {
    RawWorker w0(0, 30);
    RawWorker w1(1, 70);
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node};
    TempDir dir;
    Ctx ctx(nodes, dir.path);
    json outputs;
    check_same(run_train(ctx, nodes, {{"rounds", 3}, {"algorithm", "FedAvg"}}, false, &outputs),
               expected_global({0, 1}, {30, 70}, 3));
    // The same job again (a redelivery after it finished): resumes past its last round.
    check_same(run_train(ctx, nodes, {{"rounds", 3}, {"algorithm", "FedAvg"}}, false, &outputs),
               expected_global({0, 1}, {30, 70}, 3));
    CHECK(outputs["summary"]["resumed_at"] == 3);
    CHECK(w0.trains == 3);
    // Another training job of the same run, with 2 rounds: its own 2 rounds from the start.
    // Before, it "resumed" at round 3 of the first and exported the first one's model.
    check_same(run_train(ctx, nodes, {{"rounds", 2}, {"algorithm", "FedAvg"}}, false, &outputs, "job-2"),
               expected_global({0, 1}, {30, 70}, 2));
    CHECK(outputs["summary"]["rounds_run"] == 2);
    CHECK(outputs["summary"]["resumed_at"] == 0);
    CHECK(w0.trains == 5);
    CHECK_FALSE(fs::exists(dir.path + "/c/p/e/r/checkpoints/round_2"));  // the first job's
    bool said_why = false;
    for (const auto& line : ctx.logger_.lines()) {
        said_why = said_why || (line.event.find("checkpoints not resumed") != std::string::npos &&
                                line.fields_json.find("left by an earlier training of this run") !=
                                    std::string::npos);
    }
    CHECK(said_why);
}

TEST_CASE("train: only the newest two round checkpoints are kept", "[unit][ttp][train]") {
    // Every round's checkpoint was kept: 400 rounds of a 16 KB model took 20 MB.
    RawWorker w0(0, 30);
    RawWorker w1(1, 70);
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node};
    TempDir dir;
    Ctx ctx(nodes, dir.path);
    json outputs;
    check_same(run_train(ctx, nodes, {{"rounds", 5}, {"algorithm", "FedAvg"}}, false, &outputs),
               expected_global({0, 1}, {30, 70}, 5));
    std::set<std::string> kept;
    for (const auto& entry : fs::directory_iterator(dir.path + "/c/p/e/r/checkpoints")) {
        kept.insert(entry.path().filename().string());
    }
    CHECK(kept == std::set<std::string>{"round_3", "round_4"});
    CHECK(outputs["history"]["train"].size() == 5);  // the history is whole in the newest
    // Delivered again: resumes past its last round from the newest.
    check_same(run_train(ctx, nodes, {{"rounds", 5}, {"algorithm", "FedAvg"}}, false, &outputs),
               expected_global({0, 1}, {30, 70}, 5));
    CHECK(outputs["summary"]["resumed_at"] == 5);
    CHECK(w0.trains == 5);
}

TEST_CASE("train: a job whose newest checkpoint does not read back resumes from the one before it",
          "[unit][ttp][train]") {
    RawWorker w0(0, 30);
    RawWorker w1(1, 70);
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node};
    TempDir dir;
    Ctx ctx(nodes, dir.path);
    const json run{{"rounds", 5}, {"algorithm", "FedAvg"}};
    check_same(run_train(ctx, nodes, run, false), expected_global({0, 1}, {30, 70}, 5));
    // A disk fault in the newest checkpoint's model (its state.json still reads).
    const std::string round_4 = dir.path + "/c/p/e/r/checkpoints/round_4";
    std::ofstream(round_4 + "/global_model.safetensors", std::ios::trunc) << "not a model";
    // Delivered again: round 4 is trained again from round 3's checkpoint. Before, every
    // checkpoint was removed and all five rounds ran again.
    json outputs;
    check_same(run_train(ctx, nodes, run, false, &outputs), expected_global({0, 1}, {30, 70}, 5));
    CHECK(outputs["summary"]["resumed_at"] == 4);
    CHECK(w0.trains == 6);
    CHECK(ctx.logger_.contains("checkpoint unreadable; removed, the one before it is tried"));
    CHECK(fs::exists(round_4 + "/state.json"));  // written again by the round run again

    // With a strategy's saved state (a noise accountant, say) going back a round would send a
    // second model for the round that went out: refused, saying what to do.
    json state;
    std::ifstream(round_4 + "/state.json") >> state;
    state["has_aggregator_state"] = true;
    std::ofstream(round_4 + "/state.json", std::ios::trunc) << state.dump();
    std::ofstream(round_4 + "/global_model.safetensors", std::ios::trunc) << "not a model";
    sdk::testing::FakeHost host;
    synergos::plugins::train::TrainFunction train(
        host, sdk::Options(std::map<std::string, std::string>{{"save_local_models", "false"}}));
    auto refused = train.execute(ctx, job(nodes, run));
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().code == sdk::ErrorCode::FailedPrecondition);
    CHECK_THAT(refused.error().message, Catch::Contains("checkpoint of round 4") && Catch::Contains("Remove '"));
    CHECK(fs::exists(round_4 + "/state.json"));  // left as it was
    CHECK(w0.trains == 6);
}

TEST_CASE("train: a job that stopped in a round's validation takes the round up from the model "
          "that went out instead of training it anew",
          "[unit][ttp][train]") {
    RawWorker w0(0, 30);
    RawWorker w1(1, 70);
    w1.failing_evaluation = 2;  // round 1's validation; the quorum needs p1: the job fails
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node};
    TempDir dir;
    Ctx ctx(nodes, dir.path);
    const json run{{"rounds", 3}, {"algorithm", "FedAvg"}};
    {
        sdk::testing::FakeHost host;
        synergos::plugins::train::TrainFunction train(
            host, sdk::Options(std::map<std::string, std::string>{{"save_local_models", "false"}}));
        auto out = train.execute(ctx, job(nodes, run));
        REQUIRE_FALSE(out.has_value());
        INFO(out.error().message);
        CHECK(out.error().message.find("round 1") != std::string::npos);
    }
    const std::string round_1 = dir.path + "/c/p/e/r/checkpoints/round_1";
    CHECK(fs::exists(round_1 + "/released.json"));
    CHECK_FALSE(fs::exists(round_1 + "/state.json"));
    CHECK(w0.trains == 2);
    // Delivered again: round 1 resumes at its validation with the model the workers saw. Before,
    // the round trained again and a second model for it went out (dpfedavg: a second noised
    // release, counted once by its accountant).
    json outputs;
    check_same(run_train(ctx, nodes, run, false, &outputs), expected_global({0, 1}, {30, 70}, 3));
    CHECK(w0.trains == 3);
    CHECK(w1.trains == 3);
    CHECK(outputs["summary"]["rounds_run"] == 3);
    CHECK(outputs["summary"]["resumed_at"] == 1);
    CHECK(outputs["history"]["train"].contains("1"));  // kept from the release
    CHECK(outputs["history"]["evaluate"].contains("1"));
    CHECK(ctx.logger_.contains("round taken up at its validation"));
    CHECK(fs::exists(round_1 + "/state.json"));
}

TEST_CASE("train: participants without an evaluate split train and are not asked to validate",
          "[unit][ttp][train]") {
    RawWorker w0(0, 30);
    RawWorker w1(1, 70, 0, /*evaluates=*/false);
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node};
    TempDir dir;
    Ctx ctx(nodes, dir.path);
    json outputs;
    check_same(run_train(ctx, nodes, {{"rounds", 2}, {"algorithm", "FedAvg"}}, false, &outputs),
               expected_global({0, 1}, {30, 70}, 2));
    CHECK(outputs["summary"]["dropped"].empty());
    CHECK(w0.evaluations == 2);
    CHECK(w1.evaluations == 0);
    CHECK(outputs["history"]["evaluate"]["1"] == 0.25);  // from p0's split alone
}

TEST_CASE("train: a resumed run that had stopped early reports the rounds it ran",
          "[unit][ttp][train]") {
    RawWorker w0(0, 30);
    RawWorker w1(1, 70);
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node};
    TempDir dir;
    Ctx ctx(nodes, dir.path);
    // The validation loss rises after round 0: patience 1 stops after round 1.
    w0.rising_loss = true;
    w1.rising_loss = true;
    const json run{{"rounds", 5}, {"algorithm", "FedAvg"}, {"patience", 1}};
    json outputs;
    check_same(run_train(ctx, nodes, run, false, &outputs), expected_global({0, 1}, {30, 70}, 2));
    CHECK(outputs["summary"]["rounds_run"] == 2);
    CHECK(outputs["summary"]["stopped_early"] == true);
    // Delivered again (the TTP died before its result was acknowledged): the same answer.
    // Before, it reported 5 rounds run.
    check_same(run_train(ctx, nodes, run, false, &outputs), expected_global({0, 1}, {30, 70}, 2));
    CHECK(outputs["summary"]["rounds_run"] == 2);
    CHECK(outputs["summary"]["stopped_early"] == true);
    CHECK(outputs["summary"]["resumed_at"] == 2);
    CHECK(w0.trains == 2);
}

TEST_CASE("train: one worker returns the initial weights and another does when it is dropped",
          "[unit][ttp][train]") {
    TempDir dir;
    SECTION("all initialise") {
        // Two workers: with three, the streamed sums' order (arrival) changes the last bits.
        RawWorker w0(0, 30);
        RawWorker w1(1, 70);
        const std::vector<sdk::GridNode> nodes{w0.node, w1.node};
        Ctx ctx(nodes, dir.path);
        check_same(run_train(ctx, nodes, {{"rounds", 1}, {"algorithm", "FedAvg"}}, false),
                   expected_global({0, 1}, {30, 70}, 1));
        CHECK(w0.inits + w1.inits == 2);
        // Before, every worker sent its copy of the model for one to be kept.
        CHECK(w0.inits_with_weights + w1.inits_with_weights == 1);
    }
    SECTION("the one asked for them fails and the quorum drops it") {
        RawWorker w0(0, 30, 0, true, /*fails_init=*/true);
        RawWorker w1(1, 70);
        RawWorker w2(2, 50);
        const std::vector<sdk::GridNode> nodes{w0.node, w1.node, w2.node};
        Ctx ctx(nodes, dir.path);
        json outputs;
        check_same(run_train(ctx, nodes, {{"rounds", 1}, {"algorithm", "FedAvg"}, {"quorum", 2}},
                             false, &outputs),
                   expected_global({1, 2}, {70, 50}, 1));
        CHECK(outputs["summary"]["dropped"] == json::array({"p0"}));
        CHECK(w1.inits == 2);  // initialised again, returning the weights this time
        CHECK(w1.inits_with_weights + w2.inits_with_weights == 1);
    }
}

TEST_CASE("train: an equal validation loss counts as an improvement for global early stopping",
          "[unit][ttp][train]") {
    RawWorker w0(0, 30);
    RawWorker w1(1, 70);
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node};
    TempDir dir;
    Ctx ctx(nodes, dir.path);
    // The loss holds at 0.25 with delta 0: as in the original (loss <= best - delta), the run
    // goes on. Before, patience 1 stopped it after round 1.
    json outputs;
    check_same(run_train(ctx, nodes, {{"rounds", 3}, {"algorithm", "FedAvg"}, {"patience", 1}}, false,
                         &outputs),
               expected_global({0, 1}, {30, 70}, 3));
    CHECK(outputs["summary"]["rounds_run"] == 3);
    CHECK(outputs["summary"]["stopped_early"] == false);
}

TEST_CASE("train: only the worker asked for the initial weights supplies them",
          "[unit][ttp][train]") {
    RawWorker w0(0, 30);
    RawWorker w1(1, 70);
    // w1 answers first with a model of its own although it was not asked for one.
    w0.init_delay_ms = 300;
    w1.weights_unasked = true;
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node};
    TempDir dir;
    Ctx ctx(nodes, dir.path);
    check_same(run_train(ctx, nodes, {{"rounds", 1}, {"algorithm", "FedAvg"}}, false),
               expected_global({0, 1}, {30, 70}, 1));
    CHECK(w0.inits_with_weights == 1);
    CHECK(w1.inits_with_weights == 0);
}

TEST_CASE("train: a worker claiming more samples than the train rows it reported is refused "
          "naming it",
          "[unit][ttp][train]") {
    RawWorker w0(0, 30);
    RawWorker w1(1, 70);
    w1.claimed_samples = 71;  // one more than its 70 train rows
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node};
    TempDir dir;
    for (const char* algorithm : {"fedavg", "plain"}) {  // streamed, and whole through 1.0
        INFO(algorithm);
        Ctx ctx(nodes, dir.path + "/" + algorithm);
        sdk::testing::FakeHost host;
        synergos::plugins::train::TrainFunction train(
            host, sdk::Options(std::map<std::string, std::string>{{"save_local_models", "false"}}));
        auto out = train.execute(ctx, job(nodes, {{"rounds", 1}, {"algorithm", algorithm}}));
        REQUIRE_FALSE(out.has_value());
        INFO(out.error().message);
        CHECK(out.error().code == sdk::ErrorCode::InvalidArgument);
        CHECK(out.error().message.find("round 0 failed") != std::string::npos);
        CHECK(out.error().message.find("worker 'p1': its reply's samples (71)") != std::string::npos);
        CHECK(out.error().message.find("70 train rows") != std::string::npos);
        CHECK(out.error().message.find("'p0'") == std::string::npos);
    }
    // Under a quorum the worker is dropped and the others' mean goes on.
    Ctx ctx(nodes, dir.path + "/quorum");
    json outputs;
    check_same(run_train(ctx, nodes, {{"rounds", 1}, {"algorithm", "fedavg"}, {"quorum", 1}}, false,
                         &outputs),
               expected_global({0}, {30}, 1));
    CHECK(outputs["summary"]["dropped"] == json::array({"p1"}));
}

TEST_CASE("train: a worker's validation rows count at most the evaluate rows it reported",
          "[unit][ttp][train]") {
    RawWorker w0(0, 30);
    RawWorker w1(1, 70);
    w1.claimed_rows = 9000000000000000000;  // its initialise said 10
    w1.eval_loss = 1.0;
    const std::vector<sdk::GridNode> nodes{w0.node, w1.node};
    TempDir dir;
    Ctx ctx(nodes, dir.path);
    json outputs;
    run_train(ctx, nodes, {{"rounds", 1}, {"algorithm", "FedAvg"}}, false, &outputs);
    // (0.25 * 10 + 1.0 * 10) / 20; before, w1's claim made the round's loss its own.
    CHECK(outputs["history"]["evaluate"]["0"].get<double>() == Approx(0.625));
}
