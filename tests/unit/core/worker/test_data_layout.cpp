// SPDX-License-Identifier: Apache-2.0
// The fingerprint that decides whether a cached split is still the data on disk.

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <catch2/catch.hpp>
#include <synergos/core/worker/data_layout.hpp>

namespace fs = std::filesystem;
using synergos::core::worker::folder_fingerprint;

TEST_CASE("A folder's fingerprint changes with any file below it", "[unit][worker]") {
    const fs::path dir = fs::temp_directory_path() / ("synergos-fingerprint-" + std::to_string(std::random_device{}()));
    fs::create_directories(dir / "sub" / "deeper");
    std::ofstream(dir / "mapping.csv") << "image,target\nsub/a.png,1\n";
    std::ofstream(dir / "sub" / "a.png") << "four";
    std::ofstream(dir / "sub" / "deeper" / "b.png") << "x";
    const std::string first = folder_fingerprint(dir);
    CHECK(folder_fingerprint(dir) == first);  // unchanged files: the cached load is reused
    // An image rewritten in place, one level down: before, only the folder's own entries
    // counted, and the worker went on training on the old pixels.
    std::ofstream(dir / "sub" / "a.png", std::ios::trunc) << "eight px";
    const std::string second = folder_fingerprint(dir);
    CHECK(second != first);
    std::ofstream(dir / "sub" / "deeper" / "b.png", std::ios::trunc) << "yy";
    CHECK(folder_fingerprint(dir) != second);
    std::error_code ec;
    fs::remove_all(dir, ec);
}
