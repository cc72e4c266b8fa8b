// SPDX-License-Identifier: Apache-2.0
// Sampling from a ranges.json search space, trial scores from validation statistics and the
// choice of the best trial, checked against values worked out by hand.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <synergos/sdk/testing/fake_host.hpp>

#include "optimize_function.hpp"
#include "search_space.hpp"
#include "trials.hpp"

namespace synergos::plugins::optimize {
namespace {

std::vector<Dimension> space_of(const json& j) {
    auto s = parse_search_space(j);
    INFO((s ? std::string() : s.error().message));
    REQUIRE(s);
    return *s;
}

json ranges(const char* type, json values) {
    return {{"x", {{"_type", type}, {"_value", std::move(values)}}}};
}

}  // namespace

TEST_CASE("The example ranges.json parses into its four parameters", "[optimize]") {
    std::ifstream in(std::string(SYNERGOS_TEST_SOURCE_DIR) + "/examples/heart_disease/ranges.json");
    REQUIRE(in);
    auto space = space_of(json::parse(in));
    std::map<std::string, std::string> types;
    for (const auto& d : space) {
        types[d.name] = d.type;
    }
    CHECK(types.size() == 4);
    CHECK(types["rounds"] == "choice");
    CHECK(types["lr"] == "choice");
    CHECK(types["mu"] == "uniform");
}

TEST_CASE("Every sampler stays in its range and has the shape its type promises", "[optimize]") {
    Rng rng(7);
    SECTION("choice draws only listed values, each of them") {
        auto d = space_of(ranges("choice", {1, "two", 3.5}))[0];
        std::set<std::string> seen;
        for (int i = 0; i < 300; ++i) {
            seen.insert(sample(d, rng).dump());
        }
        CHECK(seen == std::set<std::string>{"1", "\"two\"", "3.5"});
    }
    SECTION("randint is an integer in [low, high)") {
        auto d = space_of(ranges("randint", {2, 5}))[0];
        std::set<std::int64_t> seen;
        for (int i = 0; i < 300; ++i) {
            json v = sample(d, rng);
            REQUIRE(v.is_number_integer());
            seen.insert(v.get<std::int64_t>());
        }
        CHECK(seen == std::set<std::int64_t>{2, 3, 4});
    }
    SECTION("uniform lies in [low, high] with the mean of the interval") {
        auto d = space_of(ranges("uniform", {1.0, 3.0}))[0];
        double sum = 0;
        for (int i = 0; i < 4000; ++i) {
            double v = sample(d, rng).get<double>();
            REQUIRE(v >= 1.0);
            REQUIRE(v <= 3.0);
            sum += v;
        }
        CHECK(sum / 4000 == Approx(2.0).margin(0.05));
    }
    SECTION("quniform lands on multiples of q; integral bounds and step give integers") {
        auto d = space_of(ranges("quniform", {0, 10, 5}))[0];
        std::set<std::int64_t> seen;
        for (int i = 0; i < 300; ++i) {
            json v = sample(d, rng);
            REQUIRE(v.is_number_integer());
            seen.insert(v.get<std::int64_t>());
        }
        CHECK(seen == std::set<std::int64_t>{0, 5, 10});
        auto f = space_of(ranges("quniform", {0.0, 1.0, 0.25}))[0];
        for (int i = 0; i < 100; ++i) {
            double v = sample(f, rng).get<double>();
            CHECK(std::fmod(v, 0.25) == Approx(0.0).margin(1e-12));
        }
    }
    SECTION("loguniform is uniform in log space: the median is the geometric mean") {
        auto d = space_of(ranges("loguniform", {1e-4, 1.0}))[0];
        int below = 0;
        for (int i = 0; i < 4000; ++i) {
            double v = sample(d, rng).get<double>();
            REQUIRE(v >= 1e-4);
            REQUIRE(v <= 1.0);
            below += v < 1e-2 ? 1 : 0;
        }
        CHECK(below / 4000.0 == Approx(0.5).margin(0.03));
    }
    SECTION("qloguniform quantises a log-uniform draw") {
        auto d = space_of(ranges("qloguniform", {1, 1000, 10}))[0];
        for (int i = 0; i < 200; ++i) {
            json v = sample(d, rng);
            REQUIRE(v.is_number_integer());
            CHECK(v.get<std::int64_t>() % 10 == 0);
        }
    }
    SECTION("normal has the requested mean and spread; qnormal is quantised") {
        auto d = space_of(ranges("normal", {5.0, 2.0}))[0];
        double sum = 0;
        double sq = 0;
        const int n = 20000;
        for (int i = 0; i < n; ++i) {
            double v = sample(d, rng).get<double>();
            sum += v;
            sq += v * v;
        }
        const double mean = sum / n;
        CHECK(mean == Approx(5.0).margin(0.06));
        CHECK(std::sqrt(sq / n - mean * mean) == Approx(2.0).margin(0.06));
        auto q = space_of(ranges("qnormal", {0, 3, 2}))[0];
        for (int i = 0; i < 100; ++i) {
            json v = sample(q, rng);
            REQUIRE(v.is_number_integer());
            CHECK(v.get<std::int64_t>() % 2 == 0);
        }
    }
}

TEST_CASE("Bad search spaces are refused with the parameter named", "[optimize]") {
    auto err = [](const json& j) {
        auto s = parse_search_space(j);
        REQUIRE_FALSE(s);
        CHECK(s.error().code == sdk::ErrorCode::InvalidArgument);
        return s.error().message;
    };
    CHECK_THAT(err(json::object()), Catch::Contains("search_space"));
    CHECK_THAT(err(json::array()), Catch::Contains("search_space"));
    CHECK_THAT(err({{"lr", {{"_type", "choice"}}}}), Catch::Contains("search_space.lr"));
    CHECK_THAT(err({{"lr", {{"_type", "lograndint"}, {"_value", {1, 2}}}}}),
               Catch::Contains("unknown _type 'lograndint'"));
    CHECK_THAT(err({{"lr", {{"_type", "choice"}, {"_value", json::array()}}}}),
               Catch::Contains("at least one"));
    CHECK_THAT(err({{"lr", {{"_type", "uniform"}, {"_value", {1}}}}}),
               Catch::Contains("takes 2 numbers"));
    CHECK_THAT(err({{"lr", {{"_type", "uniform"}, {"_value", {2, 1}}}}}),
               Catch::Contains("low must be below high"));
    CHECK_THAT(err({{"lr", {{"_type", "uniform"}, {"_value", {"a", 1}}}}}),
               Catch::Contains("numbers"));
    CHECK_THAT(err({{"lr", {{"_type", "loguniform"}, {"_value", {0, 1}}}}}),
               Catch::Contains("positive"));
    CHECK_THAT(err({{"n", {{"_type", "randint"}, {"_value", {0.5, 3}}}}}),
               Catch::Contains("integers"));
    CHECK_THAT(err({{"n", {{"_type", "quniform"}, {"_value", {0, 3, 0}}}}}),
               Catch::Contains("step q"));
    CHECK_THAT(err({{"n", {{"_type", "normal"}, {"_value", {0, -1}}}}}), Catch::Contains("sigma"));
}

TEST_CASE("Random trials are reproducible from the seed and differ between seeds", "[optimize]") {
    auto space = space_of({{"lr", {{"_type", "loguniform"}, {"_value", {1e-4, 1e-1}}}},
                           {"epochs", {{"_type", "randint"}, {"_value", {1, 10}}}}});
    auto a = random_trials(space, 5, 42);
    auto b = random_trials(space, 5, 42);
    auto c = random_trials(space, 5, 43);
    REQUIRE(a.size() == 5);
    CHECK(a == b);
    CHECK(a != c);
    std::set<std::string> distinct;
    for (const auto& t : a) {
        REQUIRE(t.contains("lr"));
        REQUIRE(t.contains("epochs"));
        distinct.insert(t.dump());
    }
    CHECK(distinct.size() == 5);
}

TEST_CASE("A grid enumerates the product of enumerable dimensions and samples the rest",
          "[optimize]") {
    auto space = space_of({{"a", {{"_type", "choice"}, {"_value", {1, 2}}}},
                           {"b", {{"_type", "quniform"}, {"_value", {0, 10, 5}}}},
                           {"mu", {{"_type", "uniform"}, {"_value", {0.0, 1.0}}}}});
    auto all = grid_trials(space, 6, 1);
    REQUIRE(all.size() == 6);  // 2 x 3; mu is continuous
    // First dimension slowest: (1,0) (1,5) (1,10) (2,0) (2,5) (2,10).
    const std::vector<std::pair<int, int>> expected{{1, 0}, {1, 5}, {1, 10},
                                                    {2, 0}, {2, 5}, {2, 10}};
    for (std::size_t i = 0; i < all.size(); ++i) {
        CHECK(all[i]["a"] == expected[i].first);
        CHECK(all[i]["b"] == expected[i].second);
        CHECK(all[i]["mu"].get<double>() >= 0.0);
        CHECK(all[i]["mu"].get<double>() <= 1.0);
    }
    CHECK(all[0]["mu"] != all[1]["mu"]);
    auto capped = grid_trials(space, 4, 1);
    REQUIRE(capped.size() == 4);
    CHECK(capped[3]["a"] == 2);
    CHECK(capped[3]["b"] == 0);
}

TEST_CASE("A grid over a narrow quniform far from zero ends", "[optimize]") {
    // low/q = 1e16 > 2^53: stepping a double k by 1 left k unchanged and the walk never ended
    // (it ran before any cancel check, and again after every restart). A watchdog ends the
    // test process instead of leaving it to hang.
    std::atomic<bool> done{false};
    std::thread watchdog([&] {
        for (int i = 0; i < 200 && !done.load(); ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        if (!done.load()) {
            std::fprintf(stderr, "grid_values did not return within 20 s\n");
            std::abort();
        }
    });
    auto space = space_of(ranges("quniform", {1.0, 1.00000000000005, 1e-16}));
    REQUIRE(space.size() == 1);
    const auto values = grid_values(space[0]);
    done = true;
    watchdog.join();
    REQUIRE_FALSE(values.empty());
    for (const auto& v : values) {
        CHECK(v.get<double>() >= 1.0);
        CHECK(v.get<double>() <= 1.00000000000005);
    }
    CHECK(grid_trials(space, 3, 1).size() == 3);
}

TEST_CASE("A grid with sampled dimensions is walked again with fresh samples up to the trial count",
          "[optimize]") {
    // Before, a grid of only continuous dimensions ran one trial whatever max_trial_num said.
    const auto only = grid_trials(space_of(ranges("uniform", {0, 1})), 10, 1);
    REQUIRE(only.size() == 10);
    std::set<std::string> distinct;
    for (const auto& t : only) {
        distinct.insert(t.dump());
    }
    CHECK(distinct.size() == 10);
    // Mixed: the 2-point grid repeated (Ray's grid_search x num_samples), mu drawn afresh.
    auto mixed = space_of({{"a", {{"_type", "choice"}, {"_value", {1, 2}}}},
                           {"mu", {{"_type", "uniform"}, {"_value", {0.0, 1.0}}}}});
    const auto walk = grid_trials(mixed, 5, 1);
    REQUIRE(walk.size() == 5);
    for (std::size_t i = 0; i < walk.size(); ++i) {
        CHECK(walk[i]["a"] == (i % 2 == 0 ? 1 : 2));
    }
    CHECK(walk[0]["mu"] != walk[2]["mu"]);
    // Fully enumerable: one pass, no repeated points.
    CHECK(grid_trials(space_of(ranges("choice", {1, 2, 3})), 10, 1).size() == 3);
}

TEST_CASE("Integer bounds beyond 2^53 are refused with the parameter named", "[optimize]") {
    // Before, 1e19 passed the integer check and the int64 conversion overflowed (UB, garbage).
    auto err = [](const json& j) {
        auto s = parse_search_space(j);
        REQUIRE_FALSE(s);
        CHECK(s.error().code == sdk::ErrorCode::InvalidArgument);
        return s.error().message;
    };
    CHECK_THAT(err({{"n", {{"_type", "randint"}, {"_value", {0, 1e19}}}}}),
               Catch::Contains("search_space.n: randint bounds must lie within +/-2^53"));
    CHECK_THAT(err({{"n", {{"_type", "randint"}, {"_value", {-1e19, 0}}}}}),
               Catch::Contains("search_space.n"));
    CHECK_THAT(err({{"b", {{"_type", "quniform"}, {"_value", {0, 1e19, 1}}}}}),
               Catch::Contains("search_space.b: quniform bounds must lie within +/-2^53"));
    CHECK_THAT(err({{"b", {{"_type", "qloguniform"}, {"_value", {1, 1e19, 1}}}}}),
               Catch::Contains("search_space.b"));
    CHECK_THAT(err({{"g", {{"_type", "qnormal"}, {"_value", {0, 1e18, 1}}}}}),
               Catch::Contains("search_space.g: qnormal"));
    // 2^53 itself is exact and allowed, draws stay in range; real-valued types are not limited.
    Rng rng(3);
    auto edge = space_of(ranges("randint", {9007199254740991.0, 9007199254740992.0}))[0];
    CHECK(sample(edge, rng) == 9007199254740991LL);
    CHECK(parse_search_space(ranges("quniform", {0.5, 1e300, 0.5})));
}

TEST_CASE("Quantised draws stay between low and high on the q grid", "[optimize]") {
    // round(v / q) * q left the range: [1, 10, 4] drew 0 and 12. NNI clips to the bounds; here
    // the draw goes to the nearest multiple of q inside the range (4 or 8).
    Rng rng(11);
    auto d = space_of(ranges("quniform", {1, 10, 4}))[0];
    std::set<std::int64_t> seen;
    for (int i = 0; i < 400; ++i) {
        json v = sample(d, rng);
        REQUIRE(v.is_number_integer());
        seen.insert(v.get<std::int64_t>());
    }
    CHECK(seen == std::set<std::int64_t>{4, 8});
    CHECK(grid_values(d) == std::vector<json>{4, 8});
    auto lg = space_of(ranges("qloguniform", {3, 100, 10}))[0];
    for (int i = 0; i < 400; ++i) {
        const auto v = sample(lg, rng).get<std::int64_t>();
        REQUIRE(v >= 10);
        REQUIRE(v <= 100);
        CHECK(v % 10 == 0);
    }
    // No multiple of q in range: clipped to the nearer bound, as NNI does.
    auto none = space_of(ranges("quniform", {1, 3, 4}))[0];
    std::set<std::int64_t> bounds;
    for (int i = 0; i < 200; ++i) {
        bounds.insert(sample(none, rng).get<std::int64_t>());
    }
    CHECK(bounds == std::set<std::int64_t>{1, 3});
    // Real-valued: a bound that is a multiple of q is reached despite rounding (7 * 0.1 > 0.7).
    auto f = space_of(ranges("quniform", {0.05, 0.7, 0.1}))[0];
    double top = 0;
    for (int i = 0; i < 400; ++i) {
        const double v = sample(f, rng).get<double>();
        REQUIRE(v >= 0.05);
        REQUIRE(v <= 0.7);
        top = std::max(top, v);
    }
    CHECK(top == 0.7);
    CHECK(grid_values(f).size() == 7);  // 0.1 .. 0.7
}

TEST_CASE("Search settings come from the request with the original's defaults", "[optimize]") {
    json p{{"search_space", ranges("choice", {1, 2})},
           {"metric", "accuracy"},
           {"optimize_mode", "max"}};
    auto s = parse_settings(p);
    REQUIRE(s);
    CHECK(s->max_trials == 10);
    CHECK(s->strategy == "random");
    CHECK(s->timeout_ms == 3600000);
    CHECK(s->maximize);
    p["searcher"] = "BasicVariantGenerator";
    p["optimize_mode"] = "min";
    p["max_exec_duration"] = "1h 30m";
    REQUIRE(parse_settings(p));
    CHECK(parse_settings(p)->timeout_ms == 5400000);
    CHECK_FALSE(parse_settings(p)->maximize);
    for (auto [field, value] :
         std::vector<std::pair<const char*, json>>{{"optimize_mode", "maximise"},
                                                   {"metric", 3},
                                                   {"strategy", "HyperOptSearch"},
                                                   {"max_trial_num", 0},
                                                   {"max_exec_duration", "90 minutes"},
                                                   {"run", "x"}}) {
        json bad = p;
        bad[field] = value;
        auto r = parse_settings(bad);
        REQUIRE_FALSE(r);
        CHECK_THAT(r.error().message, Catch::Contains(field));
    }
    CHECK(parse_duration("45s").value() == 45000);
    CHECK(parse_duration("2d 1w").value() == 2 * 86400000LL + 604800000LL);
    CHECK_FALSE(parse_duration(""));
    CHECK_FALSE(parse_duration("5"));
    // Past a year the deadline only risks overflowing the clock (before, "20000w" passed and
    // the search timed out at once; enough terms overflowed the sum).
    CHECK(parse_duration("365d").value() == 365 * 86400000LL);
    CHECK_THAT(parse_duration("366d").error().message, Catch::Contains("at most 365 days"));
    CHECK_FALSE(parse_duration("20000w"));
    std::string many;
    for (int i = 0; i < 20; ++i) {
        many += "999999999w ";
    }
    CHECK_FALSE(parse_duration(many));
}

TEST_CASE("A trial's score averages the metric over classes, then over participants",
          "[optimize]") {
    // p1: classes 0.5 and 1.0 -> 0.75; p2: 0.25 and 0.75 -> 0.5; the trial: 0.625.
    json outputs{
        {"p1", {{"evaluate", {{"statistics", {{"accuracy", {0.5, 1.0}}, {"R2", 0.3}}}}}}},
        {"p2", {{"evaluate", {{"statistics", {{"accuracy", {0.25, 0.75}}, {"R2", 0.5}}}}}}}};
    CHECK(trial_score(outputs, "accuracy").value() == Approx(0.625));
    CHECK(trial_score(outputs, "R2").value() == Approx(0.4));
    CHECK_FALSE(trial_score(outputs, "f_score"));
    CHECK_FALSE(trial_score(json::object(), "accuracy"));
    CHECK_FALSE(trial_score("nonsense", "accuracy"));
    // A participant without the metric does not count as a zero.
    outputs["p3"] = {{"evaluate", {{"statistics", json::object()}}}};
    CHECK(trial_score(outputs, "R2").value() == Approx(0.4));
}

TEST_CASE(
    "The best trial is the highest (max) or lowest (min) score: failures skipped, ties to the "
    "first",
    "[optimize]") {
    std::vector<std::optional<double>> scores{0.4, std::nullopt, 0.9, 0.1, 0.9};
    CHECK(best_trial(scores, true).value() == 2);  // tie with 4: the earlier trial
    CHECK(best_trial(scores, false).value() == 3);
    CHECK_FALSE(best_trial({std::nullopt, std::nullopt}, true));
    CHECK_FALSE(best_trial({}, false));
}


namespace {

namespace sdk = synergos::sdk;

/// A job context for a search run in the test: it records the jobs the search submits (ids
/// "job-<n>"); subclasses say what a poll of one sees (wait_job).
class FakeSearchCtx : public sdk::JobContext {
public:
    sdk::Logger& logger() noexcept override { return host_.logger(); }
    const std::string& job_id() const noexcept override { return id_; }
    int grid() const noexcept override { return 0; }
    const std::vector<sdk::GridNode>& nodes() const noexcept override { return nodes_; }
    std::string outputs_dir() const override { return "/nonexistent"; }
    bool is_cancelled() const noexcept override { return false; }
    void report_progress(std::string_view) noexcept override {}
    sdk::WorkerClient& workers() noexcept override { std::abort(); }
    sdk::Result<sdk::Aggregator*> aggregator(const std::string& name) noexcept override {
        return sdk::Error{sdk::ErrorCode::NotFound, name};
    }
    sdk::Result<std::string> submit_job(std::string_view job_json) noexcept override {
        submitted.push_back(json::parse(job_json));
        return "job-" + std::to_string(submitted.size());
    }
    sdk::Status write_tensors(const std::string&, const sdk::TensorMap&,
                              std::string_view) noexcept override {
        return {};
    }
    sdk::Result<sdk::TensorMap> read_tensors(const std::string& path) noexcept override {
        return sdk::Error{sdk::ErrorCode::NotFound, path};
    }
    sdk::Status write_file(const std::string&, std::string_view) noexcept override { return {}; }

    std::vector<json> submitted;

private:
    sdk::testing::FakeHost host_;
    std::string id_ = "opt-1";
    std::vector<sdk::GridNode> nodes_;
};

/// Every train job succeeds at once on grid 0 and every validate job fails, so each trial goes
/// through both phases and the search ends.
class RecordingCtx final : public FakeSearchCtx {
public:
    sdk::Result<std::string> wait_job(const std::string& id, std::chrono::milliseconds) noexcept override {
        const std::size_t n = std::stoul(id.substr(4));
        const bool train = submitted.at(n - 1).value("process", "") == "train";
        return json{{"state", train ? "succeeded" : "failed"}, {"grid", 0}, {"reason", "fixture"}}.dump();
    }
};

}  // namespace

TEST_CASE("A search marks its trials' train and validate jobs as its own", "[optimize]") {
    // Trials train and validate before their Run records exist: the mark is what lets their
    // results be archived under the experiment (a plain run's need its Run).
    sdk::testing::FakeHost host;
    OptimizeFunction fn(host, sdk::Options(std::map<std::string, std::string>{{"poll_ms", "1"}}));
    RecordingCtx ctx;
    const json job{{"job_id", "opt-1"},
                   {"process", "optimize"},
                   {"keys", {"c", "p", "e"}},
                   {"grid", 0},
                   {"parameters",
                    {{"search_space", ranges("choice", {1, 2})},
                     {"metric", "accuracy"},
                     {"optimize_mode", "max"},
                     {"max_trial_num", 2},
                     {"tags", {{"w", {{"train", {{"a"}}}}}}}}}};
    (void)fn.execute(ctx, job.dump());
    std::map<std::string, int> marked;
    for (const auto& submitted : ctx.submitted) {
        INFO(submitted.dump());
        CHECK(submitted["parameters"].value("optimization", "") == "opt-1");
        marked[submitted.value("process", "")]++;
    }
    CHECK(marked["train"] == 2);
    CHECK(marked["validate"] == 2);
}


namespace {

/// A search's trial jobs as a script: `state(process, trial number)` is the job record a poll
/// sees. A wait with a timeout (the search idling until a job moves) advances a fake clock by
/// `idle_step`, so the search's time limit passes without real waiting.
class ScriptedCtx final : public FakeSearchCtx {
public:
    using Script = std::function<json(const std::string& process, int trial)>;
    explicit ScriptedCtx(Script script) : script_(std::move(script)) {}

    sdk::Result<std::string> wait_job(const std::string& id,
                                      std::chrono::milliseconds timeout) noexcept override {
        if (timeout.count() > 0) {
            now += idle_step;
        }
        const json& job = submitted.at(std::stoul(id.substr(4)) - 1);
        const std::string run = job["keys"][3].get<std::string>();
        const int trial = std::stoi(run.substr(run.rfind('_') + 1));
        return script_(job.value("process", ""), trial).dump();
    }
    OptimizeFunction::Now clock() {
        return [this] { return now; };
    }

    std::chrono::steady_clock::time_point now{};
    std::chrono::milliseconds idle_step{2000};

private:
    Script script_;
};

/// archive() reads nothing from its context.
class NoArchiveCtx final : public sdk::ArchiveContext {
public:
    sdk::Logger& logger() noexcept override { return host_.logger(); }
    sdk::StorageBackend& storage() noexcept override { std::abort(); }
    sdk::Tracker* tracker() noexcept override { return nullptr; }
    std::string outputs_dir() const override { return "/nonexistent"; }

private:
    sdk::testing::FakeHost host_;
};

json search_job(int trials) {
    return {{"job_id", "opt-1"},
            {"process", "optimize"},
            {"keys", {"c", "p", "e"}},
            {"grid", 0},
            {"parameters",
             {{"search_space", ranges("uniform", {0.0, 1.0})},
              {"metric", "accuracy"},
              {"optimize_mode", "max"},
              {"max_trial_num", trials},
              {"max_exec_duration", "5s"},
              {"tags", {{"w", {{"train", {{"a"}}}}}}}}}};
}

json scored(double accuracy) {
    return {{"state", "succeeded"},
            {"grid", 0},
            {"outputs", {{"w", {{"evaluate", {{"statistics", {{"accuracy", accuracy}}}}}}}}}};
}

/// The store writes of an archive, as "Kind:run_id" (the Optimization record as "Optimization").
std::vector<std::string> written(const std::vector<sdk::Mutation>& batch) {
    std::vector<std::string> out;
    for (const auto& m : batch) {
        if (m.kind == "Run") {
            out.push_back("Run:" + m.key.back().value);  // run_id: the last key field
        } else if (m.mode == sdk::WriteMode::Upsert) {
            out.push_back(m.kind);
        }
    }
    return out;
}

}  // namespace

TEST_CASE("A search that reaches max_exec_duration archives what it finished and succeeds",
          "[optimize]") {
    // Trial 1 scores; trial 2 trained and is still validating; trial 3 is still training. Before,
    // the search failed with Timeout, so trial 1's and 2's models and trial 1's validation sat
    // under run ids with no Run record and the search left no Optimization record.
    ScriptedCtx ctx([](const std::string& process, int trial) -> json {
        if (trial == 1) {
            return process == "train" ? json{{"state", "succeeded"}, {"grid", 0}} : scored(0.8);
        }
        if (trial == 2 && process == "train") {
            return {{"state", "succeeded"}, {"grid", 0}};
        }
        return {{"state", "running"}};
    });
    sdk::testing::FakeHost host;
    OptimizeFunction fn(host, sdk::Options(std::map<std::string, std::string>{{"poll_ms", "1"}}),
                        ctx.clock());
    const json job = search_job(3);
    auto r = fn.execute(ctx, job.dump());
    INFO((r ? *r : r.error().message));
    REQUIRE(r);
    const json out = json::parse(*r);
    CHECK(out["stopped_at_limit"] == true);
    CHECK_THAT(out["note"].get<std::string>(),
               Catch::Contains("stopped at its max_exec_duration (5 s) after 1 of 3 trials"));
    CHECK(out["finished"] == 1);
    REQUIRE(out["best"].is_object());
    CHECK(out["best"]["run_id"] == "optim_run_opt-1_1");
    CHECK(out["trials"][0]["state"] == "succeeded");
    for (int i : {1, 2}) {
        INFO(out["trials"][i].dump());
        CHECK(out["trials"][i]["state"] == "unfinished");
        CHECK_THAT(out["trials"][i]["reason"].get<std::string>(),
                   Catch::Contains("max_exec_duration"));
    }
    CHECK_THAT(out["trials"][1]["reason"].get<std::string>(), Catch::Contains("still validating"));
    CHECK_THAT(out["trials"][2]["reason"].get<std::string>(), Catch::Contains("still training"));

    NoArchiveCtx actx;
    auto batch = fn.archive(actx, job.dump(), *r);
    REQUIRE(batch);
    // Every trial gets its Run: a trial still running archives its model later, under its Run.
    CHECK(written(*batch) == std::vector<std::string>{"Run:optim_run_opt-1_1",
                                                      "Run:optim_run_opt-1_2",
                                                      "Run:optim_run_opt-1_3", "Optimization"});
    const json doc = json::parse(batch->back().document);
    CHECK(doc["stopped_at_limit"] == true);
    CHECK(doc["best"]["run_id"] == "optim_run_opt-1_1");
}

TEST_CASE("A search where no trial scored still archives its trials and says so", "[optimize]") {
    // Trained models exist (their validations lacked the metric): the search succeeds so that
    // they get Run records and an Optimization record saying no trial scored. Before, it
    // failed and they were orphans.
    ScriptedCtx ctx([](const std::string& process, int) -> json {
        if (process == "train") {
            return {{"state", "succeeded"}, {"grid", 0}};
        }
        return {{"state", "succeeded"}, {"outputs", json::object()}};
    });
    sdk::testing::FakeHost host;
    OptimizeFunction fn(host, sdk::Options(std::map<std::string, std::string>{{"poll_ms", "1"}}),
                        ctx.clock());
    const json job = search_job(2);
    auto r = fn.execute(ctx, job.dump());
    INFO((r ? *r : r.error().message));
    REQUIRE(r);
    const json out = json::parse(*r);
    CHECK(out["best"].is_null());
    CHECK(out["stopped_at_limit"] == false);
    CHECK_THAT(out["note"].get<std::string>(),
               Catch::Contains("no trial produced a score; first failure: validation "
                               "statistics have no 'accuracy'"));
    NoArchiveCtx actx;
    auto batch = fn.archive(actx, job.dump(), *r);
    REQUIRE(batch);
    CHECK(written(*batch) == std::vector<std::string>{"Run:optim_run_opt-1_1",
                                                      "Run:optim_run_opt-1_2", "Optimization"});
    CHECK_THAT(json::parse(batch->back().document)["note"].get<std::string>(),
               Catch::Contains("no trial produced a score"));
}

TEST_CASE("A search none of whose trials trained fails: nothing of it was archived",
          "[optimize]") {
    // Nothing to orphan, so the job fails (and the director cancels the trials still running).
    SECTION("every train job failed") {
        ScriptedCtx ctx([](const std::string&, int) -> json {
            return {{"state", "failed"}, {"reason", "no data"}};
        });
        sdk::testing::FakeHost host;
        OptimizeFunction fn(host, sdk::Options(std::map<std::string, std::string>{}), ctx.clock());
        auto r = fn.execute(ctx, search_job(2).dump());
        REQUIRE_FALSE(r);
        CHECK(r.error().code == sdk::ErrorCode::FailedPrecondition);
        CHECK_THAT(r.error().message, Catch::Contains("no trial of the optimization produced a "
                                                      "score; first failure: train job job-1 "
                                                      "failed: no data"));
    }
    SECTION("the time limit came while every trial was still training") {
        ScriptedCtx ctx([](const std::string&, int) -> json { return {{"state", "running"}}; });
        sdk::testing::FakeHost host;
        OptimizeFunction fn(host, sdk::Options(std::map<std::string, std::string>{}), ctx.clock());
        auto r = fn.execute(ctx, search_job(2).dump());
        REQUIRE_FALSE(r);
        CHECK(r.error().code == sdk::ErrorCode::Timeout);
        CHECK_THAT(r.error().message,
                   Catch::Contains("exceeded max_exec_duration (5 s) before any trial was trained"));
    }
}

namespace {

/// The store cannot be read for the first `failures` polls; then every train job has
/// succeeded and every validation scores 0.8.
class BusyStoreCtx final : public FakeSearchCtx {
public:
    explicit BusyStoreCtx(int failures) : failures_(failures) {}
    sdk::Result<std::string> wait_job(const std::string& id, std::chrono::milliseconds) noexcept override {
        if (failures_ > 0) {
            --failures_;
            return sdk::Error{sdk::ErrorCode::Unavailable, "storage 'sqlite': database is locked"};
        }
        const bool train = submitted.at(std::stoul(id.substr(4)) - 1).value("process", "") == "train";
        return (train ? json{{"state", "succeeded"}, {"grid", 0}} : scored(0.8)).dump();
    }

private:
    int failures_;
};

}  // namespace

TEST_CASE("A search reads a trial's job again when the store was busy instead of failing the trial",
          "[optimize]") {
    // Before, one Unavailable read failed the trial for good while its job ran on: its score
    // was never read and its model had no Run record.
    BusyStoreCtx ctx(3);
    sdk::testing::FakeHost host;
    OptimizeFunction fn(host, sdk::Options(std::map<std::string, std::string>{{"poll_ms", "1"}}));
    auto r = fn.execute(ctx, search_job(2).dump());
    INFO((r ? *r : r.error().message));
    REQUIRE(r);
    const json out = json::parse(*r);
    CHECK(out["finished"] == 2);
    for (const auto& trial : out["trials"]) {
        INFO(trial.dump());
        CHECK(trial["state"] == "succeeded");
    }
}

}  // namespace synergos::plugins::optimize
