// SPDX-License-Identifier: Apache-2.0
#include "synergos/core/runtime/cpu_limit.hpp"

#include <sched.h>

#include <cstdlib>
#include <thread>

namespace synergos::core {

int allowed_cpus() noexcept {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
        return CPU_COUNT(&set);
    }
    const unsigned n = std::thread::hardware_concurrency();
    return n > 0 ? static_cast<int>(n) : 1;
}

CpuLimit apply_cpu_limit(int cpus) noexcept {
    CpuLimit out;
    out.available = allowed_cpus();
    out.used = cpus > 0 && cpus < out.available ? cpus : out.available;
    if (cpus > 0 && std::getenv("OMP_NUM_THREADS") == nullptr &&
        ::setenv("OMP_NUM_THREADS", std::to_string(out.used).c_str(), 0) == 0) {
        out.omp_threads_set = true;
    }
    return out;
}

}  // namespace synergos::core
