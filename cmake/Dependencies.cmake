# SPDX-License-Identifier: Apache-2.0
# Every third-party dependency, with its minimum version, in one place (Debian 12 packages;
# see README "Build"). Code links the synergos::dep::* aliases, never upstream names.

find_package(Boost 1.74 CONFIG REQUIRED COMPONENTS program_options filesystem)
find_package(spdlog 1.10 CONFIG REQUIRED)
find_package(yaml-cpp CONFIG REQUIRED)
find_package(nlohmann_json 3.10 CONFIG REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(ZLIB REQUIRED)
find_package(Threads REQUIRED)
find_package(rabbitmq-c CONFIG QUIET)
find_package(Torch CONFIG QUIET)

function(synergos_dep_alias alias target)
  if(TARGET ${target} AND NOT TARGET synergos::dep::${alias})
    add_library(synergos_dep_${alias} INTERFACE)
    target_link_libraries(synergos_dep_${alias} INTERFACE ${target})
    add_library(synergos::dep::${alias} ALIAS synergos_dep_${alias})
  endif()
endfunction()

synergos_dep_alias(boost Boost::headers)
synergos_dep_alias(program_options Boost::program_options)
synergos_dep_alias(filesystem Boost::filesystem)
synergos_dep_alias(spdlog spdlog::spdlog)
synergos_dep_alias(yaml yaml-cpp)
synergos_dep_alias(json nlohmann_json::nlohmann_json)
synergos_dep_alias(sqlite SQLite::SQLite3)
synergos_dep_alias(ssl OpenSSL::SSL)
synergos_dep_alias(crypto OpenSSL::Crypto)
synergos_dep_alias(zlib ZLIB::ZLIB)
synergos_dep_alias(threads Threads::Threads)
if(TARGET rabbitmq::rabbitmq)
  synergos_dep_alias(rabbitmq rabbitmq::rabbitmq)
endif()
if(Torch_FOUND)
  add_library(synergos_dep_torch INTERFACE)
  target_link_libraries(synergos_dep_torch INTERFACE ${TORCH_LIBRARIES})
  add_library(synergos::dep::torch ALIAS synergos_dep_torch)
endif()

# The allocator the executables link (synergos_use_allocator). tcmalloc's per-thread caches
# take malloc/free off the REST hot path: glibc malloc was about 15% of the server's CPU in a
# POST profile, and tcmalloc raised the POST benchmark from 17.7k to 21.3k req/s (README,
# "Benchmarks"). Sanitizer builds (presets asan, fuzz) use the system allocator, which the
# sanitizers replace themselves.
set(SYNERGOS_ALLOCATOR "tcmalloc" CACHE STRING "allocator of the executables: tcmalloc or system")
set_property(CACHE SYNERGOS_ALLOCATOR PROPERTY STRINGS tcmalloc system)
if(SYNERGOS_ALLOCATOR STREQUAL "tcmalloc")
  find_library(SYNERGOS_TCMALLOC_LIBRARY NAMES tcmalloc_minimal)
  if(NOT SYNERGOS_TCMALLOC_LIBRARY)
    message(FATAL_ERROR "SYNERGOS_ALLOCATOR=tcmalloc: libtcmalloc_minimal not found (Debian: "
                        "apt-get install libgoogle-perftools-dev), or configure with "
                        "-DSYNERGOS_ALLOCATOR=system")
  endif()
  add_library(synergos_dep_allocator INTERFACE)
  # --no-as-needed: nothing calls tcmalloc by name; it is linked for the malloc it interposes.
  target_link_libraries(synergos_dep_allocator INTERFACE
    "-Wl,--push-state,--no-as-needed" ${SYNERGOS_TCMALLOC_LIBRARY} "-Wl,--pop-state")
  add_library(synergos::dep::allocator ALIAS synergos_dep_allocator)
elseif(NOT SYNERGOS_ALLOCATOR STREQUAL "system")
  message(FATAL_ERROR "SYNERGOS_ALLOCATOR must be tcmalloc or system, not '${SYNERGOS_ALLOCATOR}'")
endif()

# Links the chosen allocator into an executable (long-running servers and their benchmarks).
function(synergos_use_allocator target)
  if(TARGET synergos::dep::allocator)
    target_link_libraries(${target} PRIVATE synergos::dep::allocator)
  endif()
endfunction()
