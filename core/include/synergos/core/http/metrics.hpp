// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file metrics.hpp
/// Operational metrics in the Prometheus text format (version 0.0.4), served by the HTTP server
/// at `GET /metrics`: the server's own (requests by status class, their latency, connections)
/// and whatever the process adds as sources (the director: its job service and the store
/// writer of the connect routes). Counters and histograms are lock-free: recording costs a few
/// relaxed atomic additions on the request path.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

namespace synergos::core::http {

/// Appends a metric's text to the page (called at each scrape, from an I/O thread: must be
/// quick and must not block).
using MetricsSource = std::function<void(std::string& out)>;

/// A latency histogram with fixed buckets from 0.5 ms to 10 s.
class LatencyHistogram {
public:
    static constexpr std::array<double, 14> kBounds = {
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};

    void observe(std::chrono::nanoseconds elapsed) noexcept;
    /// `# HELP`, `# TYPE name histogram`, cumulative `name_bucket{le="..."}` lines, `name_sum`
    /// (seconds) and `name_count`.
    void render(std::string& out, std::string_view name, std::string_view help) const;
    std::uint64_t count() const noexcept;

private:
    std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};  ///< last: +Inf
    std::atomic<std::uint64_t> sum_ns_{0};
};

/// The content type of the page.
inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// ---- definitions (header-only: the job service uses it without linking the HTTP library)

namespace metrics_detail {

inline void header(std::string& out, std::string_view name, std::string_view help,
                   std::string_view type) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

inline std::string number(double value) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", value);
    return buf;
}

}  // namespace metrics_detail

inline void LatencyHistogram::observe(std::chrono::nanoseconds elapsed) noexcept {
    const auto ns = elapsed.count() < 0 ? 0 : static_cast<std::uint64_t>(elapsed.count());
    const double seconds = static_cast<double>(ns) / 1e9;
    std::size_t i = 0;
    while (i < kBounds.size() && seconds > kBounds[i]) {
        ++i;
    }
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(ns, std::memory_order_relaxed);
}

inline std::uint64_t LatencyHistogram::count() const noexcept {
    std::uint64_t n = 0;
    for (const auto& b : buckets_) {
        n += b.load(std::memory_order_relaxed);
    }
    return n;
}

inline void LatencyHistogram::render(std::string& out, std::string_view name,
                                     std::string_view help) const {
    metrics_detail::header(out, name, help, "histogram");
    // One pass over the buckets: the count is their sum, so the +Inf bucket and the count agree
    // even while requests are being recorded.
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= kBounds.size(); ++i) {
        cumulative += buckets_[i].load(std::memory_order_relaxed);
        out.append(name).append("_bucket{le=\"");
        out.append(i < kBounds.size() ? metrics_detail::number(kBounds[i]) : std::string("+Inf"));
        out.append("\"} ").append(std::to_string(cumulative)).append("\n");
    }
    out.append(name)
        .append("_sum ")
        .append(metrics_detail::number(
            static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9))
        .append("\n");
    out.append(name).append("_count ").append(std::to_string(cumulative)).append("\n");
}

/// `# HELP`, `# TYPE name counter` and the value.
inline void append_counter(std::string& out, std::string_view name, std::string_view help,
                           std::uint64_t value) {
    metrics_detail::header(out, name, help, "counter");
    out.append(name).append(" ").append(std::to_string(value)).append("\n");
}

/// `# HELP`, `# TYPE name gauge` and the value.
inline void append_gauge(std::string& out, std::string_view name, std::string_view help,
                         double value) {
    metrics_detail::header(out, name, help, "gauge");
    out.append(name).append(" ").append(metrics_detail::number(value)).append("\n");
}

}  // namespace synergos::core::http
