// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file version.hpp
/// SDK ABI version and the build fingerprint a plugin records of its own compile environment.
///
/// The host loads a plugin only when the ABI majors are equal, the plugin's minor is not newer
/// than the host's, and both fingerprints are equal (see ARCHITECTURE.md, STYLE.md D3).
/// Bump the major for any change of an SDK class layout, virtual function list or struct field;
/// bump the minor only for additions old plugins cannot observe. `tests/unit/sdk` hashes every SDK
/// header and compares it with `sdk/abi.sha256`, so a header change forces a deliberate decision.

#include <boost/config.hpp>
#include <boost/version.hpp>

#define SYNERGOS_SDK_ABI_MAJOR 1
#define SYNERGOS_SDK_ABI_MINOR 3
#define SYNERGOS_SDK_ABI_PATCH 0

#define SYNERGOS_SDK_STRINGIFY_IMPL(x) #x
#define SYNERGOS_SDK_STRINGIFY(x) SYNERGOS_SDK_STRINGIFY_IMPL(x)

#if defined(__clang__)
#define SYNERGOS_SDK_COMPILER "clang-" SYNERGOS_SDK_STRINGIFY(__clang_major__)
#elif defined(__GNUC__)
#define SYNERGOS_SDK_COMPILER "gcc-" SYNERGOS_SDK_STRINGIFY(__GNUC__)
#else
#define SYNERGOS_SDK_COMPILER "unknown"
#endif

#if defined(_GLIBCXX_RELEASE)
#define SYNERGOS_SDK_STDLIB \
    "libstdc++-" SYNERGOS_SDK_STRINGIFY(_GLIBCXX_RELEASE) "-abi" SYNERGOS_SDK_STRINGIFY(_GLIBCXX_USE_CXX11_ABI)
#elif defined(_LIBCPP_VERSION)
#define SYNERGOS_SDK_STDLIB "libc++-" SYNERGOS_SDK_STRINGIFY(_LIBCPP_VERSION)
#else
#define SYNERGOS_SDK_STDLIB "unknown-stdlib"
#endif

/// The fingerprint: compiler id and major, standard library and its ABI, Boost major_minor
/// (`BOOST_LIB_VERSION`, e.g. "1_74": patch releases keep the ABI).
/// Two translation units with equal fingerprints can share C++ objects across the plugin boundary.
#define SYNERGOS_SDK_FINGERPRINT \
    SYNERGOS_SDK_COMPILER ";" SYNERGOS_SDK_STDLIB ";boost-" BOOST_LIB_VERSION

namespace synergos::sdk {

/// ABI major of the SDK these headers describe.
inline constexpr int kAbiMajor = SYNERGOS_SDK_ABI_MAJOR;
/// ABI minor of the SDK these headers describe.
inline constexpr int kAbiMinor = SYNERGOS_SDK_ABI_MINOR;
/// Fingerprint of the translation unit that includes this header (a string literal).
inline constexpr const char* kFingerprint = SYNERGOS_SDK_FINGERPRINT;

}  // namespace synergos::sdk
