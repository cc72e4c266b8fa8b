// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file roles.hpp
/// The role loops `synergos director|ttp|worker` run. Each starts what its config names,
/// logs `role started`, waits for a stop request (SIGINT/SIGTERM or `Runtime::request_stop`),
/// stops everything in reverse order and returns the process exit code: 0 after an orderly
/// stop, kExitConfig when a setting is wrong (a token or TLS file, the exposure rule, the
/// outputs folder), 1 when start-up failed otherwise (the error is logged at critical level).

namespace synergos::core {

/// Exit code of a configuration mistake (sysexits' EX_CONFIG): restarting cannot help, so the
/// systemd units list it in RestartPreventExitStatus (with 2, a usage mistake).
inline constexpr int kExitConfig = 78;

class Runtime;

int run_director(Runtime& runtime);
int run_ttp(Runtime& runtime);
int run_worker(Runtime& runtime);

}  // namespace synergos::core
