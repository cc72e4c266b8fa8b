// SPDX-License-Identifier: Apache-2.0
#include "rdp_accountant.hpp"

#include <cmath>
#include <limits>
#include <string>

namespace synergos::plugins::dpfedavg {

const std::vector<double>& RdpAccountant::default_orders() {
    static const std::vector<double> kOrders = [] {
        std::vector<double> orders;
        for (int x = 1; x < 100; ++x) {
            orders.push_back(1.0 + x / 10.0);
        }
        for (int a = 12; a < 64; ++a) {
            orders.push_back(a);
        }
        for (double a : {128.0, 256.0, 512.0, 1024.0}) {
            orders.push_back(a);
        }
        return orders;
    }();
    return kOrders;
}

RdpAccountant::RdpAccountant() : orders_(default_orders()), rdp_(orders_.size(), 0.0) {}

void RdpAccountant::compose_gaussian(double noise_multiplier, std::int64_t steps) {
    const double per_unit =
        static_cast<double>(steps) / (2.0 * noise_multiplier * noise_multiplier);
    for (std::size_t k = 0; k < orders_.size(); ++k) {
        rdp_[k] += orders_[k] * per_unit;
    }
}

RdpAccountant::Epsilon RdpAccountant::epsilon(double delta) const {
    Epsilon best{std::numeric_limits<double>::infinity(), 0.0};
    const double log_inv_delta = std::log(1.0 / delta);
    for (std::size_t k = 0; k < orders_.size(); ++k) {
        const double eps = rdp_[k] + log_inv_delta / (orders_[k] - 1.0);
        if (eps < best.epsilon) {
            best = {eps, orders_[k]};
        }
    }
    return best;
}

sdk::Status RdpAccountant::restore(const std::vector<double>& orders,
                                   const std::vector<double>& rdp) {
    if (orders != orders_) {
        return {sdk::ErrorCode::InvalidArgument,
                "the saved accountant uses " + std::to_string(orders.size()) +
                    " RDP orders that differ from this version's " +
                    std::to_string(orders_.size())};
    }
    if (rdp.size() != orders_.size()) {
        return {sdk::ErrorCode::InvalidArgument,
                "the saved accountant has " + std::to_string(rdp.size()) + " RDP values for " +
                    std::to_string(orders_.size()) + " orders"};
    }
    for (double v : rdp) {
        if (!std::isfinite(v) || v < 0.0) {
            return {sdk::ErrorCode::InvalidArgument,
                    "the saved accountant has an RDP value that is negative or not finite"};
        }
    }
    rdp_ = rdp;
    return sdk::Status::ok();
}

}  // namespace synergos::plugins::dpfedavg
