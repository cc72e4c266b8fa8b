// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file run_fields.hpp
/// Reading a strategy's run fields (server_lr, trim_fraction, krum_f, ...) from the run JSON.
/// Every error is InvalidArgument, starts with the strategy name and names the field, e.g.
/// "fedadam: field 'beta_1' must be a number in [0, 1) (got 1.5)". An absent or null field
/// takes its default.

#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::plugins::aggregator_common {

/// An interval for a number field; infinite bounds mean "no bound".
struct Range {
    double lo = -std::numeric_limits<double>::infinity();
    bool lo_open = false;
    double hi = std::numeric_limits<double>::infinity();
    bool hi_open = false;

    static Range positive() { return {0.0, true, std::numeric_limits<double>::infinity(), false}; }
    static Range non_negative() {
        return {0.0, false, std::numeric_limits<double>::infinity(), false};
    }
    /// [lo, hi)
    static Range closed_open(double lo, double hi) { return {lo, false, hi, true}; }

    bool contains(double v) const noexcept {
        const bool above = lo_open ? v > lo : v >= lo;
        const bool below = hi_open ? v < hi : v <= hi;
        return above && below;
    }

    /// "> 0", ">= 0", "in [0, 1)".
    std::string text() const {
        std::ostringstream s;
        if (std::isinf(hi)) {
            s << (lo_open ? "> " : ">= ") << lo;
        } else {
            s << "in " << (lo_open ? "(" : "[") << lo << ", " << hi << (hi_open ? ")" : "]");
        }
        return s.str();
    }
};

/// A parsed run object. Threading: a value type.
class RunFields {
public:
    /// Parses `run_json`; InvalidArgument when it is not JSON or not an object.
    static sdk::Result<RunFields> parse(std::string_view run_json, std::string strategy) {
        try {
            auto run = nlohmann::json::parse(run_json);
            if (!run.is_object()) {
                return sdk::Error{sdk::ErrorCode::InvalidArgument,
                                  strategy + ": the run must be a JSON object"};
            }
            return RunFields(std::move(run), std::move(strategy));
        } catch (const nlohmann::json::exception& e) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              strategy + ": the run is not valid JSON: " + e.what()};
        }
    }

    /// A finite number inside `range`, or `fallback` when absent or null.
    sdk::Result<double> number(const char* field, double fallback, const Range& range) const {
        const auto it = run_.find(field);
        if (it == run_.end() || it->is_null()) {
            return fallback;
        }
        if (!it->is_number()) {
            return invalid(field, "must be a number " + range.text(), *it);
        }
        const double v = it->get<double>();
        if (!std::isfinite(v) || !range.contains(v)) {
            return invalid(field, "must be a number " + range.text(), *it);
        }
        return v;
    }

    /// A finite number inside `range` that the run must give (absent or null is an error).
    sdk::Result<double> required_number(const char* field, const Range& range) const {
        const auto it = run_.find(field);
        if (it == run_.end() || it->is_null()) {
            return sdk::Error{
                sdk::ErrorCode::InvalidArgument,
                strategy_ + ": field '" + field + "' is required (a number " + range.text() + ")"};
        }
        return number(field, 0.0, range);
    }

    /// An integer in [lo, hi] (an integral float such as 2.0 is accepted), or `fallback`.
    sdk::Result<std::int64_t> integer(const char* field, std::int64_t fallback, std::int64_t lo,
                                      std::int64_t hi) const {
        auto value = optional_integer(field, lo, hi);
        if (!value) {
            return value.error();
        }
        return value->value_or(fallback);
    }

    /// Like `integer`, but absent or null gives an empty optional.
    sdk::Result<std::optional<std::int64_t>> optional_integer(const char* field, std::int64_t lo,
                                                              std::int64_t hi) const {
        const auto it = run_.find(field);
        if (it == run_.end() || it->is_null()) {
            return std::optional<std::int64_t>{};
        }
        const std::string want =
            "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
        std::int64_t v = 0;
        if (it->is_number_integer()) {
            if (it->is_number_unsigned() &&
                it->get<std::uint64_t>() >
                    static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
                return invalid(field, want, *it);
            }
            v = it->get<std::int64_t>();
        } else if (it->is_number_float()) {
            const double d = it->get<double>();
            // 2^62 keeps the cast exact and far above any sensible bound.
            if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 4.6e18) {
                return invalid(field, want, *it);
            }
            v = static_cast<std::int64_t>(d);
        } else {
            return invalid(field, want, *it);
        }
        if (v < lo || v > hi) {
            return invalid(field, want, *it);
        }
        return std::optional<std::int64_t>(v);
    }

    const std::string& strategy() const noexcept { return strategy_; }

private:
    RunFields(nlohmann::json run, std::string strategy)
        : run_(std::move(run)), strategy_(std::move(strategy)) {}

    sdk::Error invalid(const char* field, const std::string& want,
                       const nlohmann::json& got) const {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, strategy_ + ": field '" + field + "' " +
                                                               want + " (got " + got.dump() + ")"};
    }

    nlohmann::json run_;
    std::string strategy_;
};

/// Runs `body` (which returns a Status or Result), turning an escaping exception into Internal
/// with the strategy and operation named: the plugin boundary never sees an exception.
template <typename Fn>
auto guarded(const std::string& strategy, const char* operation, Fn&& body) noexcept
    -> decltype(body()) {
    try {
        return body();
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          strategy + ": " + operation + " failed: " + e.what()};
    } catch (...) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          strategy + ": " + operation + " failed: unknown exception"};
    }
}

}  // namespace synergos::plugins::aggregator_common
