# SPDX-License-Identifier: Apache-2.0
# CPack pre-build script (CPACK_PRE_BUILD_SCRIPTS): runs after the components are installed into
# the staging folder, before the .deb files are made. The install rules put config files under
# <prefix>/etc, which for a Debian package (prefix /usr) would be /usr/etc; Debian keeps them in
# /etc, where the package's conffiles list and the systemd units expect them.
set(staging_roots ${CPACK_TEMPORARY_DIRECTORY})
foreach(component IN LISTS CPACK_COMPONENTS_ALL)
  list(APPEND staging_roots ${CPACK_TEMPORARY_DIRECTORY}/${component})
endforeach()
foreach(root IN LISTS staging_roots)
  set(from ${root}${CPACK_PACKAGING_INSTALL_PREFIX}/etc)
  if(NOT CPACK_PACKAGING_INSTALL_PREFIX STREQUAL "/" AND IS_DIRECTORY ${from})
    if(EXISTS ${root}/etc)
      message(FATAL_ERROR "DebianLayout: both ${from} and ${root}/etc exist; cannot merge them")
    endif()
    file(RENAME ${from} ${root}/etc)
    message(STATUS "DebianLayout: ${CPACK_PACKAGING_INSTALL_PREFIX}/etc -> /etc in ${root}")
  endif()
endforeach()
