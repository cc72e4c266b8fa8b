// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file roles.hpp
/// The role loops `synergos director|ttp|worker` run. Each starts what its config names,
/// logs `role started`, waits for a stop request (SIGINT/SIGTERM or `Runtime::request_stop`),
/// stops everything in reverse order and returns the process exit code: 0 after an orderly
/// stop, 1 when start-up failed (the error is logged at critical level).

namespace synergos::core {

class Runtime;

int run_director(Runtime& runtime);
int run_ttp(Runtime& runtime);
int run_worker(Runtime& runtime);

}  // namespace synergos::core
