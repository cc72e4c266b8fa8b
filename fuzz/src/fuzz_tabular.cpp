// SPDX-License-Identifier: Apache-2.0
// The CSV and schema reader of the data pipelines (plugins/data/common/src/csv.cpp and the
// tabular pipeline, plugins/data/tabular): what a participant's files can make a worker read.
// Input: schema.json, then a line `%%`, then one or more CSV files separated by lines `%%`. The
// CSV parser runs on each file alone; the pipeline loads the folder for both actions. A refusal
// must be an error naming the file; an accepted dataset must have consistent sizes.

#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "csv.hpp"
#include "fuzz_common.hpp"
#include "tabular_pipeline.hpp"

namespace {

namespace fs = std::filesystem;
using synergos::fuzz::check;

constexpr std::size_t kMaxFiles = 3;

/// One folder for the whole run (a process runs one input at a time), removed at exit.
struct WorkDir {
    WorkDir() {
        std::string pattern = (fs::temp_directory_path() / "synergos-fuzz-tabular-XXXXXX").string();
        const char* made = mkdtemp(pattern.data());
        check(made != nullptr, "mkdtemp failed");
        path = made;
    }
    ~WorkDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    fs::path path;
};

const fs::path& work_dir() {
    static const WorkDir dir;
    return dir.path;
}

void write_file(const fs::path& path, std::string_view text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    check(static_cast<bool>(out), "cannot write", path.string());
}

void parse_alone(std::string_view text) {
    auto table = synergos::plugins::data::parse_csv(std::string(text), "fuzz.csv");
    if (!table) {
        check(table.error().message.find("fuzz.csv") != std::string::npos,
              "a CSV error that does not name the file", table.error().message);
        return;
    }
    check(table->cells.size() == table->rows * table->header.size(), "cells != rows x columns");
    for (std::size_t r = 0; r < table->rows; ++r) {
        for (std::size_t c = 0; c < table->header.size(); ++c) {
            (void)table->at(r, c).size();
        }
    }
}

void load(const fs::path& dir, const char* action) {
    synergos::sdk::DataRequest request;
    request.action = action;
    request.directories = {dir.string()};
    synergos::plugins::tabular::TabularLimits limits;
    limits.max_file_bytes = 1 << 20;
    limits.max_levels = 64;
    auto result = synergos::plugins::tabular::load_tabular(request, limits);
    if (!result) {
        check(!result.error().message.empty(), "a refusal without a message");
        return;
    }
    const auto& ds = *result;
    std::int64_t width = 1;
    for (auto d : ds.sample_shape) {
        check(d >= 0, "negative sample dimension");
        width *= d;
    }
    check(ds.rows >= 0, "negative row count");
    check(ds.features.size() == static_cast<std::size_t>(ds.rows * width),
          "features != rows x sample size");
    check(ds.feature_names.size() == static_cast<std::size_t>(width),
          "feature names != sample size");
    const std::size_t label_width = ds.label_names.size();
    check(ds.labels.size() == static_cast<std::size_t>(ds.rows) * label_width,
          "labels != rows x label names");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto sections =
        synergos::fuzz::split_sections(synergos::fuzz::as_text(data, size), "\n%%\n");
    const fs::path dir = work_dir() / "split";
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::create_directories(dir, ec);
    check(!ec, "cannot create the work folder", dir.string());
    write_file(dir / "schema.json", sections[0]);
    for (std::size_t i = 1; i < sections.size() && i <= kMaxFiles; ++i) {
        parse_alone(sections[i]);
        write_file(dir / ("part" + std::to_string(i) + ".csv"), sections[i]);
    }
    if (sections.size() == 1) {
        parse_alone(sections[0]);
    }
    load(dir, "classify");
    load(dir, "regress");
    return 0;
}
