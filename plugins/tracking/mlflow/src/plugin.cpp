// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "mlflow_tracker.hpp"

SYNERGOS_DECLARE_TRACKING_PLUGIN(synergos::plugins::mlflow::MlflowTracker,
                                 synergos::plugins::mlflow::kMlflowDescriptor)
