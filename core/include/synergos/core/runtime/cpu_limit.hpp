// SPDX-License-Identifier: Apache-2.0
#pragma once
/// @file cpu_limit.hpp
/// `cpus` / `--cpus`: how many CPUs a director, TTP or worker process computes on.

#include <synergos/core/config/runtime_config.hpp>  // allowed_cpus

namespace synergos::core {

/// What `apply_cpu_limit` did.
struct CpuLimit {
    int available = 0;             ///< CPUs the process may run on (its affinity mask)
    int used = 0;                  ///< CPUs its compute threads are sized for
    bool omp_threads_set = false;  ///< OMP_NUM_THREADS was unset and is now `used`
};

/// Sizes the process's compute thread pool for `cpus` of the CPUs it may run on (0: all of
/// them): sets OMP_NUM_THREADS, from which libtorch sizes its intra-op pool, unless the
/// environment sets it. The affinity mask is left alone: several processes of one host given
/// `--cpus 2` each would all be pinned to the same first two CPUs; pinning belongs to the
/// container runtime or taskset (`docker --cpuset-cpus`), whose mask this respects. Call it
/// before the model plugin is loaded.
CpuLimit apply_cpu_limit(int cpus) noexcept;

}  // namespace synergos::core
