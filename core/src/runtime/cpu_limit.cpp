// SPDX-License-Identifier: Apache-2.0
#include "synergos/core/runtime/cpu_limit.hpp"

#include <sched.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
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
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        out.available = out.used = allowed_cpus();
        if (cpus > 0) {
            out.error = std::string("sched_getaffinity: ") + std::strerror(errno);
        }
        return out;
    }
    out.available = out.used = CPU_COUNT(&set);
    if (cpus <= 0 || cpus >= out.available) {
        return out;  // no limit, or no narrower than what the process has
    }
    cpu_set_t keep;
    CPU_ZERO(&keep);
    int kept = 0;
    for (int c = 0; c < CPU_SETSIZE && kept < cpus; ++c) {
        if (CPU_ISSET(c, &set)) {
            CPU_SET(c, &keep);
            ++kept;
        }
    }
    if (sched_setaffinity(0, sizeof keep, &keep) != 0) {
        out.error = std::string("sched_setaffinity: ") + std::strerror(errno);
        return out;
    }
    out.pinned = true;
    out.used = kept;
    if (std::getenv("OMP_NUM_THREADS") == nullptr &&
        ::setenv("OMP_NUM_THREADS", std::to_string(kept).c_str(), 0) == 0) {
        out.omp_threads_set = true;
    }
    return out;
}

}  // namespace synergos::core
