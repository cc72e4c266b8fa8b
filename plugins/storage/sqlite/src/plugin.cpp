// SPDX-License-Identifier: Apache-2.0
#include <synergos/sdk/export.hpp>

#include "sqlite_storage.hpp"

SYNERGOS_DECLARE_STORAGE_PLUGIN(synergos::plugins::sqlite::SqliteStorage,
                                synergos::plugins::sqlite::kDescriptor)
