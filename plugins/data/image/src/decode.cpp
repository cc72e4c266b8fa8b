// SPDX-License-Identifier: Apache-2.0
#include "decode.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

// stb_image's implementation is compiled here, private to this plugin (static functions, PNG and
// JPEG only, no stdio), so the plugin neither links libstb nor exports or clashes with its symbols.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wuseless-cast"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wcast-qual"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

namespace synergos::plugins::image {

sdk::Result<Image> decode_image(std::string_view bytes, int channels, std::int64_t max_pixels,
                                const std::string& label) {
    if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, "image " + label + " is too large"};
    }
    const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
    const int len = static_cast<int>(bytes.size());
    int w = 0;
    int h = 0;
    int n = 0;
    if (stbi_info_from_memory(data, len, &w, &h, &n) == 0) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          "image " + label + " is not a readable PNG or JPEG file (" +
                              std::string(stbi_failure_reason()) + ")"};
    }
    if (w <= 0 || h <= 0 ||
        static_cast<std::int64_t>(w) * static_cast<std::int64_t>(h) > max_pixels) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          "image " + label + " is " + std::to_string(w) + "x" + std::to_string(h) +
                              " pixels, more than the limit of " + std::to_string(max_pixels) +
                              " (option max_image_pixels)"};
    }
    stbi_uc* pixels = stbi_load_from_memory(data, len, &w, &h, &n, channels);
    if (pixels == nullptr) {
        return sdk::Error{
            sdk::ErrorCode::InvalidArgument,
            "image " + label + " cannot be decoded (" + std::string(stbi_failure_reason()) + ")"};
    }
    Image img;
    img.width = w;
    img.height = h;
    img.channels = channels;
    const std::size_t size = static_cast<std::size_t>(w) * static_cast<std::size_t>(h) *
                             static_cast<std::size_t>(channels);
    try {
        img.pixels.assign(pixels, pixels + size);
    } catch (...) {
        stbi_image_free(pixels);
        throw;
    }
    stbi_image_free(pixels);
    return img;
}

void to_planar(const Image& src, int height, int width, bool bilinear, float* out) {
    const auto c = static_cast<std::size_t>(src.channels);
    const auto h = static_cast<std::size_t>(height);
    const auto w = static_cast<std::size_t>(width);
    const auto sw = static_cast<std::size_t>(src.width);
    constexpr float kScale = 1.0f / 255.0f;
    const auto at = [&](std::size_t y, std::size_t x, std::size_t k) {
        return static_cast<float>(src.pixels[(y * sw + x) * c + k]);
    };
    if (src.height == height && src.width == width) {
        for (std::size_t y = 0; y < h; ++y) {
            for (std::size_t x = 0; x < w; ++x) {
                for (std::size_t k = 0; k < c; ++k) {
                    out[(k * h + y) * w + x] = at(y, x, k) * kScale;
                }
            }
        }
        return;
    }
    const double sy = static_cast<double>(src.height) / height;
    const double sx = static_cast<double>(src.width) / width;
    for (std::size_t y = 0; y < h; ++y) {
        for (std::size_t x = 0; x < w; ++x) {
            if (!bilinear) {
                const auto iy =
                    std::min(static_cast<std::size_t>(src.height - 1),
                             static_cast<std::size_t>((static_cast<double>(y) + 0.5) * sy));
                const auto ix =
                    std::min(static_cast<std::size_t>(src.width - 1),
                             static_cast<std::size_t>((static_cast<double>(x) + 0.5) * sx));
                for (std::size_t k = 0; k < c; ++k) {
                    out[(k * h + y) * w + x] = at(iy, ix, k) * kScale;
                }
                continue;
            }
            const double fy =
                std::clamp((static_cast<double>(y) + 0.5) * sy - 0.5, 0.0, src.height - 1.0);
            const double fx =
                std::clamp((static_cast<double>(x) + 0.5) * sx - 0.5, 0.0, src.width - 1.0);
            const auto y0 = static_cast<std::size_t>(fy);
            const auto x0 = static_cast<std::size_t>(fx);
            const std::size_t y1 = std::min(y0 + 1, static_cast<std::size_t>(src.height - 1));
            const std::size_t x1 = std::min(x0 + 1, static_cast<std::size_t>(src.width - 1));
            const double wy = fy - static_cast<double>(y0);
            const double wx = fx - static_cast<double>(x0);
            for (std::size_t k = 0; k < c; ++k) {
                const double top = at(y0, x0, k) * (1 - wx) + at(y0, x1, k) * wx;
                const double bottom = at(y1, x0, k) * (1 - wx) + at(y1, x1, k) * wx;
                out[(k * h + y) * w + x] =
                    static_cast<float>((top * (1 - wy) + bottom * wy) / 255.0);
            }
        }
    }
}

}  // namespace synergos::plugins::image
