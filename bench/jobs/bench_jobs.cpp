// SPDX-License-Identifier: Apache-2.0
// bench_jobs: end-to-end jobs per second through the job machinery on RabbitMQ (the director's
// confirmed publish, a TTP running a no-op function and publishing its result, the director's
// archival into sqlite) next to a bare rabbitmq-c publish-and-consume loop with the same
// durability settings (bench/mq/amqp_baseline.hpp), measured in the same run against the same
// broker, alternating in blocks of 50, median of the rounds.
//
// Usage: bench_jobs [--url amqp://...] [--jobs N] [--rounds R] [--synchronous FULL|NORMAL]
//                   [--events-flush-ms MS]
// (--synchronous NORMAL shows how much of the gap is the store's fsync per commit;
// --events-flush-ms how long results wait to share a submit's commit, the director's default 2.)

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/core/jobs/job_service.hpp>
#include <synergos/core/jobs/ttp_runner.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "amqp_baseline.hpp"
#include "rabbitmq_queue.hpp"
#include "sqlite_storage.hpp"

namespace {

namespace sdk = synergos::sdk;
namespace jobs = synergos::core::jobs;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Config {
    std::string url = "amqp://guest:guest@127.0.0.1:5672/%2f";
    std::size_t jobs = 1000;
    int rounds = 3;
    std::string synchronous = "FULL";  ///< the director store's sqlite synchronous level
    int events_flush_ms = -1;          ///< JobServiceOptions::events_flush_delay; -1: its default
};

std::string random_hex() {
    std::random_device device;
    std::ostringstream name;
    name << std::hex << device() << device();
    return name.str();
}

/// The no-op TTP function: returns at once; archival stores one small record per job.
class NoopFunction final : public sdk::TtpFunction {
public:
    std::vector<std::string> processes() const override { return {"noop"}; }
    sdk::Result<std::string> execute(sdk::JobContext& ctx, std::string_view) noexcept override {
        return "{\"grid\":" + std::to_string(ctx.grid()) + "}";
    }
    sdk::Result<std::vector<sdk::Mutation>> archive(sdk::ArchiveContext&, std::string_view job_json,
                                                    std::string_view outputs) noexcept override {
        try {
            const std::string id = json::parse(job_json).value("job_id", "");
            return std::vector<sdk::Mutation>{
                {sdk::WriteMode::Insert, "NoopResult", {{"job_id", id}}, std::string(outputs)}};
        } catch (const std::exception& e) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, e.what()};
        }
    }
};

/// One director (sqlite store in a temp dir) and one TTP on grid 0, each with its own broker
/// connection, under a queue prefix of their own.
class Cluster {
public:
    Cluster(const std::string& url, const std::string& synchronous, int events_flush_ms)
        : url_(url),
          dir_(fs::temp_directory_path() / ("synergos-bench-jobs-" + random_hex())),
          host_(dir_.string(), "bench"),
          storage_(host_, sdk::Options(std::map<std::string, std::string>{
                              {"path", (dir_ / "store.db").string()},
                              {"synchronous", synchronous}})),
          director_mq_(host_, sdk::Options(synergos::bench::mq::plugin_options(url))),
          ttp_mq_(host_, sdk::Options(synergos::bench::mq::plugin_options(url))) {
        fs::create_directories(dir_);
        check(storage_.start(), "sqlite start");
        check(director_mq_.start(), "director queue start");
        check(ttp_mq_.start(), "TTP queue start");
        jobs::FunctionRegistry registry{{"noop", &function_}};
        topology_.prefix = "synergos-bench-" + random_hex();
        jobs::JobServiceOptions so;
        so.outputs_dir = (dir_ / "outputs").string();
        so.topology = topology_;
        if (events_flush_ms >= 0) {
            so.events_flush_delay = std::chrono::milliseconds(events_flush_ms);
        }
        service_ = std::make_unique<jobs::JobService>(storage_, director_mq_, host_.logger(),
                                                      registry, nullptr, so);
        check(service_->start(), "job service start");
        jobs::TtpRunnerOptions to;
        to.grid = 0;
        to.ttp_id = "bench-ttp";
        to.outputs_dir = so.outputs_dir;
        to.topology = topology_;
        runner_ = std::make_unique<jobs::TtpRunner>(ttp_mq_, host_.logger(), registry, nullptr,
                                                    nullptr, to);
        check(runner_->start(), "TTP start");
    }
    ~Cluster() {
        runner_->stop();
        service_->stop();
        ttp_mq_.stop();
        director_mq_.stop();
        // The queues are durable and named per run: left behind, every run would add five to
        // what the broker recovers at each boot.
        for (const std::string& queue :
             {topology_.jobs(0), topology_.control(0), topology_.results(),
              topology_.results_dead(), topology_.jobs_dead()}) {
            try {
                synergos::bench::mq::delete_amqp_queue(url_, queue);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "bench_jobs: could not delete queue %s: %s\n", queue.c_str(),
                             e.what());
            }
        }
        std::error_code ignored;
        fs::remove_all(dir_, ignored);
    }
    Cluster(const Cluster&) = delete;
    Cluster& operator=(const Cluster&) = delete;

    /// The job writer's figures from its metrics: transactions per job and their mean time.
    std::string writer_summary() const {
        std::string text;
        service_->append_metrics(text);
        const auto value = [&](const std::string& name) {
            const auto at = text.find("\n" + name + " ");
            return at == std::string::npos ? 0.0 : std::stod(text.substr(at + name.size() + 2));
        };
        const double jobs = value("synergos_jobs_submitted_total");
        const double commits = value("synergos_job_store_commit_seconds_count");
        const double seconds = value("synergos_job_store_commit_seconds_sum");
        char line[160];
        std::snprintf(line, sizeof line,
                      "job writer: %.2f transactions per job, %.0f us each on average (%.0f jobs)",
                      jobs > 0 ? commits / jobs : 0.0, commits > 0 ? seconds / commits * 1e6 : 0.0,
                      jobs);
        return line;
    }

    /// Submits `count` no-op jobs one by one (as the REST routes do) and waits until every one
    /// is archived. Returns jobs per second over the whole span; `submit_per_s` gets the rate of
    /// the submission loop alone (record, confirmed publish, state update).
    double run(std::size_t count, double* submit_per_s = nullptr) {
        std::vector<std::string> ids;
        ids.reserve(count);
        const auto begin = Clock::now();
        for (std::size_t i = 0; i < count; ++i) {
            jobs::JobSpec spec;
            spec.process = "noop";
            spec.filters = {"c", "p", "e", "r"};
            spec.keys = {{"collab_id", "c"}, {"project_id", "p"}, {"expt_id", "e"},
                         {"run_id", "r"}};
            spec.grids = json::array(
                {json::array({json{{"participant_id", "w"}, {"host", "127.0.0.1"}, {"port", 1}}})});
            spec.grid = 0;
            auto submitted = service_->submit({std::move(spec)});
            if (!submitted) {
                throw std::runtime_error("submit: " + submitted.error().message);
            }
            ids.push_back(submitted->front().job_id);
        }
        if (submit_per_s != nullptr) {
            const double s = std::chrono::duration<double>(Clock::now() - begin).count();
            *submit_per_s = s > 0 ? static_cast<double>(count) / s : 0.0;
        }
        for (const auto& id : ids) {
            auto job = service_->wait(id, std::chrono::minutes(5));
            if (!job || job->state != "succeeded") {
                throw std::runtime_error("job " + id + " did not succeed: " +
                                         (job ? job->state + " " + job->reason
                                              : job.error().message));
            }
        }
        const double seconds = std::chrono::duration<double>(Clock::now() - begin).count();
        return seconds > 0 ? static_cast<double>(count) / seconds : 0.0;
    }

private:
    static void check(const sdk::Status& status, const char* what) {
        if (!status) {
            throw std::runtime_error(std::string(what) + ": " + status.message());
        }
    }

    std::string url_;
    fs::path dir_;
    sdk::testing::FakeHost host_;
    synergos::plugins::sqlite::SqliteStorage storage_;
    synergos::plugins::rabbitmq::RabbitMqQueue director_mq_;
    synergos::plugins::rabbitmq::RabbitMqQueue ttp_mq_;
    NoopFunction function_;
    jobs::Topology topology_;
    std::unique_ptr<jobs::JobService> service_;
    std::unique_ptr<jobs::TtpRunner> runner_;
};

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
}

Config parse(int argc, char** argv) {
    Config c;
    if (const char* url = std::getenv("SYNERGOS_BENCH_AMQP_URL")) {
        c.url = url;
    } else if (const char* test_url = std::getenv("SYNERGOS_TEST_AMQP_URL")) {
        c.url = test_url;
    }
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (i + 1 >= argc) {
            throw std::runtime_error("option " + arg + " needs a value");
        }
        const std::string value = argv[++i];
        if (arg == "--url") {
            c.url = value;
        } else if (arg == "--jobs") {
            c.jobs = std::stoul(value);
        } else if (arg == "--rounds") {
            c.rounds = std::stoi(value);
        } else if (arg == "--synchronous") {
            c.synchronous = value;
        } else if (arg == "--events-flush-ms") {
            c.events_flush_ms = std::stoi(value);
        } else {
            throw std::runtime_error("unknown option " + arg +
                                     " (use --url, --jobs, --rounds, --synchronous, --events-flush-ms)");
        }
    }
    if (c.jobs == 0 || c.rounds <= 0) {
        throw std::runtime_error("--jobs and --rounds must be positive");
    }
    return c;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Config config = parse(argc, argv);
        std::printf("bench_jobs: %zu jobs per round, median of %d rounds, broker %s, sqlite "
                    "synchronous=%s\n",
                    config.jobs, config.rounds,
                    config.url.substr(config.url.find('@') + 1).c_str(),
                    config.synchronous.c_str());
        Cluster cluster(config.url, config.synchronous, config.events_flush_ms);
        synergos::bench::mq::AmqpBaselineClient bare(
            config.url, "synergos-bench-jobs-baseline-" + random_hex());
        cluster.run(std::min<std::size_t>(config.jobs, 50));  // warm-up: connections, queues
        bare.publish(50);
        bare.consume(50);
        // Both sides alternate in blocks of kBlock within a round, so the machine's and the
        // broker's noise (other load, fsync latency) hits them alike.
        constexpr std::size_t kBlock = 50;
        std::vector<double> baseline;
        std::vector<double> end_to_end;
        std::vector<double> ratios;
        for (int round = 0; round < config.rounds; ++round) {
            Clock::duration bare_time{};
            Clock::duration jobs_time{};
            double submit = 0;
            double submit_seconds = 0;
            for (std::size_t done = 0; done < config.jobs; done += kBlock) {
                const std::size_t n = std::min(kBlock, config.jobs - done);
                auto begin = Clock::now();
                bare.publish(n);
                bare.consume(n);
                bare_time += Clock::now() - begin;
                begin = Clock::now();
                cluster.run(n, &submit);
                jobs_time += Clock::now() - begin;
                submit_seconds += submit > 0 ? static_cast<double>(n) / submit : 0.0;
            }
            const auto per_s = [&](Clock::duration d) {
                const double seconds = std::chrono::duration<double>(d).count();
                return seconds > 0 ? static_cast<double>(config.jobs) / seconds : 0.0;
            };
            baseline.push_back(per_s(bare_time));
            end_to_end.push_back(per_s(jobs_time));
            ratios.push_back(baseline.back() > 0 ? end_to_end.back() / baseline.back() : 0.0);
            // The submission loop's own rate (record, confirmed publish) shows which side lags.
            std::printf("  round %d: baseline %8.0f msg/s   end-to-end %8.0f jobs/s   ratio %.2f"
                        "   (submit loop %6.0f jobs/s)\n",
                        round + 1, baseline.back(), end_to_end.back(), ratios.back(),
                        submit_seconds > 0 ? static_cast<double>(config.jobs) / submit_seconds
                                           : 0.0);
        }
        const double base = median(baseline);
        const double e2e = median(end_to_end);
        std::printf(
            "bare rabbitmq-c publish+consume (persistent, confirms, manual ack): %8.0f msg/s\n"
            "end-to-end jobs (publish, TTP no-op, result, archival):             %8.0f jobs/s\n"
            "ratio: %.2f (median of the rounds' ratios; goal: at least 0.80)\n",
            base, e2e, median(ratios));
        std::printf("%s\n", cluster.writer_summary().c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_jobs: %s\n", e.what());
        return 1;
    }
}
