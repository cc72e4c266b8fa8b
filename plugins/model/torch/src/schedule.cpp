// SPDX-License-Identifier: Apache-2.0
#include "schedule.hpp"

#include <algorithm>
#include <cmath>

namespace synergos::plugins::torch {

namespace {

EpochSetting cyclic_at(const TrainArgs& args, int epoch) {
    const CyclicArgs& c = args.cyclic;
    const double base_lr = c.base_lr.value_or(args.lr);
    const double max_lr = c.max_lr.value_or(base_lr);
    const double up = c.step_size_up;
    const double down = c.step_size_down.value_or(up);
    const double total = up + down;
    const double step_ratio = up / total;
    const double last = static_cast<double>(epoch);

    const double cycle = std::floor(1.0 + last / total);
    const double x = 1.0 + last / total - cycle;
    const double scale_factor = x <= step_ratio ? x / step_ratio : (x - 1.0) / (step_ratio - 1.0);

    // triangular/triangular2 scale by cycle, exp_range by iteration (torch's scale_mode).
    double scale = 1.0;
    switch (c.mode) {
        case CyclicMode::Triangular:
            scale = 1.0;
            break;
        case CyclicMode::Triangular2:
            scale = 1.0 / std::pow(2.0, cycle - 1.0);
            break;
        case CyclicMode::ExpRange:
            scale = std::pow(c.gamma, last);
            break;
    }
    EpochSetting s;
    s.lr = base_lr + (max_lr - base_lr) * scale_factor * scale;
    if (args.cycles_momentum()) {
        s.momentum = c.max_momentum - (c.max_momentum - c.base_momentum) * scale_factor * scale;
    }
    return s;
}

}  // namespace

EpochSetting schedule_at(const TrainArgs& args, int epoch) {
    const double e = static_cast<double>(epoch);
    switch (args.scheduler) {
        case SchedulerKind::CyclicLr:
            return cyclic_at(args, epoch);
        case SchedulerKind::StepLr: {
            const std::int64_t step = std::max<std::int64_t>(1, args.step_size.value_or(1));
            const double gamma = args.gamma.value_or(0.1);
            return {args.lr * std::pow(gamma, static_cast<double>(epoch / step)), std::nullopt};
        }
        case SchedulerKind::LambdaLr:
            return {args.lr / (1.0 + args.lr_decay * e), std::nullopt};
        case SchedulerKind::ExponentialLr:
            return {args.lr * std::pow(args.gamma.value_or(1.0), e), std::nullopt};
    }
    return {args.lr, std::nullopt};
}

bool EarlyStopping::should_stop(double loss) noexcept {
    if (!patience_) {
        return false;
    }
    // The original scores -loss and counts "score < best + delta" as no improvement.
    if (!best_ || loss <= *best_ - delta_) {
        best_ = loss;
        counter_ = 0;
        return false;
    }
    ++counter_;
    return counter_ >= *patience_;
}

}  // namespace synergos::plugins::torch
