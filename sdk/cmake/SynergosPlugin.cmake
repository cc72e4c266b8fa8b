# SPDX-License-Identifier: Apache-2.0
# synergos_add_plugin(KIND <kind> NAME <name> ENTRY src/plugin.cpp
#                     [SOURCES ...] [LINK_PRIVATE ...] [INCLUDE_PRIVATE ...] [NO_INSTALL])
#
# Creates:
#   synergos_plugin_<kind>_<name>_impl  STATIC (PIC): the plugin's code, linked by its unit tests
#   synergos_plugin_<kind>_<name>       MODULE: libsynergos-<kind>-<name>.so, the entry TU only
# The MODULE is linked with --no-undefined (a plugin never resolves symbols from the host) and
# written to SYNERGOS_PLUGIN_OUTPUT_DIR (default: <build>/plugins). This file is installed with
# the SDK so out-of-tree plugins get the same flags.
include_guard(GLOBAL)

if(NOT DEFINED SYNERGOS_PLUGIN_OUTPUT_DIR)
  set(SYNERGOS_PLUGIN_OUTPUT_DIR ${CMAKE_BINARY_DIR}/plugins)
endif()
if(NOT DEFINED SYNERGOS_PLUGIN_INSTALL_DIR)
  include(GNUInstallDirs)
  set(SYNERGOS_PLUGIN_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/synergos/plugins)
endif()

function(synergos_add_plugin)
  cmake_parse_arguments(P "NO_INSTALL" "KIND;NAME;ENTRY" "SOURCES;LINK_PRIVATE;INCLUDE_PRIVATE" ${ARGN})
  set(valid_kinds logging mq storage tracking ttp aggregator model data)
  if(NOT P_KIND IN_LIST valid_kinds)
    message(FATAL_ERROR "synergos_add_plugin: KIND '${P_KIND}' is not one of: ${valid_kinds}")
  endif()
  if(NOT P_NAME MATCHES "^[a-z0-9_]+$")
    message(FATAL_ERROR "synergos_add_plugin: NAME '${P_NAME}' must match [a-z0-9_]+")
  endif()
  if(NOT P_ENTRY)
    message(FATAL_ERROR "synergos_add_plugin: ENTRY (the TU with the export macro) is required")
  endif()
  set(base synergos_plugin_${P_KIND}_${P_NAME})

  if(P_SOURCES)
    add_library(${base}_impl STATIC ${P_SOURCES})
    set_target_properties(${base}_impl PROPERTIES POSITION_INDEPENDENT_CODE ON
      CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
    target_link_libraries(${base}_impl PUBLIC synergos::sdk ${P_LINK_PRIVATE})
    target_include_directories(${base}_impl PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src ${P_INCLUDE_PRIVATE})
    if(TARGET synergos_warnings)
      target_link_libraries(${base}_impl PRIVATE synergos_warnings)
    endif()
  else()
    # An entry-only plugin (all code in shared libraries) still gets an _impl target so tests
    # can link it uniformly.
    add_library(${base}_impl INTERFACE)
    target_link_libraries(${base}_impl INTERFACE synergos::sdk ${P_LINK_PRIVATE})
    target_include_directories(${base}_impl INTERFACE ${CMAKE_CURRENT_SOURCE_DIR}/src ${P_INCLUDE_PRIVATE})
  endif()

  add_library(${base} MODULE ${P_ENTRY})
  target_link_libraries(${base} PRIVATE ${base}_impl)
  set_target_properties(${base} PROPERTIES
    OUTPUT_NAME synergos-${P_KIND}-${P_NAME}
    PREFIX lib
    CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY ${SYNERGOS_PLUGIN_OUTPUT_DIR})
  target_link_options(${base} PRIVATE LINKER:--no-undefined)
  if(NOT P_NO_INSTALL)
    install(TARGETS ${base} LIBRARY DESTINATION ${SYNERGOS_PLUGIN_INSTALL_DIR} COMPONENT Runtime)
  endif()
endfunction()
