// SPDX-License-Identifier: Apache-2.0
#include "synergos/core/runtime/cpu_limit.hpp"

#include <cstdlib>
#include <string>

namespace synergos::core {

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
