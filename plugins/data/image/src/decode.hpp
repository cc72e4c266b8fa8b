// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <synergos/sdk/status.hpp>

namespace synergos::plugins::image {

/// An 8-bit image, interleaved (HWC).
struct Image {
    int width = 0;
    int height = 0;
    int channels = 0;
    std::vector<unsigned char> pixels;
};

/// Decodes a PNG or JPEG held in memory with stb_image, converted to `channels` (1 = grayscale
/// "L", 3 = "RGB"; alpha is dropped). The dimensions are read first and an image of more than
/// `max_pixels` pixels is refused before any pixel buffer is allocated (decompression bombs);
/// stb then decodes within a memory budget derived from those dimensions (a PNG whose data
/// inflates past it is refused), and a JPEG of more than 256 scans is refused before decoding.
/// A JPEG's marker segments are checked first (jpeg_check.hpp: stb 2.27 overflows on a DHT of
/// more than 256 codes); stb's allocations are zeroed (2.27 leaves its decoder state unset).
/// Errors: InvalidArgument naming `label` (not PNG/JPEG, malformed JPEG, corrupt, too large).
sdk::Result<Image> decode_image(std::string_view bytes, int channels, std::int64_t max_pixels,
                                const std::string& label);

/// How an image of another size than the sample becomes one: stretched (bilinear or nearest
/// neighbour), or placed at the top left of a zero sample (`Pad`, the original Synergos' way:
/// its images of several sizes were zero-padded to the largest).
enum class Resize { Bilinear, Nearest, Pad };

/// Writes `src` as planar floats (C x height x width, channel-major) scaled to [0,1] (or kept
/// 0-255 when `unit_range` is false) into `out`,
/// resizing when the size differs: nearest neighbour, or bilinear with pixel centres aligned
/// (half-pixel offsets, edge pixels clamped: the PIL/OpenCV convention). `out` holds
/// `src.channels * height * width` floats.
/// With `Pad`, the part of `src` inside the sample is copied and the rest of the sample is 0.
void to_planar(const Image& src, int height, int width, Resize resize, float* out,
               bool unit_range = true);

}  // namespace synergos::plugins::image
