// SPDX-License-Identifier: Apache-2.0
#pragma once
/// A temporary folder holding a model file, and a valid job file's text, for the client tests.

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <catch2/catch.hpp>

namespace synergos::tests {

namespace fs = std::filesystem;

struct Dir {
    fs::path path;
    Dir() {
        std::random_device rd;
        path = fs::temp_directory_path() / ("synergos-jobfile-test-" + std::to_string(rd()));
        fs::create_directories(path);
        std::ofstream(path / "m.json") << R"([{"is_input": true, "l_type": "Linear",
            "structure": {"in_features": 4, "out_features": 1}, "activation": "sigmoid"}])";
    }
    ~Dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string write(const std::string& name, const std::string& text) const {
        std::ofstream(path / name) << text;
        return (path / name).string();
    }
};

/// A valid job file with `replace` applied (first occurrence of `from` becomes `to`) and
/// `extra` appended.
inline std::string job(const std::string& from = "", const std::string& to = "", const std::string& extra = "") {
    std::string text =
        "collaboration: {id: c1}\n"
        "project: {id: p1}\n"
        "experiment: {id: e1, model_file: m.json}\n"
        "runs: [{id: r1, rounds: 2}]\n"
        "participants:\n"
        "  - id: a\n"
        "    nodes: [{host: 127.0.0.1, f_port: 5101}]\n"
        "    tags: {train: [[x, y]]}\n";
    if (!from.empty()) {
        const auto at = text.find(from);
        REQUIRE(at != std::string::npos);
        text.replace(at, from.size(), to);
    }
    return text + extra;
}

}  // namespace synergos::tests
