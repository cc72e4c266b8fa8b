// SPDX-License-Identifier: Apache-2.0
#pragma once

// A small, real linear model behind the SDK's ModelBackend interface, for the worker service's
// routing and validation tests: one Linear layer ("nnl_0_linear.weight" {out, in} and
// ".bias" {out}), weights drawn from the run's seed, "training" adds `step` per epoch, and
// inference computes softmax/sigmoid/identity outputs from the actual features it is given.

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/model.hpp>

namespace synergos::testing {

/// Lets a test hold a training call inside the model (to observe concurrency), with timeouts.
struct TrainGate {
    std::mutex mutex;
    std::condition_variable cv;
    bool enabled = false;
    int inside = 0;
    bool released = false;

    /// Called by the model: announces itself and waits (at most 10 s) for `release`.
    void pass() {
        std::unique_lock<std::mutex> lock(mutex);
        if (!enabled) {
            return;
        }
        ++inside;
        cv.notify_all();
        cv.wait_for(lock, std::chrono::seconds(10), [&] { return released; });
    }
    bool wait_inside(int n) {
        std::unique_lock<std::mutex> lock(mutex);
        return cv.wait_for(lock, std::chrono::seconds(10), [&] { return inside >= n; });
    }
    void release() {
        std::lock_guard<std::mutex> lock(mutex);
        released = true;
        cv.notify_all();
    }
};

class FakeModel final : public sdk::Model {
public:
    FakeModel(std::int64_t in, std::int64_t out, std::string activation, double seed,
              TrainGate* gate)
        : in_(in), out_(out), activation_(std::move(activation)), gate_(gate) {
        weight_.assign(static_cast<std::size_t>(in * out), 0.0f);
        bias_.assign(static_cast<std::size_t>(out), 0.0f);
        for (std::size_t i = 0; i < weight_.size(); ++i) {
            weight_[i] = static_cast<float>(std::sin(seed + static_cast<double>(i)) * 0.1);
        }
    }

    sdk::Result<sdk::TensorMap> state() noexcept override {
        sdk::TensorMap m;
        m.tensors.push_back(tensor("nnl_0_linear.weight", {out_, in_}, weight_));
        m.tensors.push_back(tensor("nnl_0_linear.bias", {out_}, bias_));
        return m;
    }

    sdk::Status load_state(const sdk::TensorMap& state) noexcept override {
        if (state.tensors.size() != 2) {
            return {sdk::ErrorCode::InvalidArgument,
                    "expected 2 tensors, got " + std::to_string(state.tensors.size())};
        }
        const sdk::Tensor* w = state.find("nnl_0_linear.weight");
        const sdk::Tensor* b = state.find("nnl_0_linear.bias");
        if (w == nullptr || b == nullptr) {
            return {sdk::ErrorCode::InvalidArgument, "tensor 'nnl_0_linear.weight' is missing"};
        }
        if (w->dtype != sdk::DType::F32 || w->shape != std::vector<std::int64_t>{out_, in_}) {
            return {sdk::ErrorCode::InvalidArgument,
                    "tensor 'nnl_0_linear.weight' has the wrong shape"};
        }
        if (b->dtype != sdk::DType::F32 || b->shape != std::vector<std::int64_t>{out_}) {
            return {sdk::ErrorCode::InvalidArgument,
                    "tensor 'nnl_0_linear.bias' has the wrong shape"};
        }
        std::memcpy(weight_.data(), w->data.data(), w->data.size());
        std::memcpy(bias_.data(), b->data.data(), b->data.size());
        return {};
    }

    sdk::Result<sdk::TrainReport> train(const sdk::Dataset& data, std::string_view args_json,
                                        const sdk::TensorMap* reference) noexcept override {
        if (gate_ != nullptr) {
            gate_->pass();
        }
        if (reference == nullptr) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, "no reference weights"};
        }
        if (width(data) != in_) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, "input width mismatch"};
        }
        const auto args = nlohmann::json::parse(args_json, nullptr, false);
        const int epochs = args.is_object() ? args.value("epochs", 1) : 1;
        const float step = args.is_object() ? args.value("step", 0.5f) : 0.5f;
        sdk::TrainReport report;
        for (int e = 0; e < epochs; ++e) {
            for (float& w : weight_) {
                w += step;
            }
            report.epoch_losses.push_back(1.0 / (e + 1));
        }
        report.epochs_run = epochs;
        report.samples = data.rows;
        report.weights = *state();
        return report;
    }

    sdk::Result<sdk::Inference> infer(const sdk::Dataset& data,
                                      std::string_view) noexcept override {
        if (width(data) != in_) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, "input width mismatch"};
        }
        sdk::Inference inf;
        inf.rows = data.rows;
        inf.width = out_;
        inf.scores.resize(static_cast<std::size_t>(data.rows * out_));
        for (std::int64_t r = 0; r < data.rows; ++r) {
            std::vector<double> z(static_cast<std::size_t>(out_));
            for (std::int64_t o = 0; o < out_; ++o) {
                double s = bias_[static_cast<std::size_t>(o)];
                for (std::int64_t i = 0; i < in_; ++i) {
                    s += weight_[static_cast<std::size_t>(o * in_ + i)] *
                         data.features[static_cast<std::size_t>(r * in_ + i)];
                }
                z[static_cast<std::size_t>(o)] = s;
            }
            if (activation_ == "softmax") {
                double m = z[0];
                for (double v : z) {
                    m = std::max(m, v);
                }
                double sum = 0;
                for (double& v : z) {
                    v = std::exp(v - m);
                    sum += v;
                }
                for (double& v : z) {
                    v /= sum;
                }
            } else if (activation_ == "sigmoid") {
                for (double& v : z) {
                    v = 1.0 / (1.0 + std::exp(-v));
                }
            }
            for (std::int64_t o = 0; o < out_; ++o) {
                inf.scores[static_cast<std::size_t>(r * out_ + o)] =
                    static_cast<float>(z[static_cast<std::size_t>(o)]);
            }
        }
        inf.loss = 0.25;
        return inf;
    }

    std::int64_t parameter_count() const noexcept override { return in_ * out_ + out_; }

private:
    static std::int64_t width(const sdk::Dataset& data) {
        std::int64_t n = 1;
        for (std::int64_t d : data.sample_shape) {
            n *= d;
        }
        return n;
    }
    static sdk::Tensor tensor(const std::string& name, std::vector<std::int64_t> shape,
                              const std::vector<float>& values) {
        sdk::Tensor t;
        t.name = name;
        t.dtype = sdk::DType::F32;
        t.shape = std::move(shape);
        t.data.resize(values.size() * sizeof(float));
        std::memcpy(t.data.data(), values.data(), t.data.size());
        return t;
    }

    std::int64_t in_;
    std::int64_t out_;
    std::string activation_;
    TrainGate* gate_;
    std::vector<float> weight_;
    std::vector<float> bias_;
};

/// Architecture: `[{"l_type": "Linear", "activation": ..., "structure": {"in_features": n,
/// "out_features": m}}]`; any other l_type is refused by `validate` (like a real backend).
class FakeBackend final : public sdk::ModelBackend {
public:
    TrainGate gate;
    TrainGate build_gate;  ///< holds `build` (an initialise after its data is loaded)

    sdk::Status validate(std::string_view architecture_json, std::string_view,
                         const std::vector<std::int64_t>& input_shape) noexcept override {
        auto layer = first_layer(architecture_json);
        if (!layer) {
            return layer.status();
        }
        std::int64_t n = 1;
        for (std::int64_t d : input_shape) {
            n *= d;
        }
        const auto in = (*layer)["structure"].value("in_features", std::int64_t{0});
        if (in != n) {
            return {sdk::ErrorCode::InvalidArgument,
                    "layer 0 (Linear) expects " + std::to_string(in) + " inputs, the data has " +
                        std::to_string(n)};
        }
        return {};
    }

    sdk::Result<std::unique_ptr<sdk::Model>> build(std::string_view architecture_json,
                                                   std::string_view args_json) noexcept override {
        build_gate.pass();
        auto layer = first_layer(architecture_json);
        if (!layer) {
            return layer.error();
        }
        const auto args = nlohmann::json::parse(args_json, nullptr, false);
        const double seed = args.is_object() ? args.value("seed", 42.0) : 42.0;
        const auto& s = (*layer)["structure"];
        return std::unique_ptr<sdk::Model>(new FakeModel(
            s.value("in_features", std::int64_t{1}), s.value("out_features", std::int64_t{1}),
            (*layer).value("activation", std::string()), seed, &gate));
    }

private:
    static sdk::Result<nlohmann::json> first_layer(std::string_view architecture_json) {
        const auto arch = nlohmann::json::parse(architecture_json, nullptr, false);
        if (!arch.is_array() || arch.empty() || !arch[0].is_object()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              "architecture is not a list of layers"};
        }
        if (arch[0].value("l_type", "") != "Linear" || !arch[0].contains("structure")) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              "layer 0: unknown l_type '" + arch[0].value("l_type", "") + "'"};
        }
        return arch[0];
    }
};

}  // namespace synergos::testing
