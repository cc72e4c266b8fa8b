// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file status.hpp
/// SDK-owned error values: `Error`, `Status` and `Result<T>` (an API close to `std::expected`).
///
/// Exceptions never cross the plugin boundary (STYLE.md L9): every SDK virtual is `noexcept` and
/// reports failure through these types. Messages name the thing that failed (plugin, file, field),
/// start lower-case and carry no trailing period.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace synergos::sdk {

/// A small, fixed set of error categories. The core maps them to HTTP statuses in one place.
enum class ErrorCode : std::uint8_t {
    InvalidArgument = 1,  ///< the caller sent something malformed (HTTP 400/422)
    NotFound,             ///< a named record, file or plugin does not exist (HTTP 404)
    AlreadyExists,        ///< creating would overwrite (HTTP 409)
    FailedPrecondition,   ///< the system is not in a state that allows this (HTTP 409/412)
    Unavailable,          ///< a peer (broker, worker, Graylog) cannot be reached now; retrying may help
    Timeout,              ///< a wait ran out of time
    PermissionDenied,     ///< refused by policy (HTTP 403)
    Unimplemented,        ///< the module or operation is not active (HTTP 501)
    Cancelled,            ///< the operation was cancelled on request
    ResourceExhausted,    ///< a size or count limit was hit (HTTP 413/429)
    Internal,             ///< a bug or an unexpected environment failure (HTTP 500)
};

/// Short lower-case name of an error code, e.g. "not_found".
inline const char* to_string(ErrorCode code) noexcept {
    switch (code) {
        case ErrorCode::InvalidArgument: return "invalid_argument";
        case ErrorCode::NotFound: return "not_found";
        case ErrorCode::AlreadyExists: return "already_exists";
        case ErrorCode::FailedPrecondition: return "failed_precondition";
        case ErrorCode::Unavailable: return "unavailable";
        case ErrorCode::Timeout: return "timeout";
        case ErrorCode::PermissionDenied: return "permission_denied";
        case ErrorCode::Unimplemented: return "unimplemented";
        case ErrorCode::Cancelled: return "cancelled";
        case ErrorCode::ResourceExhausted: return "resource_exhausted";
        case ErrorCode::Internal: return "internal";
    }
    return "internal";
}

/// An error: a category plus an operator-readable message.
struct Error {
    ErrorCode code = ErrorCode::Internal;
    std::string message;
};

/// Helper to build an `Error`.
inline Error make_error(ErrorCode code, std::string message) {
    return Error{code, std::move(message)};
}

/// Success or an `Error`. Default-constructed means success.
/// Threading: a plain value type; not synchronised.
class [[nodiscard]] Status {
public:
    Status() = default;
    Status(Error error) : error_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
    Status(ErrorCode code, std::string message) : error_(Error{code, std::move(message)}) {}

    /// Success.
    static Status ok() { return Status(); }

    bool is_ok() const noexcept { return !error_.has_value(); }
    explicit operator bool() const noexcept { return is_ok(); }
    /// The error; only valid when `!is_ok()`.
    const Error& error() const { return *error_; }
    ErrorCode code() const { return error_ ? error_->code : ErrorCode::Internal; }
    /// The message, or an empty string on success.
    const std::string& message() const {
        static const std::string kEmpty;
        return error_ ? error_->message : kEmpty;
    }

private:
    std::optional<Error> error_;
};

/// A value of type T or an `Error`, kept close to `std::expected<T, Error>` so it can become an
/// alias later. Threading: a plain value type; not synchronised.
template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : storage_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
    Result(Error error) : storage_(std::in_place_index<1>, std::move(error)) {}  // NOLINT
    Result(ErrorCode code, std::string message)
        : storage_(std::in_place_index<1>, Error{code, std::move(message)}) {}
    /// Converts a failed `Status`. Precondition: `!status.is_ok()`.
    Result(const Status& status) : storage_(std::in_place_index<1>, status.error()) {}  // NOLINT

    bool has_value() const noexcept { return storage_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }

    T& value() & { return std::get<0>(storage_); }
    const T& value() const& { return std::get<0>(storage_); }
    T&& value() && { return std::get<0>(std::move(storage_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    /// The error; only valid when `!has_value()`.
    const Error& error() const { return std::get<1>(storage_); }

    template <typename U>
    T value_or(U&& fallback) const& {
        return has_value() ? value() : static_cast<T>(std::forward<U>(fallback));
    }

    /// The error as a `Status` (success when a value is held).
    Status status() const { return has_value() ? Status() : Status(error()); }

private:
    std::variant<T, Error> storage_;
};

}  // namespace synergos::sdk
