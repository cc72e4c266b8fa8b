// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string>

#include <synergos/sdk/data_pipeline.hpp>
#include <synergos/sdk/host.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/plugin.hpp>

#include "decode.hpp"

namespace synergos::plugins::image {

/// How images become samples; plugin options give the defaults, `DataRequest::options_json`
/// (`{"color": "L"|"RGB", "height": H, "width": W, "resize": "nearest"|"bilinear"|"pad"}`) overrides.
struct ImageSettings {
    std::string color = "L";  ///< "L" (grayscale, 1 channel) or "RGB" (3 channels)
    int height = 0;           ///< 0: the size of the first image (then all must share it)
    int width = 0;
    Resize resize = Resize::Bilinear;  ///< how an image of another size becomes a sample
    bool unit_range = true;  ///< pixels as [0,1]; false = 0-255, as the original Synergos
};

/// Bounds on what one load may read.
struct ImageLimits {
    std::int64_t max_images = 100000;          ///< rows of one split
    std::int64_t max_image_pixels = 16777216;  ///< width x height of one source image
    std::int64_t max_file_bytes = 64 << 20;    ///< one image or mapping.csv file
    /// Decoded pixels of one split held at once, and its samples as floats: small compressed
    /// files decode to far more (8 PNGs of 4096 x 4096, 131 KB, are 537 MB of samples).
    std::int64_t max_split_bytes = 4LL << 30;
};

/// Loads the images listed in each folder's `mapping.csv` into one split (see README).
/// Errors: InvalidArgument naming the file (and row); never throws.
sdk::Result<sdk::Dataset> load_images(const sdk::DataRequest& request,
                                      const ImageSettings& defaults,
                                      const ImageLimits& limits) noexcept;

/// The `image` data pipeline (PNG/JPEG + mapping.csv).
/// Threading: stateless after construction; `load` may run on several threads at once.
class ImagePipeline final : public sdk::DataPipeline {
public:
    ImagePipeline(sdk::HostContext& host, const sdk::Options& options);

    std::string datatype() const noexcept override { return "image"; }
    sdk::Result<sdk::Dataset> load(const sdk::DataRequest& request) noexcept override;

private:
    sdk::HostContext& host_;
    ImageSettings defaults_;
    ImageLimits limits_;
};

extern const sdk::PluginDescriptor kImageDescriptor;

}  // namespace synergos::plugins::image
