// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file host.hpp
/// The host context a plugin receives from its factory: how it logs and what it may know of the
/// node it runs in. Plugins see nothing else of the core (STYLE.md B1).

#include <boost/config.hpp>

#include <string>

#include <synergos/sdk/log.hpp>

namespace synergos::sdk {

/// Services of the host process.
/// Ownership: owned by the host. Lifetime: outlives every plugin object created with it.
/// Threading: every method may be called from any thread.
class BOOST_SYMBOL_VISIBLE HostContext {
public:
    virtual ~HostContext() = default;

    /// The logger for this plugin (named `plugin.<kind>.<name>` under the node's logger).
    virtual Logger& logger() noexcept = 0;
    /// The node id given by `--id`.
    virtual std::string node_id() const = 0;
    /// "director", "ttp", "worker" or a tool name.
    virtual std::string role() const = 0;
    /// The data directory (`--data-dir`); plugins keep their files under it.
    virtual std::string data_dir() const = 0;
    /// The outputs directory (`--outputs-dir`).
    virtual std::string outputs_dir() const = 0;
    /// The MLflow directory (`--mlflow-dir`).
    virtual std::string mlflow_dir() const = 0;
};

}  // namespace synergos::sdk
