// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file safetensors.hpp
/// The safetensors codec: how weights travel between the TTP and workers and how models are
/// written to disk (ARCHITECTURE.md "Principles").
///
/// Format (https://github.com/huggingface/safetensors, "Format"):
///   - 8 bytes: N, the header length, unsigned little-endian;
///   - N bytes: a UTF-8 JSON object `{"<name>": {"dtype": "F32", "shape": [..],
///     "data_offsets": [begin, end]}, ..., "__metadata__": {"<key>": "<string>"}}`, padded with
///     spaces so that the data starts on an 8-byte boundary;
///   - the data: every tensor's bytes, little-endian, row-major, offsets relative to the data
///   start.
///
/// Decoding is strict: the header length is bounded, the JSON must be one object without duplicate
/// keys, every dtype must be one the SDK knows, `shape x dtype size == end - begin`, and the
/// tensors must tile the data exactly (sorted by offset, contiguous, no overlap, no trailing
/// bytes). Every refusal is `InvalidArgument` naming the tensor or the field (size limits give
/// `ResourceExhausted`). Nothing is allocated before the header has been validated, and never more
/// than the body size, so a malicious body cannot crash the process or make it over-allocate.
///
/// Threading: pure functions, safe from any thread. Errors: returned, never thrown.

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <synergos/sdk/status.hpp>
#include <synergos/sdk/tensor.hpp>

namespace synergos::core::tensor {

/// The HTTP content type of a safetensors body.
inline constexpr std::string_view kSafetensorsContentType = "application/vnd.safetensors";

/// The `__metadata__` map: free-form string pairs.
using Metadata = std::map<std::string, std::string>;

/// Bounds applied while decoding.
struct DecodeLimits {
    /// Largest accepted body (header and data), in bytes.
    std::uint64_t max_total_bytes = std::uint64_t{4} << 30;
    /// Largest accepted JSON header (the reference implementation uses 100 MB).
    std::uint64_t max_header_bytes = std::uint64_t{100} << 20;
};

/// One tensor of a parsed body. `data` points into the body given to `parse`.
/// Lifetime: valid while that body is alive and unchanged.
struct TensorView {
    std::string name;
    sdk::DType dtype = sdk::DType::F32;
    std::vector<std::int64_t> shape;
    std::span<const unsigned char> data;

    std::int64_t numel() const noexcept;
};

/// A validated body: metadata plus views of the tensors in data order (by offset).
/// Use it to fold a large body into an accumulator without copying the tensors first.
struct SafetensorsView {
    Metadata metadata;
    std::vector<TensorView> tensors;

    /// The tensor named `name`, or nullptr.
    const TensorView* find(std::string_view name) const noexcept;
};

/// Where one tensor lies in a body's data section (offsets relative to the data start).
struct TensorLayout {
    std::string name;
    sdk::DType dtype = sdk::DType::F32;
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
};

/// A validated header, before any data byte: metadata and the tensors in data order, which tile
/// the data exactly. Lets a body arriving from a socket land straight in its tensors.
struct HeaderLayout {
    Metadata metadata;
    std::vector<TensorLayout> tensors;
};

/// A decoded body with owned tensors (in data order).
struct Decoded {
    sdk::TensorMap tensors;
    Metadata metadata;
};

/// How `decode_into` treats the tensors already in the output map.
enum class DecodeInto : std::uint8_t {
    /// The output becomes exactly the body's tensors; buffers of same-named tensors are reused.
    Replace = 1,
    /// The body must hold exactly the output's tensors (names, dtypes, shapes; any order): the
    /// bytes are copied into the existing buffers and nothing is allocated.
    MatchExisting,
};

/// Parses and validates a body without copying tensor data.
sdk::Result<SafetensorsView> parse(std::span<const unsigned char> body,
                                   const DecodeLimits& limits = {}) noexcept;
sdk::Result<SafetensorsView> parse(std::string_view body, const DecodeLimits& limits = {}) noexcept;

/// Streaming decode, step 1: the header length from a body's first 8 bytes, checked against the
/// whole body's size and the limits (the same errors as `parse`).
sdk::Result<std::uint64_t> header_length(std::uint64_t body_size,
                                         std::span<const unsigned char, 8> prefix,
                                         const DecodeLimits& limits = {}) noexcept;
/// Streaming decode, step 2: validates the header JSON (the `header_length` bytes after the
/// prefix) for a data section of `data_bytes`, with the same checks and errors as `parse`.
sdk::Result<HeaderLayout> parse_header(std::string_view header_json,
                                       std::uint64_t data_bytes) noexcept;

/// Decodes a body into owned tensors.
sdk::Result<Decoded> decode(std::span<const unsigned char> body,
                            const DecodeLimits& limits = {}) noexcept;
sdk::Result<Decoded> decode(std::string_view body, const DecodeLimits& limits = {}) noexcept;

/// Decodes into preallocated tensors (see `DecodeInto`). On error `out` is unchanged.
/// `metadata` may be nullptr when the caller does not need it.
sdk::Status decode_into(std::span<const unsigned char> body, sdk::TensorMap& out,
                        Metadata* metadata, DecodeInto mode = DecodeInto::Replace,
                        const DecodeLimits& limits = {}) noexcept;
sdk::Status decode_into(std::string_view body, sdk::TensorMap& out, Metadata* metadata,
                        DecodeInto mode = DecodeInto::Replace,
                        const DecodeLimits& limits = {}) noexcept;

/// The exact encoded size of `tensors` with `metadata`, or InvalidArgument naming a tensor whose
/// data size does not match its shape, a duplicate or empty name, or the reserved `__metadata__`.
sdk::Result<std::size_t> encoded_size(const sdk::TensorMap& tensors,
                                      const Metadata& metadata = {}) noexcept;

/// Encodes `tensors` in map order into `out` (resized; its capacity is reused).
sdk::Status encode_into(const sdk::TensorMap& tensors, const Metadata& metadata,
                        std::vector<unsigned char>& out) noexcept;
/// As `encode_into`, into a string (HTTP bodies are strings).
sdk::Status encode_into(const sdk::TensorMap& tensors, const Metadata& metadata,
                        std::string& out) noexcept;

/// The first part of an encoding: the 8-byte length and the padded header, into `out`; the
/// tensors' bytes follow it in map order. Lets a body be sent from the tensors themselves.
sdk::Status encode_header_into(const sdk::TensorMap& tensors, const Metadata& metadata,
                               std::string& out) noexcept;

/// Encodes into a new buffer.
sdk::Result<std::vector<unsigned char>> encode(const sdk::TensorMap& tensors,
                                               const Metadata& metadata = {}) noexcept;
/// Encodes into a new string.
sdk::Result<std::string> encode_to_string(const sdk::TensorMap& tensors,
                                          const Metadata& metadata = {}) noexcept;

/// Parses a safetensors dtype name ("F32", ...); InvalidArgument for names the SDK does not know.
sdk::Result<sdk::DType> parse_dtype(std::string_view name) noexcept;

}  // namespace synergos::core::tensor
