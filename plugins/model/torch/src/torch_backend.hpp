// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file torch_backend.hpp
/// The `torch` model backend: builds libtorch (CPU) networks from Synergos architecture lists.
/// Free of libtorch headers so the plugin entry compiles quickly.

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/model.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>

namespace synergos::plugins::torch {

/// Default and largest `max_parameters` (1e12 float32 values would be 4 TB).
inline constexpr std::int64_t kDefaultMaxParameters = 100'000'000;
inline constexpr std::int64_t kLargestMaxParameters = 1'000'000'000'000;

inline constexpr sdk::OptionSpec kTorchOptions[] = {
    {"threads", sdk::OptionType::Int, false, "0",
     "libtorch intra-op threads for the whole process (0: libtorch's default, one per core)",
     false},
    {"max_parameters", sdk::OptionType::Int, false, "100000000",
     "most values a network may hold (weights, biases, BatchNorm statistics), and most values of "
     "one sample at the input or any layer's output; larger architectures are refused before "
     "anything is allocated (1 to 1000000000000)",
     false},
};

inline constexpr sdk::PluginDescriptor kTorchDescriptor{
    sizeof(sdk::PluginDescriptor),
    "torch",
    sdk::PluginKind::Model,
    "0.1.0",
    "libtorch (CPU) networks built from Synergos architecture lists",
    "Synergos",
    sdk::PluginStatus::Stable,
    kTorchOptions,
    sizeof(kTorchOptions) / sizeof(kTorchOptions[0])};

/// The backend. Threading: validate/build may be called from any thread; each model is used by
/// one thread at a time.
class TorchBackend final : public sdk::ModelBackend {
public:
    /// Throws std::invalid_argument for a `threads` or `max_parameters` option out of range
    /// (the factory reports it).
    TorchBackend(sdk::HostContext& host, const sdk::Options& options);

    sdk::Status validate(std::string_view architecture_json, std::string_view args_json,
                         const std::vector<std::int64_t>& input_shape) noexcept override;
    sdk::Result<std::unique_ptr<sdk::Model>> build(std::string_view architecture_json,
                                                   std::string_view args_json) noexcept override;

private:
    sdk::HostContext& host_;
    std::int64_t max_parameters_ = kDefaultMaxParameters;
};

}  // namespace synergos::plugins::torch
