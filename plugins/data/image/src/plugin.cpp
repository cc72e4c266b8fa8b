// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "image_pipeline.hpp"

SYNERGOS_DECLARE_DATA_PLUGIN(synergos::plugins::image::ImagePipeline,
                             synergos::plugins::image::kImageDescriptor)
