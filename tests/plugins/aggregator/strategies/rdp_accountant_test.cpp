// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "rdp_accountant.hpp"

namespace {

using synergos::plugins::dpfedavg::RdpAccountant;

}  // namespace

TEST_CASE("The RDP accountant matches hand-computed epsilons (Mironov 2017)",
          "[unit][strategies]") {
    // eps = min over alpha of T * alpha / (2 sigma^2) + ln(1/delta) / (alpha - 1),
    // ln(1e5) = 11.512925465.
    SECTION("sigma 1, one round, delta 1e-5: alpha = 5.8") {
        // 5.8 / 2 + 11.512925465 / 4.8 = 2.9 + 2.398526139 = 5.298526139
        RdpAccountant accountant;
        accountant.compose_gaussian(1.0);
        const auto eps = accountant.epsilon(1e-5);
        CHECK(eps.epsilon == Approx(5.298526139).epsilon(1e-9));
        CHECK(eps.order == Approx(5.8));
    }
    SECTION("sigma 2, ten rounds composed one by one, delta 1e-5: alpha = 4") {
        // 10 * 4 / 8 + 11.512925465 / 3 = 5 + 3.837641822 = 8.837641822
        RdpAccountant accountant;
        for (int r = 0; r < 10; ++r) {
            accountant.compose_gaussian(2.0);
        }
        const auto eps = accountant.epsilon(1e-5);
        CHECK(eps.epsilon == Approx(8.837641822).epsilon(1e-9));
        CHECK(eps.order == Approx(4.0));
        RdpAccountant at_once;
        at_once.compose_gaussian(2.0, 10);
        CHECK(at_once.epsilon(1e-5).epsilon == Approx(eps.epsilon).epsilon(1e-12));
    }
    SECTION("sigma 10, one round, delta 1e-5: alpha = 49 (an integer order)") {
        // 49 / 200 + 11.512925465 / 48 = 0.245 + 0.239852614 = 0.484852614
        RdpAccountant accountant;
        accountant.compose_gaussian(10.0);
        CHECK(accountant.epsilon(1e-5).epsilon == Approx(0.484852614).epsilon(1e-9));
        CHECK(accountant.epsilon(1e-5).order == Approx(49.0));
    }
    SECTION("sigma 1, one round, delta 1e-3: a larger delta buys a smaller epsilon") {
        // ln(1000) = 6.907755279; alpha = 4.7: 2.35 + 6.907755279 / 3.7 = 4.216960886
        RdpAccountant accountant;
        accountant.compose_gaussian(1.0);
        CHECK(accountant.epsilon(1e-3).epsilon == Approx(4.216960886).epsilon(1e-9));
    }
}

TEST_CASE("Epsilon grows with rounds and every grid order is a valid bound", "[unit][strategies]") {
    RdpAccountant accountant;
    double previous = 0;
    for (int r = 1; r <= 20; ++r) {
        accountant.compose_gaussian(1.1);
        const double eps = accountant.epsilon(1e-5).epsilon;
        CHECK(eps > previous);
        previous = eps;
        // The grid minimum is at most any single order's bound and at least the continuous
        // minimum over alpha > 1 (found here by a fine scan).
        double continuous = 1e300;
        for (double alpha = 1.001; alpha < 2000; alpha *= 1.001) {
            continuous =
                std::min(continuous, r * alpha / (2 * 1.1 * 1.1) + std::log(1e5) / (alpha - 1));
        }
        CHECK(eps >= continuous - 1e-9);
        CHECK(eps <= continuous * 1.01);
    }
}

TEST_CASE("The accountant restores a saved state and refuses another grid", "[unit][strategies]") {
    RdpAccountant a;
    a.compose_gaussian(0.8, 3);
    RdpAccountant b;
    REQUIRE(b.restore(a.orders(), a.rdp()).is_ok());
    CHECK(b.epsilon(1e-5).epsilon == a.epsilon(1e-5).epsilon);
    std::vector<double> orders = a.orders();
    orders.pop_back();
    std::vector<double> rdp = a.rdp();
    rdp.pop_back();
    CHECK_FALSE(b.restore(orders, rdp).is_ok());
    rdp = a.rdp();
    rdp[3] = -1;
    CHECK_FALSE(b.restore(a.orders(), rdp).is_ok());
    CHECK(b.epsilon(1e-5).epsilon == a.epsilon(1e-5).epsilon);  // unchanged by the refusals
}
