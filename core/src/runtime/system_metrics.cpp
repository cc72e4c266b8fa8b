// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/runtime/system_metrics.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <synergos/core/logging/logger_factory.hpp>

namespace synergos::core {

namespace {

namespace fs = std::filesystem;

std::optional<std::string> read_text(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        return std::nullopt;
    }
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

std::optional<std::uint64_t> to_u64(const std::string& text) {
    try {
        std::size_t used = 0;
        const unsigned long long value = std::stoull(text, &used);
        return used == 0 ? std::nullopt : std::optional<std::uint64_t>(value);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

/// Value of `key` in a "key: value [kB]" file (/proc/meminfo, /proc/self/io).
std::optional<std::uint64_t> keyed_value(const std::string& text, const std::string& key) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(key + ":", 0) == 0) {
            std::istringstream fields(line.substr(key.size() + 1));
            std::uint64_t value = 0;
            std::string unit;
            if (fields >> value) {
                fields >> unit;
                return unit == "kB" ? value * 1024 : value;
            }
        }
    }
    return std::nullopt;
}

void read_process(const SystemPaths& paths, SystemSample& s) {
    if (auto stat = read_text(paths.proc + "/self/stat")) {
        // The command name may contain spaces and parentheses: fields start after the last ')'.
        const auto close = stat->rfind(')');
        if (close != std::string::npos) {
            std::istringstream in(stat->substr(close + 1));
            std::vector<std::string> fields;
            std::string field;
            while (in >> field) {
                fields.push_back(field);
            }
            // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
            if (fields.size() > 12) {
                auto utime = to_u64(fields[11]);
                auto stime = to_u64(fields[12]);
                if (utime && stime) {
                    s.process_cpu_ticks = *utime + *stime;
                }
            }
        }
    }
    if (auto statm = read_text(paths.proc + "/self/statm")) {
        std::istringstream in(*statm);
        std::uint64_t size = 0;
        std::uint64_t resident = 0;
        if (in >> size >> resident) {
            s.process_rss_bytes = resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
        }
    }
    if (auto io = read_text(paths.proc + "/self/io")) {
        s.process_read_bytes = keyed_value(*io, "read_bytes");
        s.process_write_bytes = keyed_value(*io, "write_bytes");
    }
}

void read_host(const SystemPaths& paths, SystemSample& s) {
    if (auto stat = read_text(paths.proc + "/stat")) {
        std::istringstream in(*stat);
        std::string label;
        in >> label;
        if (label == "cpu") {
            // user nice system idle iowait irq softirq steal (guest time is inside user).
            std::uint64_t v[8] = {};
            int read = 0;
            while (read < 8 && (in >> v[read])) {
                ++read;
            }
            if (read >= 4) {
                std::uint64_t total = 0;
                for (int i = 0; i < read; ++i) {
                    total += v[i];
                }
                const std::uint64_t idle = v[3] + (read > 4 ? v[4] : 0);
                s.host_cpu_total = total;
                s.host_cpu_busy = total - idle;
            }
        }
    }
    if (auto meminfo = read_text(paths.proc + "/meminfo")) {
        s.host_memory_total_bytes = keyed_value(*meminfo, "MemTotal");
        s.host_memory_available_bytes = keyed_value(*meminfo, "MemAvailable");
    }
    if (auto diskstats = read_text(paths.proc + "/diskstats")) {
        std::istringstream in(*diskstats);
        std::string line;
        std::uint64_t read_sectors = 0;
        std::uint64_t write_sectors = 0;
        bool any = false;
        while (std::getline(in, line)) {
            std::istringstream fields(line);
            std::string major, minor, name;
            std::uint64_t reads = 0, reads_merged = 0, sectors_read = 0, ms_reading = 0;
            std::uint64_t writes = 0, writes_merged = 0, sectors_written = 0;
            if (!(fields >> major >> minor >> name >> reads >> reads_merged >> sectors_read >>
                  ms_reading >> writes >> writes_merged >> sectors_written)) {
                continue;
            }
            // Whole physical disks only: partitions, loop, RAM and device-mapper devices would
            // count the same bytes twice.
            std::error_code ec;
            const bool whole_disk = fs::exists(paths.sys + "/block/" + name, ec);
            const bool virtual_device = name.rfind("loop", 0) == 0 || name.rfind("ram", 0) == 0 ||
                                        name.rfind("zram", 0) == 0 || name.rfind("dm-", 0) == 0 ||
                                        name.rfind("md", 0) == 0;
            if (whole_disk && !virtual_device) {
                read_sectors += sectors_read;
                write_sectors += sectors_written;
                any = true;
            }
        }
        if (any) {
            s.disk_read_bytes = read_sectors * 512;  // diskstats sectors are always 512 bytes
            s.disk_write_bytes = write_sectors * 512;
        }
    }
    if (auto netdev = read_text(paths.proc + "/net/dev")) {
        std::istringstream in(*netdev);
        std::string line;
        std::uint64_t rx = 0;
        std::uint64_t tx = 0;
        bool any = false;
        while (std::getline(in, line)) {
            const auto colon = line.find(':');
            if (colon == std::string::npos) {
                continue;  // header lines
            }
            std::string name = line.substr(0, colon);
            name.erase(0, name.find_first_not_of(' '));
            if (name == "lo") {
                continue;
            }
            std::istringstream fields(line.substr(colon + 1));
            std::uint64_t v[9] = {};
            int read = 0;
            while (read < 9 && (fields >> v[read])) {
                ++read;
            }
            if (read == 9) {
                rx += v[0];  // rx bytes, then 7 more rx fields, then tx bytes
                tx += v[8];
                any = true;
            }
        }
        if (any) {
            s.net_rx_bytes = rx;
            s.net_tx_bytes = tx;
        }
    }
}

/// The process's cgroup v2 folder, or empty when not on the unified hierarchy.
std::string cgroup_folder(const SystemPaths& paths) {
    std::error_code ec;
    if (!fs::exists(paths.cgroup + "/cgroup.controllers", ec)) {
        return {};
    }
    auto membership = read_text(paths.proc + "/self/cgroup");
    if (membership) {
        std::istringstream in(*membership);
        std::string line;
        while (std::getline(in, line)) {
            if (line.rfind("0::", 0) == 0) {
                const std::string relative = line.substr(3);
                const std::string folder = paths.cgroup + (relative == "/" ? "" : relative);
                if (fs::exists(folder + "/memory.current", ec) ||
                    fs::exists(folder + "/cpu.stat", ec)) {
                    return folder;
                }
            }
        }
    }
    // Inside a container with its own cgroup namespace, the mount point is the cgroup itself.
    return paths.cgroup;
}

void read_cgroup(const SystemPaths& paths, SystemSample& s) {
    const std::string folder = cgroup_folder(paths);
    if (folder.empty()) {
        return;
    }
    if (auto cpu_stat = read_text(folder + "/cpu.stat")) {
        std::istringstream in(*cpu_stat);
        std::string key;
        std::uint64_t value = 0;
        while (in >> key >> value) {
            if (key == "usage_usec") {
                s.cgroup_cpu_usage_usec = value;
            }
        }
    }
    if (auto cpu_max = read_text(folder + "/cpu.max")) {
        std::istringstream in(*cpu_max);
        std::string quota;
        std::uint64_t period = 0;
        if (in >> quota >> period && quota != "max" && period > 0) {
            if (auto q = to_u64(quota)) {
                s.cgroup_cpu_limit_cores = static_cast<double>(*q) / static_cast<double>(period);
            }
        }
    }
    if (auto current = read_text(folder + "/memory.current")) {
        s.cgroup_memory_used_bytes = to_u64(*current);
    }
    if (auto max = read_text(folder + "/memory.max")) {
        if (max->rfind("max", 0) != 0) {
            s.cgroup_memory_limit_bytes = to_u64(*max);
        }
    }
    if (auto io = read_text(folder + "/io.stat")) {
        std::istringstream in(*io);
        std::string line;
        std::uint64_t rbytes = 0;
        std::uint64_t wbytes = 0;
        while (std::getline(in, line)) {
            std::istringstream fields(line);
            std::string item;
            while (fields >> item) {
                if (item.rfind("rbytes=", 0) == 0) {
                    rbytes += to_u64(item.substr(7)).value_or(0);
                } else if (item.rfind("wbytes=", 0) == 0) {
                    wbytes += to_u64(item.substr(7)).value_or(0);
                }
            }
        }
        s.cgroup_io_read_bytes = rbytes;
        s.cgroup_io_write_bytes = wbytes;
    }
}

/// Counter delta, or nullopt when either side is missing or the counter went backwards.
std::optional<double> delta(const std::optional<std::uint64_t>& a,
                            const std::optional<std::uint64_t>& b) {
    if (!a || !b || *b < *a) {
        return std::nullopt;
    }
    return static_cast<double>(*b - *a);
}

nlohmann::json number_or_null(const std::optional<double>& value) {
    return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

nlohmann::json number_or_null(const std::optional<std::uint64_t>& value) {
    return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

std::optional<double> rate(const std::optional<std::uint64_t>& a,
                           const std::optional<std::uint64_t>& b, double seconds) {
    auto d = delta(a, b);
    if (!d || seconds <= 0.0) {
        return std::nullopt;
    }
    return *d / seconds;
}

/// Rounds to two decimals so records stay short and readable.
std::optional<double> round2(std::optional<double> value) {
    if (!value) {
        return value;
    }
    return static_cast<double>(static_cast<long long>(*value * 100.0 + 0.5)) / 100.0;
}

}  // namespace

SystemSample read_system_sample(const SystemPaths& paths) {
    SystemSample s;
    s.time = std::chrono::steady_clock::now();
    try {
        read_process(paths, s);
        read_host(paths, s);
        read_cgroup(paths, s);
    } catch (const std::exception&) {
        // A half-read sample still carries what was read; the sampler must not die on /proc.
    }
    return s;
}

nlohmann::json system_metrics_fields(const SystemSample& previous, const SystemSample& current,
                                     long ticks_per_second, unsigned host_cpus) {
    const double seconds = std::chrono::duration<double>(current.time - previous.time).count();
    nlohmann::json fields;
    fields["interval_s"] = *round2(seconds);

    std::optional<double> process_cpu;
    if (auto d = delta(previous.process_cpu_ticks, current.process_cpu_ticks);
        d && ticks_per_second > 0 && seconds > 0.0) {
        process_cpu = *d / static_cast<double>(ticks_per_second) / seconds * 100.0;
    }
    std::optional<double> host_cpu;
    auto busy = delta(previous.host_cpu_busy, current.host_cpu_busy);
    auto total = delta(previous.host_cpu_total, current.host_cpu_total);
    if (busy && total && *total > 0.0) {
        host_cpu = *busy / *total * 100.0;
    }
    std::optional<double> cgroup_cpu;
    const double limit_cores =
        current.cgroup_cpu_limit_cores.value_or(static_cast<double>(host_cpus > 0 ? host_cpus : 1));
    if (auto d = delta(previous.cgroup_cpu_usage_usec, current.cgroup_cpu_usage_usec);
        d && seconds > 0.0) {
        cgroup_cpu = *d / 1e6 / seconds / limit_cores * 100.0;
    }
    fields["cpu_percent"] = {
        {"process", number_or_null(round2(process_cpu))},
        {"system", number_or_null(round2(host_cpu))},
        {"cgroup", number_or_null(round2(cgroup_cpu))},
        {"cgroup_limit_cores", number_or_null(current.cgroup_cpu_limit_cores)}};

    std::optional<std::uint64_t> host_used;
    if (current.host_memory_total_bytes && current.host_memory_available_bytes &&
        *current.host_memory_total_bytes >= *current.host_memory_available_bytes) {
        host_used = *current.host_memory_total_bytes - *current.host_memory_available_bytes;
    }
    fields["memory"] = {
        {"rss_bytes", number_or_null(current.process_rss_bytes)},
        {"host_total_bytes", number_or_null(current.host_memory_total_bytes)},
        {"host_used_bytes", number_or_null(host_used)},
        {"host_available_bytes", number_or_null(current.host_memory_available_bytes)},
        {"cgroup_used_bytes", number_or_null(current.cgroup_memory_used_bytes)},
        {"cgroup_limit_bytes", number_or_null(current.cgroup_memory_limit_bytes)}};

    fields["disk"] = {
        {"read_bytes_per_s",
         number_or_null(round2(rate(previous.disk_read_bytes, current.disk_read_bytes, seconds)))},
        {"write_bytes_per_s", number_or_null(round2(rate(previous.disk_write_bytes,
                                                         current.disk_write_bytes, seconds)))},
        {"process_read_bytes_per_s",
         number_or_null(
             round2(rate(previous.process_read_bytes, current.process_read_bytes, seconds)))},
        {"process_write_bytes_per_s",
         number_or_null(
             round2(rate(previous.process_write_bytes, current.process_write_bytes, seconds)))},
        {"cgroup_read_bytes_per_s",
         number_or_null(
             round2(rate(previous.cgroup_io_read_bytes, current.cgroup_io_read_bytes, seconds)))},
        {"cgroup_write_bytes_per_s",
         number_or_null(round2(
             rate(previous.cgroup_io_write_bytes, current.cgroup_io_write_bytes, seconds)))}};
    fields["network"] = {
        {"rx_bytes_per_s",
         number_or_null(round2(rate(previous.net_rx_bytes, current.net_rx_bytes, seconds)))},
        {"tx_bytes_per_s",
         number_or_null(round2(rate(previous.net_tx_bytes, current.net_tx_bytes, seconds)))}};
    return fields;
}

SystemMetricsSampler::SystemMetricsSampler(HostLogger& logger,
                                           std::chrono::duration<double> interval,
                                           SystemPaths paths)
    : logger_(logger), interval_(interval), paths_(std::move(paths)) {}

SystemMetricsSampler::~SystemMetricsSampler() {
    stop();
}

void SystemMetricsSampler::start() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (thread_.joinable()) {
        return;
    }
    stopping_ = false;
    thread_ = std::thread([this] { run(); });
}

void SystemMetricsSampler::stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) {
        thread_.join();
    }
}

std::uint64_t SystemMetricsSampler::records_emitted() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return emitted_;
}

void SystemMetricsSampler::run() {
    const long ticks = ::sysconf(_SC_CLK_TCK);
    const unsigned cpus = std::thread::hardware_concurrency();
    // At least 1 ms: a period of 0 (or negative) would sample and log without pause.
    const auto period = std::max<std::chrono::steady_clock::duration>(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval_),
        std::chrono::milliseconds(1));
    SystemSample previous = read_system_sample(paths_);  // the baseline: no rates yet
    auto next = previous.time + period;
    while (true) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            // Deadline-based so the cadence does not drift by the time spent sampling.
            if (wake_.wait_until(lock, next, [this] { return stopping_; })) {
                return;
            }
        }
        SystemSample current = read_system_sample(paths_);
        try {
            logger_.info("system metrics", system_metrics_fields(previous, current, ticks, cpus));
        } catch (const std::exception& e) {
            logger_.warn("system metrics sample failed", {{"error", e.what()}});
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++emitted_;
        }
        previous = std::move(current);
        next += period;
        const auto now = std::chrono::steady_clock::now();
        if (next < now) {
            next = now + period;  // after a stall (suspend, overload), restart the cadence
        }
    }
}

}  // namespace synergos::core
