// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file names.hpp
/// The name and value rules of MLflow's `mlflow/utils/validation.py`, applied before anything is
/// written, so the store never holds an entry MLflow's own readers would refuse.

#include <cstddef>
#include <string>
#include <string_view>

#include <synergos/sdk/status.hpp>
#include <synergos/sdk/text.hpp>

namespace synergos::plugins::mlflow {

/// MLflow's limits (validation.py).
inline constexpr std::size_t kMaxEntityKeyLength = 250;
inline constexpr std::size_t kMaxParamValueLength = 6000;
inline constexpr std::size_t kMaxTagValueLength = 5000;
inline constexpr std::size_t kMaxExperimentNameLength = 500;

/// `posixpath.normpath`: collapses "//" and ".", resolves "..", drops a trailing "/"; "" -> ".".
std::string posix_normpath(std::string_view path);

/// A metric, param or tag key: `^[/\w.\- :]*$` (MLflow 2.x's POSIX rule; ASCII word characters
/// only, a deliberate narrowing of Python's Unicode `\w`), at most 250 characters, and a path
/// that normalises to itself, is not ".", and starts with neither ".." nor "/". `what` is
/// "metric", "param" or "tag" and appears in the message. Errors: InvalidArgument naming the key.
sdk::Status validate_key(std::string_view what, std::string_view key);

/// A param or tag value: valid UTF-8 (MLflow reads files as UTF-8) and at most `limit`
/// characters. Errors: InvalidArgument naming the key.
sdk::Status validate_value(std::string_view what, std::string_view key, std::string_view value,
                           std::size_t limit);

/// An experiment name: not empty, at most 500 characters, valid UTF-8.
sdk::Status validate_experiment_name(std::string_view name);

/// `^[a-zA-Z0-9][\w\-]{0,255}$` (run) and `^[a-zA-Z0-9][\w\-]{0,63}$` (experiment). Also what
/// keeps a caller-supplied id from naming another path.
sdk::Status validate_run_id(std::string_view run_id);
sdk::Status validate_experiment_id(std::string_view experiment_id);

using sdk::utf8_length;

}  // namespace synergos::plugins::mlflow
