// SPDX-License-Identifier: Apache-2.0
#include "train_function.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include <synergos/sdk/text.hpp>

#include "ttp_common.hpp"

namespace synergos::plugins::train {

using ttp::json;
namespace fs = std::filesystem;

namespace {

/// Loss histories; round indexes are strings in the files (the original's JSON layout).
struct History {
    json global_train = json::object();
    json global_evaluate = json::object();
    json local = json::object();  // pid -> {round: loss}
    json metrics = json::object();  // strategy figure -> {round: value}

    json to_json() const {
        return json{{"train", global_train}, {"evaluate", global_evaluate}, {"local", local}, {"metrics", metrics}};
    }
    static History from_json(const json& j) {
        History h;
        h.global_train = j.value("train", json::object());
        h.global_evaluate = j.value("evaluate", json::object());
        h.local = j.value("local", json::object());
        h.metrics = j.value("metrics", json::object());
        return h;
    }
};

/// A JSON object read from `path`; nothing when it is missing or not an object.
std::optional<json> read_json_object(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        return std::nullopt;
    }
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    json value = json::parse(text, nullptr, false);
    if (value.is_discarded() || !value.is_object()) {
        return std::nullopt;
    }
    return value;
}

/// The round of a checkpoint folder named `round_<k>`, or none for any other name.
std::optional<int> round_of(const std::string& name) {
    if (name.rfind("round_", 0) != 0) {
        return std::nullopt;
    }
    try {
        std::size_t used = 0;
        const int round = std::stoi(name.substr(6), &used);
        if (used == name.size() - 6) {
            return round;
        }
    } catch (const std::exception&) {
    }
    return std::nullopt;
}

/// The complete checkpoints in `ckpt_dir` (`round_<k>/state.json` reads: it is written last,
/// atomically, after the round's weights), newest first.
std::vector<std::pair<int, json>> complete_checkpoints(const std::string& ckpt_dir) {
    std::vector<std::pair<int, json>> found;
    std::error_code ec;
    if (!fs::is_directory(ckpt_dir, ec)) {
        return found;
    }
    for (const auto& entry : fs::directory_iterator(ckpt_dir, ec)) {
        const auto round = round_of(entry.path().filename().string());
        if (!round) {
            continue;
        }
        if (auto state = read_json_object((entry.path() / "state.json").string())) {
            found.emplace_back(*round, std::move(*state));
        }
    }
    std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    return found;
}

/// Removes the checkpoints of the rounds `drop` picks (errors are left: a later round tries
/// again).
void remove_checkpoints_if(const std::string& ckpt_dir, const std::function<bool(int)>& drop) {
    std::error_code ec;
    std::vector<fs::path> old;
    for (fs::directory_iterator it(ckpt_dir, ec), end; !ec && it != end; it.increment(ec)) {
        if (const auto round = round_of(it->path().filename().string()); round && drop(*round)) {
            old.push_back(it->path());
        }
    }
    for (const auto& path : old) {
        fs::remove_all(path, ec);
    }
}

/// Removes the checkpoints of rounds before `keep_from`.
void prune_checkpoints(const std::string& ckpt_dir, int keep_from) {
    remove_checkpoints_if(ckpt_dir, [keep_from](int round) { return round < keep_from; });
}

int quorum_of(const json& run, std::size_t workers) {
    if (!run.contains("quorum") || run["quorum"].is_null()) {
        return static_cast<int>(workers);
    }
    const json& q = run["quorum"];
    if (q.is_number_integer()) {
        return std::clamp(q.get<int>(), 1, static_cast<int>(workers));
    }
    if (q.is_number() && q.get<double>() > 1) {  // 3.0: a count written as a float
        return std::clamp(static_cast<int>(q.get<double>()), 1, static_cast<int>(workers));
    }
    if (q.is_number()) {  // a fraction of the grid
        return std::clamp(static_cast<int>(std::ceil(q.get<double>() * static_cast<double>(workers))), 1,
                          static_cast<int>(workers));
    }
    return static_cast<int>(workers);
}

/// The failure of a round, as one error: the code says whether retrying can help.
sdk::Error round_error(int round, const std::vector<std::pair<std::string, sdk::Error>>& failures) {
    std::string msg = "round " + std::to_string(round) + " failed: ";
    sdk::ErrorCode code = sdk::ErrorCode::InvalidArgument;
    for (std::size_t i = 0; i < failures.size(); ++i) {
        msg += (i ? "; " : "") + failures[i].second.message;
        const auto c = failures[i].second.code;
        if (c == sdk::ErrorCode::Unavailable || c == sdk::ErrorCode::Timeout || c == sdk::ErrorCode::Internal) {
            code = c;  // transient somewhere: the whole job is worth retrying (it resumes)
        } else if (code == sdk::ErrorCode::InvalidArgument) {
            code = c;
        }
    }
    return {code, msg};
}

double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) {
        s += x;
    }
    return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

/// A train reply's `samples` (the weight of its update): an integer from 1 to the `train_rows`
/// the worker reported at initialise (when it did). A claimed count beyond its rows would let
/// one worker outweigh the others, or overflow the aggregator's sums.
sdk::Result<std::int64_t> reply_samples(const json& body, const std::string& pid,
                                        const std::map<std::string, std::int64_t>& train_rows) {
    const json samples = body.is_object() ? body.value("samples", json(nullptr)) : json(nullptr);
    const auto rows = train_rows.find(pid);
    std::int64_t n = 0;
    bool valid = samples.is_number_integer();
    if (valid && samples.is_number_unsigned()) {
        valid = samples.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    }
    if (valid) {
        n = samples.get<std::int64_t>();
        valid = n >= 1 && (rows == train_rows.end() || n <= rows->second);
    }
    if (!valid) {
        const std::string most = rows == train_rows.end()
                                     ? std::string("2^63-1")
                                     : "its " + std::to_string(rows->second) + " train rows reported at initialise";
        return sdk::Error{sdk::ErrorCode::InvalidArgument, "worker '" + pid + "': its reply's samples (" +
                                                               samples.dump() + ") must be an integer from 1 to " +
                                                               most};
    }
    return n;
}

/// A worker's weights written to a safetensors file while they stream in, so saving local
/// models needs no model-sized buffer: the header first (from the reply's head), each piece at
/// its place, the other tensors when the reply ends, then fsync and rename into place (as
/// `JobContext::write_tensors`: a crash leaves the old file or the new one).
class LocalModelFile {
public:
    LocalModelFile() = default;
    LocalModelFile(const LocalModelFile&) = delete;
    LocalModelFile& operator=(const LocalModelFile&) = delete;
    ~LocalModelFile() { discard(); }

    /// Creates `<path>.tmp` and writes the header for `head`'s tensors with `metadata`.
    sdk::Status open(const std::string& path, const sdk::ReplyHead& head, const json& metadata) {
        path_ = path;
        tmp_ = path + ".tmp";
        std::error_code ec;
        fs::create_directories(fs::path(path).parent_path(), ec);
        json header = json::object();
        header["__metadata__"] = metadata;
        std::uint64_t at = 0;
        for (const auto& t : head.tensors) {
            std::uint64_t n = sdk::dtype_size(t.dtype);
            for (std::int64_t d : t.shape) {
                n *= static_cast<std::uint64_t>(d);
            }
            header[t.name] = {{"dtype", sdk::to_string(t.dtype)}, {"shape", t.shape}, {"data_offsets", {at, at + n}}};
            begin_.push_back(at);
            names_.push_back(t.name);
            at += n;
        }
        std::string text = header.dump();
        text.append((8 - text.size() % 8) % 8, ' ');  // data 8-byte aligned
        unsigned char prefix[8];
        std::uint64_t len = text.size();
        for (unsigned char& b : prefix) {
            b = static_cast<unsigned char>(len & 0xff);
            len >>= 8;
        }
        data_start_ = 8 + text.size();
        fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd_ < 0) {
            return error("cannot create");
        }
        if (!write_at(0, prefix, sizeof prefix) || !write_at(8, text.data(), text.size()) ||
            ::ftruncate(fd_, static_cast<off_t>(data_start_ + at)) != 0) {
            return error("cannot write");
        }
        return sdk::Status::ok();
    }

    bool is_open() const { return fd_ >= 0; }

    sdk::Status write_piece(std::size_t tensor, std::uint64_t offset, const float* values, std::size_t count) {
        if (!write_at(data_start_ + begin_.at(tensor) + offset * sizeof(float), values, count * sizeof(float))) {
            return error("cannot write");
        }
        return sdk::Status::ok();
    }

    sdk::Status write_tensor(const sdk::Tensor& t) {
        for (std::size_t i = 0; i < names_.size(); ++i) {
            if (names_[i] == t.name) {
                if (!write_at(data_start_ + begin_[i], t.data.data(), t.data.size())) {
                    return error("cannot write");
                }
                return sdk::Status::ok();
            }
        }
        return {sdk::ErrorCode::Internal, "tensor '" + t.name + "' is not in the header of " + path_};
    }

    /// Makes the file durable and puts it in place.
    sdk::Status commit() {
        if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
            fd_ = -1;
            return error("cannot sync");
        }
        fd_ = -1;
        if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
            return error("cannot rename");
        }
        const int dir = ::open(fs::path(path_).parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir >= 0) {
            (void)::fsync(dir);
            ::close(dir);
        }
        tmp_.clear();
        return sdk::Status::ok();
    }

    void discard() noexcept {
        if (fd_ >= 0) {
            ::close(fd_);
            fd_ = -1;
        }
        if (!tmp_.empty()) {
            ::unlink(tmp_.c_str());
            tmp_.clear();
        }
    }

private:
    bool write_at(std::uint64_t at, const void* data, std::size_t size) {
        const auto* p = static_cast<const char*>(data);
        while (size > 0) {
            const ssize_t n = ::pwrite(fd_, p, size, static_cast<off_t>(at));
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return false;
            }
            p += n;
            at += static_cast<std::uint64_t>(n);
            size -= static_cast<std::size_t>(n);
        }
        return true;
    }

    sdk::Status error(const char* what) {
        const std::string why = std::strerror(errno);
        discard();
        return {sdk::ErrorCode::Internal, std::string(what) + " " + path_ + ": " + why};
    }

    std::string path_;
    std::string tmp_;
    int fd_ = -1;
    std::uint64_t data_start_ = 0;
    std::vector<std::uint64_t> begin_;
    std::vector<std::string> names_;
};

/// One training round's replies, folded into the session as they arrive: piece by piece while
/// the bytes come when the session streams (SDK 1.1), whole otherwise. Records each failed
/// worker, and whether its update was partly folded (the round's sums are then spoilt and the
/// round must be run again without it). Threading: the host never overlaps its calls.
class RoundFold final : public sdk::StreamingReplyVisitor {
public:
    /// Called for each folded reply; `streamed` says its F32 weights are no longer in `reply`.
    using Success = std::function<void(std::size_t, const json&, sdk::WorkerReply&, bool streamed)>;

    /// With `local_models`, streamed replies are also written to
    /// `<local_models>/local_model_<participant>.safetensors` (metadata: round, participant).
    /// `train_rows`: each participant's train rows from initialise, which bound its `samples`.
    RoundFold(sdk::AggregationSession& session, sdk::StreamingAggregationSession* streaming,
              const std::vector<sdk::GridNode>& nodes, const std::string& path,
              const std::map<std::string, std::int64_t>& train_rows, Success on_success,
              sdk::Logger& logger, std::string local_models = {}, int round = 0)
        : session_(session),
          streaming_(streaming),
          nodes_(nodes),
          path_(path),
          train_rows_(train_rows),
          on_success_(std::move(on_success)),
          logger_(logger),
          local_models_(std::move(local_models)),
          round_(round),
          state_(nodes.size()) {}

    bool on_reply_head(std::size_t i, const sdk::ReplyHead& head) noexcept override {
        if (streaming_ == nullptr || i >= state_.size() || head.status < 200 || head.status >= 300) {
            return false;
        }
        State& st = state_[i];
        const std::string& pid = nodes_[i].participant_id;
        try {
            const json body = json::parse(head.json.empty() ? std::string("{}") : head.json, nullptr, false);
            const auto samples = reply_samples(body, pid, train_rows_);
            if (!samples) {
                st.failure = samples.error();
            } else if (auto update = streaming_->begin_update(pid, *samples, head.tensors); !update) {
                st.failure = sdk::Error{update.error().code, "worker '" + pid + "': " + update.error().message};
            } else {
                st.update = *update;
                if (!local_models_.empty()) {
                    st.file = std::make_unique<LocalModelFile>();
                    file_status(st, st.file->open(local_models_ + "/local_model_" + pid + ".safetensors", head,
                                                  {{"round", std::to_string(round_)}, {"participant", pid}}));
                }
            }
        } catch (const std::exception& e) {
            st.failure = sdk::Error{sdk::ErrorCode::Internal, "worker '" + pid + "': " + e.what()};
        }
        return true;  // a refused update is refused piece by piece: nothing of it is held
    }

    bool on_weights(std::size_t i, std::size_t tensor, std::uint64_t offset, const float* values,
                    std::size_t count) noexcept override {
        if (i >= state_.size()) {
            return false;
        }
        State& st = state_[i];
        if (st.failure || !st.update) {
            return false;
        }
        if (auto s = streaming_->fold(*st.update, tensor, offset, values, count); !s) {
            st.failure = sdk::Error{s.code(), "worker '" + nodes_[i].participant_id + "': " + s.message()};
            st.update.reset();  // the session closed it
            return false;
        }
        st.folded = st.folded || count > 0;
        if (st.file) {
            file_status(st, st.file->write_piece(tensor, offset, values, count));
        }
        return true;
    }

    void on_reply(std::size_t i, sdk::Result<sdk::WorkerReply>&& reply) noexcept override {
        try {
            visit(i, reply);
        } catch (const std::exception& e) {
            fail(i, sdk::Error{sdk::ErrorCode::Internal,
                               "worker '" + nodes_[i].participant_id + "': " + e.what()});
        }
    }

    /// Failed workers, in the order their replies ended.
    const std::vector<std::pair<std::string, sdk::Error>>& failures() const { return failures_; }
    const std::vector<bool>& alive() const { return alive_; }
    /// A failed worker's update was partly folded: the round's sums cannot be used.
    bool spoilt() const { return spoilt_; }

private:
    struct State {
        std::optional<sdk::StreamingAggregationSession::UpdateId> update;
        std::optional<sdk::Error> failure;
        bool folded = false;
        std::unique_ptr<LocalModelFile> file;  ///< the local model being written, if any
    };

    /// A local model that cannot be written is skipped with a warning; training goes on.
    void file_status(State& st, const sdk::Status& status) {
        if (!status) {
            logger_.warn("local model not saved", ttp::log_fields({{"round", round_}, {"error", status.message()}}));
            st.file.reset();
        }
    }

    void visit(std::size_t i, sdk::Result<sdk::WorkerReply>& reply) {
        State& st = state_[i];
        const std::string& pid = nodes_[i].participant_id;
        auto body = ttp::reply_json(reply, nodes_[i], path_);
        if (!body || st.failure) {
            sdk::Error e = st.failure ? *st.failure : body.error();
            if (!st.failure && e.code == sdk::ErrorCode::FailedPrecondition) {
                // The worker lost the run's state (restarted): the job resumes on retry.
                e.code = sdk::ErrorCode::Unavailable;
            }
            fail(i, std::move(e));
            return;
        }
        if (st.update) {
            // Streamed: the F32 weights are folded; the other tensors (e.g. I64 counters) came
            // whole with the reply.
            for (const auto& t : reply->tensors.tensors) {
                if (auto s = streaming_->fold_tensor(*st.update, t); !s) {
                    st.update.reset();
                    fail(i, sdk::Error{s.code(), "worker '" + pid + "': " + s.message()});
                    return;
                }
                st.folded = true;
            }
            const auto update = *st.update;
            st.update.reset();
            if (auto s = streaming_->end_update(update); !s) {
                fail(i, sdk::Error{s.code(), "worker '" + pid + "': " + s.message()});
                return;
            }
            if (st.file) {
                for (const auto& t : reply->tensors.tensors) {
                    file_status(st, st.file->write_tensor(t));
                    if (!st.file) {
                        break;
                    }
                }
                if (st.file) {
                    file_status(st, st.file->commit());
                    st.file.reset();
                }
            }
            on_success_(i, *body, *reply, true);
            return;
        } else {
            const auto samples = reply_samples(*body, pid, train_rows_);
            if (!samples) {
                fail(i, samples.error());
                return;
            }
            if (auto s = session_.accumulate(pid, *samples, reply->tensors); !s) {
                fail(i, sdk::Error{s.code(), "worker '" + pid + "': " + s.message()});
                return;
            }
        }
        on_success_(i, *body, *reply, false);
    }

    void fail(std::size_t i, sdk::Error e) {
        State& st = state_[i];
        st.file.reset();  // a failed worker's partial weights are not its local model
        if (st.update) {
            st.folded = streaming_->abandon_update(*st.update) || st.folded;
            st.update.reset();
        }
        spoilt_ = spoilt_ || st.folded;
        alive_[i] = false;
        failures_.emplace_back(nodes_[i].participant_id, std::move(e));
    }

    sdk::AggregationSession& session_;
    sdk::StreamingAggregationSession* streaming_;
    const std::vector<sdk::GridNode>& nodes_;
    const std::string& path_;
    const std::map<std::string, std::int64_t>& train_rows_;
    Success on_success_;
    sdk::Logger& logger_;
    std::string local_models_;
    int round_;
    std::vector<State> state_;
    std::vector<bool> alive_ = std::vector<bool>(state_.size(), true);
    std::vector<std::pair<std::string, sdk::Error>> failures_;
    bool spoilt_ = false;
};

}  // namespace

TrainFunction::TrainFunction(sdk::HostContext& host, const sdk::Options& options)
    : host_(host),
      init_timeout_ms_(ttp::duration_option(options, "train", "init_timeout_ms", 600000, ttp::kMinCallTimeoutMs,
                                            ttp::kMaxCallTimeoutMs)),
      round_timeout_ms_(ttp::duration_option(options, "train", "round_timeout_ms", 3600000, ttp::kMinCallTimeoutMs,
                                             ttp::kMaxCallTimeoutMs)),
      save_local_models_(options.get_bool("save_local_models", true)) {}

sdk::Result<std::string> TrainFunction::execute(sdk::JobContext& ctx, std::string_view job_json) noexcept {
    try {
        const auto started = std::chrono::steady_clock::now();
        auto job = ttp::parse_job(job_json, 4);
        if (!job) {
            return job.error();
        }
        const json& params = job->parameters;
        const json run = params.value("run", json::object());
        const json experiment = params.value("experiment", json::object());
        if (!experiment.contains("model") || !experiment["model"].is_array() || experiment["model"].empty()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              "experiment '" + job->expt() + "' has no model architecture ('model')"};
        }
        const std::string action = params.value("action", "classify");
        const int rounds = run.value("rounds", 10);
        // null: no early stopping (as for the workers' local stopper).
        const json patience_field = run.value("patience", json(10));
        const int patience =
            patience_field.is_null() ? std::numeric_limits<int>::max() : patience_field.get<int>();
        const double delta = run.value("delta", 0.0);
        if (rounds < 1) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, "run field 'rounds' must be at least 1"};
        }
        const std::string algorithm = ttp::lower(run.value("algorithm", std::string("FedProx")));
        auto aggregator = ctx.aggregator(algorithm);
        if (!aggregator) {
            return sdk::Error{aggregator.error().code,
                              "run field 'algorithm' = '" + algorithm + "': " + aggregator.error().message};
        }
        const std::string run_text = run.dump();
        if (auto st = (*aggregator)->validate(run_text); !st) {
            return st.error();
        }
        json args = run;
        json worker_args = json::parse((*aggregator)->worker_arguments(run_text), nullptr, false);
        if (worker_args.is_object()) {
            for (auto& [k, v] : worker_args.items()) {
                args[k] = v;
            }
        }
        auto session_r = (*aggregator)->open(run_text);
        if (!session_r) {
            return session_r.error();
        }
        std::unique_ptr<sdk::AggregationSession> session = std::move(*session_r);

        const std::string dir = ttp::run_dir(ctx.outputs_dir(), *job);
        const std::string ckpt_dir = dir + "/checkpoints";
        const std::string route = ttp::run_route(*job);
        // However the job ends (finished, failed, cancelled, stopped early), every worker it
        // may have initialised drops the run, dropped ones included: a redelivery or a
        // validation initialises again.
        const ttp::RunOnWorkers loaded(ctx.workers(), ctx.nodes(), route);
        std::vector<sdk::GridNode> active = ctx.nodes();
        if (active.empty()) {
            return sdk::Error{sdk::ErrorCode::FailedPrecondition, "grid " + std::to_string(ctx.grid()) + " has no workers"};
        }
        const int quorum = quorum_of(run, active.size());

        // 1. Initialise every worker: it loads its splits aligned to the superset and builds the
        //    model from the run's seed (so every worker starts from identical weights). One of
        //    them returns the initial weights: N copies would cross the network for one kept.
        const auto init_request = [&](const sdk::GridNode& node, bool weights) -> sdk::Result<sdk::WorkerRequest> {
            auto tags = ttp::participant_tags(params, node.participant_id);
            if (!tags) {
                return tags.error();
            }
            sdk::WorkerRequest req;
            req.path = route + "/initialise";
            req.json = json{{"action", action}, {"tags", *tags}, {"alignment", params.value("alignment", json(nullptr))},
                            {"architecture", experiment["model"]}, {"run", run}, {"return_weights", weights}}
                           .dump();
            req.timeout = std::chrono::milliseconds(init_timeout_ms_);
            return req;
        };
        constexpr std::size_t kWeightsFrom = 0;  // the worker asked for the initial weights
        std::vector<sdk::WorkerRequest> init;
        for (const auto& node : active) {
            auto req = init_request(node, init.size() == kWeightsFrom);
            if (!req) {
                return req.error();
            }
            init.push_back(std::move(*req));
        }
        std::optional<sdk::TensorMap> global;
        std::vector<std::pair<std::string, sdk::Error>> failures;
        std::vector<bool> alive(active.size(), true);
        // Participants with an evaluate split (evaluate tags are optional): only they are asked
        // for the round's validation loss.
        std::set<std::string> evaluates;
        // The row counts each worker reported at initialise, where known: they bound the
        // `samples` of its updates and the `rows` weighting its validation loss.
        std::map<std::string, std::int64_t> train_rows;
        std::map<std::string, double> evaluate_rows;
        const auto record_rows = [&](const std::string& pid, const json& body) {
            const json rows = body.value("evaluate_rows", json(nullptr));
            if (!rows.is_number() || rows.get<double>() > 0) {  // unknown: ask, as before
                evaluates.insert(pid);
            }
            if (rows.is_number() && rows.get<double>() >= 0) {
                evaluate_rows[pid] = rows.get<double>();
            }
            const json train = body.value("train_rows", json(nullptr));
            if (train.is_number_unsigned()) {  // how the parser keeps a non-negative integer
                train_rows[pid] = static_cast<std::int64_t>(
                    std::min<std::uint64_t>(train.get<std::uint64_t>(), std::numeric_limits<std::int64_t>::max()));
            }
        };
        ttp::fan_out(ctx.workers(), active, init, [&](std::size_t i, sdk::Result<sdk::WorkerReply>&& reply) {
            auto body = ttp::reply_json(reply, active[i], init[i].path);
            if (!body) {
                failures.emplace_back(active[i].participant_id, body.error());
                alive[i] = false;
                return;
            }
            record_rows(active[i].participant_id, *body);
            // Only the worker that was asked supplies the initial model (and with it the layout
            // every update must match). Tensors in any other reply are ignored, not refused: the
            // worker may still train honestly, and nothing it sent unasked is used.
            if (i == kWeightsFrom && !reply->tensors.tensors.empty()) {
                global = std::move(reply->tensors);
            }
            reply->tensors = {};  // the other workers' copies: not kept as a buffer for later
        });
        // A cancel (or the TTP stopping) gives up the calls still waiting: their failures are
        // not the workers', and none of them is dropped for it.
        if (ctx.is_cancelled() && !failures.empty()) {
            return sdk::Error{sdk::ErrorCode::Cancelled, "stopped while the workers initialised"};
        }
        if (!failures.empty()) {
            const int ok = static_cast<int>(std::count(alive.begin(), alive.end(), true));
            if (ok < quorum || ok == 0) {
                auto e = round_error(0, failures);
                return sdk::Error{e.code, "initialisation " + e.message.substr(e.message.find("failed"))};
            }
            for (const auto& f : failures) {
                ctx.logger().warn("worker dropped at initialisation",
                                  ttp::log_fields({{"participant", f.first}, {"error", f.second.message}}));
            }
        }
        std::vector<std::string> dropped;
        auto prune = [&] {
            std::vector<sdk::GridNode> kept;
            for (std::size_t i = 0; i < active.size(); ++i) {
                if (alive[i]) {
                    kept.push_back(active[i]);
                } else {
                    dropped.push_back(active[i].participant_id);
                }
            }
            active = std::move(kept);
            alive.assign(active.size(), true);
        };
        prune();
        if (!global && !active.empty()) {
            // The worker asked for the weights was dropped (the quorum allowed it): initialising
            // a live one again (the same seed, the same weights) returns them.
            auto again = init_request(active.front(), true);
            if (!again) {
                return again.error();
            }
            std::optional<sdk::Error> refused;
            ttp::fan_out(ctx.workers(), {active.front()}, {*again},
                         [&](std::size_t, sdk::Result<sdk::WorkerReply>&& reply) {
                             auto body = ttp::reply_json(reply, active.front(), again->path);
                             if (!body) {
                                 refused = body.error();
                                 return;
                             }
                             record_rows(active.front().participant_id, *body);
                             // The one call made here went to the worker asked for the weights.
                             if (!reply->tensors.tensors.empty()) {
                                 global = std::move(reply->tensors);
                             }
                         });
            if (ctx.is_cancelled() && refused) {
                return sdk::Error{sdk::ErrorCode::Cancelled, "stopped while the workers initialised"};
            }
            if (refused) {
                auto e = round_error(0, {{active.front().participant_id, *refused}});
                return sdk::Error{e.code, "initialisation " + e.message.substr(e.message.find("failed"))};
            }
        }
        // After a step of round `r` in which some workers failed: they are dropped (logged as
        // `event`) while the quorum holds, else the round fails naming them.
        auto drop_failed = [&](int r, const char* event) -> std::optional<sdk::Error> {
            const int ok = static_cast<int>(std::count(alive.begin(), alive.end(), true));
            if (ok < quorum || ok == 0) {
                return round_error(r, failures);
            }
            for (const auto& f : failures) {
                ctx.logger().warn(event, ttp::log_fields({{"job_id", job->job_id}, {"participant", f.first},
                                                          {"round", r}, {"error", f.second.message}}));
            }
            prune();
            return std::nullopt;
        };
        if (!global) {
            return sdk::Error{sdk::ErrorCode::Internal,
                              "worker '" + (active.empty() ? std::string("?") : active.front().participant_id) +
                                  "' was asked for the initial weights and returned none"};
        }

        // 2. Resume from the newest complete checkpoint, if an earlier attempt of this job left
        //    one. Checkpoints are the job's own: those of an earlier training of the run (another
        //    job, perhaps other settings) are removed, or a second training would "resume" the
        //    first one's model.
        History history;
        int start_round = 0;
        // Early-stopping state, saved with each checkpoint, so a resumed run decides identically.
        double best = std::numeric_limits<double>::infinity();
        int stale = 0;
        bool stopped_early = false;
        int last_round = -1;
        // The newest checkpoint that reads back whole; one that does not (a disk fault) is
        // removed and the one before it used: the previous round is kept for this (see
        // prune_checkpoints), and the round after it is trained again.
        const auto checkpoints = complete_checkpoints(ckpt_dir);
        for (std::size_t c = 0; c < checkpoints.size(); ++c) {
            const auto& [round, saved] = checkpoints[c];
            const std::string round_dir = ckpt_dir + "/round_" + std::to_string(round);
            if (saved.value("job_id", json(nullptr)) != json(job->job_id)) {
                // Left by an earlier training of the run (see above).
                std::error_code ec;
                fs::remove_all(ckpt_dir, ec);
                ctx.logger().info("checkpoints not resumed; training starts at round 0",
                                  ttp::log_fields({{"job_id", job->job_id}, {"checkpoints", ckpt_dir},
                                                   {"why", "left by an earlier training of this run"},
                                                   {"removed", !ec}}));
                if (ec) {
                    return sdk::Error{sdk::ErrorCode::Unavailable,
                                      "cannot remove the checkpoints left by an earlier training of this run in '" +
                                          ckpt_dir + "': " + ec.message()};
                }
                break;
            }
            auto weights = ctx.read_tensors(round_dir + "/global_model.safetensors");
            std::optional<sdk::TensorMap> state;
            sdk::Status loaded;
            if (weights && saved.value("has_aggregator_state", false)) {
                auto read = ctx.read_tensors(round_dir + "/aggregator_state.safetensors");
                if (read) {
                    state = std::move(*read);
                } else {
                    loaded = read.error();
                }
            }
            if (!weights || !loaded) {
                const std::string why = !weights ? weights.error().message : loaded.message();
                if (saved.value("has_aggregator_state", false)) {
                    // Round `round`'s model went out already: going back a round would send a
                    // second one for it, which the strategy's state (a noise accountant, say)
                    // would not count. As for a released round that does not read back.
                    return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                      "the checkpoint of round " + std::to_string(round) + " in '" + round_dir +
                                          "' does not read back (" + why +
                                          "); resuming from an earlier round would send a second model for round " +
                                          std::to_string(round) + ", which the strategy's saved state does not "
                                          "count. Remove '" + ckpt_dir + "' to train the run from round 0"};
                }
                std::error_code ec;
                fs::remove_all(round_dir, ec);
                ctx.logger().warn("checkpoint unreadable; removed, the one before it is tried",
                                  ttp::log_fields({{"job_id", job->job_id}, {"round", round}, {"why", why},
                                                   {"removed", !ec},
                                                   {"next", c + 1 < checkpoints.size()
                                                                ? json(checkpoints[c + 1].first)
                                                                : json("none: training starts at round 0")}}));
                if (ec) {
                    return sdk::Error{sdk::ErrorCode::Unavailable, "checkpoint of round " + std::to_string(round) +
                                                                       " is unreadable (" + why +
                                                                       ") and cannot be removed: " + ec.message()};
                }
                continue;
            }
            if (state) {
                if (auto st = session->load_state(*state); !st) {
                    return sdk::Error{st.code(), "checkpoint of round " + std::to_string(round) + ": " + st.message()};
                }
            }
            if (c > 0) {
                // What the rounds after this one left (a released model of the round after
                // the unreadable one) belongs to the models given up: they are trained again.
                remove_checkpoints_if(ckpt_dir, [r = round](int other) { return other > r; });
            }
            global = std::move(*weights);
            history = History::from_json(saved.value("history", json::object()));
            start_round = round + 1;
            last_round = round;
            const json& early = saved.value("early_stopping", json::object());
            if (early.is_object() && early.value("best", json(nullptr)).is_number()) {
                best = early["best"].get<double>();
            }
            if (early.is_object()) {
                stale = early.value("stale", 0);
                stopped_early = early.value("stopped", false);
            }
            if (stopped_early) {
                start_round = rounds;
            }
            ctx.logger().info("training resumed from checkpoint",
                              ttp::log_fields({{"job_id", job->job_id}, {"round", round + 1},
                                               {"stopped_early", stopped_early}}));
            break;
        }
        // A round whose model went out to the workers but whose checkpoint was not completed (the
        // job stopped in its validation) is taken up where it stopped, from the model written
        // before it went out: training the round anew would release a second model for it, which
        // a strategy adding noise (dpfedavg) would count once.
        int taken_up = -1;
        std::optional<sdk::TensorMap> taken_up_state;
        if (start_round < rounds) {
            const std::string round_dir = ckpt_dir + "/round_" + std::to_string(start_round);
            if (auto marker = read_json_object(round_dir + "/released.json")) {
                if (marker->value("job_id", json(nullptr)) != json(job->job_id) ||
                    marker->value("round", json(nullptr)) != json(start_round)) {
                    // Left by an earlier training of the run (its checkpoints are gone).
                    std::error_code ec;
                    fs::remove_all(start_round == 0 ? ckpt_dir : round_dir, ec);
                } else {
                    const auto unreadable = [&](const std::string& file, const sdk::Error& e) {
                        return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                          "round " + std::to_string(start_round) +
                                              "'s model went out to the workers, but '" + round_dir + "/" +
                                              file + "' cannot be read back (" + e.message +
                                              "); training the round anew would release a second model for "
                                              "it. Remove '" + round_dir + "' to accept that"};
                    };
                    auto weights = ctx.read_tensors(round_dir + "/global_model.safetensors");
                    if (!weights) {
                        return unreadable("global_model.safetensors", weights.error());
                    }
                    if (marker->value("has_aggregator_state", false)) {
                        auto state = ctx.read_tensors(round_dir + "/aggregator_state.safetensors");
                        if (!state) {
                            return unreadable("aggregator_state.safetensors", state.error());
                        }
                        if (auto st = session->load_state(*state); !st) {
                            return sdk::Error{st.code(), "round " + std::to_string(start_round) +
                                                             "'s released state: " + st.message()};
                        }
                        taken_up_state = std::move(*state);
                    } else {
                        taken_up_state.emplace();
                    }
                    global = std::move(*weights);
                    history = History::from_json(marker->value("history", json::object()));
                    taken_up = start_round;
                    ctx.logger().info("round taken up at its validation: its model had gone out already",
                                      ttp::log_fields({{"job_id", job->job_id}, {"round", start_round}}));
                }
            }
        }
        const int resumed_at = std::min(start_round, last_round + 1);

        // 3. Rounds.
        for (int r = start_round; r < rounds; ++r) {
            if (ctx.is_cancelled()) {
                return sdk::Error{sdk::ErrorCode::Cancelled, "stopped before round " + std::to_string(r)};
            }
            const auto round_started = std::chrono::steady_clock::now();
            const std::string rk = std::to_string(r);
            const std::string round_dir = ckpt_dir + "/round_" + rk;
            std::optional<sdk::TensorMap> agg_state;
            if (r == taken_up) {
                agg_state = std::move(taken_up_state);  // the model is in `global` already
            } else {
                json round_args = args;
                round_args["round"] = r;
                const std::string train_json = json{{"round", r}, {"args", round_args}}.dump();
                const std::string train_path = route + "/train";
                std::vector<double> local_losses;
                // Local models are an output of the last round only: writing every worker's weights
                // every round cost the round N model-sized writes. A round may be the last when it
                // is the last scheduled one or when one more stale round stops the run early.
                const bool maybe_last = r == rounds - 1 || stale + 1 >= patience;
                // Streamed replies are folded as they arrive (and written to their local model files
                // in a round that saves them), so the TTP holds the global model and the sums, never
                // a reply.
                auto* streaming = dynamic_cast<sdk::StreamingAggregationSession*>(session.get());
                const bool save_local = save_local_models_ && maybe_last;
                // A worker that fails after part of its update was folded spoils the round's sums:
                // the round then runs again from the (unchanged) global model without it. Each
                // attempt has fewer workers, so this ends.
                for (int attempt = 1;; ++attempt) {
                    if (auto st = session->begin_round(*global, r); !st) {
                        return st.error();
                    }
                    std::vector<sdk::WorkerRequest> reqs(active.size());
                    for (auto& req : reqs) {
                        req.path = train_path;
                        req.json = train_json;
                        req.tensors = &*global;
                        req.timeout = std::chrono::milliseconds(round_timeout_ms_);
                    }
                    local_losses.clear();
                    for (const auto& node : active) {
                        if (history.local.contains(node.participant_id)) {
                            history.local[node.participant_id].erase(std::to_string(r));
                        }
                    }
                    RoundFold fold(*session, streaming, active, train_path, train_rows,
                                   [&](std::size_t i, const json& body, sdk::WorkerReply& reply, bool streamed) {
                                       const std::string& pid = active[i].participant_id;
                                       const json losses = body.value("epoch_losses", json::array());
                                       if (!losses.empty() && losses.back().is_number()) {
                                           const double l = losses.back().get<double>();
                                           local_losses.push_back(l);
                                           history.local[pid][std::to_string(r)] = l;
                                       }
                                       if (save_local && !streamed) {
                                           (void)ctx.write_tensors(
                                               dir + "/local_model_" + pid + ".safetensors", reply.tensors,
                                               json{{"round", std::to_string(r)}, {"participant", pid}}.dump());
                                       }
                                   },
                                   ctx.logger(), save_local ? dir : std::string(), r);
                    ctx.workers().call_all(active, reqs, fold);
                    if (ctx.is_cancelled() && !fold.failures().empty()) {
                        // Calls still waiting were given up: the round is not finished with the
                        // workers that did answer (a resumed job runs it again whole). A round
                        // every worker answered is kept; the job stops before the next.
                        return sdk::Error{sdk::ErrorCode::Cancelled, "stopped in round " + std::to_string(r)};
                    }
                    failures = fold.failures();
                    alive = fold.alive();
                    if (failures.empty()) {
                        break;
                    }
                    if (auto failed = drop_failed(r, "worker dropped from the round")) {
                        return *failed;
                    }
                    if (!fold.spoilt()) {
                        break;
                    }
                    ctx.logger().warn("round run again without the dropped workers: a failed reply was partly folded",
                                      ttp::log_fields({{"job_id", job->job_id}, {"round", r}, {"attempt", attempt + 1}}));
                    if (ctx.is_cancelled()) {
                        return sdk::Error{sdk::ErrorCode::Cancelled, "stopped in round " + std::to_string(r)};
                    }
                }
                auto next = session->finish_round();
                if (!next) {
                    return next.error();
                }
                global = std::move(*next);
                if (!local_losses.empty()) {
                    history.global_train[rk] = mean(local_losses);
                }
                // Written before any worker sees the model (write-ahead), with the strategy's
                // state and the history so far: a job that stops before the round's checkpoint
                // completes takes the round up from here (see taken_up).
                auto saved = session->save_state();
                if (!saved) {
                    return saved.error();
                }
                agg_state = std::move(*saved);
                if (auto st = ctx.write_tensors(round_dir + "/global_model.safetensors", *global,
                                                json{{"round", rk}}.dump());
                    !st) {
                    return st.error();
                }
                if (!agg_state->tensors.empty()) {
                    if (auto st = ctx.write_tensors(round_dir + "/aggregator_state.safetensors", *agg_state, "{}");
                        !st) {
                        return st.error();
                    }
                }
                if (auto st = ctx.write_file(round_dir + "/released.json",
                                             json{{"job_id", job->job_id}, {"round", r}, {"history", history.to_json()},
                                                  {"has_aggregator_state", !agg_state->tensors.empty()}}
                                                 .dump());
                    !st) {
                    return st.error();
                }
            }

            // Validation loss of the new global model on the evaluate splits of the workers that
            // have one.
            std::vector<sdk::GridNode> evaluators;
            std::vector<std::size_t> evaluator_of;  // index in `active`
            for (std::size_t i = 0; i < active.size(); ++i) {
                if (evaluates.count(active[i].participant_id) != 0) {
                    evaluators.push_back(active[i]);
                    evaluator_of.push_back(i);
                }
            }
            std::vector<sdk::WorkerRequest> evals(evaluators.size());
            for (auto& req : evals) {
                req.path = route + "/evaluate";
                req.json = json{{"meta", "evaluate"}, {"write_outputs", false}}.dump();
                req.tensors = &*global;
                req.timeout = std::chrono::milliseconds(round_timeout_ms_);
            }
            double weighted = 0;
            double rows = 0;  // double: the sum of claimed counts cannot overflow
            failures.clear();
            ttp::fan_out(ctx.workers(), evaluators, evals, [&](std::size_t i, sdk::Result<sdk::WorkerReply>&& reply) {
                auto body = ttp::reply_json(reply, evaluators[i], evals[i].path);
                if (!body) {
                    sdk::Error e = body.error();
                    if (e.code == sdk::ErrorCode::FailedPrecondition) {
                        e.code = sdk::ErrorCode::Unavailable;  // lost the run's state: resumes on retry
                    }
                    failures.emplace_back(evaluators[i].participant_id, std::move(e));
                    alive[evaluator_of[i]] = false;
                    return;
                }
                const json claimed = body->value("rows", json(0));
                double n = claimed.is_number() ? claimed.get<double>() : 0.0;
                // A worker's weight is at most the evaluate rows it reported at initialise: a
                // claimed 9e18 would otherwise decide the round's loss alone.
                if (const auto known = evaluate_rows.find(evaluators[i].participant_id);
                    known != evaluate_rows.end()) {
                    n = std::min(n, known->second);
                }
                if (!std::isfinite(n)) {
                    n = 0;
                }
                if (n > 0 && body->contains("loss") && (*body)["loss"].is_number()) {
                    weighted += (*body)["loss"].get<double>() * n;
                    rows += n;
                } else if (n > 0) {
                    ctx.logger().warn("worker's validation loss is not a number; left out of the round's",
                                      ttp::log_fields({{"job_id", job->job_id}, {"round", r},
                                                       {"participant", evaluators[i].participant_id}}));
                }
            });
            if (ctx.is_cancelled() && !failures.empty()) {
                return sdk::Error{sdk::ErrorCode::Cancelled, "stopped in round " + std::to_string(r) + "'s validation"};
            }
            if (!failures.empty()) {
                // As in training (the round's model is made already).
                if (auto failed = drop_failed(r, "worker dropped at the round's validation")) {
                    return *failed;
                }
            }
            std::optional<double> eval_loss;
            if (rows > 0) {
                eval_loss = weighted / rows;
                history.global_evaluate[rk] = *eval_loss;
            }
            // Decided before the checkpoint, which saves the decision.
            if (eval_loss) {
                // As the original and the local stopper: an equal loss (delta 0) is an
                // improvement.
                if (*eval_loss <= best - delta) {
                    best = *eval_loss;
                    stale = 0;
                } else if (++stale >= patience) {
                    stopped_early = true;
                }
            }

            // Checkpoint: the weights and the strategy's state were written before the release;
            // the state file marks the round complete.
            // Per-round figures a strategy publishes in its state as scalar `metric.<name>`
            // tensors (e.g. the privacy spent) go into the history and the progress record.
            json round_metrics = json::object();
            for (const auto& t : agg_state->tensors) {
                if (t.name.rfind("metric.", 0) == 0 && t.numel() == 1) {
                    double v = 0;
                    if (t.dtype == sdk::DType::F64 && t.data.size() == 8) {
                        std::memcpy(&v, t.data.data(), 8);
                    } else if (t.dtype == sdk::DType::F32 && t.data.size() == 4) {
                        float f = 0;
                        std::memcpy(&f, t.data.data(), 4);
                        v = f;
                    } else {
                        continue;
                    }
                    round_metrics[t.name.substr(7)] = v;
                    history.metrics[t.name.substr(7)][rk] = v;
                }
            }
            const bool has_state = !agg_state->tensors.empty();
            const json early{{"best", std::isfinite(best) ? json(best) : json(nullptr)},
                             {"stale", stale},
                             {"stopped", stopped_early}};
            if (auto st = ctx.write_file(round_dir + "/state.json",
                                         json{{"job_id", job->job_id}, {"round", r}, {"history", history.to_json()},
                                              {"has_aggregator_state", has_state}, {"early_stopping", early}}
                                             .dump());
                !st) {
                return st.error();
            }
            last_round = r;
            // The newest two complete checkpoints are kept: a resume reads the newest, and a page
            // reading the one before while this one completes still finds it. Every round was
            // kept: 400 rounds of a 100 MB model took 40 GB.
            prune_checkpoints(ckpt_dir, r - 1);

            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            const double round_s =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - round_started).count();
            json progress{{"round", r + 1}, {"rounds", rounds}, {"train_loss", history.global_train.value(rk, json(nullptr))},
                          {"grid", ctx.grid()}, {"participants", active.size()}, {"elapsed_s", elapsed},
                          {"eta_s", round_s * (rounds - r - 1)}};
            if (eval_loss) {
                progress["evaluate_loss"] = *eval_loss;
            }
            if (!round_metrics.empty()) {
                progress["metrics"] = round_metrics;
            }
            ctx.report_progress(progress.dump());

            if (stopped_early) {
                ctx.logger().info("global early stopping",
                                  ttp::log_fields({{"job_id", job->job_id}, {"round", r}, {"patience", patience}}));
                break;
            }
        }

        // 4. Exports (the original's file set, with safetensors models).
        const std::string global_path = dir + "/global_model.safetensors";
        const std::string global_hist = dir + "/global_loss_history.json";
        if (auto st = ctx.write_tensors(global_path, *global, json{{"rounds_run", std::to_string(last_round + 1)}}.dump());
            !st) {
            return st.error();
        }
        if (auto st = ctx.write_file(global_hist, json{{"train", history.global_train},
                                                       {"evaluate", history.global_evaluate}}
                                                      .dump(2));
            !st) {
            return st.error();
        }
        json outputs = json::object();
        outputs["global"] = {{"origin", "ttp"}, {"path", global_path}, {"loss_history", global_hist},
                             {"checkpoints", ckpt_dir}};
        int n = 1;
        for (const auto& node : ctx.nodes()) {
            const std::string& pid = node.participant_id;
            const std::string hist = dir + "/local_loss_history_" + pid + ".json";
            (void)ctx.write_file(hist, history.local.value(pid, json::object()).dump(2));
            outputs["local_" + std::to_string(n++)] = {
                {"origin", pid},
                {"path", save_local_models_ ? dir + "/local_model_" + pid + ".safetensors" : ""},
                {"loss_history", hist}};
        }
        outputs["history"] = history.to_json();
        outputs["summary"] = {{"rounds_run", last_round + 1}, {"stopped_early", stopped_early},
                              {"dropped", dropped}, {"algorithm", algorithm}, {"resumed_at", resumed_at}};

        return outputs.dump();
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal, std::string("train failed: ") + e.what()};
    }
}

sdk::Result<std::vector<sdk::Mutation>> TrainFunction::archive(sdk::ArchiveContext&, std::string_view job_json,
                                                                std::string_view outputs_json) noexcept {
    try {
        auto job = ttp::parse_job(job_json, 4);
        if (!job) {
            return job.error();
        }
        auto out = ttp::parse_object(outputs_json, "train outputs");
        if (!out) {
            return out.error();
        }
        // The Model record keeps the original's shape: `global` and `local_<n>` blocks only.
        json doc = json::object();
        for (auto& [k, v] : out->items()) {
            if (k == "global" || k.rfind("local_", 0) == 0) {
                doc[k] = v;
            }
        }
        // Under its run only (an optimization's trial: its experiment): a run deleted while it
        // trained gets no orphan model; the job fails instead.
        return std::vector<sdk::Mutation>{
            ttp::owner_requirement(*job),
            {sdk::WriteMode::Upsert, "Model",
             ttp::model_key(job->collab(), job->project(), job->expt(), job->run()), doc.dump()}};
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal, std::string("train archival failed: ") + e.what()};
    }
}

sdk::Status TrainFunction::after_archive(sdk::ArchiveContext& ctx, std::string_view job_json,
                                         std::string_view outputs_json) noexcept {
    try {
        sdk::Tracker* tracker = ctx.tracker();
        if (!tracker) {
            return {};
        }
        auto job = ttp::parse_job(job_json, 4);
        auto out = ttp::parse_object(outputs_json, "train outputs");
        if (!job || !out) {
            return {sdk::ErrorCode::InvalidArgument, "train outputs cannot be tracked"};
        }
        std::vector<std::string> participants;
        for (auto& [k, v] : out->items()) {
            if (k.rfind("local_", 0) == 0) {
                participants.push_back(v.value("origin", ""));
            }
        }
        auto run = ttp::tracking_run(*tracker, *job, job->parameters.value("run", json::object()), participants);
        if (!run) {
            return run.status();
        }
        const json history = out->value("history", json::object());
        std::vector<sdk::MetricPoint> points;
        const auto ts = ttp::now_ms();
        auto add_series = [&](const std::string& key, const json& series) {
            for (auto& [round, loss] : series.items()) {
                if (loss.is_number()) {
                    points.push_back({key, loss.get<double>(), std::stoll(round), ts});
                }
            }
        };
        add_series("global_train_loss", history.value("train", json::object()));
        add_series("global_evaluate_loss", history.value("evaluate", json::object()));
        const json local = history.value("local", json::object());
        for (auto& [pid, series] : local.items()) {
            add_series(pid + "_local_loss", series);
        }
        const json strategy_metrics = history.value("metrics", json::object());
        for (auto& [name, series] : strategy_metrics.items()) {
            add_series(name, series);
        }
        const sdk::Status logged = tracker->log_metrics(*run, points);
        const json global = out->value("global", json::object());
        if (logged && global.contains("path")) {
            (void)tracker->log_artifact(*run, global["path"].get<std::string>(), "model");
            (void)tracker->log_artifact(*run, global.value("loss_history", ""), "model");
        }
        // The training is over whatever was logged: its run stops reading RUNNING (a training
        // that takes it again sets it running again; evaluations log into it as it is).
        if (auto st = tracker->end_run(*run, "FINISHED"); !st && logged) {
            return st;
        }
        return logged;
    } catch (const std::exception& e) {
        return {sdk::ErrorCode::Internal, std::string("train tracking failed: ") + e.what()};
    }
}

sdk::Status TrainFunction::after_unsuccessful(sdk::ArchiveContext& ctx, std::string_view job_json,
                                              std::string_view state, std::string_view reason) noexcept {
    try {
        sdk::Tracker* tracker = ctx.tracker();
        if (!tracker) {
            return {};
        }
        auto job = ttp::parse_job(job_json, 4);
        if (!job) {
            return {sdk::ErrorCode::InvalidArgument, "train job cannot be tracked: " + job.error().message};
        }
        // The participants it was given (a failed training has no outputs naming them).
        std::vector<std::string> participants;
        const json message = json::parse(job_json, nullptr, false);
        const json grids = message.is_object() ? message.value("grids", json::array()) : json::array();
        if (grids.is_array() && job->grid >= 0 && static_cast<std::size_t>(job->grid) < grids.size() &&
            grids[static_cast<std::size_t>(job->grid)].is_array()) {
            for (const json& node : grids[static_cast<std::size_t>(job->grid)]) {
                if (node.is_object() && node.value("participant_id", json(nullptr)).is_string()) {
                    participants.push_back(node["participant_id"].get<std::string>());
                }
            }
        }
        auto run = ttp::tracking_run(*tracker, *job, job->parameters.value("run", json::object()), participants);
        if (!run) {
            return run.status();
        }
        // A reason cut at a character boundary within the tag limits of trackers (MLflow: 5000).
        std::string why(reason.substr(0, std::min<std::size_t>(reason.size(), 2000)));
        while (!why.empty() && !sdk::is_utf8(why)) {
            why.pop_back();
        }
        const sdk::Status tagged = tracker->set_tags(
            *run, {{"synergos.outcome", std::string(state)}, {"synergos.reason", why}});
        const sdk::Status ended = tracker->end_run(*run, state == "cancelled" ? "KILLED" : "FAILED");
        return ended ? tagged : ended;
    } catch (const std::exception& e) {
        return {sdk::ErrorCode::Internal, std::string("train tracking failed: ") + e.what()};
    }
}

}  // namespace synergos::plugins::train
