// SPDX-License-Identifier: Apache-2.0
// The plugin's entry points and nothing else (STYLE.md D1).
#include <synergos/sdk/export.hpp>

#include "hello_storage.hpp"

SYNERGOS_DECLARE_STORAGE_PLUGIN(hello::HelloStorage, hello::kHelloStorageDescriptor)
