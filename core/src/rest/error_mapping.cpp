// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/rest/error_mapping.hpp>

namespace synergos::core::rest {

int http_status(sdk::ErrorCode code) noexcept {
    switch (code) {
        case sdk::ErrorCode::InvalidArgument:
            return 422;
        case sdk::ErrorCode::NotFound:
            return 404;
        case sdk::ErrorCode::AlreadyExists:
            return 409;
        case sdk::ErrorCode::FailedPrecondition:
            return 409;
        case sdk::ErrorCode::Unavailable:
            return 503;
        case sdk::ErrorCode::Timeout:
            return 504;
        case sdk::ErrorCode::PermissionDenied:
            return 403;
        case sdk::ErrorCode::Unimplemented:
            return 501;
        case sdk::ErrorCode::Cancelled:
            return 409;
        case sdk::ErrorCode::ResourceExhausted:
            // The server ran out (a full disk under the store, memory): 507, which a client may
            // retry later. 413 is the HTTP server's own answer to a body past its limit, and a
            // client does not send the same request again after it.
            return 507;
        case sdk::ErrorCode::Internal:
            return 500;
    }
    return 500;
}

http::Response error_response(const sdk::Error& error) {
    return http::Response::error(http_status(error.code), error.message);
}

}  // namespace synergos::core::rest
