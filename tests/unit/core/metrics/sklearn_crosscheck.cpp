// SPDX-License-Identifier: Apache-2.0
// Driver for sklearn_crosscheck.py: reads {"action", "labels", "lw", "scores", "sw", "rows"} as
// JSON on stdin and prints compute_statistics' result.
#include <synergos/core/metrics/metrics.hpp>

#include <iostream>

int main() {
    try {
        const nlohmann::json in = nlohmann::json::parse(std::cin);
        const auto out = synergos::core::metrics::compute_statistics(
            in.at("action").get<std::string>(), in.at("labels").get<std::vector<float>>(),
            in.at("lw").get<std::int64_t>(), in.at("scores").get<std::vector<float>>(),
            in.at("sw").get<std::int64_t>(), in.at("rows").get<std::int64_t>());
        std::cout << out.dump() << '\n';
        return 0;
    } catch (const std::exception& e) {
        std::cerr << e.what() << '\n';
        return 1;
    }
}
