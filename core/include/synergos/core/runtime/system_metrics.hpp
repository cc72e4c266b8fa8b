// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file system_metrics.hpp
/// System metrics read from /proc and /sys/fs/cgroup (cgroup v2), turned into rates between
/// two samples, and a sampler thread that logs one `system metrics` record per interval.
/// Unlike the original (counters since boot, a meaningless first CPU value, host figures inside
/// containers), every figure is a delta per second and the first sample is only a baseline.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

namespace synergos::core {

class HostLogger;

/// Where to read from; tests point these at a fake tree.
struct SystemPaths {
    std::string proc = "/proc";
    std::string sys = "/sys";
    std::string cgroup = "/sys/fs/cgroup";
};

/// One reading of every counter. A value is unset when its file is missing or unreadable.
struct SystemSample {
    std::chrono::steady_clock::time_point time;
    // The process (/proc/self).
    std::optional<std::uint64_t> process_cpu_ticks;  ///< utime + stime, in clock ticks
    std::optional<std::uint64_t> process_rss_bytes;
    std::optional<std::uint64_t> process_read_bytes;   ///< /proc/self/io read_bytes
    std::optional<std::uint64_t> process_write_bytes;  ///< /proc/self/io write_bytes
    // The host (or the network namespace, for network counters).
    std::optional<std::uint64_t> host_cpu_busy;   ///< jiffies, all CPUs
    std::optional<std::uint64_t> host_cpu_total;  ///< jiffies, all CPUs
    std::optional<std::uint64_t> host_memory_total_bytes;
    std::optional<std::uint64_t> host_memory_available_bytes;
    std::optional<std::uint64_t> disk_read_bytes;  ///< whole physical disks
    std::optional<std::uint64_t> disk_write_bytes;
    std::optional<std::uint64_t> net_rx_bytes;  ///< every interface but lo
    std::optional<std::uint64_t> net_tx_bytes;
    // The process's cgroup (v2 only).
    std::optional<std::uint64_t> cgroup_cpu_usage_usec;
    std::optional<double> cgroup_cpu_limit_cores;  ///< unset: no quota
    std::optional<std::uint64_t> cgroup_memory_used_bytes;
    std::optional<std::uint64_t> cgroup_memory_limit_bytes;  ///< unset: no limit
    std::optional<std::uint64_t> cgroup_io_read_bytes;
    std::optional<std::uint64_t> cgroup_io_write_bytes;
};

/// Reads every counter once. Never throws; unreadable sources leave fields unset.
SystemSample read_system_sample(const SystemPaths& paths = {});

/// The fields of a `system metrics` record for the interval between two samples:
/// `interval_s`, `cpu_percent {process, system, cgroup, cgroup_limit_cores}` (process: percent
/// of one core, like top; system: the host's, percent of all CPUs; cgroup: percent of its quota, or
/// of all CPUs without one), `memory {rss_bytes, host_total_bytes, host_used_bytes,
/// host_available_bytes, cgroup_used_bytes, cgroup_limit_bytes}`, `disk {read_bytes_per_s,
/// write_bytes_per_s, process_read_bytes_per_s, process_write_bytes_per_s, cgroup_read_bytes_per_s,
/// cgroup_write_bytes_per_s}`, `network {rx_bytes_per_s, tx_bytes_per_s}`. Unavailable figures
/// (and counters that went backwards) are null. `ticks_per_second` is sysconf(_SC_CLK_TCK).
nlohmann::json system_metrics_fields(const SystemSample& previous, const SystemSample& current,
                                     long ticks_per_second, unsigned host_cpus);

/// Logs `system metrics` every `interval` on its own thread until stopped.
/// Threading: start/stop from one thread. The wait is a condition variable, so stop is immediate.
class SystemMetricsSampler {
public:
    SystemMetricsSampler(HostLogger& logger, std::chrono::duration<double> interval,
                         SystemPaths paths = {});
    ~SystemMetricsSampler();
    SystemMetricsSampler(const SystemMetricsSampler&) = delete;
    SystemMetricsSampler& operator=(const SystemMetricsSampler&) = delete;

    void start();
    /// Wakes the thread and joins it. Idempotent.
    void stop();
    /// Records emitted so far (the baseline is not one).
    std::uint64_t records_emitted() const;

private:
    void run();

    HostLogger& logger_;
    std::chrono::duration<double> interval_;
    SystemPaths paths_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::uint64_t emitted_ = 0;
    std::thread thread_;
};

}  // namespace synergos::core
