// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/worker/service.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <list>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/core/metrics/metrics.hpp>
#include <synergos/core/tensor/safetensors.hpp>
#include <synergos/core/worker/alignment.hpp>
#include <synergos/core/worker/data_layout.hpp>

#include <synergos/core/http/message.hpp>

namespace synergos::core::worker {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr const char* kMetas[] = {"train", "evaluate", "predict"};
constexpr std::size_t kMaxIdBytes = 255;

/// A failed request on its way to the client. Thrown inside the service only; `handle` turns
/// it into a response, so nothing escapes.
struct HttpError {
    int status;
    std::string message;
};

[[noreturn]] void fail(int status, std::string message) {
    throw HttpError{status, std::move(message)};
}

/// The one place where SDK error codes become HTTP statuses for data and model failures.
int status_for(sdk::ErrorCode code) {
    switch (code) {
        case sdk::ErrorCode::InvalidArgument:
            return 422;
        case sdk::ErrorCode::NotFound:
            return 404;
        case sdk::ErrorCode::AlreadyExists:
        case sdk::ErrorCode::FailedPrecondition:
            return 409;
        case sdk::ErrorCode::ResourceExhausted:
            return 413;
        case sdk::ErrorCode::PermissionDenied:
            return 403;
        case sdk::ErrorCode::Unimplemented:
            return 501;
        default:
            return 500;
    }
}

std::string dump(const Json& j) {
    return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string quote(std::string_view s) {
    return dump(Json(std::string(s)));
}

WorkerHttpResponse json_response(int status, const Json& body) {
    return WorkerHttpResponse{status, "application/json", dump(body)};
}

/// A finite number, or null (JSON has no NaN).
Json number_or_null(double v) {
    return std::isfinite(v) ? Json(v) : Json(nullptr);
}

/// The media type without parameters, lower-case.
std::string media_type(std::string_view content_type) {
    std::string t(content_type.substr(0, content_type.find(';')));
    while (!t.empty() && t.back() == ' ') {
        t.pop_back();
    }
    std::transform(t.begin(), t.end(), t.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return t;
}

/// Parses JSON with a nesting bound (deeply nested input would make later printing recurse).
/// The depth is counted before parsing, so a deep body is never built in memory.
Json parse_json(std::string_view text, const std::string& what) {
    if (http::nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth) {
        fail(400, what + " nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }
    Json j = Json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        fail(400, what + " is not a JSON object");
    }
    return j;
}

/// A pipeline's JSON text (schema, metadata) as an object, {} when it is none or too deep.
Json pipeline_object(std::string_view text) {
    if (http::nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth) {
        return Json::object();
    }
    Json j = Json::parse(text.begin(), text.end(), nullptr, false);
    return j.is_object() ? j : Json::object();
}

Json json_body(const WorkerHttpRequest& request, bool allow_empty) {
    const std::string type = media_type(request.content_type);
    if (type == tensor::kSafetensorsContentType) {
        fail(400,
             "this route takes a JSON body, not " + std::string(tensor::kSafetensorsContentType));
    }
    if (request.body.empty()) {
        if (allow_empty) {
            return Json::object();
        }
        fail(400, "the request body is empty; a JSON object is expected");
    }
    return parse_json(request.body, "the request body");
}

struct WeightsBody {
    sdk::TensorMap tensors;
    Json json = Json::object();
};

WeightsBody weights_body(const WorkerHttpRequest& request, std::size_t max_bytes) {
    const std::string type = media_type(request.content_type);
    if (type != tensor::kSafetensorsContentType && type != "application/octet-stream") {
        fail(400, "this route takes a safetensors body (" +
                      std::string(tensor::kSafetensorsContentType) + "), not " +
                      (type.empty() ? std::string("an untyped body") : quote(type)));
    }
    tensor::DecodeLimits limits;
    limits.max_total_bytes = max_bytes;
    auto decoded = tensor::decode(request.body, limits);
    if (!decoded) {
        fail(decoded.error().code == sdk::ErrorCode::ResourceExhausted ? 413 : 400,
             decoded.error().message);
    }
    WeightsBody out;
    out.tensors = std::move(decoded->tensors);
    auto it = decoded->metadata.find("json");
    if (it != decoded->metadata.end()) {
        out.json = parse_json(it->second, "__metadata__[\"json\"]");
    }
    return out;
}

/// One percent-decoded path segment.
std::string decode_segment(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out.push_back(s[i]);
            continue;
        }
        if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
            !std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
            fail(400, "the path has an invalid percent escape");
        }
        out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
        i += 2;
    }
    return out;
}

std::vector<std::string> split_path(std::string_view target) {
    target = target.substr(0, target.find_first_of("?#"));
    std::vector<std::string> parts;
    std::size_t start = 0;
    while (start <= target.size()) {
        const std::size_t end = std::min(target.find('/', start), target.size());
        if (end > start) {
            parts.push_back(decode_segment(target.substr(start, end - start)));
        }
        start = end + 1;
    }
    return parts;
}

/// Route ids become folder names under the outputs directory: plain names only.
void check_id(const std::string& value, const char* name) {
    bool bad = value.empty() || value == "." || value == ".." || value.size() > kMaxIdBytes;
    for (unsigned char c : value) {
        bad = bad || c == '/' || c == '\\' || c < 0x20 || c == 0x7f;
    }
    if (bad) {
        fail(400, std::string("path parameter '") + name + "' (" + quote(value) +
                      ") must be a plain name: no '/', '..' or control characters");
    }
}

std::string require_action(const Json& body) {
    const auto it = body.find("action");
    if (it == body.end() || !it->is_string() ||
        (*it != metrics::kClassify && *it != metrics::kRegress)) {
        fail(400, "body field 'action' must be \"classify\" or \"regress\"");
    }
    return it->get<std::string>();
}

/// `tags`: {train: [tag...], evaluate: [...], predict: [...]}.
Json require_tags(const Json& body) {
    const auto it = body.find("tags");
    if (it == body.end() || !it->is_object()) {
        fail(400, "body field 'tags' must be an object {train, evaluate, predict}");
    }
    for (auto t = it->begin(); t != it->end(); ++t) {
        const bool known = std::any_of(std::begin(kMetas), std::end(kMetas),
                                       [&](const char* m) { return t.key() == m; });
        if (!known) {
            fail(400, "body field 'tags' has unknown split " + quote(t.key()) +
                          " (expected train, evaluate, predict)");
        }
        if (!t.value().is_null() && !t.value().is_array()) {
            fail(400, "body field 'tags." + t.key() + "' must be a list of tags");
        }
    }
    return *it;
}

std::vector<std::string> string_list(const Json& value, const std::string& field,
                                     std::size_t max_names) {
    if (value.is_null()) {
        return {};
    }
    if (!value.is_array()) {
        fail(400, "body field '" + field + "' must be a list of names");
    }
    if (value.size() > max_names) {
        fail(422, "body field '" + field + "' has " + std::to_string(value.size()) +
                      " names, more than the worker's limit of " + std::to_string(max_names));
    }
    std::vector<std::string> out;
    for (const Json& v : value) {
        if (!v.is_string()) {
            fail(400, "body field '" + field + "' must hold strings only");
        }
        out.push_back(v.get<std::string>());
    }
    return out;
}

/// Writes a file through a temporary name, so readers never see half a file. The name is the
/// writer's own: two requests writing one path must not write into one temporary file.
void write_file(const fs::path& path, const std::string& text) {
    static std::atomic<std::uint64_t> next{0};
    const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid()) + "." +
                         std::to_string(next.fetch_add(1));
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out.write(text.data(), static_cast<std::streamsize>(text.size()));
        out.close();
        if (!out) {
            std::error_code ignored;
            fs::remove(tmp, ignored);
            fail(500, "cannot write " + path.filename().string() + " in the outputs directory");
        }
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) {
        std::error_code ignored;
        fs::remove(tmp, ignored);
        fail(500, "cannot write " + path.filename().string() + ": " + ec.message());
    }
}

/// numpy.savetxt's default format: '%.18e', space-separated, one row per line.
template <typename T>
std::string savetxt(const std::vector<T>& values, std::size_t width) {
    std::string out;
    out.reserve(values.size() * 26);
    char buf[40];
    for (std::size_t i = 0; i < values.size(); ++i) {
        const int n = std::snprintf(buf, sizeof buf, "%.18e", static_cast<double>(values[i]));
        out.append(buf, static_cast<std::size_t>(n));
        out.push_back((i + 1) % width == 0 ? '\n' : ' ');
    }
    return out;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
    return dump(Json(shape));
}

// ---- SCAFFOLD's client control (Karimireddy et al. 2020; docs/strategies.md) ----
// The scaffold aggregator sends the server control c as `scaffold.c.<name>` tensors with the
// global weights and the train argument "scaffold": true. The worker keeps its own control c_i
// per run under its outputs directory (so it survives restarts), hands c and c_i to the model
// in the reference map, and updates c_i from the `scaffold.delta_c.<name>` tensors the model
// returns. Other routes ignore every `scaffold.` tensor.

constexpr std::string_view kScaffoldPrefix = "scaffold.";
constexpr std::string_view kServerControlPrefix = "scaffold.c.";
constexpr std::string_view kClientControlPrefix = "scaffold.c_i.";
constexpr std::string_view kDeltaControlPrefix = "scaffold.delta_c.";
constexpr std::string_view kClientControlFile = "client_control_round_";

bool has_prefix(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

/// Weights without any `scaffold.` tensor, and the `scaffold.c.` tensors (names kept).
struct SplitBody {
    sdk::TensorMap weights;
    sdk::TensorMap server_control;
};

SplitBody split_scaffold(sdk::TensorMap&& body) {
    SplitBody out;
    for (sdk::Tensor& t : body.tensors) {
        if (has_prefix(t.name, kServerControlPrefix)) {
            out.server_control.tensors.push_back(std::move(t));
        } else if (!has_prefix(t.name, kScaffoldPrefix)) {
            out.weights.tensors.push_back(std::move(t));
        }
    }
    return out;
}

bool is_floating(sdk::DType d) {
    return d == sdk::DType::F32 || d == sdk::DType::F64;
}

double element(const sdk::Tensor& t, std::size_t i) {
    if (t.dtype == sdk::DType::F64) {
        double v = 0;
        std::memcpy(&v, t.data.data() + i * sizeof v, sizeof v);
        return v;
    }
    float v = 0;
    std::memcpy(&v, t.data.data() + i * sizeof v, sizeof v);
    return v;
}

void set_element(sdk::Tensor& t, std::size_t i, double value) {
    if (t.dtype == sdk::DType::F64) {
        std::memcpy(t.data.data() + i * sizeof value, &value, sizeof value);
        return;
    }
    const auto v = static_cast<float>(value);
    std::memcpy(t.data.data() + i * sizeof v, &v, sizeof v);
}

/// The saved client controls of one run: round trained -> file.
std::map<int, fs::path> client_control_files(const fs::path& dir) {
    std::map<int, fs::path> out;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        const std::string suffix = ".safetensors";
        if (!has_prefix(name, kClientControlFile) || name.size() <= suffix.size() ||
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
            continue;
        }
        const std::string digits = name.substr(
            kClientControlFile.size(), name.size() - kClientControlFile.size() - suffix.size());
        if (digits.empty() || digits.size() > 9 ||
            !std::all_of(digits.begin(), digits.end(),
                         [](unsigned char c) { return std::isdigit(c) != 0; })) {
            continue;
        }
        out.emplace(std::stoi(digits), it->path());
    }
    return out;
}

/// One loaded split: the dataset as the pipeline produced it (shared with the cache).
struct Split {
    std::shared_ptr<const sdk::Dataset> data;
    std::string datatype;
    std::vector<std::string> folders;  ///< relative to the data directory
};

/// An initialised run. `mutex` serialises the requests of this run.
struct RunState {
    std::timed_mutex mutex;
    /// Set when the run is re-initialised or terminated: a request that was waiting for `mutex`
    /// must not work on the old state.
    std::atomic<bool> retired{false};
    /// Requests waiting for `mutex` now (bounded by WorkerServiceConfig::max_run_waiters).
    std::atomic<std::size_t> waiters{0};
    std::string action;
    Json run = Json::object();
    std::map<std::string, sdk::Dataset> splits;  ///< aligned, by meta
    std::unique_ptr<sdk::Model> model;
    std::vector<std::int64_t> input_shape;
};

struct CacheEntry {
    std::string key;
    std::shared_ptr<const sdk::Dataset> data;
};

/// A loaded run in the service's map.
struct RunSlot {
    std::shared_ptr<RunState> state;
    std::uint64_t last_used = 0;  ///< Impl::tick when a request last found it
};

/// The initialises of one run in flight. `epoch` changes when the run is terminated: an
/// initialise that started in an older epoch must not install its state.
struct PendingInit {
    std::uint64_t epoch = 0;
    std::size_t in_flight = 0;
};

}  // namespace

struct WorkerService::Impl {
    WorkerServiceConfig config;
    /// Canonical data directory, empty while it does not exist: looked up again then, so a
    /// volume mounted after the worker started is found without a restart.
    mutable std::mutex root_mutex;
    mutable fs::path data_root;
    /// Guards `runs`, `initialising` and `tick`. Held only for map work and try_lock, never
    /// while waiting for a run, so /v1/health and other runs never wait behind a busy run.
    mutable std::mutex runs_mutex;
    std::map<std::string, RunSlot> runs;
    std::map<std::string, PendingInit> initialising;
    /// Runs terminated while a request of theirs may still run (see terminate, install).
    std::map<std::string, std::weak_ptr<RunState>> terminated;
    std::uint64_t tick = 0;
    /// Requests in wait_for_run now, across runs (wait_for_run is const).
    mutable std::atomic<std::size_t> waiting_total{0};
    std::mutex cache_mutex;
    std::list<CacheEntry> cache;  ///< most recently used first

    void log(sdk::Level level, std::string_view event, const Json& fields) const noexcept {
        if (config.logger == nullptr || !config.logger->enabled(level)) {
            return;
        }
        try {
            config.logger->log(level, event, dump(fields), {});
        } catch (...) {
            // Logging is best effort.
        }
    }

    /// Replaces the data directory's absolute path in messages that go to the TTP.
    std::string scrub(std::string message) const {
        const fs::path found = current_root();
        if (found.empty()) {
            return message;
        }
        const std::string root = found.string() + "/";
        for (std::size_t pos = message.find(root); pos != std::string::npos;
             pos = message.find(root, pos)) {
            message.replace(pos, root.size(), "<data>/");
        }
        return message;
    }

    /// The data directory, or empty while it does not exist (or is not a directory).
    fs::path current_root() const {
        std::lock_guard<std::mutex> lock(root_mutex);
        if (data_root.empty()) {
            std::error_code ec;
            fs::path found = fs::canonical(config.data_dir, ec);
            if (!ec && fs::is_directory(found, ec)) {
                data_root = std::move(found);
            }
        }
        return data_root;
    }

    fs::path root() const {
        fs::path found = current_root();
        if (found.empty()) {
            fail(500, "the worker's data directory " + quote(config.data_dir) + " does not exist");
        }
        return found;
    }

    /// `scaling` (feature -> [min, max]) is the federation-wide scaling the TTP found at
    /// alignment; it reaches the pipeline as the option `scaling` (null: each split scales itself).
    Split load_split(const std::string& action, const Json& tags, const std::string& meta,
                     const Json& scaling = Json(nullptr)) {
        Split split;
        std::vector<std::string> dirs;
        std::string key = action + "\n" + meta;
        Json operations = Json::object();
        if (tags.size() > config.max_tags_per_split) {
            fail(422, "split '" + meta + "' lists " + std::to_string(tags.size()) +
                          " tags, more than the worker's limit of " +
                          std::to_string(config.max_tags_per_split));
        }
        // A folder named by several tags (repeated, or its tokens permuted) is loaded once:
        // otherwise every repetition would load the whole table again.
        std::set<std::string> resolved_tags;
        std::set<fs::path> seen;
        for (const Json& tag : tags) {
            if (!resolved_tags.insert(tag_text(tag)).second) {
                continue;  // the same tag again: no second search of the data directory
            }
            auto folder = resolve_tag(root(), tag, config.max_search_entries);
            if (!folder) {
                const sdk::ErrorCode code = folder.error().code;
                fail(code == sdk::ErrorCode::NotFound             ? 404
                     : code == sdk::ErrorCode::Internal           ? 500
                     : code == sdk::ErrorCode::FailedPrecondition ? 422  // unusable metadata.json
                                                                  : 400,
                     "split '" + meta + "': " + scrub(folder.error().message));
            }
            if (!seen.insert(folder->path).second) {
                continue;
            }
            if (split.datatype.empty()) {
                split.datatype = folder->datatype;
                operations = folder->operations;
            } else if (split.datatype != folder->datatype) {
                fail(422, "split '" + meta + "' mixes datatypes " + quote(split.datatype) +
                              " and " + quote(folder->datatype) + " (tag " + tag_text(tag) + ")");
            }
            dirs.push_back(folder->path.string());
            split.folders.push_back(folder->relative);
            key += "\n" + folder_fingerprint(folder->path);
        }
        const auto pipeline = config.pipelines.find(split.datatype);
        if (pipeline == config.pipelines.end() || pipeline->second == nullptr) {
            std::string known;
            for (const auto& [name, p] : config.pipelines) {
                known += (known.empty() ? "" : ", ") + name;
            }
            fail(422, "split '" + meta + "': no data pipeline for datatype " +
                          quote(split.datatype) +
                          " (available: " + (known.empty() ? std::string("none") : known) + ")");
        }
        // Only ranges to apply: the align function sends an empty `scaling` for data without
        // numeric columns (images), and a pipeline without the option refuses it.
        if (scaling.is_object() && !scaling.empty() && operations.is_object()) {
            operations["scaling"] = scaling;
        }
        const std::string options = dump(operations);
        key += "\n" + split.datatype + "\n" + options;
        {
            std::lock_guard<std::mutex> lock(cache_mutex);
            for (auto it = cache.begin(); it != cache.end(); ++it) {
                if (it->key == key) {
                    cache.splice(cache.begin(), cache, it);
                    split.data = it->data;
                    return split;
                }
            }
        }
        // Load outside every lock: a large split must not hold up other projects.
        auto loaded = pipeline->second->load(sdk::DataRequest{action, dirs, options});
        if (!loaded) {
            fail(status_for(loaded.error().code),
                 "split '" + meta + "': " + scrub(loaded.error().message));
        }
        if (loaded->rows <= 0) {
            fail(422, "split '" + meta + "' has no rows");
        }
        split.data = std::make_shared<const sdk::Dataset>(std::move(*loaded));
        std::lock_guard<std::mutex> lock(cache_mutex);
        cache.push_front(CacheEntry{key, split.data});
        while (cache.size() > config.max_cached_splits) {
            cache.pop_back();
        }
        return split;
    }

    std::map<std::string, Split> load_splits(const std::string& action, const Json& tags,
                                             const Json& scaling = Json(nullptr)) {
        std::map<std::string, Split> out;
        for (const char* meta : kMetas) {
            const auto it = tags.find(meta);
            if (it == tags.end() || it->is_null() || it->empty()) {
                continue;
            }
            out.emplace(meta, load_split(action, *it, meta, scaling));
        }
        if (out.empty()) {
            fail(400, "body field 'tags' names no data for train, evaluate or predict");
        }
        return out;
    }

    std::shared_ptr<RunState> find_run(const std::string& key) {
        std::lock_guard<std::mutex> lock(runs_mutex);
        const auto it = runs.find(key);
        if (it == runs.end()) {
            fail(409, "run " + quote(key) + " is not initialised on this worker (call initialise)");
        }
        it->second.last_used = ++tick;
        return it->second.state;
    }

    /// Takes `state.mutex`, waiting until `deadline` at most, as one of at most
    /// `max_run_waiters` waiters: a busy run must not hold every server thread.
    std::unique_lock<std::timed_mutex> wait_for_run(
        RunState& state, const std::string& key,
        std::chrono::steady_clock::time_point deadline) const {
        std::unique_lock<std::timed_mutex> lock(state.mutex, std::try_to_lock);
        if (lock.owns_lock()) {
            return lock;
        }
        if (state.waiters.fetch_add(1) >= config.max_run_waiters) {
            state.waiters.fetch_sub(1);
            fail(409, "run " + quote(key) + " is busy with another request and " +
                          std::to_string(config.max_run_waiters) +
                          " more already wait for it; retry later");
        }
        waiting_total.fetch_add(1);
        struct Leave {
            std::atomic<std::size_t>& waiters;
            std::atomic<std::size_t>& total;
            ~Leave() {
                waiters.fetch_sub(1);
                total.fetch_sub(1);
            }
        } leave{state.waiters, waiting_total};
        // On the system clock (pthread_mutex_timedlock; a steady deadline becomes
        // pthread_mutex_clocklock, which ThreadSanitizer does not see, so it reports false races
        // on everything this lock guards). A clock jump only stretches or shortens this wait.
        const auto lock_deadline =
            std::chrono::system_clock::now() +
            std::chrono::duration_cast<std::chrono::system_clock::duration>(deadline - std::chrono::steady_clock::now());
        if (!lock.try_lock_until(lock_deadline)) {
            fail(409, "run " + quote(key) + " is busy with another request");
        }
        return lock;
    }

    std::unique_lock<std::timed_mutex> lock_run(RunState& state, const std::string& key) const {
        auto lock = wait_for_run(state, key, std::chrono::steady_clock::now() + config.run_wait);
        if (state.retired.load()) {
            fail(409, "run " + quote(key) +
                          " was re-initialised or terminated while this request waited");
        }
        return lock;
    }

    void load_weights(RunState& state, const sdk::TensorMap& weights) const {
        if (auto st = state.model->load_state(weights); !st) {
            fail(st.code() == sdk::ErrorCode::InvalidArgument ? 422 : status_for(st.code()),
                 "the weights do not fit the run's model: " + st.message());
        }
    }

    // ---- the runs map: lookup, retire and install happen in one step under runs_mutex ----

    /// The least recently used run that no request holds (only the map refers to it: requests
    /// get their reference under runs_mutex, which the caller holds), or runs.end().
    std::map<std::string, RunSlot>::iterator find_evictable() {
        auto victim = runs.end();
        for (auto it = runs.begin(); it != runs.end(); ++it) {
            if (it->second.state.use_count() == 1 &&
                (victim == runs.end() || it->second.last_used < victim->second.last_used)) {
                victim = it;
            }
        }
        return victim;
    }

    [[noreturn]] void fail_full() const {
        fail(503, "this worker already holds its limit of " + std::to_string(max_runs()) +
                      " initialised runs and each is busy with a request; retry later");
    }

    std::size_t max_runs() const {
        return std::max<std::size_t>(1, config.max_runs);
    }

    /// Under runs_mutex: makes room for one more run by evicting least recently used idle runs
    /// (their TTP re-initialises them on its next call, which gets 409). 503 when all are busy.
    void make_room(std::vector<std::shared_ptr<RunState>>& dropped) {
        while (runs.size() >= max_runs()) {
            const auto victim = find_evictable();
            if (victim == runs.end()) {
                fail_full();
            }
            victim->second.state->retired = true;
            log(sdk::Level::Info, "worker: idle run evicted",
                {{"run", victim->first}, {"limit", max_runs()}});
            dropped.push_back(std::move(victim->second.state));
            runs.erase(victim);
        }
    }

    /// Registers an initialise of `key` and returns the epoch it started in. Fails at once with
    /// 503 when the run could not be installed anyway (the worker is full of busy runs).
    std::uint64_t begin_initialise(const std::string& key) {
        std::lock_guard<std::mutex> lock(runs_mutex);
        if (runs.find(key) == runs.end() && runs.size() >= max_runs() &&
            find_evictable() == runs.end()) {
            fail_full();
        }
        PendingInit& pending = initialising[key];
        ++pending.in_flight;
        return pending.epoch;
    }

    void end_initialise(const std::string& key) {
        std::lock_guard<std::mutex> lock(runs_mutex);
        const auto it = initialising.find(key);
        if (it != initialising.end() && --it->second.in_flight == 0) {
            initialising.erase(it);
        }
    }

    /// Installs `state` as run `key`, replacing (and retiring) the current state once its
    /// in-flight request is done. 409 when the run was terminated since the initialise began
    /// (nothing is installed) or the current state stays busy past `run_wait`.
    void install(const std::string& key, const std::shared_ptr<RunState>& state,
                 std::uint64_t epoch) {
        const auto deadline = std::chrono::steady_clock::now() + config.run_wait;
        std::vector<std::shared_ptr<RunState>> dropped;  // freed after runs_mutex is released
        std::shared_ptr<RunState> previous;
        std::unique_lock<std::timed_mutex> previous_lock;  // previous's request is done
        for (;;) {
            {
                std::lock_guard<std::mutex> lock(runs_mutex);
                const auto pending = initialising.find(key);
                if (pending == initialising.end() || pending->second.epoch != epoch) {
                    fail(409, "run " + quote(key) +
                                  " was terminated while this initialise was in progress; "
                                  "nothing was installed");
                }
                const auto it = runs.find(key);
                std::shared_ptr<RunState> current = it != runs.end() ? it->second.state : nullptr;
                if (!current) {
                    // A terminated state whose request still runs: the new one waits for it too
                    // (both would write the run's files at once: a SCAFFOLD control, results).
                    if (const auto old = terminated.find(key); old != terminated.end()) {
                        current = old->second.lock();
                        if (!current) {
                            terminated.erase(old);
                        }
                    }
                }
                if (!current) {
                    make_room(dropped);
                    runs.emplace(key, RunSlot{state, ++tick});
                    return;
                }
                if (current != previous) {
                    previous_lock = {};
                    previous = current;
                    previous_lock =
                        std::unique_lock<std::timed_mutex>(previous->mutex, std::try_to_lock);
                }
                if (previous_lock.owns_lock()) {
                    previous->retired = true;  // requests still waiting for it get 409
                    if (it != runs.end()) {
                        dropped.push_back(std::move(it->second.state));
                        it->second = RunSlot{state, ++tick};
                    } else {
                        terminated.erase(key);
                        make_room(dropped);
                        runs.emplace(key, RunSlot{state, ++tick});
                    }
                    return;
                }
            }
            // Busy: wait for its request outside runs_mutex, then look again (the run may have
            // been terminated or evicted meanwhile).
            previous_lock = wait_for_run(*previous, key, deadline);
        }
    }

    // ---- routes ----

    WorkerHttpResponse health() const {
        Json datatypes = Json::array();
        for (const auto& [name, pipeline] : config.pipelines) {
            if (pipeline != nullptr) {
                datatypes.push_back(name);
            }
        }
        std::size_t n = 0;
        {
            std::lock_guard<std::mutex> lock(runs_mutex);  // held briefly by everyone
            n = runs.size();
        }
        return json_response(200, {{"participant_id", config.participant_id},
                                   {"datatypes", datatypes},
                                   {"runs_loaded", n},
                                   {"model_backend", config.model != nullptr},
                                   {"data_dir_found", !current_root().empty()}});
    }

    WorkerHttpResponse poll(const WorkerHttpRequest& request) {
        const Json body = json_body(request, false);
        const std::string action = require_action(body);
        const Json tags = require_tags(body);
        const auto splits = load_splits(action, tags);
        Json headers = Json::object();
        Json schemas = Json::object();
        Json metadata = Json::object();
        for (const auto& [meta, split] : splits) {
            const sdk::Dataset& ds = *split.data;
            headers[meta] = {{"X", ds.feature_names}, {"y", ds.label_names}};
            schemas[meta] = pipeline_object(ds.schema_json);
            Json m = pipeline_object(ds.metadata_json);
            m["rows"] = ds.rows;
            m["datatype"] = split.datatype;
            m["sample_shape"] = ds.sample_shape;
            m["folders"] = split.folders;
            metadata[meta] = std::move(m);
        }
        return json_response(200,
                             {{"headers", headers}, {"schemas", schemas}, {"metadata", metadata}});
    }

    WorkerHttpResponse initialise(const WorkerHttpRequest& request, const std::string& key) {
        const Json body = json_body(request, false);
        const std::string action = require_action(body);
        const Json tags = require_tags(body);
        const auto arch = body.find("architecture");
        if (arch == body.end() || !arch->is_array() || arch->empty()) {
            fail(400, "body field 'architecture' must be a non-empty list of layers");
        }
        Json run = body.value("run", Json::object());
        if (run.is_null()) {
            run = Json::object();
        }
        if (!run.is_object()) {
            fail(400, "body field 'run' must be an object");
        }
        const Json return_weights = body.value("return_weights", Json(false));
        if (!return_weights.is_boolean()) {
            fail(400, "body field 'return_weights' must be true or false");
        }
        std::vector<std::string> x_superset;
        std::vector<std::string> y_superset;
        Json scaling = nullptr;
        const Json alignment = body.value("alignment", Json(nullptr));
        if (!alignment.is_null()) {
            if (!alignment.is_object()) {
                fail(400, "body field 'alignment' must be {X: [...], y: [...]} or null");
            }
            x_superset = string_list(alignment.value("X", Json(nullptr)), "alignment.X",
                                     config.max_superset_names);
            y_superset = string_list(alignment.value("y", Json(nullptr)), "alignment.y",
                                     config.max_superset_names);
            scaling = alignment.value("scaling", Json(nullptr));
            if (!scaling.is_null() && !scaling.is_object()) {
                fail(400, "body field 'alignment.scaling' must map features to [min, max]");
            }
        }
        if (config.model == nullptr) {
            fail(500, "this worker has no model backend");
        }

        // From here until the install, a terminate of this run cancels this initialise.
        const std::uint64_t epoch = begin_initialise(key);
        struct Done {
            Impl& impl;
            const std::string& key;
            ~Done() {
                try {
                    impl.end_initialise(key);
                } catch (...) {
                    // std::mutex::lock failing: nothing sensible is left to do here.
                }
            }
        } done{*this, key};

        const auto splits = load_splits(action, tags, scaling);
        auto state = std::make_shared<RunState>();
        state->action = action;
        state->run = run;
        if (!state->run.contains("action")) {
            // The model reads its output by the action too (a logit criterion's scores become
            // probabilities for classify), also on a predict split, which has no labels to tell.
            state->run["action"] = action;
        }
        // Shapes and sizes after alignment are known before anything is aligned: the memory
        // budget and the architecture are checked before the aligned matrices are allocated.
        std::optional<std::vector<std::int64_t>> input_shape;
        std::uint64_t aligned_bytes = 0;
        const auto add = [&](std::uint64_t bytes) {
            aligned_bytes = bytes > UINT64_MAX - aligned_bytes ? UINT64_MAX : aligned_bytes + bytes;
        };
        for (const auto& [meta, split] : splits) {
            const sdk::Dataset& ds = *split.data;
            // Image data keeps its pixel layout: only labels are aligned.
            const bool align_x = !x_superset.empty() && split.datatype != "image";
            const std::vector<std::int64_t> shape =
                align_x ? std::vector<std::int64_t>{static_cast<std::int64_t>(x_superset.size())}
                        : ds.sample_shape;
            if (align_x) {
                add(matrix_bytes(ds.rows, x_superset.size()));
            }
            if (!y_superset.empty()) {
                add(matrix_bytes(ds.rows, y_superset.size()));
            }
            if (!input_shape) {
                input_shape = shape;
            } else if (*input_shape != shape) {
                fail(422, "split '" + meta + "' has sample shape " + shape_text(shape) +
                              " but another split has " + shape_text(*input_shape) +
                              " (send an alignment)");
            }
        }
        if (aligned_bytes > config.max_aligned_bytes) {
            fail(422, "alignment.X (" + std::to_string(x_superset.size()) +
                          " names) and alignment.y (" + std::to_string(y_superset.size()) +
                          " names) would make the aligned splits take " +
                          std::to_string(aligned_bytes) +
                          " bytes, more than the worker's budget of " +
                          std::to_string(config.max_aligned_bytes) + " bytes");
        }
        state->input_shape = input_shape.value_or(std::vector<std::int64_t>{});
        const std::string arch_json = dump(*arch);
        const std::string run_json = dump(run);
        if (auto st = config.model->validate(arch_json, run_json, state->input_shape); !st) {
            fail(st.code() == sdk::ErrorCode::InvalidArgument ? 422 : status_for(st.code()),
                 "model: " + st.message());
        }
        for (const auto& [meta, split] : splits) {
            sdk::Dataset ds = *split.data;  // aligned copy; the cached load stays as loaded
            if (!x_superset.empty() && split.datatype != "image") {
                if (auto st = align_features(ds, x_superset, meta, config.max_aligned_bytes); !st) {
                    fail(status_for(st.code()), st.message());
                }
            }
            if (!y_superset.empty()) {
                if (auto st = align_labels(ds, y_superset, meta, config.max_aligned_bytes); !st) {
                    fail(status_for(st.code()), st.message());
                }
            }
            state->splits.emplace(meta, std::move(ds));
        }
        auto model = config.model->build(arch_json, run_json);
        if (!model) {
            fail(model.error().code == sdk::ErrorCode::InvalidArgument
                     ? 422
                     : status_for(model.error().code),
                 "model: " + model.error().message);
        }
        state->model = std::move(*model);

        Json out = Json::object();
        for (const char* meta : kMetas) {
            const auto it = state->splits.find(meta);
            out[std::string(meta) + "_rows"] = it == state->splits.end() ? 0 : it->second.rows;
        }
        out["input_shape"] = state->input_shape;
        out["parameter_count"] = state->model->parameter_count();
        WorkerHttpResponse response = json_response(200, out);
        if (return_weights.get<bool>()) {
            auto weights = state->model->state();
            if (!weights) {
                fail(status_for(weights.error().code), "model: " + weights.error().message);
            }
            auto encoded = tensor::encode_to_string(*weights, {{"json", dump(out)}});
            if (!encoded) {
                fail(500, "model weights cannot be encoded: " + encoded.error().message);
            }
            response = WorkerHttpResponse{200, std::string(tensor::kSafetensorsContentType),
                                          std::move(*encoded)};
        }

        install(key, state, epoch);
        log(sdk::Level::Info, "worker: run initialised",
            {{"run", key}, {"input_shape", state->input_shape}, {"splits", state->splits.size()}});
        return response;
    }

    /// `<outputs>/<c>/<p>/<e>/<r>/scaffold`: where the run's client controls c_i are kept.
    fs::path scaffold_dir(const std::vector<std::string>& ids) const {
        fs::path dir = fs::path(config.outputs_dir);
        for (const std::string& id : ids) {
            dir /= id;
        }
        return dir / "scaffold";
    }

    /// c_i for training round `round`: the control saved by the latest earlier round (a
    /// re-run round after a resumed job uses the control it started from the first time), or
    /// none (zero) in round 0 and before any round was saved. Returns that round, or -1.
    int load_client_control(const fs::path& dir, int round, sdk::TensorMap& c_i) const {
        if (round <= 0) {
            return -1;
        }
        const auto files = client_control_files(dir);
        auto it = files.lower_bound(round);
        if (it == files.begin()) {
            return -1;
        }
        --it;
        std::ifstream in(it->second, std::ios::binary);
        if (!in) {
            fail(500, "cannot read the SCAFFOLD client control " + it->second.filename().string());
        }
        const std::string text((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
        auto decoded = tensor::decode(text);
        if (!decoded) {
            fail(500, "the SCAFFOLD client control " + it->second.filename().string() +
                          " is damaged: " + decoded.error().message);
        }
        c_i = std::move(decoded->tensors);
        return it->first;
    }

    /// c_i+ = c_i + Delta c_i from the model's reply (which loses its c_i tensors, if any);
    /// saved as the control of `round`. Older controls except `source_round` are removed.
    void save_client_control(const fs::path& dir, int round, int source_round,
                             const sdk::TensorMap& weights, const sdk::TensorMap& c_i,
                             sdk::TensorMap& reply) {
        sdk::TensorMap next;
        for (const sdk::Tensor& w : weights.tensors) {
            if (!is_floating(w.dtype)) {
                continue;
            }
            const std::string delta_name = std::string(kDeltaControlPrefix) + w.name;
            const sdk::Tensor* delta = reply.find(delta_name);
            if (delta == nullptr) {
                fail(422, "SCAFFOLD: the model returned no tensor '" + delta_name +
                              "' (the worker's model plugin does not run SCAFFOLD's client side)");
            }
            if (!is_floating(delta->dtype) || delta->shape != w.shape ||
                delta->data.size() !=
                    static_cast<std::size_t>(w.numel()) * sdk::dtype_size(delta->dtype)) {
                fail(500, "SCAFFOLD: the model's tensor '" + delta_name +
                              "' does not fit the model tensor");
            }
            const std::string c_name = std::string(kClientControlPrefix) + w.name;
            const sdk::Tensor* old = c_i.find(w.name);
            if (old != nullptr && (old->shape != w.shape || !is_floating(old->dtype) ||
                                   old->data.size() != static_cast<std::size_t>(w.numel()) *
                                                           sdk::dtype_size(old->dtype))) {
                old = nullptr;  // checked at load; a misfit was refused by the model already
            }
            sdk::Tensor t = *delta;
            t.name = w.name;
            const auto n = static_cast<std::size_t>(w.numel());
            for (std::size_t i = 0; old != nullptr && i < n; ++i) {
                set_element(t, i, element(t, i) + element(*old, i));
            }
            next.tensors.push_back(std::move(t));
        }
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) {
            fail(500, "cannot create the SCAFFOLD folder: " + ec.message());
        }
        auto encoded = tensor::encode_to_string(next, {{"json", dump({{"round", round}})}});
        if (!encoded) {
            fail(500, "the SCAFFOLD client control cannot be encoded: " + encoded.error().message);
        }
        const std::string name = std::string(kClientControlFile) + std::to_string(round);
        write_file(dir / (name + ".safetensors"), *encoded);
        for (const auto& [r, path] : client_control_files(dir)) {
            if (r != round && r != source_round) {
                fs::remove(path, ec);
            }
        }
    }

    WorkerHttpResponse train(const WorkerHttpRequest& request, const std::string& key,
                             const std::vector<std::string>& ids) {
        WeightsBody body = weights_body(request, config.max_body_bytes);
        const auto state = find_run(key);
        auto lock = lock_run(*state, key);
        const auto split = state->splits.find("train");
        if (split == state->splits.end()) {
            fail(422, "run " + quote(key) + " has no train split (no train tags at initialise)");
        }
        Json args = body.json.value("args", state->run);
        if (!args.is_object()) {
            fail(400, "__metadata__ json field 'args' must be an object");
        }
        const Json round = body.json.value("round", Json(nullptr));
        const Json scaffold_flag = args.value("scaffold", Json(false));
        if (!scaffold_flag.is_boolean()) {
            fail(400, "train argument 'scaffold' must be true or false");
        }
        const bool scaffold = scaffold_flag.get<bool>();
        int scaffold_round = 0;
        if (scaffold) {
            const Json r = args.value("round", round);
            if (!r.is_number_integer() || r.get<std::int64_t>() < 0 ||
                r.get<std::int64_t>() > 1000000000) {
                fail(400, "SCAFFOLD training needs the round number (train argument 'round')");
            }
            scaffold_round = r.get<int>();
        }
        SplitBody parts = split_scaffold(std::move(body.tensors));
        load_weights(*state, parts.weights);
        // The reference: x, and for SCAFFOLD also c (`scaffold.c.*`) and c_i (`scaffold.c_i.*`).
        // Only SCAFFOLD needs x again after training: otherwise the received weights move in
        // (no model-sized copy per round).
        sdk::TensorMap reference = scaffold ? parts.weights : std::move(parts.weights);
        sdk::TensorMap c_i;
        int c_i_round = -1;
        const fs::path control_dir = scaffold ? scaffold_dir(ids) : fs::path();
        if (scaffold) {
            c_i_round = load_client_control(control_dir, scaffold_round, c_i);
            for (sdk::Tensor& t : parts.server_control.tensors) {
                reference.tensors.push_back(std::move(t));
            }
            for (const sdk::Tensor& t : c_i.tensors) {
                reference.tensors.push_back(t);
                reference.tensors.back().name = std::string(kClientControlPrefix) + t.name;
            }
        }
        auto report = state->model->train(split->second, dump(args), &reference);
        if (!report) {
            fail(report.error().code == sdk::ErrorCode::InvalidArgument
                     ? 422
                     : status_for(report.error().code),
                 "training failed: " + report.error().message);
        }
        if (scaffold) {
            save_client_control(control_dir, scaffold_round, c_i_round, parts.weights, c_i,
                                report->weights);
        }
        Json losses = Json::array();
        for (double l : report->epoch_losses) {
            losses.push_back(number_or_null(l));
        }
        const Json out = {{"samples", report->samples},
                          {"epoch_losses", losses},
                          {"epochs_run", report->epochs_run},
                          {"round", round}};
        auto encoded = tensor::encode_to_string(report->weights, {{"json", dump(out)}});
        if (!encoded) {
            fail(500, "trained weights cannot be encoded: " + encoded.error().message);
        }
        log(sdk::Level::Debug, "worker: round trained",
            {{"run", key}, {"round", round}, {"samples", report->samples}});
        return WorkerHttpResponse{200, std::string(tensor::kSafetensorsContentType),
                                  std::move(*encoded)};
    }

    WorkerHttpResponse evaluate(const WorkerHttpRequest& request, const std::string& key,
                                const std::vector<std::string>& ids) {
        WeightsBody body = weights_body(request, config.max_body_bytes);
        const Json meta_json = body.json.value("meta", Json("evaluate"));
        const bool meta_ok = meta_json.is_string() &&
                             std::any_of(std::begin(kMetas), std::end(kMetas), [&](const char* m) {
                                 return meta_json.get<std::string>() == m;
                             });
        if (!meta_ok) {
            fail(400,
                 "__metadata__ json field 'meta' must be \"train\", \"evaluate\" or \"predict\"");
        }
        const std::string meta = meta_json.get<std::string>();
        const Json write_outputs = body.json.value("write_outputs", Json(false));
        if (!write_outputs.is_boolean()) {
            fail(400, "__metadata__ json field 'write_outputs' must be true or false");
        }
        const auto state = find_run(key);
        auto lock = lock_run(*state, key);
        const auto split = state->splits.find(meta);
        if (split == state->splits.end()) {
            fail(422, "run " + quote(key) + " has no " + meta + " split (no " + meta +
                          " tags at initialise)");
        }
        const sdk::Dataset& ds = split->second;
        // One-hot over the classes the split holds, and it holds one: its place among the model's
        // classes is unknown without the project's label alignment (scored as a 0/1 column, every
        // row of class 0 counted as class 1). Evaluation refuses; a prediction still predicts,
        // without statistics.
        const bool one_class = state->action == metrics::kClassify && ds.label_names.size() == 1;
        if (one_class && meta != "predict") {
            fail(422, "statistics of split '" + meta + "': it holds one class only (" +
                          quote(ds.label_names.front()) +
                          "), which cannot be matched to the model's classes without label "
                          "alignment: align the project (auto_align) or give the split rows of "
                          "every class");
        }
        load_weights(*state, split_scaffold(std::move(body.tensors)).weights);
        auto inference = state->model->infer(ds, dump(state->run));
        if (!inference) {
            fail(inference.error().code == sdk::ErrorCode::InvalidArgument
                     ? 422
                     : status_for(inference.error().code),
                 "inference failed: " + inference.error().message);
        }
        const sdk::Inference& inf = *inference;
        if (inf.rows != ds.rows || inf.width <= 0 ||
            inf.scores.size() != static_cast<std::size_t>(inf.rows * inf.width)) {
            fail(500, "the model returned " + std::to_string(inf.scores.size()) + " scores for " +
                          std::to_string(ds.rows) + " rows");
        }
        const auto label_width = static_cast<std::int64_t>(ds.label_names.size());
        auto stats = one_class ? sdk::Result<Json>(Json::object())
                               : metrics::try_compute_statistics(state->action, ds.labels, label_width,
                                                                 inf.scores, inf.width, ds.rows);
        if (!stats) {
            fail(422, "statistics of split '" + meta + "': " + stats.error().message);
        }
        Json res_path = nullptr;
        if (write_outputs.get<bool>()) {
            auto predictions =
                metrics::try_predictions(state->action, inf.scores, inf.width, ds.rows);
            if (!predictions) {
                fail(422, "predictions of split '" + meta + "': " + predictions.error().message);
            }
            fs::path dir = fs::path(config.outputs_dir);
            for (const std::string& id : ids) {
                dir /= id;
            }
            dir /= meta;
            std::error_code ec;
            fs::create_directories(dir, ec);
            if (ec) {
                fail(500, "cannot create the outputs folder: " + ec.message());
            }
            const std::size_t pred_width =
                state->action == metrics::kRegress ? static_cast<std::size_t>(inf.width) : 1;
            write_file(dir / ("inference_predictions_" + meta + ".txt"),
                       savetxt(*predictions, pred_width));
            write_file(dir / ("inference_scores_" + meta + ".txt"),
                       savetxt(inf.scores, static_cast<std::size_t>(inf.width)));
            write_file(dir / ("inference_statistics_" + meta + ".json"),
                       stats->dump(2, ' ', false, Json::error_handler_t::replace));
            res_path = dir.string();
        }
        log(sdk::Level::Debug, "worker: split evaluated",
            {{"run", key}, {"meta", meta}, {"rows", ds.rows}});
        return json_response(200, {{"loss", number_or_null(inf.loss)},
                                   {"rows", ds.rows},
                                   {"statistics", *stats},
                                   {"res_path", res_path}});
    }

    WorkerHttpResponse terminate(const std::string& key) {
        bool found = false;
        bool cancelled = false;
        std::shared_ptr<RunState> state;
        {
            std::lock_guard<std::mutex> lock(runs_mutex);
            auto it = runs.find(key);
            if (it != runs.end()) {
                state = std::move(it->second.state);
                runs.erase(it);
                found = true;
                // Kept (weakly) until its in-flight request ends: an initialise of the same run
                // waits for that (see install). Expired entries go here, so the map stays small.
                for (auto old = terminated.begin(); old != terminated.end();) {
                    old = old->second.expired() ? terminated.erase(old) : std::next(old);
                }
                terminated[key] = state;
            }
            // Initialises in flight started before this terminate: they must not install.
            auto pending = initialising.find(key);
            if (pending != initialising.end()) {
                ++pending->second.epoch;
                cancelled = true;
            }
        }
        if (state) {
            state->retired = true;  // requests still waiting for this run get 409
        }
        // An in-flight request of this run keeps its own reference; the model goes with the last.
        state.reset();
        log(sdk::Level::Info, "worker: run terminated",
            {{"run", key}, {"was_loaded", found}, {"initialise_cancelled", cancelled}});
        return json_response(200, {{"terminated", found || cancelled}});
    }

    WorkerHttpResponse route(const WorkerHttpRequest& request) {
        if (request.body.size() > config.max_body_bytes) {
            fail(413, "the request body has " + std::to_string(request.body.size()) +
                          " bytes, more than the limit of " +
                          std::to_string(config.max_body_bytes));
        }
        const std::vector<std::string> parts = split_path(request.path);
        const auto require_method = [&](const char* method) {
            if (request.method != method) {
                fail(405, "route " + quote(request.path) + " takes " + method + ", not " +
                              quote(request.method));
            }
        };
        if (parts.size() == 2 && parts[0] == "v1" && parts[1] == "health") {
            require_method("GET");
            return health();
        }
        if (parts.size() == 5 && parts[0] == "v1" && parts[1] == "projects" && parts[4] == "poll") {
            require_method("POST");
            check_id(parts[2], "collab_id");
            check_id(parts[3], "project_id");
            return poll(request);
        }
        if (parts.size() == 7 && parts[0] == "v1" && parts[1] == "runs") {
            const std::string& op = parts[6];
            if (op == "initialise" || op == "train" || op == "evaluate" || op == "terminate") {
                require_method("POST");
                check_id(parts[2], "collab_id");
                check_id(parts[3], "project_id");
                check_id(parts[4], "expt_id");
                check_id(parts[5], "run_id");
                const std::vector<std::string> ids(parts.begin() + 2, parts.begin() + 6);
                const std::string key = ids[0] + "/" + ids[1] + "/" + ids[2] + "/" + ids[3];
                if (op == "initialise") {
                    return initialise(request, key);
                }
                if (op == "train") {
                    return train(request, key, ids);
                }
                if (op == "evaluate") {
                    return evaluate(request, key, ids);
                }
                return terminate(key);
            }
        }
        fail(404, "no worker route " + quote(request.method) + " " + quote(request.path));
    }
};

WorkerService::WorkerService(WorkerServiceConfig config) : impl_(std::make_unique<Impl>()) {
    impl_->config = std::move(config);
    if (impl_->current_root().empty()) {
        // Not fatal (a volume may be mounted later), but every data route fails until it is.
        impl_->log(sdk::Level::Warn, "worker data directory not found",
                   {{"data_dir", impl_->config.data_dir},
                    {"effect", "alignment and training fail until it exists; /v1/health says data_dir_found: false"}});
    }
}

WorkerService::~WorkerService() = default;

std::size_t WorkerService::runs_loaded() const {
    std::lock_guard<std::mutex> lock(impl_->runs_mutex);
    return impl_->runs.size();
}

std::size_t WorkerService::requests_waiting() const { return impl_->waiting_total.load(); }

WorkerHttpResponse WorkerService::handle(const WorkerHttpRequest& request) noexcept {
    try {
        try {
            return impl_->route(request);
        } catch (const HttpError& e) {
            impl_->log(e.status >= 500 ? sdk::Level::Error : sdk::Level::Info,
                       "worker: request refused",
                       {{"method", request.method},
                        {"path", request.path},
                        {"status", e.status},
                        {"message", e.message}});
            return json_response(e.status, {{"message", e.message}});
        } catch (const std::bad_alloc&) {
            return json_response(500, {{"message", "the worker ran out of memory"}});
        } catch (const std::exception& e) {
            return json_response(500, {{"message", std::string("internal error: ") + e.what()}});
        }
    } catch (...) {
        // Building the error response itself failed (out of memory): answer with a constant.
        return WorkerHttpResponse{500, "application/json", R"({"message":"internal error"})"};
    }
}

}  // namespace synergos::core::worker
