// SPDX-License-Identifier: Apache-2.0
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <synergos/core/logging/logger_factory.hpp>
#include <synergos/core/runtime/system_metrics.hpp>

namespace fs = std::filesystem;
using nlohmann::json;
using synergos::core::SystemPaths;
using synergos::core::SystemSample;

namespace {

/// A fake /proc, /sys and /sys/fs/cgroup tree whose counters the test sets.
struct FakeSystem {
    fs::path root;
    SystemPaths paths;

    FakeSystem() {
        std::random_device rd;
        root = fs::temp_directory_path() / ("synergos-sysmetrics-" + std::to_string(rd()));
        fs::create_directories(root / "proc/self");
        fs::create_directories(root / "proc/net");
        fs::create_directories(root / "sys/block/sda");
        fs::create_directories(root / "cgroup/app.slice");
        paths.proc = (root / "proc").string();
        paths.sys = (root / "sys").string();
        paths.cgroup = (root / "cgroup").string();
        write("cgroup/cgroup.controllers", "cpu io memory\n");
        write("proc/self/cgroup", "0::/app.slice\n");
    }
    ~FakeSystem() {
        std::error_code ec;
        fs::remove_all(root, ec);
    }
    void write(const std::string& relative, const std::string& text) const {
        std::ofstream(root / relative) << text;
    }
    /// Sets every counter from a few numbers.
    void set(std::uint64_t process_ticks, std::uint64_t cpu_busy, std::uint64_t cpu_idle,
             std::uint64_t disk_sectors_read, std::uint64_t net_rx, std::uint64_t cgroup_usec,
             std::uint64_t process_read) const {
        write("proc/self/stat", "4242 (synergos (x) y) S 1 2 3 4 5 6 7 8 9 10 " +
                                    std::to_string(process_ticks) + " 0 0 0 20 0 1 0\n");
        write("proc/self/statm", "1000 250 10 1 0 100 0\n");
        write("proc/self/io", "rchar: 1\nwchar: 2\nread_bytes: " + std::to_string(process_read) +
                                  "\nwrite_bytes: 0\n");
        write("proc/stat", "cpu  " + std::to_string(cpu_busy) + " 0 0 " + std::to_string(cpu_idle) +
                               " 0 0 0 0 0 0\ncpu0 1 2 3 4\n");
        write("proc/meminfo",
              "MemTotal:       8000000 kB\nMemFree:         100 kB\nMemAvailable:   6000000 kB\n");
        write("proc/diskstats",
              "   8       0 sda 10 0 " + std::to_string(disk_sectors_read) +
                  " 0 20 0 100 0 0 0 0\n   8       1 sda1 10 0 999999 0 20 0 999999 0 0 0 0\n"
                  "   7       0 loop0 10 0 999999 0 20 0 999999 0 0 0 0\n");
        write("proc/net/dev",
              "Inter-|   Receive                            |  Transmit\n"
              " face |bytes    packets errs drop fifo frame compressed multicast|bytes ...\n"
              "    lo: 999999 1 0 0 0 0 0 0 999999 1 0 0 0 0 0 0\n"
              "  eth0: " +
                  std::to_string(net_rx) + " 1 0 0 0 0 0 0 500 1 0 0 0 0 0 0\n");
        write("cgroup/app.slice/cpu.stat",
              "usage_usec " + std::to_string(cgroup_usec) + "\nuser_usec 1\nsystem_usec 1\n");
        write("cgroup/app.slice/cpu.max", "200000 100000\n");
        write("cgroup/app.slice/memory.current", "104857600\n");
        write("cgroup/app.slice/memory.max", "536870912\n");
        write("cgroup/app.slice/io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n");
    }
};

}  // namespace

TEST_CASE("Samples read every counter of a fake /proc and cgroup v2 tree", "[unit][sysmetrics]") {
    FakeSystem fake;
    fake.set(150, 300, 700, 2048, 10'000, 5'000'000, 4096);
    const SystemSample s = synergos::core::read_system_sample(fake.paths);
    CHECK(s.process_cpu_ticks == 150u);  // utime 150 + stime 0, despite "(x) y" in the name
    CHECK(s.process_rss_bytes == 250u * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)));
    CHECK(s.process_read_bytes == 4096u);
    CHECK(s.host_cpu_busy == 300u);
    CHECK(s.host_cpu_total == 1000u);
    CHECK(s.host_memory_total_bytes == 8'000'000ull * 1024);
    CHECK(s.host_memory_available_bytes == 6'000'000ull * 1024);
    CHECK(s.disk_read_bytes == 2048u * 512);  // sda only: not the partition, not loop0
    CHECK(s.net_rx_bytes == 10'000u);         // eth0 only: lo excluded
    CHECK(s.net_tx_bytes == 500u);
    CHECK(s.cgroup_cpu_usage_usec == 5'000'000u);
    CHECK(s.cgroup_cpu_limit_cores == 2.0);
    CHECK(s.cgroup_memory_used_bytes == 104'857'600u);
    CHECK(s.cgroup_memory_limit_bytes == 536'870'912u);
    CHECK(s.cgroup_io_read_bytes == 4096u);
    CHECK(s.cgroup_io_write_bytes == 8192u);
}

TEST_CASE("Metrics are rates over the interval, not counters since boot", "[unit][sysmetrics]") {
    FakeSystem fake;
    fake.set(100, 300, 700, 1000, 10'000, 5'000'000, 0);
    SystemSample a = synergos::core::read_system_sample(fake.paths);
    fake.set(150, 400, 800, 3000, 30'000, 6'000'000, 1'000'000);
    SystemSample b = synergos::core::read_system_sample(fake.paths);
    // Pin the interval to exactly 2 s so the expected figures are exact.
    b.time = a.time + std::chrono::seconds(2);
    const json f = synergos::core::system_metrics_fields(a, b, 100, 4);
    CHECK(f["interval_s"] == 2.0);
    CHECK(f["cpu_percent"]["process"] == 25.0);  // 50 ticks / 100 Hz over 2 s = 0.25 core
    CHECK(f["cpu_percent"]["system"] == 50.0);   // busy 100 of 200 jiffies
    CHECK(f["cpu_percent"]["cgroup"] == 25.0);   // 1 s of CPU over 2 s, of a 2-core quota
    CHECK(f["cpu_percent"]["cgroup_limit_cores"] == 2.0);
    CHECK(f["disk"]["read_bytes_per_s"] == 2000.0 * 512 / 2);
    CHECK(f["disk"]["process_read_bytes_per_s"] == 500'000.0);
    CHECK(f["disk"]["cgroup_read_bytes_per_s"] == 0.0);
    CHECK(f["network"]["rx_bytes_per_s"] == 10'000.0);
    CHECK(f["network"]["tx_bytes_per_s"] == 0.0);
    CHECK(f["memory"]["host_used_bytes"] == 2'000'000ull * 1024);
    CHECK(f["memory"]["host_available_bytes"] == 6'000'000ull * 1024);
    CHECK(f["memory"]["cgroup_limit_bytes"] == 536'870'912u);

    SECTION("a counter that went backwards yields null, not a huge rate") {
        fake.set(150, 400, 800, 10, 30'000, 6'000'000, 1'000'000);
        SystemSample c = synergos::core::read_system_sample(fake.paths);
        c.time = b.time + std::chrono::seconds(1);
        const json g = synergos::core::system_metrics_fields(b, c, 100, 4);
        CHECK(g["disk"]["read_bytes_per_s"].is_null());
        CHECK(g["network"]["rx_bytes_per_s"] == 0.0);
    }
}

TEST_CASE("Without cgroup v2 or a quota, cgroup figures are null or relative to all CPUs",
          "[unit][sysmetrics]") {
    FakeSystem fake;
    fake.set(100, 300, 700, 1000, 10'000, 5'000'000, 0);
    SECTION("no unified hierarchy") {
        fs::remove(fake.root / "cgroup/cgroup.controllers");
        const SystemSample s = synergos::core::read_system_sample(fake.paths);
        CHECK_FALSE(s.cgroup_cpu_usage_usec.has_value());
        CHECK_FALSE(s.cgroup_memory_limit_bytes.has_value());
        const json f = synergos::core::system_metrics_fields(s, s, 100, 4);
        CHECK(f["memory"]["cgroup_limit_bytes"].is_null());
        CHECK(f["cpu_percent"]["cgroup"].is_null());
    }
    SECTION("no limits") {
        fake.write("cgroup/app.slice/cpu.max", "max 100000\n");
        fake.write("cgroup/app.slice/memory.max", "max\n");
        SystemSample a = synergos::core::read_system_sample(fake.paths);
        CHECK_FALSE(a.cgroup_cpu_limit_cores.has_value());
        CHECK_FALSE(a.cgroup_memory_limit_bytes.has_value());
        SystemSample b = a;
        b.cgroup_cpu_usage_usec = *a.cgroup_cpu_usage_usec + 2'000'000;
        b.time = a.time + std::chrono::seconds(1);
        const json f = synergos::core::system_metrics_fields(a, b, 100, 4);
        CHECK(f["cpu_percent"]["cgroup"] == 50.0);  // 2 cores busy of 4 host CPUs
    }
}

TEST_CASE("The real /proc of this machine gives sane figures", "[unit][sysmetrics]") {
    const SystemSample a = synergos::core::read_system_sample();
    // Burn a little CPU so the process figure is measurable.
    volatile std::uint64_t sink = 0;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    while (std::chrono::steady_clock::now() < until) {
        sink = sink + 1;
    }
    const SystemSample b = synergos::core::read_system_sample();
    REQUIRE(a.process_cpu_ticks.has_value());
    REQUIRE(a.process_rss_bytes.has_value());
    REQUIRE(a.host_cpu_total.has_value());
    REQUIRE(a.host_memory_total_bytes.has_value());
    CHECK(*a.process_rss_bytes > 1024u * 1024u);
    const unsigned cpus = std::thread::hardware_concurrency();
    const json f = synergos::core::system_metrics_fields(a, b, ::sysconf(_SC_CLK_TCK), cpus);
    const double process = f["cpu_percent"]["process"].get<double>();
    CHECK(process >= 0.0);
    CHECK(process <= 100.0 * cpus + 1.0);
    const double system = f["cpu_percent"]["system"].get<double>();
    CHECK(system >= 0.0);
    CHECK(system <= 100.0);
    CHECK(f["memory"]["host_used_bytes"].get<std::uint64_t>() > 0u);
}

TEST_CASE("The sampler logs a record per interval after a silent baseline", "[unit][sysmetrics]") {
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<json> records;
    synergos::core::LoggerFactory factory("director/d", [&](std::string_view line) {
        {
            std::lock_guard<std::mutex> lock(mutex);
            records.push_back(json::parse(line));
        }
        changed.notify_all();
    });
    synergos::core::SystemMetricsSampler sampler(factory.logger("sysmetrics"),
                                                 std::chrono::milliseconds(50));
    const auto started = std::chrono::steady_clock::now();
    sampler.start();
    {
        std::unique_lock<std::mutex> lock(mutex);
        REQUIRE(
            changed.wait_for(lock, std::chrono::seconds(10), [&] { return records.size() >= 3; }));
    }
    sampler.stop();
    const auto elapsed = std::chrono::steady_clock::now() - started;
    CHECK(elapsed >= std::chrono::milliseconds(150));  // the baseline emitted nothing
    std::lock_guard<std::mutex> lock(mutex);
    CHECK(sampler.records_emitted() == records.size());
    for (const auto& r : records) {
        CHECK(r["event"] == "system metrics");
        CHECK(r["fields"]["module"] == "sysmetrics");
        CHECK(r["fields"].contains("cpu_percent"));
        CHECK(r["fields"].contains("network"));
        CHECK(r["fields"]["interval_s"].get<double>() > 0.0);
    }
}

TEST_CASE("Stopping the sampler does not wait for the interval", "[unit][sysmetrics]") {
    synergos::core::LoggerFactory factory("director/d", [](std::string_view) {});
    synergos::core::SystemMetricsSampler sampler(factory.logger("sysmetrics"),
                                                 std::chrono::hours(1));
    sampler.start();
    const auto before = std::chrono::steady_clock::now();
    sampler.stop();
    CHECK(std::chrono::steady_clock::now() - before < std::chrono::seconds(5));
    CHECK(sampler.records_emitted() == 0);
}
