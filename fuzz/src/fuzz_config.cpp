// SPDX-License-Identifier: Apache-2.0
// The YAML config loader (core/src/config): any text is overlaid on the defaults of each role,
// then validated. The loader's contract is that every refusal is a ConfigError naming the place;
// any other exception escaping is a finding, as is a crash or a sanitizer report.

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include <synergos/core/config/config_loader.hpp>
#include <synergos/core/config/runtime_config.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using synergos::core::Role;
    const std::string text(synergos::fuzz::as_text(data, size));
    for (Role role : {Role::Director, Role::Ttp, Role::Worker}) {
        try {
            auto config = synergos::core::RuntimeConfig::defaults_for(role);
            synergos::core::overlay_yaml(config, text, "fuzz.yaml", "/nonexistent/base");
            synergos::core::validate(config);
            // The start-up snapshot; non-UTF-8 text is replaced, as the log sinks do.
            (void)config.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        } catch (const synergos::core::ConfigError& e) {
            synergos::fuzz::check(e.what()[0] != '\0', "a ConfigError without a message");
        } catch (const std::exception& e) {
            synergos::fuzz::fail("an exception other than ConfigError escaped", e.what());
        }
    }
    return 0;
}
