// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cmath>

#include "schedule.hpp"
#include "train_args.hpp"

namespace {

using namespace synergos::plugins::torch;

/// torch 1.13 CyclicLR.get_lr() written out for one scalar, independently of schedule.cpp.
struct Reference {
    double base_lr, max_lr, up, down, gamma, base_m, max_m;
    int mode;  // 0 triangular, 1 triangular2, 2 exp_range

    std::pair<double, double> at(int last_epoch) const {
        const double total = up + down;
        const double ratio = up / total;
        const double cycle = std::floor(1 + last_epoch / total);
        const double x = 1. + last_epoch / total - cycle;
        const double sf = x <= ratio ? x / ratio : (x - 1) / (ratio - 1);
        double s = 1.0;
        if (mode == 1) {
            s = 1 / std::pow(2., cycle - 1);
        } else if (mode == 2) {
            s = std::pow(gamma, last_epoch);
        }
        return {base_lr + (max_lr - base_lr) * sf * s, max_m - (max_m - base_m) * sf * s};
    }
};

}  // namespace

TEST_CASE("CyclicLR follows torch's formula in all three modes", "[unit][torch]") {
    const auto [mode_name, mode] =
        GENERATE(std::make_pair("triangular", 0), std::make_pair("triangular2", 1),
                 std::make_pair("exp_range", 2));
    const auto args = parse_train_args(
        std::string(
            R"({"base_lr": 0.001, "max_lr": 0.01, "step_size_up": 3, "step_size_down": 5,
                "gamma": 0.9, "mode": ")") +
        mode_name + R"("})");
    const Reference ref{0.001, 0.01, 3, 5, 0.9, 0.8, 0.9, mode};
    for (int e = 0; e < 30; ++e) {
        INFO(mode_name << " epoch " << e);
        const auto s = schedule_at(args, e);
        const auto [lr, momentum] = ref.at(e);
        CHECK(s.lr == Approx(lr).epsilon(1e-12));
        REQUIRE(s.momentum.has_value());
        CHECK(*s.momentum == Approx(momentum).epsilon(1e-12));
    }
    // Spot values: the first epoch runs at base_lr with max_momentum, the peak at max_lr.
    CHECK(schedule_at(args, 0).lr == Approx(0.001));
    CHECK(*schedule_at(args, 0).momentum == Approx(0.9));
    if (mode == 0) {
        CHECK(schedule_at(args, 3).lr == Approx(0.01));
        CHECK(*schedule_at(args, 3).momentum == Approx(0.8));
        CHECK(schedule_at(args, 8).lr == Approx(0.001));
    }
    if (mode == 1) {
        CHECK(schedule_at(args, 11).lr == Approx(0.001 + 0.009 / 2));  // second cycle's peak halves
    }
}

TEST_CASE("CyclicLR without cycle_momentum leaves momentum alone", "[unit][torch]") {
    const auto args = parse_train_args(
        R"({"base_lr": 0.1, "max_lr": 0.2, "cycle_momentum": false, "momentum": 0.5})");
    CHECK_FALSE(schedule_at(args, 4).momentum.has_value());
    CHECK(args.initial_momentum() == 0.5);
    const auto adagrad =
        parse_train_args(R"({"base_lr": 0.1, "max_lr": 0.2, "optimizer": "Adagrad"})");
    CHECK_FALSE(schedule_at(adagrad, 4).momentum.has_value());
}

TEST_CASE("Step and decay schedules", "[unit][torch]") {
    const auto step = parse_train_args(R"({"lr": 0.5, "lr_scheduler": "StepLR", "step_size": 3})");
    CHECK(schedule_at(step, 0).lr == Approx(0.5));
    CHECK(schedule_at(step, 2).lr == Approx(0.5));
    CHECK(schedule_at(step, 3).lr == Approx(0.05));  // default gamma 0.1
    CHECK(schedule_at(step, 7).lr == Approx(0.005));
    // lr / (1 + lr_decay * epoch): not the original's lr * lr / (...).
    const auto lambda = parse_train_args(R"({"lr": 0.5, "lr_scheduler": "", "lr_decay": 0.25})");
    CHECK(schedule_at(lambda, 0).lr == Approx(0.5));
    CHECK(schedule_at(lambda, 4).lr == Approx(0.25));
    const auto expo =
        parse_train_args(R"({"lr": 0.5, "lr_scheduler": "ExponentialLR", "gamma": 0.5})");
    CHECK(schedule_at(expo, 3).lr == Approx(0.0625));
}

TEST_CASE("Early stopping counts epochs without an improvement of at least delta",
          "[unit][torch]") {
    EarlyStopping stop(2, 0.1);
    CHECK_FALSE(stop.should_stop(1.0));   // first: best = 1.0
    CHECK_FALSE(stop.should_stop(0.95));  // not better by 0.1: counter 1
    CHECK_FALSE(stop.should_stop(0.9));   // 0.9 <= 1.0 - 0.1: improvement, counter 0
    CHECK_FALSE(stop.should_stop(0.85));  // counter 1
    CHECK(stop.should_stop(0.95));        // counter 2 >= patience

    EarlyStopping equal(1, 0.0);
    CHECK_FALSE(equal.should_stop(0.5));
    CHECK_FALSE(equal.should_stop(0.5));  // equal loss with delta 0 counts as an improvement
    CHECK(equal.should_stop(0.6));

    EarlyStopping never(std::nullopt, 0.0);
    for (int i = 0; i < 50; ++i) {
        CHECK_FALSE(never.should_stop(1.0 + i));
    }
}
