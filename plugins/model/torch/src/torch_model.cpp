// SPDX-License-Identifier: Apache-2.0
#include "torch_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <new>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/Reduction.h>
#include <c10/util/Exception.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/optimizer.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "labels.hpp"
#include "network.hpp"
#include "scaffold_client.hpp"
#include "schedule.hpp"
#include "spec_error.hpp"
#include "train_args.hpp"

namespace synergos::plugins::torch {

namespace {

namespace optim = ::torch::optim;
using ::torch::Tensor;

/// Seed streams derived from (seed, global epoch): one for the batch order, one for dropout.
constexpr std::uint64_t kShuffleStream = 1;
constexpr std::uint64_t kDropoutStream = 2;

/// Features as a [rows, sample_shape...] tensor viewing the dataset's buffer (read only).
Tensor features_tensor(const sdk::Dataset& data) {
    if (data.rows <= 0) {
        throw SpecError("dataset has no rows");
    }
    if (data.sample_shape.empty()) {
        throw SpecError("dataset sample_shape is empty");
    }
    std::vector<std::int64_t> shape{data.rows};
    std::int64_t per_row = 1;
    for (std::int64_t d : data.sample_shape) {
        if (d <= 0) {
            throw SpecError("dataset sample_shape has a dimension <= 0");
        }
        per_row *= d;
        shape.push_back(d);
    }
    if (data.features.size() != static_cast<std::size_t>(data.rows * per_row)) {
        throw SpecError("dataset features hold " + std::to_string(data.features.size()) +
                        " values, expected rows x sample size = " + std::to_string(data.rows) +
                        " x " + std::to_string(per_row));
    }
    // from_blob never copies; the buffer is only read (batches are gathered copies).
    Tensor x = ::torch::from_blob(const_cast<float*>(data.features.data()), shape, ::torch::kFloat);
    if (!x.isfinite().all().item<bool>()) {
        throw SpecError("dataset features contain a NaN or infinite value");
    }
    return x;
}

Tensor targets_tensor(Targets& t) {
    if (t.kind == Targets::Kind::ClassIndex) {
        return ::torch::from_blob(t.classes.data(), {t.rows}, ::torch::kLong);
    }
    return ::torch::from_blob(t.values.data(), {t.rows, t.width}, ::torch::kFloat);
}

/// "nan at index 3" for the first NaN or infinite value of an F32/F64 tensor; "" when there is
/// none or the tensor is not floating.
std::string first_non_finite(const sdk::Tensor& t) {
    const bool f32 = t.dtype == sdk::DType::F32;
    if (!f32 && t.dtype != sdk::DType::F64) {
        return {};
    }
    const std::size_t width = f32 ? sizeof(float) : sizeof(double);
    const std::size_t n = t.data.size() / width;
    for (std::size_t i = 0; i < n; ++i) {
        double v = 0.0;
        if (f32) {
            float f = 0.0F;
            std::memcpy(&f, t.data.data() + i * width, width);
            v = f;
        } else {
            std::memcpy(&v, t.data.data() + i * width, width);
        }
        if (!std::isfinite(v)) {
            return std::string(std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf")) + " at index " +
                   std::to_string(i);
        }
    }
    return {};
}

/// The name of the first floating state entry holding a NaN or infinity, or "" when none.
std::string non_finite_entry(const Network& network) {
    for (const auto& [name, tensor] : network.state_entries()) {
        if (tensor.is_floating_point() && !tensor.isfinite().all().item<bool>()) {
            return name;
        }
    }
    return {};
}

/// Checks that one sample fits max_values at every layer before the dry run allocates.
std::int64_t output_width(Network& network, const sdk::Dataset& data, std::int64_t max_values) {
    check_size(network.layers(), max_values, &data.sample_shape);
    const auto out = network.dry_run(data.sample_shape);
    require_rows_by_columns(out);
    return out[1];
}

/// True when the trainer computes log_softmax of the output itself: NLLLoss after a softmax
/// output is true cross-entropy here (the original fed probabilities to NLLLoss). Before, only a
/// softmax activation of the last layer counted: a Softmax layer, or a Dropout after the softmax
/// layer, trained on -mean(p).
bool nll_after_softmax(const Network& network, const TrainArgs& args) {
    return args.criterion == CriterionKind::NllLoss && network.output_op().kind == Activation::Softmax;
}

/// The plain criterion. `out` is log-probabilities when nll_after_softmax.
Tensor criterion_loss(const TrainArgs& args, const Tensor& out, const Tensor& y, bool sum) {
    const std::int64_t reduction = sum ? at::Reduction::Sum : at::Reduction::Mean;
    switch (args.criterion) {
        case CriterionKind::BceLoss:
            return at::binary_cross_entropy(out, y, {}, reduction);
        case CriterionKind::BceWithLogitsLoss:
            return at::binary_cross_entropy_with_logits(out, y, {}, {}, reduction);
        case CriterionKind::NllLoss:
            return at::nll_loss(out, y, {}, reduction, -100);
        case CriterionKind::CrossEntropyLoss:
            return at::cross_entropy_loss(out, y, {}, reduction, -100, args.label_smoothing);
        case CriterionKind::MseLoss:
            return at::mse_loss(out, y, reduction);
        case CriterionKind::L1Loss:
            return at::l1_loss(out, y, reduction);
        case CriterionKind::SmoothL1Loss:
            return at::smooth_l1_loss(out, y, reduction, args.smooth_l1_beta);
    }
    throw SpecError("unsupported criterion " + args.criterion_name);
}

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainArgs& a, std::vector<Tensor> params) {
    const double lr = schedule_at(a, 0).lr;
    const double wd = a.effective_weight_decay();
    const double m0 = a.initial_momentum();
    switch (a.optimizer) {
        case OptimizerKind::Sgd:
            return std::make_unique<optim::SGD>(std::move(params), optim::SGDOptions(lr)
                                                                       .momentum(m0)
                                                                       .dampening(a.dampening)
                                                                       .weight_decay(wd)
                                                                       .nesterov(a.nesterov));
        case OptimizerKind::Adam:
            return std::make_unique<optim::Adam>(std::move(params),
                                                 optim::AdamOptions(lr)
                                                     .betas(std::make_tuple(m0, a.beta2))
                                                     .eps(a.effective_eps())
                                                     .weight_decay(wd)
                                                     .amsgrad(a.amsgrad));
        case OptimizerKind::AdamW:
            return std::make_unique<optim::AdamW>(std::move(params),
                                                  optim::AdamWOptions(lr)
                                                      .betas(std::make_tuple(m0, a.beta2))
                                                      .eps(a.effective_eps())
                                                      .weight_decay(wd)
                                                      .amsgrad(a.amsgrad));
        case OptimizerKind::RmsProp:
            return std::make_unique<optim::RMSprop>(std::move(params), optim::RMSpropOptions(lr)
                                                                           .alpha(a.alpha)
                                                                           .eps(a.effective_eps())
                                                                           .weight_decay(wd)
                                                                           .momentum(m0)
                                                                           .centered(a.centered));
        case OptimizerKind::Adagrad:
            // The original passes every truthy Arguments field the constructor knows, so
            // Adagrad receives Arguments.lr_decay (default 0.1).
            return std::make_unique<optim::Adagrad>(
                std::move(params), optim::AdagradOptions(lr)
                                       .lr_decay(a.lr_decay)
                                       .weight_decay(wd)
                                       .initial_accumulator_value(a.initial_accumulator_value)
                                       .eps(a.effective_eps()));
    }
    throw SpecError("unsupported optimizer " + a.optimizer_name);
}

/// Puts one epoch's learning rate (and cycled momentum) into every parameter group.
void apply_setting(optim::Optimizer& optimizer, OptimizerKind kind, const EpochSetting& s) {
    for (auto& group : optimizer.param_groups()) {
        auto& options = group.options();
        options.set_lr(s.lr);
        if (!s.momentum) {
            continue;
        }
        switch (kind) {
            case OptimizerKind::Sgd:
                static_cast<optim::SGDOptions&>(options).momentum(*s.momentum);
                break;
            case OptimizerKind::RmsProp:
                static_cast<optim::RMSpropOptions&>(options).momentum(*s.momentum);
                break;
            case OptimizerKind::Adam: {
                auto& adam = static_cast<optim::AdamOptions&>(options);
                adam.betas(std::make_tuple(*s.momentum, std::get<1>(adam.betas())));
                break;
            }
            case OptimizerKind::AdamW: {
                auto& adamw = static_cast<optim::AdamWOptions&>(options);
                adamw.betas(std::make_tuple(*s.momentum, std::get<1>(adamw.betas())));
                break;
            }
            case OptimizerKind::Adagrad:
                break;
        }
    }
}

/// The proximal anchors w_global, one per trainable parameter, viewing the caller's reference
/// state (borrowed for the call, read only).
std::vector<Tensor> proximal_anchors(const std::vector<std::pair<std::string, Tensor>>& params,
                                     const sdk::TensorMap& reference) {
    std::vector<Tensor> anchors;
    anchors.reserve(params.size());
    for (const auto& [name, p] : params) {
        const sdk::Tensor* t = reference.find(name);
        if (t == nullptr) {
            throw SpecError("reference state lacks tensor '" + name + "'");
        }
        if (t->dtype != sdk::DType::F32 || t->shape != p.sizes().vec() ||
            t->data.size() != static_cast<std::size_t>(p.numel()) * sizeof(float)) {
            throw SpecError("reference tensor '" + name + "' is " + sdk::to_string(t->dtype) + " " +
                            shape_text(t->shape) + ", the model has F32 " + shape_text(p.sizes()));
        }
        if (const std::string bad = first_non_finite(*t); !bad.empty()) {
            throw SpecError("reference tensor '" + name + "' holds a non-finite value (" + bad +
                            ")");
        }
        anchors.push_back(::torch::from_blob(const_cast<unsigned char*>(t->data.data()), p.sizes(),
                                             ::torch::kFloat));
    }
    return anchors;
}

/// l1 * sum|w| + l2/2 * sum w^2 + mu/2 * sum (w - w_global)^2 over trainable parameters (the
/// last only with anchors), or an undefined tensor when there is no term.
Tensor regularisers(const TrainArgs& a, const std::vector<std::pair<std::string, Tensor>>& params,
                    const std::vector<Tensor>& anchors) {
    Tensor total;
    const auto add = [&total](const Tensor& term) {
        total = total.defined() ? total + term : term;
    };
    for (std::size_t i = 0; i < params.size(); ++i) {
        const Tensor& w = params[i].second;
        if (a.l1_lambda > 0.0) {
            add(w.abs().sum() * a.l1_lambda);
        }
        if (a.l2_lambda > 0.0) {
            add(w.pow(2).sum() * (a.l2_lambda / 2.0));
        }
        if (!anchors.empty()) {
            add((w - anchors[i]).pow(2).sum() * (a.mu / 2.0));
        }
    }
    return total;
}

namespace scaffold_client = ::synergos::plugins::scaffold::client;

/// SCAFFOLD's client side for one call (Karimireddy et al. 2020, Algorithm 1, option II): the
/// reference split into x, c and c_i, the per-parameter gradient correction c - c_i, and the
/// step count and learning-rate sum option II needs.
struct ScaffoldRound {
    scaffold_client::Reference reference;
    std::vector<Tensor> corrections;  ///< per trainable parameter; undefined: c = c_i = 0
    std::int64_t steps = 0;
    double lr_sum = 0.0;
};

/// A control tensor (c or c_i) of parameter `name` as an F32 libtorch tensor (a copy), or an
/// undefined tensor when absent (zero). SpecError when it does not fit the parameter.
Tensor control_tensor(const sdk::Tensor& like, const sdk::TensorMap& controls, const char* what) {
    auto found = scaffold_client::detail::control_for(like, controls, what);
    if (!found) {
        throw SpecError("scaffold: " + found.error().message);
    }
    const sdk::Tensor* t = *found;
    if (t == nullptr) {
        return {};
    }
    // A NaN control would spread into every corrected gradient and into delta_c.
    if (const std::string bad = first_non_finite(*t); !bad.empty()) {
        throw SpecError("scaffold: " + std::string(what) + " tensor '" + t->name +
                        "' holds a non-finite value (" + bad + ")");
    }
    const auto dtype = t->dtype == sdk::DType::F64 ? ::torch::kDouble : ::torch::kFloat;
    return ::torch::from_blob(const_cast<unsigned char*>(t->data.data()), like.shape, dtype)
        .to(::torch::kFloat, /*non_blocking=*/false, /*copy=*/true);
}

ScaffoldRound scaffold_round(const std::vector<std::pair<std::string, Tensor>>& params,
                             const sdk::TensorMap& reference) {
    ScaffoldRound round;
    round.reference = scaffold_client::split_reference(reference);
    for (const sdk::Tensor& x : round.reference.x.tensors) {
        if (const std::string bad = first_non_finite(x); !bad.empty()) {
            throw SpecError("scaffold: reference tensor '" + x.name +
                            "' holds a non-finite value (" + bad + ")");
        }
    }
    round.corrections.reserve(params.size());
    for (const auto& [name, p] : params) {
        sdk::Tensor like;
        like.name = name;
        like.dtype = sdk::DType::F32;
        like.shape = p.sizes().vec();
        const Tensor c = control_tensor(like, round.reference.c, "server control");
        const Tensor c_i = control_tensor(like, round.reference.c_i, "client control");
        if (c.defined() && c_i.defined()) {
            round.corrections.push_back(c - c_i);
        } else if (c.defined()) {
            round.corrections.push_back(c);
        } else if (c_i.defined()) {
            round.corrections.push_back(-c_i);
        } else {
            round.corrections.emplace_back();
        }
    }
    return round;
}

/// g <- g + c - c_i for every trainable parameter (a parameter without a gradient has g = 0).
void correct_gradients(const std::vector<std::pair<std::string, Tensor>>& params,
                       const std::vector<Tensor>& corrections) {
    ::torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < params.size(); ++i) {
        if (!corrections[i].defined()) {
            continue;
        }
        Tensor p = params[i].second;
        if (p.grad().defined()) {
            p.mutable_grad().add_(corrections[i]);
        } else {
            p.mutable_grad() = corrections[i].clone();
        }
    }
}

sdk::DType sdk_dtype(const Tensor& t) {
    switch (t.scalar_type()) {
        case ::torch::kFloat:
            return sdk::DType::F32;
        case ::torch::kDouble:
            return sdk::DType::F64;
        case ::torch::kLong:
            return sdk::DType::I64;
        case ::torch::kInt:
            return sdk::DType::I32;
        case ::torch::kByte:
            return sdk::DType::U8;
        default:
            throw std::runtime_error("unsupported tensor dtype in the model state");
    }
}

sdk::TensorMap export_state(const Network& network) {
    sdk::TensorMap out;
    const auto entries = network.state_entries();
    out.tensors.reserve(entries.size());
    for (const auto& [name, tensor] : entries) {
        const Tensor c = tensor.detach().contiguous();
        sdk::Tensor t;
        t.name = name;
        t.dtype = sdk_dtype(c);
        t.shape = c.sizes().vec();
        t.data.resize(static_cast<std::size_t>(c.numel()) * c.element_size());
        if (!t.data.empty()) {
            std::memcpy(t.data.data(), c.data_ptr(), t.data.size());
        }
        out.tensors.push_back(std::move(t));
    }
    return out;
}

std::string first_line(const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    return what.substr(0, what.find('\n'));
}

}  // namespace

TorchModel::TorchModel(sdk::Logger& logger, std::unique_ptr<Network> network,
                       std::int64_t max_values)
    : logger_(logger), network_(std::move(network)), max_values_(max_values) {}

TorchModel::~TorchModel() = default;

sdk::Result<sdk::TensorMap> TorchModel::state() noexcept {
    try {
        return export_state(*network_);
    } catch (const std::bad_alloc&) {
        return sdk::Error{sdk::ErrorCode::ResourceExhausted,
                          "torch: out of memory exporting state"};
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          std::string("torch: state failed: ") + e.what()};
    }
}

sdk::Status TorchModel::load_state(const sdk::TensorMap& state) noexcept {
    try {
        const auto entries = network_->state_entries();
        std::unordered_map<std::string, const sdk::Tensor*> given;
        for (const sdk::Tensor& t : state.tensors) {
            if (!given.emplace(t.name, &t).second) {
                return {sdk::ErrorCode::InvalidArgument,
                        "torch: state has tensor '" + t.name + "' twice"};
            }
        }
        // Check everything before copying anything: a bad state changes nothing.
        std::vector<const sdk::Tensor*> sources;
        sources.reserve(entries.size());
        for (const auto& [name, tensor] : entries) {
            auto it = given.find(name);
            if (it == given.end()) {
                return {sdk::ErrorCode::InvalidArgument,
                        "torch: state lacks tensor '" + name + "'"};
            }
            const sdk::Tensor& t = *it->second;
            const sdk::DType expected = sdk_dtype(tensor);
            if (t.dtype != expected) {
                return {sdk::ErrorCode::InvalidArgument,
                        "torch: state tensor '" + name + "' is " + sdk::to_string(t.dtype) +
                            ", the model has " + sdk::to_string(expected)};
            }
            if (t.shape != tensor.sizes().vec()) {
                return {sdk::ErrorCode::InvalidArgument,
                        "torch: state tensor '" + name + "' has shape " + shape_text(t.shape) +
                            ", the model has " + shape_text(tensor.sizes())};
            }
            if (t.data.size() != static_cast<std::size_t>(tensor.numel()) * tensor.element_size()) {
                return {sdk::ErrorCode::InvalidArgument,
                        "torch: state tensor '" + name + "' holds " +
                            std::to_string(t.data.size()) + " bytes, its shape needs " +
                            std::to_string(tensor.numel() * tensor.element_size())};
            }
            // NaN/inf weights would train into NaN and poison the aggregate of every worker.
            if (const std::string bad = first_non_finite(t); !bad.empty()) {
                return {
                    sdk::ErrorCode::InvalidArgument,
                    "torch: state tensor '" + name + "' holds a non-finite value (" + bad + ")"};
            }
            sources.push_back(&t);
        }
        if (given.size() != entries.size()) {
            for (const sdk::Tensor& t : state.tensors) {
                const bool known = std::any_of(entries.begin(), entries.end(),
                                               [&](const auto& e) { return e.first == t.name; });
                if (!known) {
                    return {
                        sdk::ErrorCode::InvalidArgument,
                        "torch: state has tensor '" + t.name + "', which the model does not have"};
                }
            }
        }
        ::torch::NoGradGuard no_grad;
        for (std::size_t i = 0; i < entries.size(); ++i) {
            const sdk::Tensor& t = *sources[i];
            Tensor dst = entries[i].second;
            if (t.data.empty()) {
                continue;
            }
            dst.copy_(::torch::from_blob(const_cast<unsigned char*>(t.data.data()), dst.sizes(),
                                         dst.scalar_type()));
        }
        return sdk::Status::ok();
    } catch (const c10::Error& e) {
        return {sdk::ErrorCode::Internal, "torch: load_state failed: " + first_line(e)};
    } catch (const std::exception& e) {
        return {sdk::ErrorCode::Internal, std::string("torch: load_state failed: ") + e.what()};
    }
}

sdk::Result<sdk::TrainReport> TorchModel::train(const sdk::Dataset& data,
                                                std::string_view args_json,
                                                const sdk::TensorMap* reference) noexcept {
    int epoch = -1;
    // The state before the loop, restored when training fails half-way (a refused call
    // changes nothing). One model-sized copy per call.
    std::vector<std::pair<Tensor, Tensor>> backup;
    const auto restore = [&]() noexcept {
        try {
            ::torch::NoGradGuard no_grad;
            for (auto& [live, saved] : backup) {
                live.copy_(saved);
            }
            network_->set_training(false);
        } catch (...) {
            // nothing better to do: the error being reported already says training failed
        }
    };
    try {
        const TrainArgs args = parse_train_args(args_json);
        require_training_fields(args);
        const Tensor x = features_tensor(data);
        const std::int64_t width = output_width(*network_, data, max_values_);
        Targets targets = make_targets(data, is_classification(args, data), args, width);
        const Tensor y = targets_tensor(targets);
        const std::int64_t rows = data.rows;
        const std::int64_t batch = std::min<std::int64_t>(args.batch_size.value_or(rows), rows);
        // max_parameters bounds one sample's values; a batch holds its rows times that (the
        // default full batch of 60000 images took ~96 GB in one conv output: an OOM kill).
        const std::int64_t peak = peak_values_per_sample(network_->layers(), data.sample_shape);
        if (batch > max_values_ / peak) {
            throw SpecError("a batch of " + std::to_string(batch) + " rows holds " + std::to_string(peak) +
                            " values per row in one layer's output, more than the limit of " +
                            std::to_string(max_values_) +
                            " (torch plugin option max_parameters): give the run a batch_size of at most " +
                            std::to_string(std::max<std::int64_t>(1, max_values_ / peak)));
        }
        const bool batch_norm = network_->has_batch_norm();
        if (batch_norm && batch < 2) {
            throw SpecError("BatchNorm layers need batches of at least 2 rows (batch_size " +
                            std::to_string(batch) + ", " + std::to_string(rows) + " rows)");
        }

        const auto params = network_->named_parameters();
        if (params.empty()) {
            throw SpecError("the network has no trainable parameters");
        }
        std::vector<Tensor> param_tensors;
        param_tensors.reserve(params.size());
        for (const auto& p : params) {
            param_tensors.push_back(p.second);
        }
        // The proximal term needs the round's global state; without one there is none.
        const std::vector<Tensor> anchors = args.mu > 0.0 && reference != nullptr
                                                ? proximal_anchors(params, *reference)
                                                : std::vector<Tensor>{};
        std::optional<ScaffoldRound> scaffold;
        if (args.scaffold) {
            if (reference == nullptr) {
                throw SpecError("scaffold: training needs the round's global weights");
            }
            scaffold = scaffold_round(params, *reference);
        }
        // A fresh optimizer and scheduler per call: one call is one round's local epochs.
        auto optimizer = make_optimizer(args, param_tensors);
        EarlyStopping stopper(args.patience, args.delta);
        const bool log_softmax_here = nll_after_softmax(*network_, args);

        for (const auto& [name, tensor] : network_->state_entries()) {
            backup.emplace_back(tensor, tensor.detach().clone());
        }
        sdk::TrainReport report;
        report.samples = rows;
        network_->set_training(true);
        for (epoch = 0; epoch < args.epochs; ++epoch) {
            const EpochSetting setting = schedule_at(args, epoch);
            apply_setting(*optimizer, args.optimizer, setting);
            // Seeded from (seed, global epoch): K rounds of E epochs see the same batch order
            // and dropout masks as one run of K*E epochs.
            const auto global_epoch =
                static_cast<std::uint64_t>(args.round) * static_cast<std::uint64_t>(args.epochs) +
                static_cast<std::uint64_t>(epoch);
            const Tensor order =
                ::torch::randperm(rows,
                                  at::make_generator<at::CPUGeneratorImpl>(
                                      mix_seed(args.seed, global_epoch, kShuffleStream)),
                                  ::torch::kLong);
            network_->seed_dropout(mix_seed(args.seed, global_epoch, kDropoutStream));

            double loss_sum = 0.0;
            int batches = 0;
            for (std::int64_t begin = 0; begin < rows; begin += batch) {
                const std::int64_t n = std::min(batch, rows - begin);
                if (batch_norm && n < 2) {
                    continue;  // a trailing single row cannot give BatchNorm batch statistics
                }
                const Tensor index = order.narrow(0, begin, n);
                const Tensor xb = x.index_select(0, index);
                const Tensor yb = y.index_select(0, index);
                optimizer->zero_grad();
                Tensor out = network_->forward(xb, log_softmax_here);
                if (log_softmax_here) {
                    out = ::torch::log_softmax(out, 1);
                }
                Tensor loss = criterion_loss(args, out, yb, args.reduction_sum);
                if (Tensor reg = regularisers(args, params, anchors); reg.defined()) {
                    loss = loss + reg;
                }
                const double batch_loss = loss.item<double>();
                // A non-finite loss would step every weight to NaN: stop (the catch restores).
                if (!std::isfinite(batch_loss)) {
                    throw SpecError("training diverged in epoch " + std::to_string(epoch) +
                                    " (batch " + std::to_string(batches) + "): the loss is " +
                                    (std::isnan(batch_loss) ? "nan" : "infinite") +
                                    "; lower lr, or check the weights and the data");
                }
                loss.backward();
                if (scaffold) {
                    correct_gradients(params, scaffold->corrections);
                    ++scaffold->steps;
                    scaffold->lr_sum += setting.lr;
                }
                optimizer->step();
                loss_sum += batch_loss;
                ++batches;
            }
            // A finite loss can still come with a step to inf (e.g. a huge gradient).
            if (const std::string bad = non_finite_entry(*network_); !bad.empty()) {
                throw SpecError("training diverged in epoch " + std::to_string(epoch) +
                                ": tensor '" + bad + "' became NaN or infinite; lower lr");
            }
            const double epoch_loss = loss_sum / std::max(batches, 1);
            report.epoch_losses.push_back(epoch_loss);
            report.epochs_run = epoch + 1;
            if (stopper.should_stop(epoch_loss)) {
                break;
            }
        }
        network_->set_training(false);
        report.weights = export_state(*network_);
        if (scaffold) {
            // Option II: c_i+ = c_i - c + (x - y) / (K lr), with the mean learning rate of the
            // K steps (exact for plain SGD at a constant rate).
            const double mean_lr =
                scaffold->steps > 0 ? scaffold->lr_sum / static_cast<double>(scaffold->steps) : 0.0;
            auto update = scaffold_client::option_ii_update(
                scaffold->reference.x, report.weights, scaffold->reference.c,
                scaffold->reference.c_i, scaffold->steps, mean_lr);
            if (!update) {
                throw SpecError(update.error().message);
            }
            scaffold_client::append_delta_c(report.weights, update->delta_c);
        }
        // Nothing non-finite leaves the worker (delta_c divides by K * lr and can overflow).
        for (const sdk::Tensor& t : report.weights.tensors) {
            if (const std::string bad = first_non_finite(t); !bad.empty()) {
                throw SpecError("training produced a non-finite value in tensor '" + t.name +
                                "' (" + bad + ")");
            }
        }
        if (logger_.enabled(sdk::Level::Debug)) {
            logger_.debug("torch: local training done",
                          "{\"round\":" + std::to_string(args.round) +
                              ",\"epochs_run\":" + std::to_string(report.epochs_run) +
                              ",\"samples\":" + std::to_string(rows) + "}");
        }
        return report;
    } catch (const SpecError& e) {
        restore();
        return sdk::Error{sdk::ErrorCode::InvalidArgument, std::string("torch: ") + e.what()};
    } catch (const c10::Error& e) {
        restore();
        return sdk::Error{
            sdk::ErrorCode::InvalidArgument,
            "torch: training failed in epoch " + std::to_string(epoch) + ": " + first_line(e)};
    } catch (const std::bad_alloc&) {
        restore();
        return sdk::Error{sdk::ErrorCode::ResourceExhausted, "torch: out of memory while training"};
    } catch (const std::exception& e) {
        restore();
        return sdk::Error{sdk::ErrorCode::Internal,
                          std::string("torch: training failed: ") + e.what()};
    }
}

sdk::Result<sdk::Inference> TorchModel::infer(const sdk::Dataset& data,
                                              std::string_view args_json) noexcept {
    try {
        const TrainArgs args = parse_train_args(args_json);
        const Tensor x = features_tensor(data);
        const std::int64_t width = output_width(*network_, data, max_values_);
        const bool log_softmax_here = nll_after_softmax(*network_, args);
        const std::int64_t rows = data.rows;
        std::int64_t batch = std::min<std::int64_t>(args.batch_size.value_or(rows), rows);
        // Inference needs no whole batch at once: it goes in pieces within max_parameters.
        batch = std::min(batch, std::max<std::int64_t>(
                                    1, max_values_ / peak_values_per_sample(network_->layers(), data.sample_shape)));
        // BatchNorm without running statistics normalises with the batch's own even in eval
        // mode, and a single row has none: batches of at least 2, a 1-row tail joins the batch
        // before. Other networks are row-wise in eval mode and keep their batches exactly.
        const bool batch_statistics = network_->has_untracked_batch_norm();
        if (batch_statistics) {
            batch = std::min<std::int64_t>(std::max<std::int64_t>(batch, 2), rows);
        }

        ::torch::NoGradGuard no_grad;
        network_->set_training(false);
        std::vector<Tensor> parts;
        for (std::int64_t begin = 0, n = 0; begin < rows; begin += n) {
            n = std::min(batch, rows - begin);
            if (batch_statistics && rows - begin - n == 1) {
                ++n;
            }
            try {
                parts.push_back(network_->forward(x.narrow(0, begin, n), log_softmax_here));
            } catch (const c10::Error& e) {
                if (batch_statistics && n < 2) {
                    throw SpecError(
                        "inference needs at least 2 rows with BatchNorm layers that have "
                        "track_running_stats false (the split has 1): " +
                        first_line(e));
                }
                throw;
            }
        }
        const Tensor raw = parts.size() == 1 ? parts.front() : ::torch::cat(parts, 0);
        // Scores are the probabilities the criterion reads the output as. BCEWithLogitsLoss and
        // CrossEntropyLoss take logits (they apply the sigmoid or softmax themselves): read raw,
        // the binary cut at 0.5 and the saved scores took a logit for a probability.
        // An output already squashed by its own sigmoid or softmax is read as it is: squashed
        // twice, every sigmoid output scored above 0.5 (all rows class 1).
        Tensor probabilities = raw;
        const Activation last = network_->output_op().kind;
        if (log_softmax_here) {
            probabilities = ::torch::softmax(raw, 1);
        } else if (is_classification(args, data) && args.criterion == CriterionKind::BceWithLogitsLoss &&
                   last != Activation::Sigmoid) {
            probabilities = ::torch::sigmoid(raw);
        } else if (is_classification(args, data) && args.criterion == CriterionKind::CrossEntropyLoss &&
                   raw.size(1) > 1 && last != Activation::Softmax) {
            probabilities = ::torch::softmax(raw, 1);
        }
        const Tensor scores = probabilities.contiguous();

        sdk::Inference result;
        result.rows = rows;
        result.width = width;
        result.scores.resize(static_cast<std::size_t>(rows * width));
        std::memcpy(result.scores.data(), scores.data_ptr<float>(),
                    result.scores.size() * sizeof(float));
        if (!data.labels.empty()) {
            Targets targets = make_targets(data, is_classification(args, data), args, width);
            const Tensor y = targets_tensor(targets);
            const Tensor out = log_softmax_here ? ::torch::log_softmax(raw, 1) : raw;
            result.loss = criterion_loss(args, out, y, /*sum=*/false).item<double>();
        }
        return result;
    } catch (const SpecError& e) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, std::string("torch: ") + e.what()};
    } catch (const c10::Error& e) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          "torch: inference failed: " + first_line(e)};
    } catch (const std::bad_alloc&) {
        return sdk::Error{sdk::ErrorCode::ResourceExhausted,
                          "torch: out of memory during inference"};
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          std::string("torch: inference failed: ") + e.what()};
    }
}

std::int64_t TorchModel::parameter_count() const noexcept {
    try {
        return network_->parameter_count();
    } catch (...) {
        return 0;
    }
}

sdk::Result<std::unique_ptr<sdk::Model>> build_model(sdk::Logger& logger, Architecture layers,
                                                     std::uint64_t seed,
                                                     std::int64_t max_values) noexcept {
    try {
        check_size(layers, max_values);  // from the spec alone, before allocating anything
        auto network = std::make_unique<Network>(std::move(layers), seed);
        return std::unique_ptr<sdk::Model>(new TorchModel(logger, std::move(network), max_values));
    } catch (const SpecError& e) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, std::string("torch: ") + e.what()};
    } catch (const c10::Error& e) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          "torch: building the network failed: " + first_line(e)};
    } catch (const std::bad_alloc&) {
        return sdk::Error{sdk::ErrorCode::ResourceExhausted,
                          "torch: out of memory building the network"};
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          std::string("torch: build failed: ") + e.what()};
    }
}

int intra_op_threads() noexcept {
    try {
        return at::get_num_threads();
    } catch (...) {
        return 0;
    }
}

void set_intra_op_threads(int threads) noexcept {
    try {
        if (threads > 0) {
            at::set_num_threads(threads);
        }
    } catch (...) {
        // keeping libtorch's default is harmless
    }
}

}  // namespace synergos::plugins::torch
