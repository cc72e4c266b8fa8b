# SPDX-License-Identifier: Apache-2.0
# Builds the dashboard (dashboard/: vite + uPlot, pinned by package-lock.json) into
# <build>/dashboard/dist with `npm ci && npm run build`, and installs it with the runtime to
# <prefix>/share/synergos/dashboard. Included from core/src/roles/CMakeLists.txt (the director
# serves it). The sources are copied to <build>/dashboard/src so node_modules never lands in
# the checkout.
find_program(SYNERGOS_NPM npm)
find_program(SYNERGOS_NODE node)
# Vite 7 needs Node.js 20.19 or later (Debian 12's own nodejs is 18: use NodeSource's).
set(_synergos_dashboard_default OFF)
if(SYNERGOS_NPM AND SYNERGOS_NODE)
  execute_process(COMMAND ${SYNERGOS_NODE} --version OUTPUT_VARIABLE _node_version
    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  string(REGEX REPLACE "^v" "" _node_version "${_node_version}")
  if(_node_version VERSION_GREATER_EQUAL 20.19)
    set(_synergos_dashboard_default ON)
  else()
    message(STATUS "dashboard: off by default (node ${_node_version} found, 20.19 or later needed)")
  endif()
endif()
option(SYNERGOS_BUILD_DASHBOARD "build the web dashboard with npm (needs node and npm)"
  ${_synergos_dashboard_default})

set(SYNERGOS_DASHBOARD_DIST ${PROJECT_BINARY_DIR}/dashboard/dist)
if(SYNERGOS_BUILD_DASHBOARD)
  if(NOT SYNERGOS_NPM)
    message(FATAL_ERROR "SYNERGOS_BUILD_DASHBOARD is ON but npm was not found (apt-get install nodejs)")
  endif()
  set(_src ${PROJECT_SOURCE_DIR}/dashboard)
  set(_work ${PROJECT_BINARY_DIR}/dashboard/src)
  file(GLOB_RECURSE _dashboard_sources CONFIGURE_DEPENDS ${_src}/src/*)
  set(_inputs ${_src}/package.json ${_src}/package-lock.json ${_src}/index.html ${_src}/vite.config.js
    ${_dashboard_sources})
  set(_stamp ${PROJECT_BINARY_DIR}/dashboard/npm-ci.stamp)
  file(MAKE_DIRECTORY ${_work})
  # npm ci only when the lock file changes; the build whenever a source does.
  add_custom_command(OUTPUT ${_stamp}
    COMMAND ${CMAKE_COMMAND} -E copy_if_different ${_src}/package.json ${_src}/package-lock.json ${_work}/
    COMMAND ${SYNERGOS_NPM} ci --no-audit --no-fund --loglevel=error
    COMMAND ${CMAKE_COMMAND} -E touch ${_stamp}
    DEPENDS ${_src}/package.json ${_src}/package-lock.json
    WORKING_DIRECTORY ${_work}
    COMMENT "dashboard: npm ci"
    VERBATIM)
  add_custom_command(OUTPUT ${SYNERGOS_DASHBOARD_DIST}/index.html
    COMMAND ${CMAKE_COMMAND} -E copy_directory ${_src}/src ${_work}/src
    COMMAND ${CMAKE_COMMAND} -E copy_if_different ${_src}/index.html ${_src}/vite.config.js ${_work}/
    COMMAND ${CMAKE_COMMAND} -E env SYNERGOS_DASHBOARD_OUT=${SYNERGOS_DASHBOARD_DIST}
      ${SYNERGOS_NPM} run build --silent
    DEPENDS ${_stamp} ${_inputs}
    WORKING_DIRECTORY ${_work}
    COMMENT "dashboard: npm run build"
    VERBATIM)
  add_custom_target(synergos_dashboard ALL DEPENDS ${SYNERGOS_DASHBOARD_DIST}/index.html)
  if(SYNERGOS_INSTALL)
    install(DIRECTORY ${SYNERGOS_DASHBOARD_DIST}/ DESTINATION ${CMAKE_INSTALL_DATADIR}/synergos/dashboard
      COMPONENT Runtime)
  endif()
endif()
