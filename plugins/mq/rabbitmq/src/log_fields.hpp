// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace synergos::plugins::rabbitmq {

/// Log fields as JSON text. Message ids, broker texts and library errors are raw bytes: invalid
/// UTF-8 is replaced (U+FFFD) instead of throwing (json type_error 316), so building a log line
/// can never end an I/O thread.
inline std::string log_fields(const nlohmann::json& fields) {
    return fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace synergos::plugins::rabbitmq
