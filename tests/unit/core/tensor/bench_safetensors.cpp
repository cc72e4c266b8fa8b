// SPDX-License-Identifier: Apache-2.0
// Safetensors codec throughput next to the memory-bandwidth baseline (memcpy of the same bytes
// into a buffer that is already allocated and touched), both measured in this run.
// Usage: synergos_bench_safetensors [total_megabytes=256] [tensors=16] [repeats=9]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <synergos/core/tensor/safetensors.hpp>

namespace st = synergos::core::tensor;
using synergos::sdk::DType;
using synergos::sdk::Tensor;
using synergos::sdk::TensorMap;

namespace {

template <typename F>
double median_seconds(int repeats, F&& f) {
    std::vector<double> times;
    for (int i = 0; i < repeats; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        const auto t1 = std::chrono::steady_clock::now();
        times.push_back(std::chrono::duration<double>(t1 - t0).count());
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

void report(const char* what, double bytes, double seconds, double baseline_seconds) {
    std::printf("%-44s %8.2f GB/s  %6.2fx memcpy time\n", what, bytes / seconds / 1e9,
                seconds / baseline_seconds);
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t total_mb = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 256;
    const std::size_t count = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 16;
    const int repeats = argc > 3 ? std::atoi(argv[3]) : 9;
    if (total_mb == 0 || count == 0 || repeats <= 0) {
        std::fprintf(stderr, "usage: %s [total_megabytes>0] [tensors>0] [repeats>0]\n", argv[0]);
        return 2;
    }
    const std::size_t floats_per = total_mb * (std::size_t{1} << 20) / 4 / count;

    TensorMap model;
    for (std::size_t i = 0; i < count; ++i) {
        Tensor t;
        t.name = "nnl_" + std::to_string(i) + "_linear.weight";
        t.dtype = DType::F32;
        t.shape = {static_cast<std::int64_t>(floats_per)};
        t.data.resize(floats_per * 4);
        for (std::size_t b = 0; b < t.data.size(); b += 64) {
            t.data[b] = static_cast<unsigned char>(b + i);
        }
        model.tensors.push_back(std::move(t));
    }
    const double bytes = static_cast<double>(model.byte_size());
    std::printf("safetensors codec: %zu tensors, %.1f MB, median of %d runs\n", count, bytes / 1e6,
                repeats);

    // Baseline: copy every tensor into preallocated, already-touched buffers.
    TensorMap copy = model;
    const double t_memcpy = median_seconds(repeats, [&] {
        for (std::size_t i = 0; i < count; ++i) {
            std::memcpy(copy.tensors[i].data.data(), model.tensors[i].data.data(),
                        model.tensors[i].data.size());
        }
    });
    report("baseline: memcpy into preallocated buffers", bytes, t_memcpy, t_memcpy);

    std::string body;
    const st::Metadata meta{{"json", R"({"round":1})"}};
    if (!st::encode_into(model, meta, body)) {
        std::fprintf(stderr, "encode failed\n");
        return 1;
    }
    const double t_encode = median_seconds(repeats, [&] {
        if (!st::encode_into(model, meta, body)) {
            std::abort();
        }
    });
    report("encode_into (reused string body)", bytes, t_encode, t_memcpy);

    const double t_parse = median_seconds(repeats, [&] {
        if (!st::parse(body)) {
            std::abort();
        }
    });
    report("parse (validate, zero-copy views)", bytes, t_parse, t_memcpy);

    TensorMap into = model;
    const double t_into = median_seconds(repeats, [&] {
        if (!st::decode_into(body, into, nullptr, st::DecodeInto::MatchExisting)) {
            std::abort();
        }
    });
    report("decode_into (preallocated tensors)", bytes, t_into, t_memcpy);

    const double t_decode = median_seconds(repeats, [&] {
        auto d = st::decode(body);
        if (!d) {
            std::abort();
        }
    });
    report("decode (fresh allocation every call)", bytes, t_decode, t_memcpy);
    return 0;
}
