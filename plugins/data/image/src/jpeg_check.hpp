// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace synergos::plugins::image {

/// True when stb_image would take `bytes` for a JPEG: 0xFF fill bytes, then the SOI marker.
bool starts_like_jpeg(std::string_view bytes);

/// Walks a JPEG's marker segments before stb_image sees them. Debian's stb_image 2.27 trusts the
/// Huffman tables it reads: a DHT table of more than 256 codes writes past its arrays (fixed in
/// stb 2.28, which we cannot ship). Checks, from SOI to EOI (or the end of the data inside a
/// scan), every marker segment's length against the data, and every DHT table: class 0 or 1,
/// id 0-3, at most 256 codes, its values present, the tables filling the segment exactly. DHT
/// segments between the scans of a progressive JPEG are checked too: the entropy-coded data after
/// each SOS is skipped to the next marker as a decoder does (FF 00 stuffing, RST0-7, FF fill).
/// Stricter than stb on purpose: bytes that are not a marker where one must be (stb skips such
/// padding before the frame header) and markers without a segment out of place are refused.
/// Returns nothing when the structure is sound, else what is wrong and at which byte offset.
std::optional<std::string> jpeg_structure_problem(std::string_view bytes);

}  // namespace synergos::plugins::image
