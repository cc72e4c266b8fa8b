// SPDX-License-Identifier: Apache-2.0
// `cpus`: the process's affinity mask narrowed to N CPUs and OMP_NUM_THREADS set for libtorch.
// Each case runs in a forked child: the mask and the environment are the whole process's.

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <synergos/core/runtime/cpu_limit.hpp>

namespace {

/// Runs `body` in a forked child; its return value (0..255) is the exit code.
template <typename Fn>
int in_child(Fn body) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::_exit(body());
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    return WEXITSTATUS(status);
}

int mask_size() {
    cpu_set_t set;
    CPU_ZERO(&set);
    return ::sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : -1;
}

}  // namespace

TEST_CASE("cpus narrows the affinity mask and sizes the libtorch pool and threads inherit it",
          "[unit][runtime]") {
    const int available = synergos::core::allowed_cpus();
    if (available < 2) {
        WARN("only one CPU allowed here: a limit of 1 cannot narrow anything; checking no-ops only");
    }
    // A limit below what the process has: the mask shrinks, OMP_NUM_THREADS follows, and a
    // thread started afterwards has the same mask.
    CHECK(in_child([available] {
              ::unsetenv("OMP_NUM_THREADS");
              const auto limit = synergos::core::apply_cpu_limit(1);
              if (!limit.error.empty() || limit.available != available || limit.used != 1) {
                  return 1;
              }
              if (available >= 2 && (!limit.pinned || !limit.omp_threads_set)) {
                  return 2;
              }
              const char* omp = std::getenv("OMP_NUM_THREADS");
              if (available >= 2 && (omp == nullptr || std::string(omp) != "1")) {
                  return 3;
              }
              int in_thread = -1;
              std::thread([&] { in_thread = mask_size(); }).join();
              return mask_size() == 1 && in_thread == 1 ? 0 : 4;
          }) == 0);
    // An OMP_NUM_THREADS the operator set is left alone.
    CHECK(in_child([available] {
              ::setenv("OMP_NUM_THREADS", "7", 1);
              const auto limit = synergos::core::apply_cpu_limit(1);
              const bool kept = std::string(std::getenv("OMP_NUM_THREADS")) == "7";
              return kept && !limit.omp_threads_set && (available < 2 || limit.pinned) ? 0 : 1;
          }) == 0);
    // 0, or at least what the process has: nothing changes.
    CHECK(in_child([available] {
              ::unsetenv("OMP_NUM_THREADS");
              for (int cpus : {0, available, available + 5}) {
                  const auto limit = synergos::core::apply_cpu_limit(cpus);
                  if (limit.pinned || limit.used != available || mask_size() != available ||
                      std::getenv("OMP_NUM_THREADS") != nullptr) {
                      return 1;
                  }
              }
              return 0;
          }) == 0);
}
