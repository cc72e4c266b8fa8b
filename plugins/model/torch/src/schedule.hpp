// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file schedule.hpp
/// Per-epoch learning rate (and cycled momentum) of a fresh scheduler, and local early
/// stopping. Plain arithmetic: libtorch 1.13's C++ API has no CyclicLR.

#include <cstdint>
#include <optional>

#include "train_args.hpp"

namespace synergos::plugins::torch {

/// What the optimizer uses during one local epoch.
struct EpochSetting {
    double lr = 0.0;
    /// SGD/RMSprop momentum or Adam/AdamW beta1, only when CyclicLR cycles momentum.
    std::optional<double> momentum;
};

/// The setting of local epoch `epoch` (0-based) of a scheduler created at the start of the
/// round and stepped once per epoch, as the original does:
///   CyclicLR       torch 1.13's formula with last_epoch = epoch (lr starts at base_lr and
///                  momentum at max_momentum);
///   StepLR         lr * gamma^(epoch / step_size), gamma default 0.1;
///   LambdaLR       lr / (1 + lr_decay * epoch) (the original multiplied by lr once more);
///   ExponentialLR  lr * gamma^epoch.
EpochSetting schedule_at(const TrainArgs& args, int epoch);

/// The original's EarlyStopping on the epoch loss: an epoch improves when
/// loss <= best - delta; after `patience` epochs in a row without improvement it stops.
class EarlyStopping {
public:
    EarlyStopping(std::optional<std::int64_t> patience, double delta)
        : patience_(patience), delta_(delta) {}

    /// Records an epoch's loss; true when training should stop after this epoch.
    bool should_stop(double loss) noexcept;

private:
    std::optional<std::int64_t> patience_;
    double delta_;
    std::optional<double> best_;
    std::int64_t counter_ = 0;
};

}  // namespace synergos::plugins::torch
