// SPDX-License-Identifier: Apache-2.0
// bench_training_epoch: one local training epoch through the real torch plugin (dlopen'ed, one
// Model::train call with epochs 1) against the same network, data, batch size, optimizer and
// loop in Python with Debian's python3-torch (epoch_bench.py), measured in the same run.
// Second table: the FedAvg server step (folding updates into the accumulator, through the real
// fedavg plugin) against a plain memcpy of the same bytes.

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <synergos/sdk/export.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

namespace {

using Clock = std::chrono::steady_clock;
namespace sdk = synergos::sdk;

/// A plugin library opened as the host opens it.
class Library {
public:
    explicit Library(const std::string& path)
        : handle_(::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) {
        if (handle_ == nullptr) {
            throw std::runtime_error("cannot load " + path + ": " + ::dlerror());
        }
    }
    ~Library() { ::dlclose(handle_); }
    Library(const Library&) = delete;
    Library& operator=(const Library&) = delete;

    template <typename Interface>
    std::unique_ptr<Interface> create(sdk::HostContext& host, const char* kind,
                                      const sdk::Options& options) const {
        const std::string alias = std::string("synergos_plugin_create_") + kind;
        auto* slot = static_cast<const void* const*>(::dlsym(handle_, alias.c_str()));
        if (slot == nullptr) {
            throw std::runtime_error("missing export " + alias);
        }
        auto* factory = reinterpret_cast<sdk::Factory<Interface>*>(const_cast<void*>(*slot));
        auto created = factory(host, options);
        if (!created) {
            throw std::runtime_error(created.error().message);
        }
        return std::move(*created);
    }

private:
    void* handle_;
};

struct Workload {
    const char* name;
    const char* architecture;
    std::vector<std::int64_t> sample_shape;
    int classes;
    int rows;
    int batch;
    const char* criterion;
};

const std::array<Workload, 3> kWorkloads{{
    {"mlp_1m",
     R"([{"l_type": "Linear", "structure": {"in_features": 512, "out_features": 1024},
         "activation": "relu"},
         {"l_type": "Linear", "structure": {"in_features": 1024, "out_features": 512},
             "activation": "relu"},
         {"l_type": "Linear", "structure": {"in_features": 512, "out_features": 10},
             "activation": null}])",
     {512},
     10,
     2048,
     64,
     "CrossEntropyLoss"},
    {"heart_disease",
     R"([{"l_type": "Linear", "structure": {"in_features": 28, "out_features": 5},
         "activation": "softmax"}])",
     {28},
     5,
     771,
     32,
     "NLLLoss"},
    {"femnist_conv",
     R"([{"l_type": "Conv2d", "structure": {"in_channels": 1, "out_channels": 4, "kernel_size": 3,
         "stride": 1, "padding": 1}, "activation": "relu"},
         {"l_type": "Flatten", "structure": {}, "activation": null},
         {"l_type": "Linear", "structure": {"in_features": 3136, "out_features": 3},
             "activation": "softmax"}])",
     {1, 28, 28},
     3,
     631,
     32,
     "NLLLoss"},
}};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

sdk::Dataset synthetic(const Workload& w) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> feature(-1.0F, 1.0F);
    std::uniform_int_distribution<int> label(0, w.classes - 1);
    sdk::Dataset d;
    d.sample_shape = w.sample_shape;
    d.rows = w.rows;
    std::int64_t per_row = 1;
    for (auto s : w.sample_shape) {
        per_row *= s;
    }
    d.features.resize(static_cast<std::size_t>(w.rows * per_row));
    for (float& v : d.features) {
        v = feature(rng);
    }
    d.labels.assign(static_cast<std::size_t>(w.rows * w.classes), 0.0F);
    for (int r = 0; r < w.rows; ++r) {
        d.labels[static_cast<std::size_t>(r * w.classes + label(rng))] = 1.0F;
    }
    for (int c = 0; c < w.classes; ++c) {
        d.label_names.push_back("target_" + std::to_string(c));
    }
    return d;
}

std::string run_args(const Workload& w, int round) {
    return nlohmann::json{{"criterion", w.criterion},
                          {"optimizer", "SGD"},
                          {"lr", 0.01},
                          {"momentum", 0.9},
                          {"lr_scheduler", ""},
                          {"lr_decay", 0},
                          {"batch_size", w.batch},
                          {"epochs", 1},
                          {"patience", nullptr},
                          {"seed", 1},
                          {"round", round},
                          {"mu", 0}}
        .dump();
}

nlohmann::json python_baseline(const std::string& python, const std::string& script,
                               const Workload& w, int repeats, int threads) {
    const std::string command = python + " " + script + " --workload " + w.name + " --rows " +
                                std::to_string(w.rows) + " --batch " + std::to_string(w.batch) +
                                " --repeats " + std::to_string(repeats) + " --threads " +
                                std::to_string(threads);
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
    if (!pipe) {
        throw std::runtime_error("cannot run " + command);
    }
    std::string out;
    std::array<char, 4096> buffer{};
    while (std::fgets(buffer.data(), static_cast<int>(buffer.size()), pipe.get()) != nullptr) {
        out += buffer.data();
    }
    const int status = ::pclose(pipe.release());
    if (status != 0 || out.empty()) {
        throw std::runtime_error("python baseline failed (status " + std::to_string(status) +
                                 "): " + command + "\n" + out);
    }
    return nlohmann::json::parse(out);
}

void bench_epochs(const Library& torch_lib, sdk::HostContext& host, const std::string& python,
                  const std::string& script, int repeats, int threads) {
    const sdk::Options options(
        std::map<std::string, std::string>{{"threads", std::to_string(threads)}});
    auto backend = torch_lib.create<sdk::ModelBackend>(host, "model", options);
    std::printf(
        "one local training epoch: Model::train(epochs 1) through libsynergos-model-torch.so vs "
        "PyTorch (python3-torch), SGD momentum 0.9, %d thread(s); seconds per call, best and "
        "median of "
        "the calls (at least %d, about 2 s for small workloads)\n",
        threads, repeats);
    std::printf("%-14s %9s %6s %6s %6s %9s %9s %9s %9s %8s %8s\n", "workload", "params", "rows",
                "batch", "calls", "C++ min", "Py min", "C++ med", "Py med", "Py/C++", "(med)");
    for (const Workload& w : kWorkloads) {
        const sdk::Dataset data = synthetic(w);
        auto built = backend->build(w.architecture, run_args(w, 0));
        if (!built) {
            throw std::runtime_error(built.error().message);
        }
        auto& model = *built;
        const auto warm_start = Clock::now();
        if (auto warm = model->train(data, run_args(w, 0), nullptr); !warm) {
            throw std::runtime_error(warm.error().message);
        }
        // Small workloads repeat until about 2 s were measured: the median then resists the
        // other processes of a shared machine.
        const double warm_s = std::chrono::duration<double>(Clock::now() - warm_start).count();
        const int calls = std::clamp(static_cast<int>(2.0 / std::max(warm_s, 1e-6)), repeats, 200);
        std::vector<double> seconds;
        for (int i = 0; i < calls; ++i) {
            const std::string args = run_args(w, i + 1);
            const auto start = Clock::now();
            auto report = model->train(data, args, nullptr);
            seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
            if (!report) {
                throw std::runtime_error(report.error().message);
            }
        }
        const auto py = python_baseline(python, script, w, calls, threads);
        const auto py_seconds = py.at("seconds").get<std::vector<double>>();
        const double cpp_s = *std::min_element(seconds.begin(), seconds.end());
        const double py_s = *std::min_element(py_seconds.begin(), py_seconds.end());
        const double cpp_med = median(seconds);
        const double py_med = median(py_seconds);
        if (py.at("params").get<std::int64_t>() != model->parameter_count()) {
            throw std::runtime_error(std::string("parameter counts differ for ") + w.name);
        }
        std::printf("%-14s %9lld %6d %6d %6d %9.4f %9.4f %9.4f %9.4f %8.2f %8.2f\n", w.name,
                    static_cast<long long>(model->parameter_count()), w.rows, w.batch, calls, cpp_s,
                    py_s, cpp_med, py_med, py_s / cpp_s, py_med / cpp_med);
    }
}

sdk::TensorMap float_state(const std::vector<std::size_t>& sizes, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> value(-1.0F, 1.0F);
    sdk::TensorMap m;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        sdk::Tensor t;
        t.name = "t" + std::to_string(i);
        t.shape = {static_cast<std::int64_t>(sizes[i])};
        t.data.resize(sizes[i] * sizeof(float));
        auto* f = t.f32();
        for (std::size_t j = 0; j < sizes[i]; ++j) {
            f[j] = value(rng);
        }
        m.tensors.push_back(std::move(t));
    }
    return m;
}

void bench_aggregation(const Library& fedavg_lib, sdk::HostContext& host, int repeats) {
    auto aggregator = fedavg_lib.create<sdk::Aggregator>(host, "aggregator", sdk::Options{});
    constexpr int kUpdates = 4;
    struct Shape {
        const char* name;
        std::vector<std::size_t> sizes;
    };
    // mlp_1m's tensors, and a 64 MiB state (16 tensors of 1 Mi floats) well beyond the caches.
    const std::array<Shape, 2> shapes{{
        {"mlp_1m", {1024 * 512, 1024, 512 * 1024, 512, 10 * 512, 10}},
        {"64MiB", std::vector<std::size_t>(16, 1U << 20U)},
    }};
    std::printf(
        "\nserver step: FedAvg accumulate() of %d updates through libsynergos-aggregator-fedavg.so "
        "vs memcpy of the same bytes into one buffer; GB/s of update bytes, best and median of the "
        "rounds\n",
        kUpdates);
    std::printf("%-8s %10s %7s %10s %10s %10s %10s %7s %7s\n", "state", "MB/update", "rounds",
                "fold best", "copy best", "fold med", "copy med", "ratio", "(med)");
    for (const Shape& s : shapes) {
        std::vector<sdk::TensorMap> updates;
        for (int k = 0; k < kUpdates; ++k) {
            updates.push_back(float_state(s.sizes, static_cast<std::uint32_t>(k + 1)));
        }
        const double bytes = static_cast<double>(updates[0].byte_size());
        auto session = aggregator->open("{}");
        if (!session) {
            throw std::runtime_error(session.error().message);
        }
        std::vector<unsigned char> target(updates[0].byte_size(),
                                          1);  // touched, like the accumulator
        std::vector<double> fold_gbs;
        std::vector<double> copy_gbs;
        // Round 0 warms up; then at least `repeats` rounds and about 0.5 s of folding.
        double measured_s = 0.0;
        for (int round = 0; round <= repeats || (measured_s < 0.5 && round < 2000); ++round) {
            if (auto st = (*session)->begin_round(updates[0], round); !st) {
                throw std::runtime_error(st.message());
            }
            auto start = Clock::now();
            for (int k = 0; k < kUpdates; ++k) {
                if (auto st = (*session)->accumulate("p" + std::to_string(k), 10 + k, updates[k]);
                    !st) {
                    throw std::runtime_error(st.message());
                }
            }
            const double fold_s = std::chrono::duration<double>(Clock::now() - start).count();
            if (auto mean = (*session)->finish_round(); !mean) {
                throw std::runtime_error(mean.error().message);
            }
            start = Clock::now();
            for (int k = 0; k < kUpdates; ++k) {
                std::size_t offset = 0;
                for (const auto& t : updates[k].tensors) {
                    std::memcpy(target.data() + offset, t.data.data(), t.data.size());
                    offset += t.data.size();
                }
            }
            const double copy_s = std::chrono::duration<double>(Clock::now() - start).count();
            if (round > 0) {
                measured_s += fold_s;
                fold_gbs.push_back(kUpdates * bytes / fold_s / 1e9);
                copy_gbs.push_back(kUpdates * bytes / copy_s / 1e9);
            }
        }
        volatile unsigned char sink = target[target.size() / 2];  // keep the copies observable
        (void)sink;
        const double fold = *std::max_element(fold_gbs.begin(), fold_gbs.end());
        const double copy = *std::max_element(copy_gbs.begin(), copy_gbs.end());
        const double fold_med = median(fold_gbs);
        const double copy_med = median(copy_gbs);
        std::printf("%-8s %10.1f %7zu %10.2f %10.2f %10.2f %10.2f %7.2f %7.2f\n", s.name,
                    bytes / 1e6, fold_gbs.size(), fold, copy, fold_med, copy_med, fold / copy,
                    fold_med / copy_med);
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string plugin_dir;
    std::string python = "python3";
    std::string script;
    int repeats = 3;
    int threads = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string key = argv[i];
        const std::string value = argv[i + 1];
        if (key == "--plugin-dir") {
            plugin_dir = value;
        } else if (key == "--python") {
            python = value;
        } else if (key == "--script") {
            script = value;
        } else if (key == "--repeats") {
            repeats = std::max(1, std::stoi(value));
        } else if (key == "--threads") {
            threads = std::max(1, std::stoi(value));
        } else {
            std::cerr << "unknown argument " << key << "\n";
            return 2;
        }
    }
    if (plugin_dir.empty() || script.empty()) {
        std::cerr << "usage: bench_training_epoch --plugin-dir DIR --script epoch_bench.py "
                     "[--python python3] [--repeats 3] [--threads 1]\n";
        return 2;
    }
    try {
        sdk::testing::FakeHost host;
        const Library torch_lib(plugin_dir + "/libsynergos-model-torch.so");
        const Library fedavg_lib(plugin_dir + "/libsynergos-aggregator-fedavg.so");
        // The fold table first: it needs no python3-torch, so it is printed even without one.
        bench_aggregation(fedavg_lib, host, repeats);
        bench_epochs(torch_lib, host, python, script, repeats, threads);
    } catch (const std::exception& e) {
        std::cerr << "bench_training_epoch: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
