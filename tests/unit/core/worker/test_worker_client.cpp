// SPDX-License-Identifier: Apache-2.0
// HttpWorkerClient against real worker-protocol servers on loopback: weights sent from the
// request's tensors and received straight into the reply's tensors, replies bounded in memory.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/core/http/client.hpp>
#include <synergos/core/http/router.hpp>
#include <synergos/core/http/server.hpp>
#include <synergos/core/roles/worker_client.hpp>
#include <synergos/core/tensor/safetensors.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "unit/core/http/http_test_util.hpp"
#include "support/process_memory.hpp"

namespace {

using synergos::testing::peak_rss_kib;
using synergos::testing::reset_peak_rss;

using namespace std::chrono_literals;
namespace sdk = synergos::sdk;
namespace http = synergos::core::http;
namespace tensor = synergos::core::tensor;
using nlohmann::json;
using synergos::core::roles::HttpWorkerClient;

sdk::Tensor make_tensor(const std::string& name, std::vector<std::int64_t> shape, float base) {
    sdk::Tensor t;
    t.name = name;
    t.shape = std::move(shape);
    t.data.resize(static_cast<std::size_t>(t.numel()) * 4);
    for (std::int64_t i = 0; i < t.numel(); ++i) {
        t.f32()[i] = base + static_cast<float>(i % 977) * 0.5f;
    }
    return t;
}

/// Three tensors of ~1.2 MB in all, one of them empty.
sdk::TensorMap make_model() {
    sdk::TensorMap m;
    m.tensors.push_back(make_tensor("0.weight", {300, 1000}, 1.0f));
    m.tensors.push_back(make_tensor("0.empty", {0}, 0.0f));
    m.tensors.push_back(make_tensor("0.bias", {300}, -2.0f));
    return m;
}

/// Workers that multiply the weights they get by (index + 1) and report it in the JSON; the
/// `bad` worker answers with a safetensors body whose header runs past its end.
struct Workers {
    explicit Workers(int n, int bad = -1, std::function<void()> before_reply = {}) {
        for (int i = 0; i < n; ++i) {
            auto router = std::make_unique<http::Router>();
            router->add("POST", "/train", [i, bad, before_reply](const http::Request& req) {
                if (before_reply) {
                    before_reply();
                }
                sdk::TensorMap w;
                tensor::Metadata md;
                if (auto st = tensor::decode_into(std::string_view(req.body), w, &md); !st) {
                    return http::Response::error(400, st.message());
                }
                if (i == bad) {
                    http::Response r;
                    r.content_type = std::string(tensor::kSafetensorsContentType);
                    r.body = std::string("\xff\x00\x00\x00\x00\x00\x00\x00{}", 10);
                    return r;
                }
                for (auto& t : w.tensors) {
                    for (std::int64_t k = 0; k < t.numel(); ++k) {
                        t.f32()[k] *= static_cast<float>(i + 1);
                    }
                }
                http::Response r;
                r.content_type = std::string(tensor::kSafetensorsContentType);
                const std::string j = json{{"worker", i}, {"request", md["json"]}}.dump();
                if (auto st = tensor::encode_into(w, {{"json", j}}, r.body); !st) {
                    return http::Response::error(500, st.message());
                }
                return r;
            });
            router->add("GET", "/health", [i](const http::Request&) {
                return http::Response::json(i == 0 ? 503 : 200, json{{"worker", i}});
            });
            http::ServerOptions so;
            so.port = 0;
            so.body_limit_bytes = 64u << 20;
            auto server = std::make_unique<http::HttpServer>(so, *router, logger);
            REQUIRE(server->start().is_ok());
            sdk::GridNode node;
            node.participant_id = "p" + std::to_string(i);
            node.host = "127.0.0.1";
            node.port = server->bound_port();
            nodes.push_back(node);
            routers.push_back(std::move(router));
            servers.push_back(std::move(server));
        }
    }
    ~Workers() {
        for (auto& s : servers) {
            s->stop(2s);
        }
    }
    sdk::testing::CapturingLogger logger;
    std::vector<std::unique_ptr<http::Router>> routers;
    std::vector<std::unique_ptr<http::HttpServer>> servers;
    std::vector<sdk::GridNode> nodes;
};

class Collect final : public sdk::ReplyVisitor {
public:
    explicit Collect(bool keep) : keep_(keep) {}
    void on_reply(std::size_t index, sdk::Result<sdk::WorkerReply>&& reply) noexcept override {
        ++visits[index];
        visited_at[index] = std::chrono::steady_clock::now();
        if (!reply) {
            errors[index] = reply.error().message;
            return;
        }
        statuses[index] = reply->status;
        jsons[index] = reply->json;
        // Checked here: the buffers may be reused for the next reply once this returns.
        const sdk::TensorMap expected = make_model();
        bool same = reply->tensors.tensors.size() == expected.tensors.size();
        for (const auto& e : expected.tensors) {
            const sdk::Tensor* t = reply->tensors.find(e.name);
            same = same && t != nullptr && t->shape == e.shape && t->dtype == e.dtype &&
                   t->data.size() == e.data.size();
            for (std::int64_t k = 0; same && k < e.numel(); ++k) {
                same = t->f32()[k] == e.f32()[k] * static_cast<float>(index + 1);
            }
        }
        correct[index] = same;
        if (keep_) {
            kept[index] = std::move(reply->tensors);
        }
    }
    bool keep_;
    std::map<std::size_t, int> visits;
    std::map<std::size_t, int> statuses;
    std::map<std::size_t, std::string> jsons;
    std::map<std::size_t, std::string> errors;
    std::map<std::size_t, bool> correct;
    std::map<std::size_t, sdk::TensorMap> kept;
    std::map<std::size_t, std::chrono::steady_clock::time_point> visited_at;
};

/// A worker on a raw socket, for one connection: reads the request, then `answer` writes to
/// the socket, which is closed when it returns.
class OneShotWorker {
public:
    explicit OneShotWorker(std::function<void(int fd)> answer) : answer_(std::move(answer)) {
        listener_ = synergos::testing::listen_loopback(port, 4);
        REQUIRE(listener_ >= 0);
        thread_ = std::thread([this] {
            const int fd = ::accept(listener_, nullptr, nullptr);
            if (fd < 0) {
                return;
            }
            (void)synergos::testing::read_request(fd);
            answer_(fd);
            ::close(fd);
        });
    }
    ~OneShotWorker() {
        ::shutdown(listener_, SHUT_RDWR);
        thread_.join();
        ::close(listener_);
    }
    OneShotWorker(const OneShotWorker&) = delete;
    OneShotWorker& operator=(const OneShotWorker&) = delete;
    std::uint16_t port = 0;

private:
    std::function<void(int)> answer_;
    int listener_ = -1;
    std::thread thread_;
};

/// Writes all of `bytes` (blocking); false when the peer went away.
bool write_all(int fd, const std::string& bytes) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + sent, bytes.size() - sent);
        if (n <= 0) {
            return false;
        }
        sent += static_cast<std::size_t>(n);
    }
    return true;
}

/// The head of a 200 safetensors reply whose body is `body_bytes` long.
std::string weights_head(std::size_t body_bytes) {
    return "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.safetensors\r\nContent-Length: " +
           std::to_string(body_bytes) + "\r\n\r\n";
}

/// A worker that answers with the start of a safetensors reply (all but the last 1 MB of the
/// declared length) and then sends nothing more until released, or (`trickle`) one byte every
/// 100 ms: never stalled, never useful.
class StalledWorker {
public:
    explicit StalledWorker(bool trickle = false) : trickle_(trickle) {}
    ~StalledWorker() { release(); }  // before `worker_` waits for its thread
    void release() {
        std::lock_guard<std::mutex> lock(mutex_);
        released_ = true;
        cv_.notify_all();
    }
    /// Waits until the partial reply went out.
    bool wait_sent(std::chrono::milliseconds timeout) {
        std::unique_lock<std::mutex> lock(mutex_);
        return cv_.wait_for(lock, timeout, [this] { return sent_; });
    }

private:
    void answer(int fd) {
        std::string body;
        REQUIRE(tensor::encode_into(make_model(), {{"json", "{}"}}, body).is_ok());
        (void)write_all(fd, weights_head(body.size()) + body.substr(0, body.size() - 1000000));
        std::unique_lock<std::mutex> lock(mutex_);
        sent_ = true;
        cv_.notify_all();
        std::size_t at = body.size() - 1000000;
        const auto until = std::chrono::steady_clock::now() + 20s;
        while (!cv_.wait_for(lock, trickle_ ? 100ms : 20s, [this] { return released_; }) &&
               std::chrono::steady_clock::now() < until) {
            if (trickle_ && at < body.size() && !write_all(fd, body.substr(at++, 1))) {
                break;
            }
        }
    }

    const bool trickle_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool sent_ = false;
    bool released_ = false;
    OneShotWorker worker_{[this](int fd) { answer(fd); }};  // last: starts once the rest is

public:
    const std::uint16_t port = worker_.port;
};

/// The request timeout of the calls check_others_served judges. Long enough that the other
/// workers' 32 MB round trips fit well inside it on a loaded machine (they took 3.0-3.2 s while a
/// build kept both cores busy, against a 3 s bound); before the send gate's escape they waited
/// for the stuck requests' whole timeout.
constexpr auto kStuckTimeout = 10s;

/// For a call (kStuckTimeout timeouts) whose first `stuck` nodes never answer and whose other
/// nodes are `Workers` 0, 1, ...: each of those answered well before the stuck ones timed out.
void check_others_served(Collect& visitor, std::size_t stuck, std::size_t n,
                         std::chrono::steady_clock::time_point started) {
    for (std::size_t i = stuck; i < n; ++i) {
        INFO("node " << i << " " << visitor.errors[i]);
        CHECK(visitor.statuses[i] == 200);
        CHECK(visitor.jsons[i].find("\"worker\":" + std::to_string(i - stuck)) != std::string::npos);
        CHECK(visitor.visited_at[i] - started < kStuckTimeout - 2s);
    }
    for (std::size_t i = 0; i < stuck; ++i) {
        INFO("node " << i);
        REQUIRE(visitor.errors.count(i) == 1);
        CHECK(visitor.errors[i].find("timed out") != std::string::npos);
    }
}

std::vector<sdk::WorkerRequest> train_requests(std::size_t n, const sdk::TensorMap& model) {
    std::vector<sdk::WorkerRequest> reqs(n);
    for (auto& r : reqs) {
        r.path = "/train";
        r.json = R"({"round":1})";
        r.tensors = &model;
        r.timeout = 20s;
    }
    return reqs;
}

}  // namespace

TEST_CASE("worker client sends weights from the model and receives each reply's weights intact",
          "[unit][worker_client]") {
    Workers workers(5);
    http::HttpClient http_client;
    const sdk::TensorMap model = make_model();
    const auto replies_in_memory = GENERATE(std::size_t{1}, std::size_t{3});
    HttpWorkerClient client(http_client, replies_in_memory);
    for (int round = 0; round < 3; ++round) {  // later rounds reuse buffers and connections
        INFO("replies in memory " << replies_in_memory << ", round " << round);
        Collect visitor(/*keep=*/round == 1);
        client.call_all(workers.nodes, train_requests(5, model), visitor);
        for (std::size_t i = 0; i < 5; ++i) {
            INFO("worker " << i << " " << visitor.errors[i]);
            CHECK(visitor.visits[i] == 1);
            CHECK(visitor.statuses[i] == 200);
            CHECK(visitor.correct[i]);
            const json j = json::parse(visitor.jsons[i]);
            CHECK(j["worker"] == i);
            CHECK(j["request"] == R"({"round":1})");
        }
        if (round == 1) {
            // Weights the visitor kept stay its own while later replies arrive.
            for (std::size_t i = 0; i < 5; ++i) {
                REQUIRE(visitor.kept[i].tensors.size() == 3);
                CHECK(visitor.kept[i].find("0.bias")->f32()[1] ==
                      (-2.0f + 0.5f) * static_cast<float>(i + 1));
            }
        }
    }
    CHECK(http_client.connections_opened() == 5);
}

TEST_CASE("worker client names a worker whose safetensors reply is invalid, the others arrive",
          "[unit][worker_client]") {
    Workers workers(3, /*bad=*/1);
    http::HttpClient http_client;
    const sdk::TensorMap model = make_model();
    HttpWorkerClient client(http_client);
    Collect visitor(false);
    client.call_all(workers.nodes, train_requests(3, model), visitor);
    CHECK(visitor.correct[0]);
    CHECK(visitor.correct[2]);
    REQUIRE(visitor.errors.count(1) == 1);
    CHECK(visitor.errors[1].find("worker 'p1' sent an invalid safetensors body") !=
          std::string::npos);
    // The slot of the failed reply came back: a second round completes for everyone else.
    Collect again(false);
    client.call_all(workers.nodes, train_requests(3, model), again);
    CHECK(again.correct[0]);
    CHECK(again.correct[2]);
}

TEST_CASE("worker client passes JSON replies and error statuses through", "[unit][worker_client]") {
    Workers workers(2);
    http::HttpClient http_client;
    HttpWorkerClient client(http_client);
    sdk::WorkerRequest health;
    health.method = "GET";
    health.path = "/health";
    health.timeout = 5s;
    auto sick = client.call(workers.nodes[0], health);
    REQUIRE(sick.has_value());
    CHECK(sick->status == 503);
    CHECK(json::parse(sick->json)["worker"] == 0);
    CHECK(sick->tensors.tensors.empty());
    auto well = client.call(workers.nodes[1], health);
    REQUIRE(well.has_value());
    CHECK(well->status == 200);

    sdk::WorkerRequest missing = health;
    missing.path = "/nope";
    auto nope = client.call(workers.nodes[1], missing);
    REQUIRE(nope.has_value());
    CHECK(nope->status == 404);

    sdk::GridNode closed = workers.nodes[1];
    closed.port = 0;
    auto bad_port = client.call(closed, health);
    REQUIRE_FALSE(bad_port.has_value());
    CHECK(bad_port.error().message.find("'p1' has no valid port") != std::string::npos);

    // A single call with weights gets them back decoded.
    const sdk::TensorMap model = make_model();
    auto trained = client.call(workers.nodes[0], train_requests(1, model)[0]);
    REQUIRE(trained.has_value());
    CHECK(trained->status == 200);
    REQUIRE(trained->tensors.tensors.size() == 3);
    CHECK(trained->tensors.tensors[0].data == model.tensors[0].data);  // worker 0 multiplies by 1
}

TEST_CASE("worker client receives the other replies while one worker hangs or trickles mid-reply",
          "[unit][worker_client]") {
    // Trickling: a byte every 100 ms used to count as progress and kept the only slot.
    const bool trickle = GENERATE(false, true);
    INFO("trickle " << trickle);
    StalledWorker stalled(trickle);
    // The healthy workers answer once the hung one holds the only reply slot.
    Workers workers(3, -1, [&stalled] { stalled.wait_sent(5s); });
    std::vector<sdk::GridNode> nodes = workers.nodes;
    sdk::GridNode hung;
    hung.participant_id = "hung";
    hung.host = "127.0.0.1";
    hung.port = stalled.port;
    nodes.insert(nodes.begin(), hung);
    http::HttpClient http_client;
    const sdk::TensorMap model = make_model();
    HttpWorkerClient client(http_client, /*replies_in_memory=*/1, /*concurrent_sends=*/4);
    auto reqs = train_requests(4, model);
    for (auto& r : reqs) {
        r.timeout = kStuckTimeout;
    }
    Collect visitor(false);
    const auto started = std::chrono::steady_clock::now();
    client.call_all(nodes, reqs, visitor);
    check_others_served(visitor, /*stuck=*/1, /*n=*/4, started);
}

namespace {

/// A streaming visitor (SDK 1.1): reassembles each reply's F32 tensors from the pieces, checks
/// they come in order and that no two calls overlap. `refuse` stops one worker's stream after
/// its first piece; `stream` false declines every stream (whole replies, as SDK 1.0).
class StreamCollect final : public sdk::StreamingReplyVisitor {
public:
    explicit StreamCollect(bool stream = true, int refuse = -1)
        : stream_(stream), refuse_(refuse) {}

    bool on_reply_head(std::size_t index, const sdk::ReplyHead& head) noexcept override {
        Enter enter(*this);
        if (head_seen) {
            head_seen(index);
        }
        heads[index] = head;
        for (const auto& spec : head.tensors) {
            sdk::Tensor t;
            t.name = spec.name;
            t.dtype = spec.dtype;
            t.shape = spec.shape;
            assembled[index].tensors.push_back(std::move(t));
        }
        return stream_;
    }
    bool on_weights(std::size_t index, std::size_t tensor, std::uint64_t offset,
                    const float* values, std::size_t count) noexcept override {
        Enter enter(*this);
        ++pieces[index];
        max_piece = std::max(max_piece, count);
        auto& t = assembled[index].tensors.at(tensor);
        in_order = in_order && offset * 4 == t.data.size() && t.dtype == sdk::DType::F32;
        const auto* bytes = reinterpret_cast<const unsigned char*>(values);
        t.data.insert(t.data.end(), bytes, bytes + count * 4);
        return static_cast<int>(index) != refuse_;
    }
    void on_reply(std::size_t index, sdk::Result<sdk::WorkerReply>&& reply) noexcept override {
        Enter enter(*this);
        ++visits[index];
        order.push_back(index);
        if (!reply) {
            errors[index] = reply.error().message;
            return;
        }
        statuses[index] = reply->status;
        whole[index] = std::move(reply->tensors);
    }

    std::function<void(std::size_t)> head_seen;  ///< called first in on_reply_head
    std::vector<std::size_t> order;               ///< indexes in the order they were visited
    bool stream_;
    int refuse_;
    std::atomic<int> inside{0};
    bool overlapped = false;
    bool in_order = true;
    std::size_t max_piece = 0;
    std::map<std::size_t, sdk::ReplyHead> heads;
    std::map<std::size_t, sdk::TensorMap> assembled;
    std::map<std::size_t, sdk::TensorMap> whole;
    std::map<std::size_t, int> pieces;
    std::map<std::size_t, int> visits;
    std::map<std::size_t, int> statuses;
    std::map<std::size_t, std::string> errors;

private:
    struct Enter {
        explicit Enter(StreamCollect& c) : c_(c) {
            c_.overlapped = c_.overlapped || c_.inside.fetch_add(1) != 0;
        }
        ~Enter() { c_.inside.fetch_sub(1); }
        StreamCollect& c_;
    };
};

/// What worker `i` of `Workers` answers: the model times (i + 1).
sdk::TensorMap scaled_model(std::size_t i) {
    sdk::TensorMap m = make_model();
    for (auto& t : m.tensors) {
        for (std::int64_t k = 0; k < t.numel(); ++k) {
            t.f32()[k] *= static_cast<float>(i + 1);
        }
    }
    return m;
}

}  // namespace

TEST_CASE("worker client streams F32 weights to a streaming visitor in fixed pieces, in order",
          "[unit][worker_client]") {
    Workers workers(4);
    http::HttpClient http_client;
    const sdk::TensorMap model = make_model();
    HttpWorkerClient client(http_client);
    for (int round = 0; round < 2; ++round) {
        INFO("round " << round);
        StreamCollect visitor;
        client.call_all(workers.nodes, train_requests(4, model), visitor);
        CHECK_FALSE(visitor.overlapped);
        CHECK(visitor.in_order);
        CHECK(visitor.max_piece <= 131072);  // the fixed buffer, not the 300000-element tensor
        for (std::size_t i = 0; i < 4; ++i) {
            INFO("worker " << i << " " << visitor.errors[i]);
            CHECK(visitor.visits[i] == 1);
            CHECK(visitor.statuses[i] == 200);
            CHECK(visitor.heads[i].status == 200);
            CHECK(json::parse(visitor.heads[i].json)["worker"] == i);
            CHECK(visitor.pieces[i] >= 2);  // the 300000-element tensor came in two pieces at least
            CHECK(visitor.whole[i].tensors.empty());  // every tensor is F32: all streamed
            const sdk::TensorMap expected = scaled_model(i);
            REQUIRE(visitor.assembled[i].tensors.size() == 3);
            for (std::size_t t = 0; t < 3; ++t) {
                CHECK(visitor.assembled[i].tensors[t].name == expected.tensors[t].name);
                CHECK(visitor.assembled[i].tensors[t].shape == expected.tensors[t].shape);
                CHECK(visitor.assembled[i].tensors[t].data == expected.tensors[t].data);
            }
        }
    }
    CHECK(http_client.connections_opened() == 4);
}

TEST_CASE("worker client: a streaming visitor that declines gets whole replies, one that stops "
          "a stream gets an error for that worker only",
          "[unit][worker_client]") {
    Workers workers(3);
    http::HttpClient http_client;
    const sdk::TensorMap model = make_model();
    HttpWorkerClient client(http_client);

    StreamCollect declined(/*stream=*/false);
    client.call_all(workers.nodes, train_requests(3, model), declined);
    for (std::size_t i = 0; i < 3; ++i) {
        INFO("worker " << i << " " << declined.errors[i]);
        CHECK(declined.pieces[i] == 0);
        REQUIRE(declined.whole[i].tensors.size() == 3);
        CHECK(declined.whole[i].tensors[0].data == scaled_model(i).tensors[0].data);
    }

    StreamCollect stopped(/*stream=*/true, /*refuse=*/1);
    client.call_all(workers.nodes, train_requests(3, model), stopped);
    CHECK(stopped.pieces[1] == 1);
    REQUIRE(stopped.errors.count(1) == 1);
    CHECK(stopped.errors[1].find("worker 'p1'") != std::string::npos);
    for (std::size_t i : {0, 2}) {
        INFO("worker " << i << " " << stopped.errors[i]);
        CHECK(stopped.statuses[i] == 200);
        CHECK(stopped.assembled[i].tensors[0].data == scaled_model(i).tensors[0].data);
    }
    // The stopped connection is not reused for garbage: the next round is whole for everyone.
    StreamCollect again;
    client.call_all(workers.nodes, train_requests(3, model), again);
    for (std::size_t i = 0; i < 3; ++i) {
        INFO("worker " << i << " " << again.errors[i]);
        CHECK(again.statuses[i] == 200);
        CHECK(again.assembled[i].tensors[2].data == scaled_model(i).tensors[2].data);
    }
}

TEST_CASE("worker client streams F32 tensors and hands the other dtypes whole in the reply",
          "[unit][worker_client]") {
    sdk::testing::CapturingLogger logger;
    http::Router router;
    router.add("POST", "/train", [](const http::Request&) {
        sdk::TensorMap w;
        w.tensors.push_back(make_tensor("bn.weight", {70000}, 3.0f));
        sdk::Tensor counter;
        counter.name = "bn.num_batches_tracked";
        counter.dtype = sdk::DType::I64;
        const std::int64_t batches = 42;
        counter.data.resize(8);
        std::memcpy(counter.data.data(), &batches, 8);
        w.tensors.push_back(counter);
        w.tensors.push_back(make_tensor("bn.bias", {5}, -1.0f));
        http::Response r;
        r.content_type = std::string(tensor::kSafetensorsContentType);
        (void)tensor::encode_into(w, {{"json", R"({"samples":3})"}}, r.body);
        return r;
    });
    http::ServerOptions so;
    so.port = 0;
    http::HttpServer server(so, router, logger);
    REQUIRE(server.start().is_ok());
    sdk::GridNode node{"p0", "127.0.0.1", server.bound_port()};
    http::HttpClient http_client;
    HttpWorkerClient client(http_client);
    const sdk::TensorMap model = make_model();
    StreamCollect visitor;
    client.call_all({node}, train_requests(1, model), visitor);
    server.stop(2s);
    INFO(visitor.errors[0]);
    REQUIRE(visitor.statuses[0] == 200);
    REQUIRE(visitor.heads[0].tensors.size() == 3);
    REQUIRE(visitor.whole[0].tensors.size() == 1);
    const sdk::Tensor& counter = visitor.whole[0].tensors[0];
    CHECK(counter.name == "bn.num_batches_tracked");
    CHECK(counter.dtype == sdk::DType::I64);
    std::int64_t batches = 0;
    std::memcpy(&batches, counter.data.data(), 8);
    CHECK(batches == 42);
    const auto& streamed = visitor.assembled[0].tensors;
    CHECK(streamed[0].data == make_tensor("bn.weight", {70000}, 3.0f).data);
    CHECK(streamed[1].data.empty());  // the I64 tensor never went through on_weights
    CHECK(streamed[2].data == make_tensor("bn.bias", {5}, -1.0f).data);
}

namespace {

/// A worker that reads the request, then sends the head of a reply declaring `data_bytes` more
/// than it will ever send (weights: the safetensors length and header of one F32 tensor of
/// that size; else JSON of that size) and nothing more until the test ends.
class DeclaringWorker {
public:
    DeclaringWorker(bool weights, std::uint64_t data_bytes)
        : weights_(weights), data_bytes_(data_bytes) {}
    ~DeclaringWorker() {  // before `worker_` waits for its thread
        std::lock_guard<std::mutex> lock(mutex_);
        released_ = true;
        cv_.notify_all();
    }

private:
    void answer(int fd) {
        std::string out;
        if (weights_) {
            std::string header = R"({"__metadata__":{"json":"{}"},"w":{"dtype":"F32","shape":[)" +
                                 std::to_string(data_bytes_ / 4) + R"(],"data_offsets":[0,)" +
                                 std::to_string(data_bytes_) + "]}}";
            header.append((8 - header.size() % 8) % 8, ' ');
            char prefix[8];
            std::uint64_t len = header.size();
            for (char& c : prefix) {
                c = static_cast<char>(len & 0xff);
                len >>= 8;
            }
            out = weights_head(8 + header.size() + data_bytes_) + std::string(prefix, 8) + header;
        } else {
            out = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                  std::to_string(data_bytes_) + "\r\n\r\n{\"a\":";
        }
        (void)write_all(fd, out);
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait_for(lock, 20s, [this] { return released_; });
    }

    bool weights_;
    std::uint64_t data_bytes_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool released_ = false;
    OneShotWorker worker_{[this](int fd) { answer(fd); }};  // last: starts once the rest is

public:
    const std::uint16_t port = worker_.port;
};

}  // namespace

TEST_CASE("worker client commits no memory for replies that are declared but never sent",
          "[unit][worker_client]") {
    // Three workers declare 512 MiB of weights and one 512 MiB of JSON: none of it arrives.
    constexpr std::uint64_t declared = std::uint64_t{512} << 20;
    std::vector<std::unique_ptr<DeclaringWorker>> raw;
    std::vector<sdk::GridNode> nodes;
    for (int i = 0; i < 4; ++i) {
        raw.push_back(std::make_unique<DeclaringWorker>(/*weights=*/i < 3, declared));
        nodes.push_back({"w" + std::to_string(i), "127.0.0.1", raw.back()->port});
    }
    http::HttpClient http_client;
    const sdk::TensorMap model = make_model();
    HttpWorkerClient client(http_client, /*replies_in_memory=*/1, /*concurrent_sends=*/4);
    auto reqs = train_requests(4, model);
    for (auto& r : reqs) {
        r.timeout = 1500ms;
    }
    Collect visitor(false);
    reset_peak_rss();
    const long before = peak_rss_kib();
    const auto started = std::chrono::steady_clock::now();
    client.call_all(nodes, reqs, visitor);
    const long grown = peak_rss_kib() - before;
    CHECK(std::chrono::steady_clock::now() - started < 10s);  // the 1.5 s timeouts, in parallel
    for (std::size_t i = 0; i < 3; ++i) {
        INFO("worker " << i << " " << visitor.errors[i]);
        REQUIRE(visitor.errors.count(i) == 1);
        CHECK(visitor.errors[i].find("timed out") != std::string::npos);
    }
    // JSON has a cap of its own, far below a model: refused at the head, naming the worker.
    REQUIRE(visitor.errors.count(3) == 1);
    CHECK(visitor.errors[3].find("worker 'w3'") != std::string::npos);
    CHECK(visitor.errors[3].find("limit") != std::string::npos);
    INFO("peak RSS grew by " << grown << " KiB");
    CHECK(grown < 64 * 1024);  // 2 GiB declared in all
}

namespace {

/// Answers with a reply all but its last 64 bytes at once, then one byte every 40 ms (about
/// 2.6 s): a slow reply that never stalls.
void trickle_reply(int fd) {
    std::string body;
    if (!tensor::encode_into(make_model(), {{"json", "{}"}}, body).is_ok()) {
        return;
    }
    constexpr std::size_t kTail = 64;
    bool ok = write_all(fd, weights_head(body.size()) + body.substr(0, body.size() - kTail));
    for (std::size_t i = body.size() - kTail; ok && i < body.size(); ++i) {
        std::this_thread::sleep_for(40ms);
        ok = ::write(fd, body.data() + i, 1) == 1;
    }
}

/// A worker that takes connections and never reads from them (its receive buffer is small), so
/// a large request to it blocks the sender until the request's timeout.
class DeafWorker {
public:
    DeafWorker() {
        listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(listener_ >= 0);
        const int small = 64 * 1024;  // inherited by accepted sockets
        ::setsockopt(listener_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(listener_, 4) == 0);
        REQUIRE(::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        port = ntohs(a.sin_port);
    }
    ~DeafWorker() { ::close(listener_); }  // the unaccepted connection goes with it
    std::uint16_t port = 0;

private:
    int listener_ = -1;
};

}  // namespace

namespace {

/// A grid node for `worker` (a DeafWorker: connections taken, nothing answered).
sdk::GridNode frozen_node(const DeafWorker& worker) {
    sdk::GridNode node;
    node.participant_id = "frozen";
    node.host = "127.0.0.1";
    node.port = worker.port;
    return node;
}

}  // namespace

TEST_CASE("worker client gives up the calls still waiting once its caller stops and keeps the replies that came",
          "[unit][worker_client]") {
    DeafWorker frozen;  // takes the connection, never reads nor answers (a SIGSTOPped worker)
    Workers workers(2);
    std::vector<sdk::GridNode> nodes = workers.nodes;
    const sdk::GridNode stuck = frozen_node(frozen);
    nodes.push_back(stuck);
    http::HttpClient http_client;
    const sdk::TensorMap model = make_model();
    HttpWorkerClient client(http_client, /*replies_in_memory=*/1, /*concurrent_sends=*/4);
    auto reqs = train_requests(3, model);
    for (auto& r : reqs) {
        r.timeout = 60s;
    }
    // The caller stops once both healthy replies were visited (as a job cancelled meanwhile).
    class Counting final : public sdk::ReplyVisitor {
    public:
        void on_reply(std::size_t index, sdk::Result<sdk::WorkerReply>&& reply) noexcept override {
            const bool ok = reply.has_value();
            inner.on_reply(index, std::move(reply));
            if (ok) {
                ++answered;
            }
        }
        Collect inner{false};
        std::atomic<int> answered{0};
    } visitor;
    const auto began = std::chrono::steady_clock::now();
    client.call_all(nodes, reqs, visitor, [&] { return visitor.answered.load() >= 2; });
    CHECK(std::chrono::steady_clock::now() - began < 20s);  // not the calls' 60 s
    for (std::size_t i = 0; i < 2; ++i) {
        INFO("worker " << i << " " << visitor.inner.errors[i]);
        CHECK(visitor.inner.statuses[i] == 200);
        CHECK(visitor.inner.correct[i]);
    }
    REQUIRE(visitor.inner.errors.count(2) == 1);
    CHECK_THAT(visitor.inner.errors[2], Catch::Contains("stopped by its caller"));
}

TEST_CASE("worker client gives up a call whose worker stops answering its health checks and not a slow one that answers them",
          "[unit][worker_client]") {
    DeafWorker frozen;  // takes connections, answers nothing: neither the call nor /v1/health
    Workers workers(1, -1, [] { std::this_thread::sleep_for(1500ms); });  // trains slowly
    std::vector<sdk::GridNode> nodes = workers.nodes;
    const sdk::GridNode stuck = frozen_node(frozen);
    nodes.push_back(stuck);
    http::HttpClient http_client;
    const sdk::TensorMap model = make_model();
    HttpWorkerClient client(http_client, 1, 4, /*health_check_interval=*/200ms);
    auto reqs = train_requests(2, model);
    for (auto& r : reqs) {
        r.timeout = 60s;
    }
    Collect visitor(false);
    const auto began = std::chrono::steady_clock::now();
    client.call_all(nodes, reqs, visitor);
    CHECK(std::chrono::steady_clock::now() - began < 20s);  // not the calls' 60 s
    INFO("worker 0: " << visitor.errors[0]);
    CHECK(visitor.statuses[0] == 200);  // its health checks were answered while it trained
    CHECK(visitor.correct[0]);
    REQUIRE(visitor.errors.count(1) == 1);
    CHECK_THAT(visitor.errors[1], Catch::Contains("worker 'frozen' stopped answering: 3 health checks in a row failed") &&
                                      Catch::Contains("health_check_interval_s"));

    // With the checks off, the same call waits for its timeout.
    HttpWorkerClient unchecked(http_client, 1, 4, /*health_check_interval=*/0ms);
    std::vector<sdk::WorkerRequest> one = train_requests(1, model);
    one[0].timeout = 1500ms;
    auto reply = unchecked.call(stuck, one[0]);
    REQUIRE_FALSE(reply.has_value());
    CHECK_THAT(reply.error().message, Catch::Contains("timed out"));
}

TEST_CASE("worker client receives streamed replies beside a reply that is still arriving",
          "[unit][worker_client]") {
    // Worker 0's reply takes seconds but keeps moving (no stall). The healthy workers answer
    // only once its head arrived, so it is the first reply being received.
    OneShotWorker slow(trickle_reply);
    std::mutex mutex;
    std::condition_variable cv;
    bool head0 = false;
    Workers workers(3, -1, [&] {
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait_for(lock, 5s, [&] { return head0; });
    });
    std::vector<sdk::GridNode> nodes = workers.nodes;
    nodes.insert(nodes.begin(), sdk::GridNode{"slow", "127.0.0.1", slow.port});
    http::HttpClient http_client;
    const sdk::TensorMap model = make_model();
    HttpWorkerClient client(http_client, /*replies_in_memory=*/1, /*concurrent_sends=*/4);
    StreamCollect visitor;
    visitor.head_seen = [&](std::size_t index) {
        if (index == 0) {
            std::lock_guard<std::mutex> lock(mutex);
            head0 = true;
            cv.notify_all();
        }
    };
    client.call_all(nodes, train_requests(4, model), visitor);
    REQUIRE(visitor.order.size() == 4);
    // The slow reply is visited last: the others did not wait for it to finish arriving.
    CHECK(visitor.order.back() == 0);
    for (std::size_t i = 0; i < 4; ++i) {
        INFO("node " << i << " " << visitor.errors[i]);
        CHECK(visitor.statuses[i] == 200);
        const sdk::TensorMap expected = i == 0 ? make_model() : scaled_model(i - 1);
        REQUIRE(visitor.assembled[i].tensors.size() == 3);
        for (std::size_t t = 0; t < 3; ++t) {
            CHECK(visitor.assembled[i].tensors[t].data == expected.tensors[t].data);
        }
    }
    CHECK_FALSE(visitor.overlapped);
}

TEST_CASE("worker client sends the other requests while workers stop reading theirs",
          "[unit][worker_client]") {
    // Two workers take the connection and read nothing: their 32 MB requests fill the socket
    // buffers and stop. The default allows one request at a time; the others still go out.
    DeafWorker deaf0;
    DeafWorker deaf1;
    Workers workers(2);
    std::vector<sdk::GridNode> nodes{{"deaf0", "127.0.0.1", deaf0.port},
                                     {"deaf1", "127.0.0.1", deaf1.port}};
    nodes.insert(nodes.end(), workers.nodes.begin(), workers.nodes.end());
    sdk::TensorMap model;
    model.tensors.push_back(make_tensor("0.weight", {8000, 1000}, 1.0f));  // 32 MB
    http::HttpClient http_client;
    HttpWorkerClient client(http_client);
    auto reqs = train_requests(4, model);
    for (auto& r : reqs) {
        r.timeout = kStuckTimeout;
    }
    Collect visitor(false);
    const auto started = std::chrono::steady_clock::now();
    client.call_all(nodes, reqs, visitor);
    check_others_served(visitor, /*stuck=*/2, /*n=*/4, started);
}

namespace {

/// A worker answering with a 16 MB safetensors reply (one F32 or I64 tensor) in one blocking
/// write through a small send buffer, which returns only once the client has read nearly all
/// of it; records when it returned.
class BigReplyWorker {
public:
    explicit BigReplyWorker(sdk::DType dtype = sdk::DType::F32) : body_(make_body(dtype)) {}
    std::atomic<std::int64_t> written_ns{0};  ///< steady clock, when the reply's write returned

private:
    static std::string make_body(sdk::DType dtype) {
        sdk::TensorMap model;
        model.tensors.push_back(make_tensor("0.weight", {4000, 1000}, 1.0f));
        if (dtype == sdk::DType::I64) {
            model.tensors[0].dtype = dtype;
            model.tensors[0].shape = {2000, 1000};  // the same 16 MB
        }
        std::string body;
        REQUIRE(tensor::encode_into(model, {{"json", "{}"}}, body).is_ok());
        return body;
    }

    std::string body_;
    OneShotWorker worker_{[this](int fd) {
        const int small = 64 * 1024;
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        (void)write_all(fd, weights_head(body_.size()) + body_);
        written_ns = std::chrono::steady_clock::now().time_since_epoch().count();
    }};  // last: starts once the rest is

public:
    const std::uint16_t port = worker_.port;
};

/// Takes replies whole; its first visit takes 2 s (a strategy folding a large update slowly).
template <class Base = sdk::ReplyVisitor>
class SlowFirstVisit : public Base {
public:
    void on_reply(std::size_t index, sdk::Result<sdk::WorkerReply>&& reply) noexcept override {
        order.push_back(index);
        ok[index] = reply.has_value() && reply->status == 200 &&
                    reply->tensors.tensors.size() == 1 &&
                    reply->tensors.tensors[0].data.size() == std::size_t{16000000};
        if (order.size() == 1) {
            std::this_thread::sleep_for(2s);
            first_visit_end_ns = std::chrono::steady_clock::now().time_since_epoch().count();
        }
    }
    std::vector<std::size_t> order;
    std::map<std::size_t, bool> ok;
    std::int64_t first_visit_end_ns = 0;
};

/// The same, streaming every F32 tensor (the other dtypes still come whole).
class SlowFirstStreamVisit final : public SlowFirstVisit<sdk::StreamingReplyVisitor> {
public:
    bool on_reply_head(std::size_t, const sdk::ReplyHead&) noexcept override { return true; }
    bool on_weights(std::size_t, std::size_t, std::uint64_t, const float*,
                    std::size_t) noexcept override {
        return true;
    }
};

/// Two workers answer 16 MB replies of one `dtype` tensor to a client holding one whole reply
/// at a time, through `Visitor`: the second reply is read only after the first visit ended.
template <class Visitor>
void check_second_read_after_first_visit(sdk::DType dtype) {
    BigReplyWorker w0(dtype);
    BigReplyWorker w1(dtype);
    std::vector<sdk::GridNode> nodes{{"w0", "127.0.0.1", w0.port}, {"w1", "127.0.0.1", w1.port}};
    http::HttpClient http_client;
    const sdk::TensorMap model = make_model();
    HttpWorkerClient client(http_client, /*replies_in_memory=*/1, /*concurrent_sends=*/2);
    Visitor visitor;
    client.call_all(nodes, train_requests(2, model), visitor);
    REQUIRE(visitor.order.size() == 2);
    CHECK(visitor.ok[0]);
    CHECK(visitor.ok[1]);
    const BigReplyWorker& second = visitor.order[1] == 0 ? w0 : w1;
    // Its 16 MB could only leave once the client read them. (Its write may return after the
    // client has read the last bytes: the worker's thread records the time a moment later.)
    REQUIRE(synergos::testing::wait_until([&] { return second.written_ns.load() != 0; }, 10s));
    CHECK(second.written_ns.load() >= visitor.first_visit_end_ns);
}

}  // namespace

TEST_CASE("worker client lets no whole reply in beside one the visitor is still taking",
          "[unit][worker_client]") {
    // The visit takes longer than the stall escape (half a second), but nothing is stalled.
    check_second_read_after_first_visit<SlowFirstVisit<>>(sdk::DType::F32);
}

TEST_CASE("worker client holds a streamed reply's large whole tensors under the whole-reply bound",
          "[unit][worker_client]") {
    // Only F32 tensors stream: a 16 MB I64 tensor arrives whole.
    check_second_read_after_first_visit<SlowFirstStreamVisit>(sdk::DType::I64);
}

namespace {

std::size_t threads_in_process() {
    std::size_t n = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
        (void)entry;
        ++n;
    }
    return n;
}

}  // namespace

TEST_CASE("worker client keeps its calling threads between calls instead of starting new ones",
          "[unit][worker_client]") {
    // The workers answer only once all four requests of a call arrived: four calling threads
    // run at once in every call.
    std::mutex mutex;
    std::condition_variable cv;
    int arrived = 0;
    int call = 0;
    Workers workers(4, -1, [&] {
        std::unique_lock<std::mutex> lock(mutex);
        ++arrived;
        cv.notify_all();
        cv.wait_for(lock, 5s, [&] { return arrived >= 4 * (call + 1); });
    });
    http::HttpClient http_client;
    const sdk::TensorMap model = make_model();
    HttpWorkerClient client(http_client);
    const std::size_t before = threads_in_process();
    for (; call < 3;) {
        INFO("call " << call);
        Collect visitor(false);
        client.call_all(workers.nodes, train_requests(4, model), visitor);
        for (std::size_t i = 0; i < 4; ++i) {
            CHECK(visitor.statuses[i] == 200);
        }
        // Four threads, kept idle for the next call. (One still on its way back to idle when
        // the next call starts makes that call start another: the pause makes it rare, and
        // starting threads anew would add four per call.)
        const std::size_t now = threads_in_process();
        CHECK(now >= before + 4);
        {
            std::lock_guard<std::mutex> lock(mutex);
            CHECK(now <= before + 4 + static_cast<std::size_t>(call));
            ++call;
        }
        std::this_thread::sleep_for(100ms);
    }
}
