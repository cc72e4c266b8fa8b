// SPDX-License-Identifier: Apache-2.0
#include "synergos/core/roles/worker_client.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "synergos/core/tensor/safetensors.hpp"

namespace synergos::core::roles {

namespace {

using Clock = std::chrono::steady_clock;

/// Slots for transfers, with an escape for slow ones: a waiter takes a slot when one frees, or
/// goes ahead beside the holders (one per `window`) when, over a whole window of its own, they
/// moved fewer than `slow_bytes` while still moving data (`busy`). So a peer that stops, or
/// trickles, cannot make the others wait out their deadlines.
class ThroughputGate {
public:
    ThroughputGate(std::size_t slots, Clock::duration window, std::uint64_t slow_bytes)
        : free_(static_cast<std::ptrdiff_t>(slots)), window_(window), slow_bytes_(slow_bytes) {}

    /// `n` bytes of a holder's transfer moved.
    void progress(std::size_t n) noexcept {
        moved_.fetch_add(n, std::memory_order_relaxed);
    }

protected:
    /// Under `lock` (on mutex_): waits for a slot until `deadline`.
    template <class Busy>
    bool take_slot(std::unique_lock<std::mutex>& lock, Clock::time_point deadline, Busy busy) {
        while (free_ <= 0) {
            const auto now = Clock::now();
            if (now >= deadline) {
                return false;
            }
            const std::uint64_t before = moved_.load();
            const auto window_end = std::min(deadline, now + window_);
            if (ready_.wait_until(lock, window_end, [&] { return free_ > 0; })) {
                break;
            }
            const auto woke = Clock::now();
            if (busy() && woke >= window_end && woke < deadline &&
                moved_.load() - before < slow_bytes_ && woke - last_extra_ >= window_) {
                last_extra_ = woke;
                break;  // the holders are stuck or crawling: go beside them
            }
        }
        --free_;
        return true;
    }
    /// Under mutex_.
    void give_slot() {
        ++free_;
        ready_.notify_one();
    }

    std::mutex mutex_;

private:
    std::condition_variable ready_;
    std::ptrdiff_t free_;
    const Clock::duration window_;
    const std::uint64_t slow_bytes_;
    std::atomic<std::uint64_t> moved_{0};  ///< bytes moved by holders, ever
    Clock::time_point last_extra_{};       ///< the last waiter let in beside slow holders
};

/// Bounds the weight replies held at once and keeps the buffers of visited replies for the
/// next ones (fresh model-sized buffers cost page faults on every round). A waiting reply goes
/// ahead anyway when the replies being received moved under 1 MiB in 500 ms (2 MiB/s, about
/// 16 Mbit/s; any byte used to count as progress, so a worker trickling one kept the slot).
/// Buffers grow as bytes arrive, so a reply let in this way commits only what it received.
/// Replies received whole and waiting for the visitor are not stalled: a slow visit lets no
/// reply in.
class ReplyGate : public ThroughputGate {
public:
    ReplyGate(std::size_t slots, std::vector<sdk::TensorMap> spares)
        : ThroughputGate(slots, std::chrono::milliseconds(500), std::uint64_t{1} << 20),
          spares_(std::move(spares)) {}

    std::vector<sdk::TensorMap> take_spares() {
        return std::move(spares_);
    }

    /// Waits for a slot until `deadline`; a spare tensor map (maybe empty) comes with it.
    bool acquire(Clock::time_point deadline, sdk::TensorMap& spare) {
        std::unique_lock<std::mutex> lock(mutex_);
        if (!take_slot(lock, deadline, [&] { return receiving_ > 0; })) {
            return false;
        }
        ++receiving_;
        if (!spares_.empty()) {
            spare = std::move(spares_.back());
            spares_.pop_back();
        }
        return true;
    }

    /// A holder's reply arrived whole: from now on it waits for the visitor, not for bytes.
    void received() noexcept {
        std::lock_guard<std::mutex> lock(mutex_);
        --receiving_;
    }

    /// `receiving`: the holder never called `received` (its reply failed on the way).
    void release(sdk::TensorMap&& buffers, bool receiving) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (receiving) {
            --receiving_;
        }
        if (!buffers.tensors.empty()) {
            spares_.push_back(std::move(buffers));
        }
        give_slot();
    }

private:
    std::size_t receiving_ = 0;  ///< holders whose reply is still arriving
    std::vector<sdk::TensorMap> spares_;
};

/// Bounds the requests being written at once (one by default): a worker starts on its request
/// as soon as it has all of it, and the workers' replies come back spread over the round
/// instead of all at its end. Requests still go out side by side when the ones being written
/// move under 256 MiB/s (about 2 Gbit/s, over 10 ms windows; on a slower TTP link they end up
/// going out side by side, as with no bound), so a worker that stops reading, or a thin link to
/// one, cannot hold the others back.
class SendGate : public ThroughputGate {
public:
    explicit SendGate(std::size_t slots)
        : ThroughputGate(slots, std::chrono::milliseconds(10), (std::uint64_t{256} << 20) / 100) {}

    bool acquire(Clock::time_point deadline) {
        std::unique_lock<std::mutex> lock(mutex_);
        return take_slot(lock, deadline, [] { return true; });
    }
    void release() {
        std::lock_guard<std::mutex> lock(mutex_);
        give_slot();
    }
};

/// Where a streaming visitor's calls come from: the visitor, the lock that keeps its calls
/// from overlapping, and the node's index in the call.
struct StreamTarget {
    sdk::StreamingReplyVisitor* visitor = nullptr;
    std::mutex* mutex = nullptr;
    std::size_t index = 0;
    std::atomic<bool>* streamed = nullptr;  ///< set once a reply of the call streamed
    ReplyGate* gate = nullptr;              ///< bounds the streamed replies received at once
};

/// Elements of one streamed piece: the receive buffer of a streaming reply (512 KiB). Each
/// piece costs a read and a visit: at 64 KiB a 4 MB reply took 64 of both.
constexpr std::size_t kPieceFloats = std::size_t{1} << 17;

/// Streamed replies received at once: each holds one piece, so their memory is fixed whatever
/// the number of workers.
constexpr std::size_t kStreamSlots = 8;

/// JSON (or any non-weight) replies take no reply slot, so they get a cap of their own far
/// below the client's 1 GiB: a worker cannot make the TTP hold a model's worth of text.
constexpr std::size_t kMaxTextReplyBytes = std::size_t{16} << 20;

/// Failed health checks in a row after which a worker whose call waits is taken as gone.
constexpr int kHealthFailures = 3;

/// While a call waits with no byte moving either way, checks every `interval` that its worker
/// still answers `GET /v1/health` (any HTTP answer counts: a worker busy training answers it).
/// A frozen worker, or one cut off by the network, keeps the call's connection open and would
/// hold it to its timeout (a training round's: an hour); after kHealthFailures failed checks in a
/// row it is taken as gone. Runs on the call's thread, between its network waits.
class HealthWatch {
public:
    HealthWatch(http::HttpClient& http, const sdk::GridNode& node, std::chrono::milliseconds interval)
        : http_(http), node_(node), interval_(interval) {}

    /// `moved_at`: when the call's bytes last moved.
    bool gone(Clock::time_point moved_at) {
        const auto now = Clock::now();
        if (moved_at > probed_at_) {
            failures_ = 0;  // bytes moved since the last check: failures count per stall
        }
        // (The port is valid: send() refuses a call to any other before it waits.)
        if (interval_.count() <= 0 || now - moved_at < interval_ || now - probed_at_ < interval_) {
            return false;
        }
        probed_at_ = now;
        const auto timeout = std::clamp<std::chrono::milliseconds>(interval_, kMinProbeTimeout, kMaxProbeTimeout);
        auto answer = http_.request("GET", node_.host, static_cast<std::uint16_t>(node_.port), "/v1/health", {},
                                    "application/json", timeout);
        if (answer) {
            failures_ = 0;
            return false;
        }
        const std::string& why = answer.error().message;
        if (why.find("cannot resolve") != std::string::npos || why.find("http: resolving") != std::string::npos) {
            return false;  // says nothing of the worker (DNS, or this host's lookups): not counted
        }
        last_error_ = why;
        return ++failures_ >= kHealthFailures;
    }

    /// Why the worker was taken as gone.
    std::string reason() const {
        const auto s = std::chrono::duration_cast<std::chrono::milliseconds>(interval_).count() / 1000.0;
        std::ostringstream text;
        text << "worker '" << node_.participant_id << "' stopped answering: " << kHealthFailures
             << " health checks in a row failed while its call waited (one every " << s
             << " s, worker_client.health_check_interval_s; the last: " << last_error_
             << "); the call was given up";
        return text.str();
    }

private:
    static constexpr std::chrono::milliseconds kMinProbeTimeout{1000};
    static constexpr std::chrono::milliseconds kMaxProbeTimeout{5000};
    http::HttpClient& http_;
    const sdk::GridNode& node_;
    const std::chrono::milliseconds interval_;
    Clock::time_point probed_at_{};
    int failures_ = 0;
    std::string last_error_;
};

/// Receives a worker's reply: a safetensors body of known length lands straight in the
/// reply's tensors (8-byte length, header, then each tensor's bytes in data order), or, when a
/// streaming visitor asks for it, each F32 tensor passes through a fixed buffer to the visitor
/// piece by piece; anything else is the JSON body.
class ReplySink final : public http::ResponseSink {
public:
    ReplySink(const sdk::GridNode& node, ReplyGate* gate, Clock::time_point deadline,
              SendGate* sends = nullptr, StreamTarget stream = {},
              const jobs::StoppableWorkerClient::StopCheck* stop = nullptr,
              std::optional<HealthWatch> health = std::nullopt)
        : node_(node), gate_(gate), deadline_(deadline), sends_(sends), stream_(stream), stop_(stop),
          health_(std::move(health)) {}
    ReplySink(const ReplySink&) = delete;
    ReplySink& operator=(const ReplySink&) = delete;
    ~ReplySink() override {
        on_sent();
        release();
    }

    /// Time left before the call's deadline (at least 1 ms: a slot taken just in time still
    /// gets its attempt).
    std::chrono::milliseconds remaining() const {
        const auto left =
            std::chrono::ceil<std::chrono::milliseconds>(deadline_ - Clock::now());
        return std::max(left, std::chrono::milliseconds(1));
    }

    /// Takes a sending slot (when sends are bounded); false when none came before the deadline.
    bool acquire_send() {
        if (sends_ == nullptr) {
            return true;
        }
        if (!sends_->acquire(deadline_)) {
            return false;
        }
        holds_send_ = true;
        return true;
    }

    void on_body_progress(std::size_t n) noexcept override {
        moved_at_ = Clock::now();
        if (holds_send_) {
            sends_->progress(n);
        }
    }

    void on_sent() noexcept override {
        if (holds_send_) {
            holds_send_ = false;
            sends_->release();
        }
    }

    bool abandoned() noexcept override {
        try {
            if (stop_ != nullptr && *stop_ && (*stop_)()) {
                return true;
            }
            if (health_ && health_->gone(moved_at_)) {
                gone_ = true;
                return true;
            }
        } catch (const std::exception&) {
        }
        return false;
    }

    /// The call was given up because its worker stopped answering health checks: why.
    std::optional<std::string> gone() const {
        if (!gone_) {
            return std::nullopt;
        }
        return health_->reason();
    }

    /// A resend is a send: it waits for a sending slot like the first one.
    bool on_retry() noexcept override {
        try {
            return acquire_send();
        } catch (const std::exception&) {
            return false;
        }
    }

    sdk::Status on_head(const http::Response& head, std::optional<std::uint64_t> length) override {
        moved_at_ = Clock::now();
        reply_.status = head.status;
        weights_ = head.content_type.rfind(tensor::kSafetensorsContentType, 0) == 0;
        if (weights_ && !length) {
            // Chunked weights: collected whole, then decoded (workers send a length). They
            // take a reply slot first, as any weights do.
            weights_ = false;
            chunked_weights_ = true;
            sdk::TensorMap spare;
            if (auto st = acquire(gate_, spare); !st) {
                return st;
            }
            reply_.tensors = std::move(spare);  // decoding reuses same-named buffers
        }
        if (weights_) {
            length_ = *length;
            stage_ = Stage::Prefix;
        } else if (!chunked_weights_ && length && *length > kMaxTextReplyBytes) {
            return text_too_large(*length);
        }
        return sdk::Status::ok();
    }

    std::span<char> next_buffer() override {
        switch (stage_) {
            case Stage::Prefix:
                return {prefix_ + filled_, sizeof prefix_ - filled_};
            case Stage::Header:
                return {header_.data() + filled_, header_.size() - filled_};
            case Stage::Data: {
                const Entry& e = entries_[tensor_];
                if (e.target < 0) {
                    const std::size_t room = piece_.size() * sizeof(float) - pending_;
                    return {reinterpret_cast<char*>(piece_.data()) + pending_,
                            std::min(room, e.bytes - filled_)};
                }
                auto& data = reply_.tensors.tensors[static_cast<std::size_t>(e.target)].data;
                if (filled_ == data.size()) {
                    // Committed as the bytes arrive, not when the header does.
                    http::grow_body_buffer(data, filled_, e.bytes);
                }
                return {reinterpret_cast<char*>(data.data()) + filled_, data.size() - filled_};
            }
            case Stage::Done:
                return {};  // the declared length is used up: nothing more belongs here
            case Stage::Text:
                break;
        }
        if (filled_ == text_.size()) {
            // +1: a byte past the cap shows the excess.
            const std::size_t cap = chunked_weights_ ? SIZE_MAX - 1 : kMaxTextReplyBytes;
            text_.resize(std::min(std::max<std::size_t>(4096, text_.size() * 2), cap + 1));
        }
        return {text_.data() + filled_, text_.size() - filled_};
    }

    sdk::Status wrote(std::size_t n) override {
        moved_at_ = Clock::now();
        filled_ += n;
        switch (stage_) {
            case Stage::Prefix:
                if (filled_ == sizeof prefix_) {
                    return header_done_prefix();
                }
                break;
            case Stage::Header:
                if (filled_ == header_.size()) {
                    return start_data();
                }
                break;
            case Stage::Data: {
                if (held_ != nullptr) {
                    held_->progress(n);
                }
                const Entry& e = entries_[tensor_];
                if (e.target < 0) {
                    // Whole elements only: the buffer and every tensor are multiples of 4 bytes.
                    pending_ += n;
                    if (pending_ == piece_.size() * sizeof(float) || filled_ == e.bytes) {
                        if (auto st = deliver(); !st) {
                            return st;
                        }
                    }
                }
                if (filled_ == e.bytes) {
                    next_tensor();
                }
                break;
            }
            case Stage::Text:
                if (!chunked_weights_ && filled_ > kMaxTextReplyBytes) {
                    return text_too_large();
                }
                if (held_ != nullptr) {
                    held_->progress(n);  // chunked weights arriving: not a stall
                }
                break;
            case Stage::Done:
                break;
        }
        return sdk::Status::ok();
    }

    sdk::Status on_end() override {
        done_receiving();
        if (weights_) {
            // The client read exactly the declared length; the stages account for all of it.
            if (stage_ != Stage::Done) {
                return invalid("the body ended before its tensors were complete");
            }
            if (streaming_) {
                piece_ = {};
                if (held_ != nullptr && held_ == stream_.gate) {
                    release();  // folded already: the slot can serve the next reply
                }
            }
            return sdk::Status::ok();
        }
        text_.resize(filled_);
        if (chunked_weights_) {
            tensor::Metadata metadata;
            if (auto st = tensor::decode_into(std::string_view(text_), reply_.tensors, &metadata);
                !st) {
                return invalid(st.message());
            }
            reply_.json = metadata.count("json") ? metadata["json"] : "{}";
        } else {
            reply_.json = std::move(text_);
        }
        return sdk::Status::ok();
    }

    /// Nothing more of the reply will arrive (whole, or the call failed): what follows is the
    /// visitor's time, not a stall.
    void done_receiving() noexcept {
        if (held_ != nullptr && !received_) {
            received_ = true;
            held_->received();
        }
    }

    sdk::WorkerReply take() {
        return std::move(reply_);
    }

    /// Gives the slot back with whatever buffers the visitor left in `tensors`.
    void release(sdk::TensorMap&& tensors = {}) {
        if (held_ != nullptr) {
            ReplyGate* gate = held_;
            held_ = nullptr;
            gate->release(std::move(tensors), !received_);
        }
    }

private:
    enum class Stage : std::uint8_t { Text, Prefix, Header, Data, Done };

    /// One tensor of the body, in data order: its bytes go to reply tensor `target`, or to the
    /// streaming visitor when `target` is -1.
    struct Entry {
        std::size_t bytes = 0;
        std::ptrdiff_t target = -1;
    };

    /// Hands the buffered elements of the current tensor to the visitor.
    sdk::Status deliver() {
        const std::size_t count = pending_ / sizeof(float);
        bool more = false;
        {
            std::lock_guard<std::mutex> lock(*stream_.mutex);
            more = stream_.visitor->on_weights(stream_.index, tensor_, delivered_, piece_.data(),
                                               count);
        }
        delivered_ += count;
        pending_ = 0;
        if (!more) {
            return {sdk::ErrorCode::Cancelled, "worker '" + node_.participant_id +
                                                   "': the TTP stopped receiving its reply"};
        }
        return sdk::Status::ok();
    }

    /// `declared`: the reply's Content-Length, when that is what is too large.
    sdk::Status text_too_large(std::optional<std::uint64_t> declared = std::nullopt) const {
        return {sdk::ErrorCode::ResourceExhausted,
                "worker '" + node_.participant_id + "': its reply" +
                    (declared ? " of " + std::to_string(*declared) + " bytes" : std::string()) +
                    " exceeds the " + std::to_string(kMaxTextReplyBytes) +
                    "-byte limit for replies without weights"};
    }

    sdk::Status invalid(const std::string& why) const {
        return {sdk::ErrorCode::Internal,
                "worker '" + node_.participant_id + "' sent an invalid safetensors body: " + why};
    }

    sdk::Status header_done_prefix() {
        auto header_len = tensor::header_length(
            length_, std::span<const unsigned char, 8>(
                         reinterpret_cast<const unsigned char*>(prefix_), sizeof prefix_));
        if (!header_len) {
            return invalid(header_len.error().message);
        }
        header_.resize(static_cast<std::size_t>(*header_len));
        filled_ = 0;
        stage_ = Stage::Header;
        if (header_.empty()) {
            return start_data();
        }
        return sdk::Status::ok();
    }

    sdk::Status start_data() {
        auto layout = tensor::parse_header(header_, length_ - sizeof prefix_ - header_.size());
        if (!layout) {
            return invalid(layout.error().message);
        }
        reply_.json = layout->metadata.count("json") ? layout->metadata["json"] : "{}";
        // Only now is memory committed: wait for a slot (this worker's bytes wait in its
        // socket). A streamed reply holds one piece, not a model: it waits for a slot of its
        // own kind, not behind whole replies (with one slot for all, every worker's upload
        // waited for the one before it). The visitor sees the head under that slot, so no more
        // heads are open at once than slots.
        sdk::TensorMap spare;
        if (auto st = acquire(stream_.visitor != nullptr ? stream_.gate : gate_, spare); !st) {
            return st;
        }
        if (stream_.visitor != nullptr) {
            sdk::ReplyHead head;
            head.status = reply_.status;
            head.json = reply_.json;
            head.tensors.reserve(layout->tensors.size());
            for (const auto& l : layout->tensors) {
                head.tensors.push_back({l.name, l.dtype, l.shape});
            }
            std::lock_guard<std::mutex> lock(*stream_.mutex);
            streaming_ = stream_.visitor->on_reply_head(stream_.index, head);
        }
        // What arrives whole (every tensor, or the tensors that are not F32 when streaming)
        // beyond a piece's size needs a whole reply's slot, held until the reply is visited.
        std::size_t whole_bytes = 0;
        for (const auto& l : layout->tensors) {
            if (!streaming_ || l.dtype != sdk::DType::F32) {
                whole_bytes += static_cast<std::size_t>(l.end - l.begin);
            }
        }
        if (held_ != nullptr && held_ == stream_.gate &&
            (!streaming_ || whole_bytes > kPieceFloats * sizeof(float))) {
            release();
            if (auto st = acquire(gate_, spare); !st) {
                return st;
            }
        }
        if (streaming_) {
            spare = {};  // streamed weights need no model-sized buffer: do not keep one either
            stream_.streamed->store(true);
            piece_.resize(kPieceFloats);
        }
        std::unordered_map<std::string, std::size_t> reusable;
        for (std::size_t i = 0; i < spare.tensors.size(); ++i) {
            reusable.emplace(spare.tensors[i].name, i);
        }
        auto& tensors = reply_.tensors.tensors;
        tensors.clear();
        tensors.reserve(streaming_ ? 0 : layout->tensors.size());
        entries_.clear();
        entries_.reserve(layout->tensors.size());
        for (auto& l : layout->tensors) {
            const auto bytes = static_cast<std::size_t>(l.end - l.begin);
            if (streaming_ && l.dtype == sdk::DType::F32) {
                entries_.push_back({bytes, -1});
                continue;
            }
            sdk::Tensor t;
            if (auto it = reusable.find(l.name); it != reusable.end()) {
                t = std::move(spare.tensors[it->second]);  // keeps its buffer
                reusable.erase(it);
            }
            t.name = std::move(l.name);
            t.dtype = l.dtype;
            t.shape = std::move(l.shape);
            if (t.data.capacity() >= bytes) {
                t.data.resize(bytes);  // a kept buffer: already ours, nothing new committed
            } else {
                t.data.clear();  // grown as its bytes arrive (next_buffer)
            }
            entries_.push_back({bytes, static_cast<std::ptrdiff_t>(tensors.size())});
            tensors.push_back(std::move(t));
        }
        stage_ = Stage::Data;
        tensor_ = 0;
        filled_ = 0;
        skip_empty();
        return sdk::Status::ok();
    }

    /// Takes a slot of `gate` (none when it is null) for this reply until `release`.
    sdk::Status acquire(ReplyGate* gate, sdk::TensorMap& spare) {
        if (gate == nullptr) {
            return sdk::Status::ok();
        }
        if (!gate->acquire(deadline_, spare)) {
            return {sdk::ErrorCode::Timeout, "worker '" + node_.participant_id +
                                                 "': timed out waiting to receive its reply"};
        }
        held_ = gate;
        received_ = false;
        return sdk::Status::ok();
    }

    void next_tensor() {
        ++tensor_;
        filled_ = 0;
        delivered_ = 0;
        skip_empty();
    }

    void skip_empty() {
        while (tensor_ < entries_.size() && entries_[tensor_].bytes == 0) {
            ++tensor_;
        }
        if (tensor_ == entries_.size()) {
            stage_ = Stage::Done;
        }
    }

    const sdk::GridNode& node_;
    ReplyGate* gate_;
    Clock::time_point deadline_;
    SendGate* sends_;
    StreamTarget stream_;
    const jobs::StoppableWorkerClient::StopCheck* stop_;  ///< the caller's; may be null or empty
    std::optional<HealthWatch> health_;                    ///< none: no checks
    Clock::time_point moved_at_ = Clock::now();            ///< bytes last moved either way
    bool gone_ = false;                                    ///< given up: health checks failed
    bool streaming_ = false;
    std::vector<Entry> entries_;
    std::vector<float> piece_;   ///< streamed bytes not yet handed to the visitor
    std::size_t pending_ = 0;    ///< bytes in `piece_`
    std::uint64_t delivered_ = 0;  ///< elements of the current tensor handed over
    bool holds_send_ = false;
    ReplyGate* held_ = nullptr;  ///< the gate whose slot this reply holds
    bool received_ = false;      ///< told `held_` the reply arrived whole
    bool weights_ = false;
    bool chunked_weights_ = false;
    std::uint64_t length_ = 0;
    Stage stage_ = Stage::Text;
    char prefix_[8] = {};
    std::string header_;
    std::string text_;
    std::size_t tensor_ = 0;
    std::size_t filled_ = 0;
    sdk::WorkerReply reply_;
};

/// A request body in pieces: the safetensors length and header, then each tensor's bytes
/// straight from the request's tensors; or the JSON.
struct Body {
    std::string head;
    std::string content_type;
    http::BodyParts parts;
};

sdk::Status make_body(const sdk::WorkerRequest& request, Body& body) {
    body.parts.clear();
    if (request.tensors == nullptr) {
        body.head = request.json;
        body.content_type = "application/json";
        body.parts.emplace_back(body.head.data(), body.head.size());
        return {};
    }
    body.content_type = std::string(tensor::kSafetensorsContentType);
    if (auto st = tensor::encode_header_into(*request.tensors,
                                             tensor::Metadata{{"json", request.json}}, body.head);
        !st) {
        return st;
    }
    body.parts.reserve(request.tensors->tensors.size() + 1);
    body.parts.emplace_back(body.head.data(), body.head.size());
    for (const auto& t : request.tensors->tensors) {
        body.parts.emplace_back(reinterpret_cast<const char*>(t.data.data()), t.data.size());
    }
    return {};
}

/// One call: `sink` holds the reply (and its slot) when this returns.
/// `timeout`: what is left of the request's own (it may have waited for a sending slot).
sdk::Status send(http::HttpClient& http, const sdk::GridNode& node,
                 const sdk::WorkerRequest& request, const Body& body, ReplySink& sink,
                 std::chrono::milliseconds timeout) noexcept {
    try {
        if (node.port <= 0 || node.port > 65535) {
            return {sdk::ErrorCode::InvalidArgument,
                    "worker '" + node.participant_id + "' has no valid port"};
        }
        auto st = http.request_streaming(request.method, node.host, static_cast<std::uint16_t>(node.port),
                                         request.path, body.parts, body.content_type, timeout, sink);
        if (!st) {
            if (auto why = sink.gone()) {
                return {sdk::ErrorCode::Unavailable, *why};
            }
        }
        return st;
    } catch (const std::exception& e) {
        return {sdk::ErrorCode::Internal, std::string("worker call failed: ") + e.what()};
    }
}

}  // namespace

/// Threads kept between calls: starting a thread per worker for every round cost 0.7-2 ms per
/// 8 workers on a small VM. A task goes to an idle thread, or to a new one when none is idle,
/// so tasks never wait for each other; a thread idle for a minute ends.
class HttpWorkerClient::CallThreads {
public:
    static constexpr std::chrono::seconds kIdle{60};

    ~CallThreads() {
        std::list<std::thread> running;
        std::list<std::thread> ended;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;  // from now on no thread touches the lists
            running.swap(threads_);
            ended.swap(ended_);
        }
        ready_.notify_all();
        for (auto& t : running) {
            t.join();
        }
        for (auto& t : ended) {
            t.join();
        }
    }

    /// Runs `task` on a pool thread. Throws std::system_error when no thread can be started
    /// (then the task does not run).
    void run(std::function<void()> task) {
        std::list<std::thread> ended;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (idle_ > tasks_.size()) {
                tasks_.push_back(std::move(task));
                ready_.notify_one();
            } else {
                // Nothing is queued until the thread runs: a throw here leaves no task behind
                // that a thread could run after the caller gave it up.
                auto self = threads_.emplace(threads_.end());
                try {
                    *self = std::thread([this, self] { loop(self); });
                } catch (...) {
                    threads_.erase(self);
                    throw;
                }
                tasks_.push_back(std::move(task));  // if this throws, the new thread idles
            }
            ended.splice(ended.end(), ended_);
        }
        for (auto& t : ended) {
            t.join();  // it has returned from loop, or is about to
        }
    }

private:
    void loop(std::list<std::thread>::iterator self) {
        std::unique_lock<std::mutex> lock(mutex_);
        while (true) {
            if (!tasks_.empty()) {
                std::function<void()> task = std::move(tasks_.front());
                tasks_.pop_front();
                lock.unlock();
                task();
                task = nullptr;  // its captures go before the lock is taken again
                lock.lock();
                continue;
            }
            if (stopping_) {
                return;
            }
            ++idle_;
            const bool woke =
                ready_.wait_for(lock, kIdle, [&] { return !tasks_.empty() || stopping_; });
            --idle_;
            if (!woke) {
                ended_.splice(ended_.end(), threads_, self);  // cannot throw
                return;
            }
        }
    }

    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<std::function<void()>> tasks_;
    std::size_t idle_ = 0;  ///< threads waiting for a task
    bool stopping_ = false;
    std::list<std::thread> threads_;  ///< stable iterators: a thread removes itself
    std::list<std::thread> ended_;  ///< ended when idle; joined by the next run or the end
};

HttpWorkerClient::HttpWorkerClient(http::HttpClient& http, std::size_t replies_in_memory,
                                   std::size_t concurrent_sends, std::chrono::milliseconds health_check_interval)
    : http_(http),
      replies_in_memory_(replies_in_memory == 0 ? 1 : replies_in_memory),
      concurrent_sends_(concurrent_sends == 0 ? 1 : concurrent_sends),
      health_check_interval_(health_check_interval),
      threads_(std::make_unique<CallThreads>()) {}

HttpWorkerClient::~HttpWorkerClient() = default;

sdk::Result<sdk::WorkerReply> HttpWorkerClient::call(const sdk::GridNode& node,
                                                     const sdk::WorkerRequest& request) noexcept {
    return call(node, request, StopCheck{});
}

void HttpWorkerClient::call_all(const std::vector<sdk::GridNode>& nodes,
                                const std::vector<sdk::WorkerRequest>& requests,
                                sdk::ReplyVisitor& visitor) noexcept {
    call_all(nodes, requests, visitor, StopCheck{});
}

sdk::Result<sdk::WorkerReply> HttpWorkerClient::call(const sdk::GridNode& node,
                                                     const sdk::WorkerRequest& request,
                                                     const StopCheck& stop) noexcept {
    try {
        Body body;
        if (auto st = make_body(request, body); !st) {
            return st.error();
        }
        ReplySink sink(node, nullptr, Clock::now() + request.timeout, nullptr, {}, &stop,
                       HealthWatch(http_, node, health_check_interval_));
        if (auto st = send(http_, node, request, body, sink, request.timeout); !st) {
            return st.error();
        }
        return sink.take();
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal, std::string("worker call failed: ") + e.what()};
    }
}

void HttpWorkerClient::call_all(const std::vector<sdk::GridNode>& nodes,
                                const std::vector<sdk::WorkerRequest>& requests,
                                sdk::ReplyVisitor& visitor, const StopCheck& stop) noexcept {
    const std::size_t n = std::min(nodes.size(), requests.size());
    struct Done {
        std::size_t index;
        sdk::Result<sdk::WorkerReply> reply;
        std::unique_ptr<ReplySink> sink;  ///< holds the reply's slot until it was visited
    };
    std::optional<ReplyGate> gate;
    std::optional<ReplyGate> stream_gate;
    std::optional<SendGate> sends;
    // A streaming visitor takes F32 weights piece by piece from the receiving threads; its calls
    // (and on_reply) are serialised by `visit_mutex`.
    auto* streaming = dynamic_cast<sdk::StreamingReplyVisitor*>(&visitor);
    std::mutex visit_mutex;
    std::atomic<bool> streamed{false};
    std::vector<Body> bodies;
    std::vector<sdk::Status> encoded;
    // Shared with the tasks: a task's last step hands its reply over under this lock, and the
    // lock must outlive that step even when this call has returned meanwhile.
    struct Completion {
        std::mutex mutex;
        std::condition_variable ready;
        std::deque<Done> done;
    };
    auto completion = std::make_shared<Completion>();
    std::size_t started = 0;
    try {
        {
            std::lock_guard<std::mutex> lock(spares_mutex_);
            if (streaming != nullptr) {
                // Streamed replies need no model-sized buffer: free a kept one before the
                // caller's round holds its global model and sums beside it.
                spares_.clear();
            }
            gate.emplace(replies_in_memory_, std::move(spares_));
        }
        stream_gate.emplace(kStreamSlots, std::vector<sdk::TensorMap>{});
        sends.emplace(concurrent_sends_);
        // One header for a round's identical requests (same weights, same JSON).
        bool shared = n > 1;
        for (std::size_t i = 1; i < n && shared; ++i) {
            shared =
                requests[i].tensors == requests[0].tensors && requests[i].json == requests[0].json;
        }
        bodies.resize(shared ? 1 : n);
        encoded.resize(bodies.size());
        for (std::size_t i = 0; i < bodies.size(); ++i) {
            encoded[i] = make_body(requests[i], bodies[i]);
        }
        for (std::size_t i = 0; i < n; ++i) {
            const std::size_t b = shared ? 0 : i;
            threads_->run([&, i, b, completion] {
                Done item{i, sdk::Error{sdk::ErrorCode::Internal, "worker call failed"}, nullptr};
                try {
                    item.sink = std::make_unique<ReplySink>(
                        nodes[i], &*gate, Clock::now() + requests[i].timeout, &*sends,
                        StreamTarget{streaming, &visit_mutex, i, &streamed, &*stream_gate}, &stop,
                        HealthWatch(http_, nodes[i], health_check_interval_));
                    if (!encoded[b]) {
                        item.reply = encoded[b].error();
                    } else if (!item.sink->acquire_send()) {
                        item.reply = sdk::Error{sdk::ErrorCode::Timeout,
                                                "worker '" + nodes[i].participant_id +
                                                    "': timed out waiting to send its request"};
                    } else if (auto st = send(http_, nodes[i], requests[i], bodies[b], *item.sink,
                                              item.sink->remaining());
                               !st) {
                        item.reply = st.error();
                        item.sink->done_receiving();  // it waits for its visit, not for bytes
                    } else {
                        item.reply = item.sink->take();
                    }
                    item.sink->on_sent();  // a failed call gives its sending slot back too
                } catch (const std::exception& e) {
                    item.reply = sdk::Error{sdk::ErrorCode::Internal,
                                            std::string("worker call failed: ") + e.what()};
                }
                // The last use of this call's state: it may return once the reply is handed over.
                std::lock_guard<std::mutex> lock(completion->mutex);
                completion->done.push_back(std::move(item));
                completion->ready.notify_one();
            });
            ++started;
        }
    } catch (const std::exception& e) {
        // Could not start every call: the ones not started fail, the others are still visited.
        for (std::size_t i = started; i < n; ++i) {
            std::lock_guard<std::mutex> lock(completion->mutex);
            completion->done.push_back({i,
                            sdk::Error{sdk::ErrorCode::Internal,
                                       std::string("worker call failed: ") + e.what()},
                            nullptr});
        }
    }
    // Every request has its own timeout, so this loop ends; visiting on this thread keeps the
    // visitor single-threaded as the SDK promises.
    for (std::size_t visited = 0; visited < n; ++visited) {
        std::unique_lock<std::mutex> lock(completion->mutex);
        completion->ready.wait(lock, [&] { return !completion->done.empty(); });
        Done item = std::move(completion->done.front());
        completion->done.pop_front();
        lock.unlock();
        {
            std::lock_guard<std::mutex> visiting(visit_mutex);
            visitor.on_reply(item.index, std::move(item.reply));
        }
        if (item.sink) {
            // What the visitor left of the weights serves the next reply.
            item.sink->release(item.reply ? std::move(item.reply->tensors) : sdk::TensorMap{});
        }
    }
    if (gate) {
        // Kept for the next round: fresh buffers land in whichever allocator arena the
        // receiving thread has, and each round would grow the resident size by a model.
        // A call whose replies streamed needs no model-sized buffer: keeping one would keep a
        // model resident for nothing.
        std::lock_guard<std::mutex> lock(spares_mutex_);
        spares_ = gate->take_spares();
        if (spares_.size() > replies_in_memory_) {
            spares_.resize(replies_in_memory_);
        }
        if (streamed.load()) {
            spares_.clear();
        }
    }
}

}  // namespace synergos::core::roles
