// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <stdexcept>
#include <string>

namespace synergos::plugins::torch {

/// Bad input (architecture, run arguments, dataset) detected inside the plugin. Thrown only
/// internally; every SDK entry point converts it to an InvalidArgument error.
class SpecError final : public std::runtime_error {
public:
    explicit SpecError(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace synergos::plugins::torch
