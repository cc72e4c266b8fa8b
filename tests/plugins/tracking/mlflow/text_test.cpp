// SPDX-License-Identifier: Apache-2.0
// Expected strings are what CPython 3.11 prints for repr(float), posixpath.normpath and
// pathlib.Path.as_uri on the same inputs.
#include <catch2/catch.hpp>

#include <limits>
#include <string>

#include <yaml-cpp/yaml.h>

#include "names.hpp"
#include "text.hpp"

namespace mlflow = synergos::plugins::mlflow;

TEST_CASE("metric values are written as Python's repr(float)", "[unit][mlflow]") {
    const auto [value, text] = GENERATE(table<double, std::string>({
        {0.5, "0.5"},
        {1.0, "1.0"},
        {1e-5, "1e-05"},
        {0.0001, "0.0001"},
        {1e16, "1e+16"},
        {1e15, "1000000000000000.0"},
        {123456789.125, "123456789.125"},
        {-2.5, "-2.5"},
        {0.1, "0.1"},
        {1.0 / 3.0, "0.3333333333333333"},
        {9.313225746154785e-10, "9.313225746154785e-10"},
        {-0.0, "-0.0"},
        {1e22, "1e+22"},
        {1.5e300, "1.5e+300"},
        {5e-324, "5e-324"},
        {0.30000000000000004, "0.30000000000000004"},
        {100.0, "100.0"},
        {12345678901234567.0, "1.2345678901234568e+16"},
        {9999999999999998.0, "9999999999999998.0"},
        {std::numeric_limits<double>::quiet_NaN(), "nan"},
        {std::numeric_limits<double>::infinity(), "inf"},
        {-std::numeric_limits<double>::infinity(), "-inf"},
    }));
    INFO("value " << value);
    CHECK(mlflow::python_float_repr(value) == text);
}

TEST_CASE("posix_normpath matches Python's posixpath.normpath", "[unit][mlflow]") {
    const auto [in, out] = GENERATE(table<std::string, std::string>({
        {"", "."},
        {"/a", "/a"},
        {"a/", "a"},
        {"a//b", "a/b"},
        {"./a", "a"},
        {"a/./b", "a/b"},
        {"../a", "../a"},
        {"..a", "..a"},
        {"a/..", "."},
        {"a..b", "a..b"},
        {".a", ".a"},
        {"//a", "//a"},
        {"///a", "/a"},
        {"a/b/../c", "a/c"},
        {"../../x", "../../x"},
        {"a/../..", ".."},
    }));
    INFO("path '" << in << "'");
    CHECK(mlflow::posix_normpath(in) == out);
}

TEST_CASE("file URIs are percent-encoded like pathlib's as_uri and decode back", "[unit][mlflow]") {
    CHECK(mlflow::file_uri("/tmp/a b/%c~d") == "file:///tmp/a%20b/%25c~d");
    CHECK(mlflow::local_path_of_uri("file:///tmp/a%20b/%25c~d") == "/tmp/a b/%c~d");
    CHECK(mlflow::local_path_of_uri("/plain/path") == "/plain/path");
    CHECK(mlflow::local_path_of_uri("file://localhost/x") == "/x");
    CHECK_FALSE(mlflow::local_path_of_uri("s3://bucket/x").has_value());
    CHECK_FALSE(mlflow::local_path_of_uri("file://otherhost/x").has_value());
}

TEST_CASE("YAML string scalars read back as the same string", "[unit][mlflow]") {
    const std::string text =
        GENERATE(as<std::string>{}, "Default", "0", "123", "yes", "No", "null", "~", "", " lead",
                 "a: b", "it's", "#x", "-", "file:///tmp/a b", "tab\there", "line\nbreak",
                 "quote \" and \\ slash", "caf\xc3\xa9 \xe2\x82\xac", "\xf0\x9f\x98\x80",
                 "c_>_p_>_e", "[list]", "{map}", "1e5", ".inf", "true");
    const std::string rendered = mlflow::yaml_string(text);
    INFO("text '" << text << "' rendered " << rendered);
    const YAML::Node node = YAML::Load("key: " + rendered);
    REQUIRE(node["key"].IsScalar());
    CHECK(node["key"].as<std::string>() == text);
    // Only plain scalars starting with a letter stay unquoted, so no YAML 1.1 reader sees a
    // number, boolean or null.
    if (!rendered.empty() && rendered.front() != '\'' && rendered.front() != '"') {
        CHECK(std::isalpha(static_cast<unsigned char>(rendered.front())));
    }
    // The file stays ASCII.
    for (char c : rendered) {
        CHECK(static_cast<unsigned char>(c) < 0x80);
    }
}

TEST_CASE("keys are validated as MLflow's _validate_metric_name does", "[unit][mlflow]") {
    SECTION("accepted") {
        // MLflow 2.x accepts ':' on POSIX; participant ids with one name metrics.
        const std::string key =
            GENERATE(as<std::string>{}, "loss", "global_train_loss", "a b", "a-b.c_d", "loss/train",
                     "a..b", ".a", "accuracy_class_0", "x/y/z", "a:b", ":",
                     "hosp:a.evaluate.accuracy", "hosp:a_local_loss");
        INFO("key '" << key << "'");
        CHECK(mlflow::validate_key("metric", key).is_ok());
    }
    SECTION("refused, naming the key") {
        const std::string key =
            GENERATE(as<std::string>{}, "", "/a", "a/", "a//b", "./a", "a/./b", "../a", "..a",
                     "a/..", "a\\b", "a@b", "caf\xc3\xa9", "a\nb", ":/", "a:/",
                     std::string(251, 'k'));
        INFO("key '" << key << "'");
        const auto status = mlflow::validate_key("metric", key);
        REQUIRE_FALSE(status.is_ok());
        CHECK(status.code() == synergos::sdk::ErrorCode::InvalidArgument);
        CHECK_THAT(status.message(), Catch::Matchers::Contains("metric"));
        CHECK_THAT(status.message(), Catch::Matchers::Contains(key.substr(0, 40)));
    }
    SECTION("250 characters is the limit") {
        CHECK(mlflow::validate_key("param", std::string(250, 'k')).is_ok());
    }
}

TEST_CASE("values must be UTF-8 and within MLflow's length limits", "[unit][mlflow]") {
    CHECK(mlflow::validate_value("param", "k", "caf\xc3\xa9", 4).is_ok());
    CHECK_FALSE(mlflow::validate_value("param", "k", "caf\xc3\xa9!", 4).is_ok());
    CHECK_FALSE(mlflow::validate_value("param", "k", "\xff", 10).is_ok());
    CHECK_FALSE(mlflow::validate_value("param", "k", "\xc3", 10).is_ok());          // truncated
    CHECK_FALSE(mlflow::validate_value("param", "k", "\xc0\xaf", 10).is_ok());      // overlong
    CHECK_FALSE(mlflow::validate_value("param", "k", "\xed\xa0\x80", 10).is_ok());  // surrogate
    CHECK(mlflow::utf8_length("\xf0\x9f\x98\x80") == 1);
    CHECK_THAT(mlflow::validate_value("tag", "note", std::string(5001, 'x'), 5000).message(),
               Catch::Matchers::Contains("note"));
}

TEST_CASE("ids are checked against MLflow's id patterns", "[unit][mlflow]") {
    CHECK(mlflow::validate_run_id("0123456789abcdef0123456789abcdef").is_ok());
    CHECK(mlflow::validate_experiment_id("0").is_ok());
    CHECK(mlflow::validate_experiment_id("891234").is_ok());
    for (const char* bad : {"", "../x", "a/b", "_a", "-a", "a.b", " a"}) {
        INFO("id '" << bad << "'");
        CHECK_FALSE(mlflow::validate_run_id(bad).is_ok());
        CHECK_FALSE(mlflow::validate_experiment_id(bad).is_ok());
    }
    CHECK_FALSE(mlflow::validate_experiment_id(std::string(65, 'a')).is_ok());
    CHECK(mlflow::validate_experiment_id(std::string(64, 'a')).is_ok());
}
