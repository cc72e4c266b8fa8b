// SPDX-License-Identifier: Apache-2.0
#pragma once
/// @file cpu_limit.hpp
/// `cpus` / `--cpus`: how many CPUs a director, TTP or worker process may use.

#include <string>

namespace synergos::core {

/// What `apply_cpu_limit` did.
struct CpuLimit {
    int available = 0;   ///< CPUs the process was allowed before (its affinity mask)
    int used = 0;        ///< CPUs it may use now
    bool pinned = false;  ///< the affinity mask was narrowed to `used` CPUs
    bool omp_threads_set = false;  ///< OMP_NUM_THREADS was unset and is now `used`
    std::string error;   ///< why the limit could not be applied (the process runs unlimited)
};

/// Limits the calling process to `cpus` of the CPUs it may run on (0: no limit): narrows the
/// affinity mask to the first `cpus` allowed CPUs, and sets OMP_NUM_THREADS to `cpus` unless the
/// environment sets it (libtorch sizes its intra-op pool from it, not from the mask). Call it
/// before any other thread starts: threads inherit the mask of the thread that creates them.
CpuLimit apply_cpu_limit(int cpus) noexcept;

/// CPUs in the calling thread's affinity mask (at least 1).
int allowed_cpus() noexcept;

}  // namespace synergos::core
