// SPDX-License-Identifier: Apache-2.0
#pragma once

// An archive context for tests of a TTP function's `archive`, which returns its writes as
// mutations and here reads nothing: checked as returned, with no store behind them.

#include <cstdlib>
#include <string>

#include <synergos/sdk/testing/fake_host.hpp>
#include <synergos/sdk/ttp_function.hpp>

namespace synergos::testing {

class NoStoreArchiveContext final : public sdk::ArchiveContext {
public:
    sdk::Logger& logger() noexcept override { return host_.logger(); }
    sdk::StorageBackend& storage() noexcept override { std::abort(); }  // a read: not expected
    sdk::Tracker* tracker() noexcept override { return nullptr; }
    std::string outputs_dir() const override { return "/nonexistent"; }

private:
    sdk::testing::FakeHost host_;
};

}  // namespace synergos::testing
