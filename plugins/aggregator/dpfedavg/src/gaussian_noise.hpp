// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file gaussian_noise.hpp
/// Standard normal draws from xoshiro256** (Blackman and Vigna) through Box-Muller. Written out
/// rather than taken from <random> so a seed gives the same noise on every standard library.

#include <cmath>
#include <cstdint>
#include <numbers>

namespace synergos::plugins::dpfedavg {

/// SplitMix64 step: spreads a seed over the generator state.
inline std::uint64_t splitmix64(std::uint64_t& x) noexcept {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31U);
}

/// Threading: a value type; one thread at a time.
class GaussianNoise {
public:
    explicit GaussianNoise(std::uint64_t seed) noexcept {
        for (std::uint64_t& s : s_) {
            s = splitmix64(seed);
        }
    }

    /// The generator for one round of a seeded run: the same (seed, round) gives the same
    /// noise, so a resumed job redraws exactly what the interrupted one would have.
    static GaussianNoise for_round(std::uint64_t seed, std::int64_t round) noexcept {
        std::uint64_t r = static_cast<std::uint64_t>(round);
        return GaussianNoise(seed ^ splitmix64(r));
    }

    /// One N(0, 1) draw.
    double next() noexcept {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        // u1 in (0, 1] keeps log() finite; u2 in [0, 1).
        const double u1 = static_cast<double>((next_u64() >> 11U) + 1U) * 0x1.0p-53;
        const double u2 = static_cast<double>(next_u64() >> 11U) * 0x1.0p-53;
        const double radius = std::sqrt(-2.0 * std::log(u1));
        const double angle = 2.0 * std::numbers::pi * u2;
        spare_ = radius * std::sin(angle);
        has_spare_ = true;
        return radius * std::cos(angle);
    }

    std::uint64_t next_u64() noexcept {
        const std::uint64_t result = rotl(s_[1] * 5U, 7) * 9U;
        const std::uint64_t t = s_[1] << 17U;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) noexcept {
        return (x << static_cast<unsigned>(k)) | (x >> static_cast<unsigned>(64 - k));
    }

    std::uint64_t s_[4] = {};
    double spare_ = 0.0;
    bool has_spare_ = false;
};

}  // namespace synergos::plugins::dpfedavg
