// SPDX-License-Identifier: Apache-2.0
#include "train_args.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "spec_error.hpp"

namespace synergos::plugins::torch {

namespace {

using nlohmann::json;

template <typename Kind>
struct Named {
    const char* name;
    Kind kind;
};

constexpr std::array<Named<OptimizerKind>, 5> kOptimizers{{
    {"SGD", OptimizerKind::Sgd},
    {"Adam", OptimizerKind::Adam},
    {"AdamW", OptimizerKind::AdamW},
    {"RMSprop", OptimizerKind::RmsProp},
    {"Adagrad", OptimizerKind::Adagrad},
}};

constexpr std::array<Named<CriterionKind>, 7> kCriteria{{
    {"BCELoss", CriterionKind::BceLoss},
    {"BCEWithLogitsLoss", CriterionKind::BceWithLogitsLoss},
    {"NLLLoss", CriterionKind::NllLoss},
    {"CrossEntropyLoss", CriterionKind::CrossEntropyLoss},
    {"MSELoss", CriterionKind::MseLoss},
    {"L1Loss", CriterionKind::L1Loss},
    {"SmoothL1Loss", CriterionKind::SmoothL1Loss},
}};

constexpr std::array<Named<SchedulerKind>, 4> kSchedulers{{
    {"CyclicLR", SchedulerKind::CyclicLr},
    {"StepLR", SchedulerKind::StepLr},
    {"LambdaLR", SchedulerKind::LambdaLr},
    {"ExponentialLR", SchedulerKind::ExponentialLr},
}};

template <typename Kind, std::size_t N>
std::string names(const std::array<Named<Kind>, N>& table) {
    std::string out;
    for (const auto& e : table) {
        out += (out.empty() ? "" : ", ") + std::string(e.name);
    }
    return out;
}

/// Typed access to the run object. A missing or null field means "use the default".
class FieldReader {
public:
    explicit FieldReader(const json& run) : run_(run) {}

    const json* find(const char* key) const {
        auto it = run_.find(key);
        return it == run_.end() || it->is_null() ? nullptr : &*it;
    }
    bool present(const char* key) const { return run_.contains(key); }

    std::optional<double> number(const char* key) const {
        const json* v = find(key);
        if (v == nullptr) {
            return std::nullopt;
        }
        if (!v->is_number()) {
            fail(key, "must be a number (got " + v->dump() + ")");
        }
        const double d = v->get<double>();
        if (!std::isfinite(d)) {
            fail(key, "must be finite");
        }
        // Training computes in float32: a larger value cannot reach the optimizer or the loss.
        if (std::fabs(d) > static_cast<double>(std::numeric_limits<float>::max())) {
            fail(key, "must be within the float32 range, |x| <= 3.4e38 (got " + v->dump() + ")");
        }
        return d;
    }

    double number_or(const char* key, double fallback) const {
        return number(key).value_or(fallback);
    }

    std::optional<std::int64_t> integer(const char* key) const {
        const json* v = find(key);
        if (v == nullptr) {
            return std::nullopt;
        }
        if (v->is_number_integer()) {
            return v->get<std::int64_t>();
        }
        if (v->is_number_float()) {
            const double d = v->get<double>();
            if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
                return static_cast<std::int64_t>(d);
            }
        }
        fail(key, "must be an integer (got " + v->dump() + ")");
    }

    bool boolean_or(const char* key, bool fallback) const {
        const json* v = find(key);
        if (v == nullptr) {
            return fallback;
        }
        if (!v->is_boolean()) {
            fail(key, "must be true or false (got " + v->dump() + ")");
        }
        return v->get<bool>();
    }

    std::optional<std::string> string(const char* key) const {
        const json* v = find(key);
        if (v == nullptr) {
            return std::nullopt;
        }
        if (!v->is_string()) {
            fail(key, "must be a string (got " + v->dump() + ")");
        }
        return v->get<std::string>();
    }

    [[noreturn]] static void fail(const char* key, const std::string& what) {
        throw SpecError(std::string("run field '") + key + "' " + what);
    }

private:
    const json& run_;
};

void require_range(const char* key, double v, double lo, double hi) {
    if (v < lo || v > hi) {
        FieldReader::fail(key, "must be between " + json(lo).dump() + " and " + json(hi).dump() +
                                   " (got " + json(v).dump() + ")");
    }
}

void require_non_negative(const char* key, double v) {
    if (v < 0.0) {
        FieldReader::fail(key, "must not be negative (got " + json(v).dump() + ")");
    }
}

template <typename Kind, std::size_t N>
Kind lookup(const std::array<Named<Kind>, N>& table, const char* key, const std::string& value,
            const char* what) {
    for (const auto& e : table) {
        if (value == e.name) {
            return e.kind;
        }
    }
    throw SpecError(std::string("run field '") + key + "': unknown " + what + " '" + value +
                    "' (supported: " + names(table) + ")");
}

}  // namespace

double TrainArgs::effective_weight_decay() const noexcept {
    const double fallback = optimizer == OptimizerKind::AdamW ? 0.01 : 0.0;
    if (l2_lambda > 0.0 || !weight_decay) {
        return fallback;
    }
    return *weight_decay;
}

double TrainArgs::effective_eps() const noexcept {
    if (eps) {
        return *eps;
    }
    return optimizer == OptimizerKind::Adagrad ? 1e-10 : 1e-8;
}

bool TrainArgs::cycles_momentum() const noexcept {
    return scheduler == SchedulerKind::CyclicLr && cyclic.cycle_momentum &&
           optimizer != OptimizerKind::Adagrad;
}

double TrainArgs::initial_momentum() const noexcept {
    if (cycles_momentum()) {
        return cyclic.max_momentum;
    }
    return optimizer == OptimizerKind::Adam || optimizer == OptimizerKind::AdamW ? beta1 : momentum;
}

TrainArgs parse_train_args(std::string_view args_json) {
    json run;
    try {
        run = args_json.empty() ? json::object() : json::parse(args_json);
    } catch (const json::exception& e) {
        throw SpecError(std::string("run arguments are not valid JSON: ") + e.what());
    }
    if (!run.is_object()) {
        throw SpecError("run arguments must be a JSON object");
    }
    const FieldReader r(run);
    TrainArgs a;

    if (auto action = r.string("action")) {
        if (*action != "classify" && *action != "regress") {
            FieldReader::fail("action", "must be 'classify' or 'regress' (got '" + *action + "')");
        }
        a.action = *action;
    }
    if (auto batch = r.integer("batch_size")) {
        if (*batch < 1) {
            FieldReader::fail("batch_size",
                              "must be at least 1 or null (got " + std::to_string(*batch) + ")");
        }
        a.batch_size = *batch;
    }
    if (auto epochs = r.integer("epochs")) {
        if (*epochs < 1 || *epochs > 1000000) {
            FieldReader::fail(
                "epochs", "must be between 1 and 1000000 (got " + std::to_string(*epochs) + ")");
        }
        a.epochs = static_cast<int>(*epochs);
    }
    if (auto round = r.integer("round")) {
        if (*round < 0 || *round > std::numeric_limits<int>::max() / 2) {
            FieldReader::fail(
                "round", "must be a non-negative integer (got " + std::to_string(*round) + ")");
        }
        a.round = static_cast<int>(*round);
    }
    if (auto seed = r.integer("seed")) {
        a.seed = static_cast<std::uint64_t>(*seed);
    }

    if (auto name = r.string("optimizer")) {
        a.optimizer = lookup(kOptimizers, "optimizer", *name, "optimizer");
        a.optimizer_name = *name;
    }
    a.lr = r.number_or("lr", a.lr);
    require_non_negative("lr", a.lr);
    a.weight_decay = r.number("weight_decay");
    if (a.weight_decay) {
        require_non_negative("weight_decay", *a.weight_decay);
    }
    a.lr_decay = r.number_or("lr_decay", a.lr_decay);
    require_non_negative("lr_decay", a.lr_decay);
    a.momentum = r.number_or("momentum", a.momentum);
    require_range("momentum", a.momentum, 0.0, 1.0);
    a.dampening = r.number_or("dampening", a.dampening);
    require_range("dampening", a.dampening, 0.0, 1.0);
    a.nesterov = r.boolean_or("nesterov", a.nesterov);
    if (const json* betas = r.find("betas")) {
        if (!betas->is_array() || betas->size() != 2 || !(*betas)[0].is_number() ||
            !(*betas)[1].is_number()) {
            FieldReader::fail("betas", "must be a list of two numbers (got " + betas->dump() + ")");
        }
        a.beta1 = (*betas)[0].get<double>();
        a.beta2 = (*betas)[1].get<double>();
        require_range("betas", a.beta1, 0.0, 0.999999);
        require_range("betas", a.beta2, 0.0, 0.999999);
    }
    a.eps = r.number("eps");
    // Below float32's smallest normal it becomes 0 (or a denormal) in training: a division by 0.
    if (a.eps && *a.eps < static_cast<double>(std::numeric_limits<float>::min())) {
        FieldReader::fail("eps", "must be positive and at least 1.2e-38 (a float32)");
    }
    a.amsgrad = r.boolean_or("amsgrad", a.amsgrad);
    a.alpha = r.number_or("alpha", a.alpha);
    require_non_negative("alpha", a.alpha);
    a.centered = r.boolean_or("centered", a.centered);
    a.initial_accumulator_value =
        r.number_or("initial_accumulator_value", a.initial_accumulator_value);
    require_non_negative("initial_accumulator_value", a.initial_accumulator_value);

    if (auto name = r.string("criterion")) {
        a.criterion = lookup(kCriteria, "criterion", *name, "criterion");
        a.criterion_name = *name;
    }
    if (auto reduction = r.string("reduction")) {
        if (*reduction != "mean" && *reduction != "sum") {
            FieldReader::fail("reduction",
                              "must be 'mean' or 'sum' for training (got '" + *reduction + "')");
        }
        a.reduction_sum = *reduction == "sum";
    }
    a.smooth_l1_beta = r.number_or("beta", a.smooth_l1_beta);
    require_non_negative("beta", a.smooth_l1_beta);
    a.label_smoothing = r.number_or("label_smoothing", a.label_smoothing);
    require_range("label_smoothing", a.label_smoothing, 0.0, 1.0);
    a.mu = r.number_or("mu", a.mu);
    require_non_negative("mu", a.mu);
    a.scaffold = r.boolean_or("scaffold", a.scaffold);
    a.l1_lambda = r.number_or("l1_lambda", a.l1_lambda);
    require_non_negative("l1_lambda", a.l1_lambda);
    a.l2_lambda = r.number_or("l2_lambda", a.l2_lambda);
    require_non_negative("l2_lambda", a.l2_lambda);

    // Absent: the original's default CyclicLR; present but null or "": its LambdaLR fallback.
    if (r.present("lr_scheduler")) {
        const auto name = r.string("lr_scheduler").value_or("");
        if (name.empty()) {
            a.scheduler = SchedulerKind::LambdaLr;
            a.scheduler_name = "LambdaLR";
        } else {
            a.scheduler = lookup(kSchedulers, "lr_scheduler", name, "lr_scheduler");
            a.scheduler_name = name;
        }
    }
    a.cyclic.base_lr = r.number("base_lr");
    a.cyclic.max_lr = r.number("max_lr");
    a.cyclic.step_size_up = r.number_or("step_size_up", a.cyclic.step_size_up);
    a.cyclic.step_size_down = r.number("step_size_down");
    if (auto mode = r.string("mode")) {
        if (*mode == "triangular") {
            a.cyclic.mode = CyclicMode::Triangular;
        } else if (*mode == "triangular2") {
            a.cyclic.mode = CyclicMode::Triangular2;
        } else if (*mode == "exp_range") {
            a.cyclic.mode = CyclicMode::ExpRange;
        } else {
            FieldReader::fail("mode",
                              "must be triangular, triangular2 or exp_range (got '" + *mode + "')");
        }
    }
    a.cyclic.cycle_momentum = r.boolean_or("cycle_momentum", a.cyclic.cycle_momentum);
    a.cyclic.base_momentum = r.number_or("base_momentum", a.cyclic.base_momentum);
    a.cyclic.max_momentum = r.number_or("max_momentum", a.cyclic.max_momentum);
    require_range("base_momentum", a.cyclic.base_momentum, 0.0, 1.0);
    require_range("max_momentum", a.cyclic.max_momentum, 0.0, 1.0);
    a.step_size = r.integer("step_size");
    a.gamma = r.number("gamma");
    if (a.gamma && *a.gamma <= 0.0) {
        FieldReader::fail("gamma", "must be positive");
    }
    if (a.scheduler == SchedulerKind::CyclicLr) {
        a.cyclic.gamma = a.gamma.value_or(1.0);
    }

    a.delta = r.number_or("delta", a.delta);
    if (r.present("patience") && r.find("patience") == nullptr) {
        a.patience.reset();  // null: no local early stopping
    } else if (auto patience = r.integer("patience")) {
        if (*patience < 0) {
            FieldReader::fail("patience", "must be a non-negative integer or null");
        }
        a.patience = *patience;
    }

    if (a.nesterov && (a.dampening != 0.0 || a.initial_momentum() <= 0.0)) {
        FieldReader::fail("nesterov", "needs a momentum above 0 and dampening 0");
    }
    // A cycled momentum is Adam's first beta, which must stay below 1: before, libtorch refused
    // it when the optimizer was built, as "training failed in epoch -1: Invalid beta parameter".
    if (a.cycles_momentum() && (a.optimizer == OptimizerKind::Adam || a.optimizer == OptimizerKind::AdamW)) {
        for (const auto& [field, value] :
             {std::pair{"base_momentum", a.cyclic.base_momentum}, std::pair{"max_momentum", a.cyclic.max_momentum}}) {
            if (value >= 1.0) {
                FieldReader::fail(field, "must be below 1 with " + a.optimizer_name +
                                             " (it cycles the first beta; got " + json(value).dump() + ")");
            }
        }
    }
    return a;
}

void require_training_fields(const TrainArgs& a) {
    switch (a.scheduler) {
        case SchedulerKind::CyclicLr:
            if (!a.cyclic.base_lr || !a.cyclic.max_lr) {
                FieldReader::fail(a.cyclic.base_lr ? "max_lr" : "base_lr",
                                  "is required by lr_scheduler CyclicLR (it has no default)");
            }
            require_non_negative("base_lr", *a.cyclic.base_lr);
            require_non_negative("max_lr", *a.cyclic.max_lr);
            if (a.cyclic.step_size_up <= 0.0) {
                FieldReader::fail("step_size_up", "must be positive");
            }
            if (a.cyclic.step_size_down && *a.cyclic.step_size_down <= 0.0) {
                FieldReader::fail("step_size_down", "must be positive or null");
            }
            break;
        case SchedulerKind::StepLr:
            if (!a.step_size || *a.step_size < 1) {
                FieldReader::fail("step_size",
                                  "is required by lr_scheduler StepLR (an integer >= 1)");
            }
            break;
        case SchedulerKind::ExponentialLr:
            if (!a.gamma) {
                FieldReader::fail("gamma", "is required by lr_scheduler ExponentialLR");
            }
            break;
        case SchedulerKind::LambdaLr:
            break;
    }
}

std::string supported_optimizers() {
    return names(kOptimizers);
}
std::string supported_criteria() {
    return names(kCriteria);
}
std::string supported_schedulers() {
    return names(kSchedulers);
}

}  // namespace synergos::plugins::torch
