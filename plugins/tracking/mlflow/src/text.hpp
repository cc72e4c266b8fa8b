// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file text.hpp
/// Text forms MLflow's Python readers expect: YAML string scalars, Python's float repr for
/// metric lines, and `file://` URIs as `pathlib.Path.as_uri()` writes them.

#include <optional>
#include <string>
#include <string_view>

namespace synergos::plugins::mlflow {

/// A YAML scalar that PyYAML (YAML 1.1) and yaml-cpp both read back as exactly `text`, as a
/// string: plain when that cannot be misread (a letter first, then `[A-Za-z0-9_./-]`, and not a
/// YAML 1.1 boolean or null word), single-quoted when printable ASCII, otherwise double-quoted
/// with escapes (non-ASCII as \u / \U, so the file is ASCII).
std::string yaml_string(std::string_view text);

/// `repr(float)` of Python 3: the shortest digits that round-trip, fixed notation for decimal
/// exponents -4 < e <= 16 (with ".0" on integers), otherwise "1.5e-05" / "1e+16"; "nan",
/// "inf", "-inf".
std::string python_float_repr(double value);

/// "file://" + the absolute path, percent-encoding every byte but `A-Za-z0-9_.-~/`.
std::string file_uri(std::string_view absolute_path);

/// The local path of a "file://" URI (or of a plain absolute path); nullopt for other schemes or
/// a remote host.
std::optional<std::string> local_path_of_uri(std::string_view uri);

}  // namespace synergos::plugins::mlflow
