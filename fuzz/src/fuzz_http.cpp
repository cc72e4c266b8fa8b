// SPDX-License-Identifier: Apache-2.0
// HTTP request handling with JSON payload validation: raw bytes go through the Boost.Beast request
// parser the server uses (same limits), become core::http::Request values exactly as the server
// builds them, and are dispatched through the real Router with the real connect routes
// (core/src/rest) and director routes (core/src/roles) on a real sqlite store, an in-process queue
// and the job service. No sockets: one input is a byte stream of up to kMaxRequests pipelined
// requests on one keep-alive connection, so a request can see what an earlier one created.
//
// Findings: crashes and sanitizer reports, plus broken invariants: a handler exception (500: bad
// input must get a 4xx naming the field), a status outside 100-599, a JSON response that does
// not parse, a log record whose fields are not a JSON object.
//
// The store is emptied before each input (one batch of DeleteWhere per kind); the whole director
// is rebuilt every kRebuildEvery inputs so jobs queued without a TTP do not pile up.

#include <stdlib.h>

#include <array>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <synergos/core/http/router.hpp>
#include <synergos/core/jobs/job_service.hpp>
#include <synergos/core/jobs/job_store.hpp>
#include <synergos/core/rest/connect_routes.hpp>
#include <synergos/core/roles/director_routes.hpp>
#include <synergos/sdk/host.hpp>
#include <synergos/sdk/log.hpp>
#include <synergos/sdk/ttp_function.hpp>

#include "fuzz_common.hpp"
#include "memory_queue.hpp"
#include "sqlite_storage.hpp"

namespace {

namespace fs = std::filesystem;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace http = synergos::core::http;
namespace sdk = synergos::sdk;
using synergos::fuzz::check;

constexpr int kMaxRequests = 12;
constexpr std::size_t kBodyLimit = 1 << 20;      // the server's option, kept small here
constexpr std::size_t kHeaderLimit = 16 * 1024;  // the server's default
constexpr std::size_t kMaxJsonDepth = 64;        // the server's default
constexpr int kRebuildEvery = 2000;

/// Discards records, but checks what every caller must respect: fields are a JSON object.
class CheckingLogger final : public sdk::Logger {
public:
    void log(sdk::Level, std::string_view event, std::string_view fields_json,
             sdk::SourceLocation) noexcept override {
        if (fields_json.empty()) {
            return;
        }
        const auto fields = nlohmann::json::parse(fields_json, nullptr, false);
        check(!fields.is_discarded() && fields.is_object(), "log fields are not a JSON object",
              std::string(event));
    }
    bool enabled(sdk::Level) const noexcept override {
        return true;
    }
};

class FuzzHost final : public sdk::HostContext {
public:
    explicit FuzzHost(std::string root) : root_(std::move(root)) {}
    sdk::Logger& logger() noexcept override {
        return logger_;
    }
    std::string node_id() const override {
        return "fuzz-director";
    }
    std::string role() const override {
        return "director";
    }
    std::string data_dir() const override {
        return root_ + "/data";
    }
    std::string outputs_dir() const override {
        return root_ + "/outputs";
    }
    std::string mlflow_dir() const override {
        return root_ + "/mlflow";
    }

private:
    std::string root_;
    CheckingLogger logger_;
};

/// Registered so that the director accepts alignment, training and evaluation requests (its
/// routes only check that the module is active). Nothing consumes the grid queues in this
/// process, so neither entry point is ever reached; both refuse if one were.
class QueuedOnlyFunction final : public sdk::TtpFunction {
public:
    explicit QueuedOnlyFunction(std::string process) : process_(std::move(process)) {}
    std::vector<std::string> processes() const override {
        return {process_};
    }
    sdk::Result<std::string> execute(sdk::JobContext&, std::string_view) noexcept override {
        return sdk::Error{sdk::ErrorCode::Unimplemented, "no TTP runs in the http fuzzer"};
    }
    sdk::Result<std::vector<sdk::Mutation>> archive(sdk::ArchiveContext&, std::string_view,
                                                    std::string_view) noexcept override {
        return sdk::Error{sdk::ErrorCode::Unimplemented, "no TTP runs in the http fuzzer"};
    }

private:
    std::string process_;
};

struct TempDir {
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "synergos-fuzz-http-XXXXXX").string();
        const char* made = mkdtemp(pattern.data());
        check(made != nullptr, "mkdtemp failed");
        path = made;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string path;
};

sdk::Options options(std::map<std::string, std::string> values) {
    return sdk::Options(std::move(values));
}

/// The standalone director's HTTP side: store, queue, job service, every route.
struct Director {
    Director()
        : host(dir.path),
          storage(host, options({{"path", dir.path + "/store.db"},
                                 {"synchronous", "OFF"},
                                 {"read_connections", "2"}})),
          queue(host, options({})) {
        check(storage.start().is_ok(), "the sqlite store does not start");
        check(queue.start().is_ok(), "the memory queue does not start");
        synergos::core::jobs::JobServiceOptions job_options;
        job_options.outputs_dir = dir.path + "/outputs";
        synergos::core::jobs::FunctionRegistry registry;
        for (auto& function : functions) {
            registry[function.processes().front()] = &function;
        }
        jobs = std::make_unique<synergos::core::jobs::JobService>(storage, queue, host.logger(),
                                                                  registry, nullptr, job_options);
        check(jobs->start().is_ok(), "the job service does not start");
        auto merger = synergos::core::rest::register_connect_routes(router, storage, host.logger());
        synergos::core::roles::register_director_routes(
            router, {storage, *jobs, host.logger(), nullptr, std::move(merger)});
    }
    ~Director() {
        jobs->stop();
        queue.stop();
        storage.stop();
    }

    /// Deletes every record, so each input starts from an empty store.
    void clear() {
        std::vector<sdk::Mutation> batch;
        for (const char* kind : {"Collaboration", "Project", "Experiment", "Run", "Participant",
                                 "Registration", "Tag", "Alignment", "Model", "Validation",
                                 "Prediction", "MLFlow", synergos::core::jobs::kJobKind}) {
            batch.push_back({sdk::WriteMode::DeleteWhere, kind, {}, {}});
        }
        check(storage.apply(batch).has_value(), "cannot empty the store");
    }

    TempDir dir;
    FuzzHost host;
    synergos::plugins::sqlite::SqliteStorage storage;
    synergos::plugins::memory::MemoryQueue queue;
    std::array<QueuedOnlyFunction, 5> functions{
        QueuedOnlyFunction("preprocess"), QueuedOnlyFunction("train"),
        QueuedOnlyFunction("validate"), QueuedOnlyFunction("predict"),
        QueuedOnlyFunction("optimize")};
    std::unique_ptr<synergos::core::jobs::JobService> jobs;
    http::Router router;
};

std::string lower(beast::string_view text) {
    std::string out(text);
    for (auto& c : out) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
}

/// As the server's Session::handle builds it.
http::Request to_request(bhttp::request<bhttp::string_body>& raw) {
    http::Request request;
    request.method = std::string(raw.method_string());
    request.target = std::string(raw.target());
    const auto query_at = request.target.find('?');
    request.path = request.target.substr(0, query_at);
    if (query_at != std::string::npos) {
        request.query = request.target.substr(query_at + 1);
    }
    for (const auto& field : raw) {
        request.headers.emplace(lower(field.name_string()), std::string(field.value()));
    }
    request.body = std::move(raw.body());
    request.remote = "127.0.0.1:40000";
    request.max_json_depth = kMaxJsonDepth;
    return request;
}

/// As the server's Session::write serialises it.
void serialise(const http::Response& response, unsigned version) {
    bhttp::response<bhttp::string_body> res;
    res.version(version);
    res.result(static_cast<unsigned>(response.status));
    res.set(bhttp::field::server, "synergos");
    res.set(bhttp::field::content_type, response.content_type);
    for (const auto& [name, value] : response.headers) {
        res.set(name, value);
    }
    res.body() = response.body;
    res.prepare_payload();
    std::ostringstream out;
    out << res;
    check(out.str().size() >= response.body.size(), "serialised response lost its body");
}

void check_response(const http::Request& request, const http::Response& response) {
    const std::string what = request.method + " " + request.target + " -> " +
                             std::to_string(response.status) + " " + response.body;
    check(response.status >= 100 && response.status <= 599, "status out of range", what);
    check(response.status != 500, "a handler failed on input (500)", what);
    if (response.content_type == "application/json" && !response.body.empty()) {
        const auto body = nlohmann::json::parse(response.body, nullptr, false);
        check(!body.is_discarded(), "a JSON response does not parse", what);
    }
}

/// Feeds `rest` to one parser; returns the bytes consumed, or 0 when no request was completed.
std::size_t parse_one(std::string_view rest, bhttp::request_parser<bhttp::string_body>& parser) {
    parser.eager(true);
    parser.body_limit(kBodyLimit);
    parser.header_limit(static_cast<std::uint32_t>(kHeaderLimit));
    std::size_t used = 0;
    beast::error_code ec;
    while (!parser.is_done()) {
        const std::size_t n =
            parser.put(boost::asio::buffer(rest.data() + used, rest.size() - used), ec);
        used += n;
        if (ec == bhttp::error::need_more) {
            ec = {};
        } else if (ec) {
            return 0;  // the server answers 400/413/431 and closes
        }
        if (!parser.is_done() && (n == 0 || used == rest.size())) {
            // Nothing more to read: the peer closed. Complete only if the message allows it (a
            // body without a length ends at EOF); a truncated one is dropped, as the server does.
            parser.put_eof(ec);
            return !ec && parser.is_done() ? used : 0;
        }
    }
    return used;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static std::unique_ptr<Director> director;
    static int runs = 0;
    // SYNERGOS_FUZZ_TRACE=1: print each request and its answer (to read what an input does).
    static const bool trace = std::getenv("SYNERGOS_FUZZ_TRACE") != nullptr;
    if (!director || ++runs % kRebuildEvery == 0) {
        director.reset();
        director = std::make_unique<Director>();
    }
    director->clear();

    std::string_view rest = synergos::fuzz::as_text(data, size);
    for (int i = 0; i < kMaxRequests && !rest.empty(); ++i) {
        bhttp::request_parser<bhttp::string_body> parser;
        const std::size_t used = parse_one(rest, parser);
        if (used == 0) {
            break;
        }
        rest.remove_prefix(used);
        auto& raw = parser.get();
        const unsigned version = raw.version();
        const bool keep_alive = raw.keep_alive();
        http::Request request = to_request(raw);
        const http::Response response = director->router.route(request);
        if (trace) {
            std::fprintf(stderr, "%s %s -> %d %.200s\n", request.method.c_str(),
                         request.target.c_str(), response.status, response.body.c_str());
        }
        check_response(request, response);
        serialise(response, version);
        if (!keep_alive) {
            break;
        }
    }
    return 0;
}
