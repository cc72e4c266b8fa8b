// SPDX-License-Identifier: Apache-2.0
// This process's memory as Linux reports it, for tests that bound what a code path commits.
#pragma once

#include <fstream>
#include <string>

namespace synergos::testing {

/// A "Vm..." line of /proc/self/status in KiB (e.g. "VmRSS:", "VmHWM:"); -1 when absent.
inline long status_kib(const std::string& key) {
    std::ifstream in("/proc/self/status");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(key, 0) == 0) {
            return std::stol(line.substr(key.size()));
        }
    }
    return -1;
}

/// Peak resident size in KiB since the last `reset_peak_rss`.
inline long peak_rss_kib() { return status_kib("VmHWM:"); }

/// Lowers the peak to the current resident size (writing "5" to clear_refs).
inline void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

}  // namespace synergos::testing
