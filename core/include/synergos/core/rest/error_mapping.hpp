// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file error_mapping.hpp
/// The one place where SDK error codes become HTTP statuses.

#include <string_view>

#include <synergos/core/http/message.hpp>
#include <synergos/sdk/status.hpp>

namespace synergos::core::rest {

/// InvalidArgument 422, NotFound 404, AlreadyExists 409, FailedPrecondition 409,
/// Unavailable 503, Timeout 504, PermissionDenied 403, Unimplemented 501, Cancelled 409,
/// ResourceExhausted 413, Internal 500.
int http_status(sdk::ErrorCode code) noexcept;

/// `{"message": error.message}` with the mapped status.
http::Response error_response(const sdk::Error& error);

}  // namespace synergos::core::rest
