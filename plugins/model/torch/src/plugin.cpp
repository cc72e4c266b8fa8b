// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "torch_backend.hpp"

SYNERGOS_DECLARE_MODEL_PLUGIN(synergos::plugins::torch::TorchBackend,
                              synergos::plugins::torch::kTorchDescriptor)
