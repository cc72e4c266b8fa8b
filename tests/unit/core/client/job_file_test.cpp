// SPDX-License-Identifier: Apache-2.0
// load_job_file: every bad job file gets one error naming the file and the field, before
// anything is sent to a director; nothing a file holds can crash the client or exhaust memory.

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <catch2/catch.hpp>
#include <synergos/core/client/client.hpp>

#include "job_dir.hpp"

namespace fs = std::filesystem;
using synergos::core::client::load_job_file;

namespace {

using synergos::tests::Dir;
using synergos::tests::job;

/// The error of loading `text`; fails the test when it loads.
std::string error_of(const Dir& dir, const std::string& text) {
    const std::string file = dir.write("job.yaml", text);
    auto loaded = load_job_file(file);
    INFO(text);
    REQUIRE_FALSE(loaded);
    CHECK_THAT(loaded.error().message, Catch::Contains("job.yaml"));
    return loaded.error().message;
}

}  // namespace

TEST_CASE("A valid job file loads with its environment values", "[unit][client]") {
    Dir dir;
    ::setenv("SYNERGOS_TEST_JOB_PORT", "6201", 1);
    ::unsetenv("SYNERGOS_TEST_JOB_UNSET");
    auto loaded = load_job_file(dir.write(
        "job.yaml", "# a comment may mention ${SYNERGOS_TEST_JOB_UNSET} or ${ freely\n" +
                        job("f_port: 5101", "f_port: ${SYNERGOS_TEST_JOB_PORT}",
                            "steps: train\nalignment: {auto_fix: false}\n") +
                        "# and a literal: $${NOT_A_VARIABLE}\n"));
    REQUIRE(loaded);
    const auto& j = *loaded;
    CHECK(j["participants"][0]["nodes"][0]["f_port"] == 6201);
    // Quotes as YAML reads them: an apostrophe inside plain text opens nothing, and an escaped
    // quote inside "..." does not end it; a trailing '---' is no second document.
    auto quoted = load_job_file(dir.write(
        "quoted.yaml", job("    nodes:", "    details:\n"
                                         "      summary: Bob's data  # ${SYNERGOS_TEST_JOB_UNSET}\n"
                                         "      phone: \"say \\\"hi # ${SYNERGOS_TEST_JOB_PORT}\"\n"
                                         "    nodes:") +
                           "---\n"));
    REQUIRE(quoted);
    CHECK((*quoted)["participants"][0]["details"]["summary"] == "Bob's data");
    CHECK((*quoted)["participants"][0]["details"]["phone"] == "say \"hi # 6201");
    CHECK(j["steps"] == nlohmann::json::array({"train"}));
    CHECK(j["experiment"]["model"].size() == 1);
    CHECK(j["runs"][0]["rounds"] == 2);
}

TEST_CASE("A job file that would crash the client or exhaust its memory is refused", "[unit][client]") {
    Dir dir;
    // A model nested 150000 levels deep overflowed the stack of the JSON parser.
    std::ofstream(dir.path / "deep.json") << std::string(150000, '[') << std::string(150000, ']');
    CHECK_THAT(error_of(dir, job("m.json", "deep.json")), Catch::Contains("model_file") && Catch::Contains("64"));
    // The director takes 64 levels, the experiment around the model among them.
    std::ofstream(dir.path / "64.json") << std::string(64, '[') << std::string(64, ']');
    CHECK_THAT(error_of(dir, job("m.json", "64.json")), Catch::Contains("model_file"));
    // Nine levels of YAML aliases: 630 bytes standing for 10^9 values.
    std::string bomb = "x0: &a0 [x,x,x,x,x,x,x,x,x,x]\n";
    for (int i = 1; i <= 8; ++i) {
        bomb += "x" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
        for (int k = 0; k < 10; ++k) {
            bomb += std::string(k ? "," : "") + "*a" + std::to_string(i - 1);
        }
        bomb += "]\n";
    }
    CHECK_THAT(error_of(dir, job() + bomb), Catch::Contains("1000000 values"));
    // Not a regular file: a FIFO would block the read for good.
    const fs::path fifo = dir.path / "fifo.yaml";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    auto read_fifo = load_job_file(fifo.string());
    REQUIRE_FALSE(read_fifo);
    CHECK_THAT(read_fifo.error().message, Catch::Contains("not a regular file"));
    CHECK_THAT(error_of(dir, job("m.json", ".")), Catch::Contains("model_file") && Catch::Contains("regular file"));
}

TEST_CASE("A missing model_file names the folder relative paths are resolved from", "[unit][client]") {
    Dir dir;
    const std::string message = error_of(dir, job("m.json", "../data/architecture.json"));
    CHECK_THAT(message, Catch::Contains("experiment.model_file") && Catch::Contains("does not exist"));
    CHECK_THAT(message, Catch::Contains("(relative paths are resolved from the job file's folder: " +
                                        dir.path.string() + ")"));
    // An absolute path is looked up as written: no folder to name.
    const std::string absolute = error_of(dir, job("m.json", (dir.path / "nope.json").string()));
    CHECK_THAT(absolute, Catch::Contains("does not exist"));
    CHECK_THAT(absolute, !Catch::Contains("relative paths"));
}

TEST_CASE("A job file that would be silently misread is refused naming the field", "[unit][client]") {
    Dir dir;
    ::setenv("SYNERGOS_TEST_JOB_HOST", "10.0.0.1\", f_port: 6000, port: \"7000", 1);
    const std::vector<std::pair<std::string, std::string>> cases{
        {job("runs: [{id: r1, rounds: 2}]", "d: &d {rounds: 7}\nruns: [{<<: *d, id: r1}]"), "merge keys"},
        {job("f_port: 5101", "f_port: 4294972397"), "nodes[0]: 'f_port' must be a port number"},
        {job("", "", "steps: [trian]\n"), "unknown step \"trian\""},
        {job("", "", "steps: 5\n"), "'steps' must be a list"},
        {job("", "", "stesp: [align]\n"), "unknown section 'stesp'"},
        {job("runs: [{id: r1, rounds: 2}]", "runs: [{id: r1}, {id: r1}]"), "run id 'r1' appears twice"},
        {job("project: {id: p1}", "project: {id: p1}\nproject: {id: p2}"), "key 'project' appears twice"},
        {job() + "---\nx: 1\n", "several YAML documents"},
        {job("id: c1", "id: 007"), "collaboration: field 'id' must be a string"},
        {job("{id: e1,", "{id: \"e1 HTTP/1.1\\r\\nX: y\","), "experiment: id 'e1"},
        {job("tags: {train: [[x, y]]}", "tags: {train: [[x, 2021]]}"), "tags.train[0][1] must be a folder name"},
        {job("tags: {train: [[x, y]]}", "tags: {train: [[x, y]], trian: [[z]]}"), "tags.trian is not"},
        {job("host: 127.0.0.1", "host: \"${SYNERGOS_TEST_JOB_HOST}\""), "YAML would read as structure"},
        {job("host: 127.0.0.1", "host: ${SYNERGOS_TEST_JOB_NONE:-${B:-x}}"), "default holding '${'"},
        {job("", "", "alignment: {auto_align: \"false\"}\n"), "alignment.auto_align must be"},
        {job("model_file: m.json", "model_file: 5"), "experiment.model_file must be a file name"},
        {job("    nodes: [{host: 127.0.0.1, f_port: 5101}]", "    role: 3\n    nodes: [{host: 127.0.0.1, f_port: 5101}]"),
         "'role' must be"},
    };
    for (const auto& [text, expected] : cases) {
        CHECK_THAT(error_of(dir, text), Catch::Contains(expected));
    }
}

TEST_CASE("A job file field the director would refuse fails before anything is written", "[unit][client]") {
    Dir dir;
    // The director's own schema checks, run on the bodies the client would send: before,
    // these exited 1 after the collaboration, project and experiment were already written.
    CHECK_THAT(error_of(dir, job("rounds: 2", "rounds: ten")),
               Catch::Contains("runs[0]: field 'rounds' must be an integer"));
    CHECK_THAT(error_of(dir, job("rounds: 2", "rounds: 2, lr: -0.5")),
               Catch::Contains("runs[0]: field 'lr' must not be negative"));
    CHECK_THAT(error_of(dir, job("rounds: 2", "rounds: 0")),
               Catch::Contains("runs[0]: field 'rounds' must be at least 1"));
    CHECK_THAT(error_of(dir, job("{id: p1}", "{id: p1, action: cluster}")),
               Catch::Contains("project: field 'action' must be"));
    dir.write("bad_model.json", R"([{"is_input": true, "structure": {}, "activation": null}])");
    CHECK_THAT(error_of(dir, job("model_file: m.json", "model_file: bad_model.json")),
               Catch::Contains("experiment: field 'model[0].l_type' is required"));
    CHECK_THAT(error_of(dir, job("    tags: {train: [[x, y]]}\n",
                                 "    tags: {train: [[x, y]]}\n    details: {email: 5}\n")),
               Catch::Contains("participants[0] (details): field 'email' must be a string or null"));
    CHECK_THAT(error_of(dir, job("    tags: {train: [[x, y]]}\n", "    tags: {train: [[x, y]], model: [1]}\n")),
               Catch::Contains("participants[0], tags: field 'model' must be an array of strings"));
}

TEST_CASE("A misspelt run field gets a warning naming the field it resembles", "[unit][client]") {
    Dir dir;
    auto loaded = load_job_file(dir.write(
        "job.yaml", job("runs: [{id: r1, rounds: 2}]",
                        "runs: [{id: r1, rounds: 2, epoch: 5, learning_rate: 0.1, lr: 0.01},\n"
                        "       {id: r2, rounds: 1, mu: 0.1, optimiser: Adam, my_note: hello}]")));
    REQUIRE(loaded);
    const auto warnings = synergos::core::client::run_field_warnings(*loaded);
    INFO(Catch::Detail::stringify(warnings));
    // Near misses only: a field of some other plugin (my_note, learning_rate) is left alone.
    REQUIRE(warnings.size() == 2);
    CHECK_THAT(warnings[0], Catch::Contains("runs[0]") && Catch::Contains("'epoch'") &&
                                Catch::Contains("did you mean 'epochs'"));
    CHECK_THAT(warnings[1], Catch::Contains("runs[1]") && Catch::Contains("'optimiser'") &&
                                Catch::Contains("did you mean 'optimizer'"));
}
