// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file tensor_files.hpp
/// Model files on disk: safetensors written atomically (temporary file, fsync, rename) so a crash
/// never leaves a torn checkpoint behind.

#include <string>
#include <string_view>

#include <synergos/sdk/status.hpp>
#include <synergos/sdk/tensor.hpp>

namespace synergos::core::jobs {

/// Writes `tensors` to `path` with `metadata_json` (a JSON object; non-string values are
/// serialised) as `__metadata__`; creates parent folders.
sdk::Status write_tensor_file(const std::string& path, const sdk::TensorMap& tensors,
                              std::string_view metadata_json);
/// Reads a safetensors file.
sdk::Result<sdk::TensorMap> read_tensor_file(const std::string& path);
/// Writes `content` to `path` atomically (temporary file, fsync, rename); creates parent folders.
sdk::Status write_file_atomic(const std::string& path, std::string_view content);

}  // namespace synergos::core::jobs
