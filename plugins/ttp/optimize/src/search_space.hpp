// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file search_space.hpp
/// The original's `ranges.json` search space (`{name: {"_type": t, "_value": [...]}}`) and the
/// two ways of drawing trials from it: `random` (every parameter sampled, seeded) and `grid`
/// (the cartesian product of the enumerable parameters, the rest sampled per trial, as Ray Tune's
/// BasicVariantGenerator does with grid_search and samplers mixed, repeated like its
/// num_samples up to the trial count).

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <synergos/sdk/status.hpp>

namespace synergos::plugins::optimize {

using json = nlohmann::json;

/// One dimension of the search space.
struct Dimension {
    std::string name;
    std::string type;  ///< choice | randint | uniform | quniform | loguniform | qloguniform |
                       ///< normal | qnormal
    std::vector<json> values;  ///< choice: the options
    double a = 0;              ///< low, or mu for the normals
    double b = 0;              ///< high, or sigma for the normals
    double q = 0;              ///< the step of the q* types
    bool integral = false;     ///< randint, or a q* type whose bounds and step are integers
};

/// Parses a search space; InvalidArgument names the parameter and what is wrong with it.
sdk::Result<std::vector<Dimension>> parse_search_space(const json& space);

/// A small deterministic generator (splitmix64): the same seed gives the same trials on every
/// platform, which std::*_distribution does not promise.
class Rng {
public:
    explicit Rng(std::uint64_t seed) : state_(seed) {}
    std::uint64_t next();
    double uniform01();  ///< [0, 1)
    double normal();     ///< standard normal (Box-Muller)

private:
    std::uint64_t state_;
};

/// One sampled value of a dimension.
json sample(const Dimension& d, Rng& rng);

/// `count` hyper-parameter sets drawn at random with `seed`.
std::vector<json> random_trials(const std::vector<Dimension>& space, int count, std::uint64_t seed);

/// The values a dimension takes in a grid, or none when it is continuous (sampled instead).
std::vector<json> grid_values(const Dimension& d);

/// The grid's points in order (first dimension slowest), at most `count` of them; continuous
/// dimensions are sampled per point with `seed`, and when there are any the grid is walked
/// again with fresh samples until `count` points.
std::vector<json> grid_trials(const std::vector<Dimension>& space, int count, std::uint64_t seed);

}  // namespace synergos::plugins::optimize
