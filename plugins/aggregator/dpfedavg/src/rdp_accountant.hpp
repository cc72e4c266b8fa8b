// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file rdp_accountant.hpp
/// A Renyi differential privacy accountant for the Gaussian mechanism without subsampling
/// (every client takes part in every round), after Mironov, "Renyi Differential Privacy",
/// CSF 2017.
///
/// - One round adds noise N(0, (z * C)^2) to a sum whose sensitivity is C (one client's clipped
///   update, add/remove-one-client adjacency): (alpha, alpha / (2 z^2))-RDP for every order
///   alpha > 1 (Mironov, Table 2).
/// - Rounds compose additively per order (Proposition 1).
/// - (epsilon, delta)-DP follows for any order: epsilon = rdp(alpha) + log(1 / delta) / (alpha - 1)
///   (Proposition 3); we take the smallest over a fixed grid of orders. Every order gives a
///   valid bound, so a coarse grid only makes epsilon slightly loose, never wrong.

#include <cstdint>
#include <vector>

#include <synergos/sdk/status.hpp>

namespace synergos::plugins::dpfedavg {

/// Threading: a value type.
class RdpAccountant {
public:
    /// 1.1, 1.2, ..., 10.9, then 12, 13, ..., 63, then 128, 256, 512, 1024.
    static const std::vector<double>& default_orders();

    RdpAccountant();

    /// Adds `steps` rounds of the Gaussian mechanism with this noise multiplier (> 0).
    void compose_gaussian(double noise_multiplier, std::int64_t steps = 1);

    struct Epsilon {
        double epsilon = 0.0;
        double order = 0.0;  ///< the order that gave the smallest bound
    };
    /// The smallest epsilon over the orders for this delta (in (0, 1)).
    Epsilon epsilon(double delta) const;

    const std::vector<double>& orders() const noexcept { return orders_; }
    const std::vector<double>& rdp() const noexcept { return rdp_; }

    /// Restores a saved state. InvalidArgument when the orders differ from ours (a state from
    /// another version) or an RDP value is negative or not finite; nothing changes then.
    sdk::Status restore(const std::vector<double>& orders, const std::vector<double>& rdp);

private:
    std::vector<double> orders_;
    std::vector<double> rdp_;
};

}  // namespace synergos::plugins::dpfedavg
