// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file train_args.hpp
/// The run's training arguments (the original's `Arguments`), with the original's defaults,
/// parsed without libtorch. Unknown fields are ignored (a run record carries many other fields);
/// a known field of the wrong type or range is an error naming the field.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace synergos::plugins::torch {

enum class OptimizerKind { Sgd, Adam, AdamW, RmsProp, Adagrad };
enum class CriterionKind {
    BceLoss,
    BceWithLogitsLoss,
    NllLoss,
    CrossEntropyLoss,
    MseLoss,
    L1Loss,
    SmoothL1Loss,
};
enum class SchedulerKind { CyclicLr, StepLr, LambdaLr, ExponentialLr };
enum class CyclicMode { Triangular, Triangular2, ExpRange };

/// torch.optim.lr_scheduler.CyclicLR arguments (torch 1.13 defaults).
struct CyclicArgs {
    std::optional<double> base_lr;  ///< required (no default in the original either)
    std::optional<double> max_lr;   ///< required
    double step_size_up = 2000.0;
    std::optional<double> step_size_down;  ///< default: step_size_up
    CyclicMode mode = CyclicMode::Triangular;
    double gamma = 1.0;
    bool cycle_momentum = true;
    double base_momentum = 0.8;
    double max_momentum = 0.9;
};

struct TrainArgs {
    std::string action;                      ///< "classify", "regress", or "" (from label names)
    std::optional<std::int64_t> batch_size;  ///< nullopt: full batch
    int epochs = 100;
    int round = 0;  ///< the federated round (seeds the batch order)
    std::uint64_t seed = 42;

    OptimizerKind optimizer = OptimizerKind::Sgd;
    std::string optimizer_name = "SGD";
    double lr = 0.001;
    std::optional<double> weight_decay;  ///< as given; see effective_weight_decay()
    double lr_decay = 0.1;
    double momentum = 0.0;
    double dampening = 0.0;
    bool nesterov = false;
    double beta1 = 0.9;
    double beta2 = 0.999;
    std::optional<double> eps;  ///< default per optimizer
    bool amsgrad = false;
    double alpha = 0.99;
    bool centered = false;
    double initial_accumulator_value = 0.0;

    CriterionKind criterion = CriterionKind::BceLoss;
    std::string criterion_name = "BCELoss";
    bool reduction_sum = false;  ///< reduction "sum" (default "mean")
    double smooth_l1_beta = 1.0;
    double label_smoothing = 0.0;
    double mu = 0.1;
    /// SCAFFOLD's client side (set by the scaffold aggregator's worker arguments): the
    /// reference carries the controls c and c_i, the reply gains `scaffold.delta_c.*`.
    bool scaffold = false;
    double l1_lambda = 0.0;
    double l2_lambda = 0.0;

    SchedulerKind scheduler = SchedulerKind::CyclicLr;
    std::string scheduler_name = "CyclicLR";
    CyclicArgs cyclic;
    std::optional<std::int64_t> step_size;  ///< StepLR (required there)
    std::optional<double> gamma;            ///< StepLR (default 0.1), ExponentialLR (required)

    double delta = 0.0;
    std::optional<std::int64_t> patience = 10;  ///< nullopt: no local early stopping

    /// The optimizer's weight decay under the original's rule: the run's `weight_decay` reaches
    /// the optimizer only when `l2_lambda` is 0; otherwise the optimizer's own default
    /// (0.01 for AdamW, 0 for the others).
    double effective_weight_decay() const noexcept;
    /// The optimizer's eps (the run's, or the optimizer's default).
    double effective_eps() const noexcept;
    /// The momentum (SGD, RMSprop) or beta1 (Adam, AdamW) the optimizer starts with: CyclicLR
    /// with cycle_momentum starts at max_momentum.
    double initial_momentum() const noexcept;
    bool cycles_momentum() const noexcept;
};

/// Parses the run fields. Throws SpecError naming the field.
TrainArgs parse_train_args(std::string_view args_json);

/// Checks what only training needs (CyclicLR's base_lr/max_lr, StepLR's step_size, ...).
/// Throws SpecError naming the field.
void require_training_fields(const TrainArgs& args);

std::string supported_optimizers();
std::string supported_criteria();
std::string supported_schedulers();

}  // namespace synergos::plugins::torch
