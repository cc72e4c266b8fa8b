# SPDX-License-Identifier: Apache-2.0
# Warning flags for the project's own targets (not forced on SDK users).
add_library(synergos_warnings INTERFACE)
target_compile_options(synergos_warnings INTERFACE -Wall -Wextra -Wpedantic -Wno-unused-parameter)
if(SYNERGOS_WARNINGS_AS_ERRORS)
  target_compile_options(synergos_warnings INTERFACE -Werror)
endif()
