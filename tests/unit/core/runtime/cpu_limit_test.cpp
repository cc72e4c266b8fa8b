// SPDX-License-Identifier: Apache-2.0
// `cpus`: OMP_NUM_THREADS set for libtorch's pool, the affinity mask left to the container.
// Each case runs in a forked child: the environment is the whole process's.

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

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

}  // namespace

TEST_CASE("cpus sizes the compute pool through OMP_NUM_THREADS and leaves the affinity mask",
          "[unit][runtime]") {
    const int available = synergos::core::allowed_cpus();
    REQUIRE(available >= 1);
    CHECK(in_child([available] {
              ::unsetenv("OMP_NUM_THREADS");
              const auto limit = synergos::core::apply_cpu_limit(1);
              const char* omp = std::getenv("OMP_NUM_THREADS");
              const bool sized = limit.used == 1 && limit.omp_threads_set && omp != nullptr &&
                                 std::string(omp) == "1";
              // Not pinned: the process may still run on every CPU it had.
              return sized && synergos::core::allowed_cpus() == available ? 0 : 1;
          }) == 0);
    // More than the process may use: capped at what it has.
    CHECK(in_child([available] {
              ::unsetenv("OMP_NUM_THREADS");
              const auto limit = synergos::core::apply_cpu_limit(available + 5);
              return limit.used == available &&
                             std::string(std::getenv("OMP_NUM_THREADS")) == std::to_string(available)
                         ? 0
                         : 1;
          }) == 0);
    // An OMP_NUM_THREADS the operator set is left alone, and 0 sets nothing.
    CHECK(in_child([] {
              ::setenv("OMP_NUM_THREADS", "7", 1);
              const auto set = synergos::core::apply_cpu_limit(1);
              const bool kept = std::string(std::getenv("OMP_NUM_THREADS")) == "7" && !set.omp_threads_set;
              ::unsetenv("OMP_NUM_THREADS");
              const auto none = synergos::core::apply_cpu_limit(0);
              return kept && !none.omp_threads_set && std::getenv("OMP_NUM_THREADS") == nullptr ? 0 : 1;
          }) == 0);
}
