// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "descriptor.hpp"
#include "memory_queue.hpp"

SYNERGOS_DECLARE_MESSAGE_QUEUE_PLUGIN(synergos::plugins::memory::MemoryQueue,
                                      synergos::plugins::memory::kDescriptor)
