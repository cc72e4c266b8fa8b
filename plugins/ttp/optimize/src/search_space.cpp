// SPDX-License-Identifier: Apache-2.0
#include "search_space.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

namespace synergos::plugins::optimize {

namespace {

constexpr double kPi = 3.14159265358979323846;
/// A grid never enumerates more integers than this from one randint.
constexpr std::int64_t kMaxIntegerGrid = 1000;

bool is_integer(double v) {
    return std::isfinite(v) && std::floor(v) == v;
}

sdk::Error bad(const std::string& name, const std::string& what) {
    return sdk::Error{sdk::ErrorCode::InvalidArgument, "search_space." + name + ": " + what};
}

/// Integers beyond this lose precision as doubles, and past 2^63 the conversion to int64 is
/// undefined: integer draws stay within +/-2^53.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53
/// |z| of Rng::normal() never exceeds sqrt(-2 ln 2^-53) ~ 8.58.
constexpr double kMaxNormalDeviations = 9;

/// The multiples k*q of a bounded q type's step inside [low, high], as the range of k (first >
/// last when none is). The slack keeps a bound that is a multiple of q in despite rounding
/// (0.7 / 0.1 is 6.999...).
std::pair<double, double> grid_steps(const Dimension& d) {
    return {std::ceil(d.a / d.q - 1e-9), std::floor(d.b / d.q + 1e-9)};
}

/// Rounds to the nearest multiple of q, as an integer when the dimension is integral. The
/// bounded types (quniform, qloguniform) stay in [low, high], as NNI clips them, but on the
/// nearest multiple of q inside the range rather than on the bound itself; only when no
/// multiple of q lies in the range is the draw clipped to the nearer bound.
json quantize(const Dimension& d, double v) {
    double r = std::round(v / d.q) * d.q;
    if (d.type == "quniform" || d.type == "qloguniform") {
        const auto [first, last] = grid_steps(d);
        if (first <= last) {
            r = std::clamp(std::round(v / d.q), first, last) * d.q;
        }
        // Also trims the last bit k*q may overshoot a bound by (7 * 0.1 > 0.7).
        r = std::clamp(r, d.a, d.b);
    }
    if (d.integral) {
        return static_cast<std::int64_t>(std::llround(r));
    }
    return r;
}

}  // namespace

sdk::Result<std::vector<Dimension>> parse_search_space(const json& space) {
    if (!space.is_object() || space.empty()) {
        return sdk::Error{
            sdk::ErrorCode::InvalidArgument,
            "field 'search_space' must be a non-empty object of {\"_type\", \"_value\"} entries"};
    }
    std::vector<Dimension> out;
    for (const auto& [name, entry] : space.items()) {
        if (!entry.is_object() || !entry.contains("_type") || !entry["_type"].is_string() ||
            !entry.contains("_value") || !entry["_value"].is_array()) {
            return bad(name, "needs \"_type\" (a string) and \"_value\" (a list)");
        }
        Dimension d;
        d.name = name;
        d.type = entry["_type"].get<std::string>();
        const json& v = entry["_value"];
        if (d.type == "choice") {
            if (v.empty()) {
                return bad(name, "choice needs at least one value");
            }
            d.values.assign(v.begin(), v.end());
            out.push_back(std::move(d));
            continue;
        }
        std::size_t want = 0;
        if (d.type == "randint" || d.type == "uniform" || d.type == "loguniform" ||
            d.type == "normal") {
            want = 2;
        } else if (d.type == "quniform" || d.type == "qloguniform" || d.type == "qnormal") {
            want = 3;
        } else {
            return bad(name, "unknown _type '" + d.type +
                                 "' (choice, randint, uniform, quniform, loguniform, qloguniform, "
                                 "normal, qnormal)");
        }
        if (v.size() != want) {
            return bad(name, d.type + " takes " + std::to_string(want) +
                                 " numbers in _value, found " + std::to_string(v.size()));
        }
        for (const auto& x : v) {
            if (!x.is_number()) {
                return bad(name, d.type + " takes numbers in _value");
            }
        }
        d.a = v[0].get<double>();
        d.b = v[1].get<double>();
        if (want == 3) {
            d.q = v[2].get<double>();
            if (!(d.q > 0)) {
                return bad(name, "the step q must be positive");
            }
        }
        const bool normal = d.type == "normal" || d.type == "qnormal";
        if (normal) {
            if (!(d.b > 0)) {
                return bad(name, "sigma must be positive");
            }
        } else if (!(d.a < d.b)) {
            return bad(name, "low must be below high");
        }
        if ((d.type == "loguniform" || d.type == "qloguniform") && !(d.a > 0)) {
            return bad(name, "log-uniform bounds must be positive");
        }
        if (d.type == "randint") {
            if (!is_integer(d.a) || !is_integer(d.b)) {
                return bad(name, "randint bounds must be integers");
            }
            d.integral = true;
        } else if (want == 3) {
            d.integral = is_integer(d.q) && (normal || (is_integer(d.a) && is_integer(d.b)));
        }
        // Integer draws are converted to int64: bounds past 2^53 overflowed it (undefined) or
        // lost precision. Bounded types stay within their bounds (quantize clips).
        if (d.integral && !normal &&
            (std::abs(d.a) > kMaxExactInteger || std::abs(d.b) > kMaxExactInteger)) {
            return bad(name, d.type + " bounds must lie within +/-2^53 (9007199254740992)");
        }
        if (d.integral && normal && std::abs(d.a) + kMaxNormalDeviations * d.b > kMaxExactInteger) {
            return bad(name,
                       "qnormal with an integer step draws integers: |mu| + 9 sigma must "
                       "lie within 2^53 (9007199254740992)");
        }
        out.push_back(std::move(d));
    }
    return out;
}

std::uint64_t Rng::next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

double Rng::uniform01() {
    return static_cast<double>(next() >> 11) * 0x1.0p-53;
}

double Rng::normal() {
    const double u1 = 1.0 - uniform01();  // (0, 1]: log is finite
    const double u2 = uniform01();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
}

json sample(const Dimension& d, Rng& rng) {
    const double u = rng.uniform01();
    if (d.type == "choice") {
        return d
            .values[std::min(d.values.size() - 1,
                             static_cast<std::size_t>(u * static_cast<double>(d.values.size())))];
    }
    if (d.type == "randint") {
        // Ray Tune's randint: low inclusive, high exclusive.
        const auto low = static_cast<std::int64_t>(d.a);
        const auto span = static_cast<std::int64_t>(d.b) - low;
        return low + std::min(span - 1, static_cast<std::int64_t>(u * static_cast<double>(span)));
    }
    if (d.type == "uniform") {
        return d.a + u * (d.b - d.a);
    }
    if (d.type == "quniform") {
        return quantize(d, d.a + u * (d.b - d.a));
    }
    if (d.type == "loguniform" || d.type == "qloguniform") {
        const double v = std::exp(std::log(d.a) + u * (std::log(d.b) - std::log(d.a)));
        return d.type == "loguniform" ? json(v) : quantize(d, v);
    }
    const double v = d.a + d.b * rng.normal();
    return d.type == "normal" ? json(v) : quantize(d, v);
}

std::vector<json> random_trials(const std::vector<Dimension>& space, int count,
                                std::uint64_t seed) {
    Rng rng(seed);
    std::vector<json> out;
    for (int i = 0; i < count; ++i) {
        json t = json::object();
        for (const auto& d : space) {
            t[d.name] = sample(d, rng);
        }
        out.push_back(std::move(t));
    }
    return out;
}

std::vector<json> grid_values(const Dimension& d) {
    std::vector<json> out;
    if (d.type == "choice") {
        return d.values;
    }
    if (d.type == "randint" && d.b - d.a <= static_cast<double>(kMaxIntegerGrid)) {
        for (auto i = static_cast<std::int64_t>(d.a); i < static_cast<std::int64_t>(d.b); ++i) {
            out.emplace_back(i);
        }
    } else if (d.type == "quniform" && (d.b - d.a) / d.q <= static_cast<double>(kMaxIntegerGrid)) {
        // The multiples of q in [low, high]: what quantize draws (none: sampled, on a bound).
        // Counted in integers: past 2^53, k + 1 == k in doubles and the loop never ended.
        const auto [first, last_step] = grid_steps(d);
        const double span = last_step - first;
        const std::int64_t steps = span >= 0 ? static_cast<std::int64_t>(span) : -1;
        json last;
        for (std::int64_t i = 0; i <= steps; ++i) {
            json v = quantize(d, (first + static_cast<double>(i)) * d.q);
            if (v != last) {
                out.push_back(v);
                last = v;
            }
        }
    }
    return out;
}

std::vector<json> grid_trials(const std::vector<Dimension>& space, int count, std::uint64_t seed) {
    std::vector<std::vector<json>> axes;
    std::size_t total = 1;
    for (const auto& d : space) {
        axes.push_back(grid_values(d));
        if (!axes.back().empty()) {
            total = std::min<std::size_t>(total * axes.back().size(), 1u << 30);
        }
    }
    // With a sampled dimension the grid is walked again, with fresh samples, until `count`
    // points (Ray Tune's grid_search repeated num_samples times): before, a grid of only
    // continuous dimensions ran one trial whatever max_trial_num said. A fully enumerable grid
    // stops after one pass: a second would repeat the same points.
    const bool sampled =
        std::any_of(axes.begin(), axes.end(), [](const std::vector<json>& a) { return a.empty(); });
    Rng rng(seed);
    std::vector<json> out;
    for (std::size_t n = 0; (n < total || sampled) && static_cast<int>(out.size()) < count; ++n) {
        // Mixed radix, the last enumerable dimension fastest.
        std::size_t rest = n % total;
        std::vector<std::size_t> index(space.size(), 0);
        for (std::size_t i = space.size(); i-- > 0;) {
            if (!axes[i].empty()) {
                index[i] = rest % axes[i].size();
                rest /= axes[i].size();
            }
        }
        json t = json::object();
        for (std::size_t i = 0; i < space.size(); ++i) {
            t[space[i].name] = axes[i].empty() ? sample(space[i], rng) : axes[i][index[i]];
        }
        out.push_back(std::move(t));
    }
    return out;
}

}  // namespace synergos::plugins::optimize
