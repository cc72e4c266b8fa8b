// SPDX-License-Identifier: Apache-2.0
#include "decode.hpp"
#include "jpeg_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <limits>

// stb_image allocates through a budget: its PNG inflate grows the output buffer without bound
// (it only checks that there are *enough* pixels), so a 1x1 PNG with a few MB of highly
// compressible IDAT inflated to gigabytes whatever max_image_pixels said. decode_image sets a
// budget from the dimensions stbi_info reports around each stbi_load_from_memory call; past it an
// allocation returns NULL and stb fails cleanly ("outofmem"). Outside a budgeted call these
// behave as malloc/realloc/free. Every block carries its size in a small header so free and
// realloc can account for it.
// Every block is also handed out zeroed: stb 2.27 mallocs its JPEG decoder state without
// clearing it (2.28 memsets it), so a scan using a Huffman table the file never defined decoded
// with whatever an earlier allocation (an earlier file's tables) left in that memory.
namespace {

struct StbBudget {
    bool active = false;    ///< inside a budgeted stbi_load_from_memory call
    std::size_t limit = 0;  ///< bytes stb may hold at once
    std::size_t used = 0;   ///< bytes held by blocks allocated during the call
    bool exceeded = false;  ///< an allocation was refused for the budget
};
thread_local StbBudget stb_budget;

constexpr std::size_t kStbHeader = alignof(std::max_align_t);
static_assert(kStbHeader >= sizeof(std::size_t), "the block header holds a size_t");

/// True (and noted) when `grow` more bytes would pass the budget of a budgeted call.
bool stb_over_budget(std::size_t grow) {
    StbBudget& b = stb_budget;
    if (b.active && (grow > b.limit || b.used > b.limit - grow)) {
        b.exceeded = true;
        return true;
    }
    return false;
}

void* stb_budget_malloc(std::size_t size) {
    if (size > std::numeric_limits<std::size_t>::max() - kStbHeader || stb_over_budget(size)) {
        return nullptr;
    }
    auto* block = static_cast<unsigned char*>(std::malloc(size + kStbHeader));
    if (block == nullptr) {
        return nullptr;
    }
    std::memcpy(block, &size, sizeof size);
    std::memset(block + kStbHeader, 0, size);
    if (stb_budget.active) {
        stb_budget.used += size;
    }
    return block + kStbHeader;
}

void stb_budget_free(void* p) {
    if (p == nullptr) {
        return;
    }
    auto* block = static_cast<unsigned char*>(p) - kStbHeader;
    std::size_t size = 0;
    std::memcpy(&size, block, sizeof size);
    if (stb_budget.active) {
        stb_budget.used -= std::min(size, stb_budget.used);
    }
    std::free(block);
}

void* stb_budget_realloc(void* p, std::size_t size) {
    if (p == nullptr) {
        return stb_budget_malloc(size);
    }
    auto* block = static_cast<unsigned char*>(p) - kStbHeader;
    std::size_t old = 0;
    std::memcpy(&old, block, sizeof old);
    if (size > std::numeric_limits<std::size_t>::max() - kStbHeader ||
        (size > old && stb_over_budget(size - old))) {
        return nullptr;  // the old block stays valid, as realloc's does
    }
    auto* grown = static_cast<unsigned char*>(std::realloc(block, size + kStbHeader));
    if (grown == nullptr) {
        return nullptr;
    }
    std::memcpy(grown, &size, sizeof size);
    if (size > old) {
        std::memset(grown + kStbHeader + old, 0, size - old);
    }
    if (stb_budget.active) {
        stb_budget.used = stb_budget.used - std::min(old, stb_budget.used) + size;
    }
    return grown + kStbHeader;
}

/// Sets the budget for one stb call on this thread; restores the plain allocator after it.
class StbBudgetScope {
public:
    explicit StbBudgetScope(std::size_t limit) { stb_budget = StbBudget{true, limit, 0, false}; }
    ~StbBudgetScope() { stb_budget = StbBudget{}; }
    StbBudgetScope(const StbBudgetScope&) = delete;
    StbBudgetScope& operator=(const StbBudgetScope&) = delete;
    bool exceeded() const { return stb_budget.exceeded; }
};

}  // namespace

#define STBI_MALLOC(sz) stb_budget_malloc(sz)
#define STBI_REALLOC(p, newsz) stb_budget_realloc(p, newsz)
#define STBI_FREE(p) stb_budget_free(p)

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

namespace {

/// Most scans (SOS segments) a JPEG may have. stb decodes every scan over the whole image, so a
/// ~1 MB file of tens of thousands of empty scans took hours of CPU; progressive JPEGs written
/// by encoders have about ten.
constexpr int kMaxJpegScans = 256;

/// True when `bytes` is a JPEG with more than kMaxJpegScans scans. Every SOS marker is the raw
/// byte pair FF DA (entropy-coded data stuffs a data byte FF as FF 00), so counting the pairs
/// counts at least the scans. A JPEG is what stb takes for one: fill bytes (FF) may come before
/// the start marker.
bool too_many_jpeg_scans(std::string_view bytes) {
    if (!starts_like_jpeg(bytes)) {
        return false;
    }
    int scans = 0;
    for (std::size_t i = 0; i + 1 < bytes.size(); ++i) {
        if (static_cast<unsigned char>(bytes[i]) == 0xFF &&
            static_cast<unsigned char>(bytes[i + 1]) == 0xDA && ++scans > kMaxJpegScans) {
            return true;
        }
    }
    return false;
}

}  // namespace

sdk::Result<Image> decode_image(std::string_view bytes, int channels, std::int64_t max_pixels,
                                const std::string& label) {
    if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, "image " + label + " is too large"};
    }
    if (too_many_jpeg_scans(bytes)) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          "image " + label + " is a JPEG with more than " +
                              std::to_string(kMaxJpegScans) +
                              " scans (SOS markers): refused, each scan is decoded over the "
                              "whole image"};
    }
    // stb 2.27 writes past its Huffman tables on a DHT of more than 256 codes: its JPEG input is
    // walked first, and anything malformed is refused before stb reads a byte.
    if (starts_like_jpeg(bytes)) {
        if (auto problem = jpeg_structure_problem(bytes)) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              "image " + label + " is a malformed JPEG: " + *problem +
                                  "; refused before decoding"};
        }
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
    // What stb may hold while decoding an image of these dimensions: the raw scanlines (16-bit,
    // up to 4 channels, plus a filter byte per row) several times over (inflate buffer, the
    // compressed data, the converted copies), and 16 MiB for the decoder's own tables. A legit
    // image needs far less; a PNG whose IDAT inflates past it is a decompression bomb.
    const double area = static_cast<double>(w) * static_cast<double>(h);
    const double want = 8.0 * area * std::max(n, 4) * 2.0 + 4.0 * h + 16.0 * 1024 * 1024;
    const std::size_t budget =
        want >= static_cast<double>(std::numeric_limits<std::size_t>::max() / 2)
            ? std::numeric_limits<std::size_t>::max() / 2
            : static_cast<std::size_t>(want);
    stbi_uc* pixels = nullptr;
    bool over_budget = false;
    {
        StbBudgetScope scope(budget);
        pixels = stbi_load_from_memory(data, len, &w, &h, &n, channels);
        over_budget = scope.exceeded();
    }
    if (pixels == nullptr) {
        if (over_budget) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              "image " + label + " decompresses to more than its size allows (" +
                                  std::to_string(w) + "x" + std::to_string(h) +
                                  " pixels, decoding needed more than " + std::to_string(budget) +
                                  " bytes): refused as a decompression bomb"};
        }
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

void to_planar(const Image& src, int height, int width, Resize resize, float* out, bool unit_range) {
    const bool bilinear = resize == Resize::Bilinear;
    const auto c = static_cast<std::size_t>(src.channels);
    const auto h = static_cast<std::size_t>(height);
    const auto w = static_cast<std::size_t>(width);
    const auto sw = static_cast<std::size_t>(src.width);
    const float kScale = unit_range ? 1.0f / 255.0f : 1.0f;
    const double divisor = unit_range ? 255.0 : 1.0;
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
    if (resize == Resize::Pad) {
        std::fill(out, out + c * h * w, 0.0f);
        const std::size_t ch = std::min(h, static_cast<std::size_t>(src.height));
        const std::size_t cw = std::min(w, sw);
        for (std::size_t y = 0; y < ch; ++y) {
            for (std::size_t x = 0; x < cw; ++x) {
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
                    static_cast<float>((top * (1 - wy) + bottom * wy) / divisor);
            }
        }
    }
}

}  // namespace synergos::plugins::image
