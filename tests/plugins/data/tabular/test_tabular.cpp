// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <boost/dll/shared_library.hpp>
#include <nlohmann/json.hpp>

#include <synergos/sdk/export.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "tabular_pipeline.hpp"

namespace fs = std::filesystem;
using Json = nlohmann::json;
using synergos::plugins::tabular::TabularPipeline;
using synergos::sdk::DataRequest;
using synergos::sdk::Dataset;
using synergos::sdk::ErrorCode;
using synergos::sdk::Options;
using synergos::sdk::testing::FakeHost;

namespace {

const std::string kExamples = std::string(SYNERGOS_TEST_SOURCE_DIR) + "/examples/data";

/// A temp folder removed at scope exit.
struct TempDir {
    fs::path path;
    TempDir() {
        path = fs::temp_directory_path() /
               ("synergos-tabular-" + std::to_string(std::random_device{}()));
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    /// Writes a dataset folder: schema.json plus one file per (name, text).
    std::string folder(const std::string& name, const Json& schema,
                       const std::vector<std::pair<std::string, std::string>>& files) const {
        const fs::path dir = path / name;
        fs::create_directories(dir);
        std::ofstream(dir / "schema.json") << schema.dump();
        std::ofstream(dir / "metadata.json") << R"({"datatype": "tabular", "operations": {}})";
        for (const auto& [file, text] : files) {
            std::ofstream(dir / file, std::ios::binary) << text;
        }
        return dir.string();
    }
};

Dataset load_ok(const std::vector<std::string>& dirs, const std::string& action = "classify") {
    FakeHost host;
    TabularPipeline pipeline(host, Options());
    auto result = pipeline.load(DataRequest{action, dirs, "{}"});
    if (!result) {
        FAIL("load failed: " << result.error().message);
    }
    return std::move(*result);
}

synergos::sdk::Error load_error(const std::vector<std::string>& dirs,
                                const std::string& action = "classify") {
    FakeHost host;
    TabularPipeline pipeline(host, Options());
    auto result = pipeline.load(DataRequest{action, dirs, "{}"});
    REQUIRE_FALSE(result);
    return result.error();
}

std::size_t index_of(const std::vector<std::string>& names, const std::string& name) {
    auto it = std::find(names.begin(), names.end(), name);
    REQUIRE(it != names.end());
    return static_cast<std::size_t>(it - names.begin());
}

float cell(const Dataset& ds, std::size_t row, const std::string& feature) {
    const std::size_t width = ds.feature_names.size();
    return ds.features[row * width + index_of(ds.feature_names, feature)];
}

const Json kSchema = {
    {"age", "int32"}, {"sex", "category"}, {"chol", "float64"}, {"target", "category"}};

}  // namespace

TEST_CASE("tabular loads heart_disease iid_1 with the reference headers and scaling",
          "[unit][data][tabular]") {
    const Dataset ds = load_ok({kExamples + "/heart_disease/data1/iid_1"});
    CHECK(ds.rows == 771);
    const std::vector<std::string> expected = {
        "age",     "ca_0",      "ca_1",      "ca_2",      "ca_3",    "chol",    "cp_1",
        "cp_2",    "cp_3",      "cp_4",      "exang_0",   "exang_1", "fbs_0",   "fbs_1",
        "oldpeak", "restecg_0", "restecg_1", "restecg_2", "sex_0",   "sex_1",   "slope_1",
        "slope_2", "slope_3",   "thal_3",    "thal_6",    "thal_7",  "thalach", "trestbps"};
    CHECK(ds.feature_names == expected);
    CHECK(ds.sample_shape == std::vector<std::int64_t>{28});
    CHECK(ds.label_names ==
          std::vector<std::string>{"target_0", "target_1", "target_2", "target_3", "target_4"});
    REQUIRE(ds.features.size() == 771u * 28u);
    REQUIRE(ds.labels.size() == 771u * 5u);
    // Min-max per split: every value in [0,1], each column reaching 0 and 1.
    for (std::size_t f = 0; f < 28; ++f) {
        float lo = 1.0f;
        float hi = 0.0f;
        for (std::int64_t r = 0; r < ds.rows; ++r) {
            const float v = ds.features[static_cast<std::size_t>(r) * 28 + f];
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        INFO(ds.feature_names[f]);
        CHECK(lo == 0.0f);
        CHECK(hi == 1.0f);
    }
    // First CSV row: age 64 (min 25, max 78), sex 0.0, cp 4, target 3.0.
    CHECK(cell(ds, 0, "age") == Approx((64.0 - 25.0) / (78.0 - 25.0)));
    CHECK(cell(ds, 0, "sex_0") == 1.0f);
    CHECK(cell(ds, 0, "sex_1") == 0.0f);
    CHECK(cell(ds, 0, "cp_4") == 1.0f);
    CHECK(ds.labels[3] == 1.0f);
    CHECK(std::count(ds.labels.begin(), ds.labels.begin() + 5, 1.0f) == 1);

    const Json meta = Json::parse(ds.metadata_json);
    CHECK(meta["src_count"] == 771);
    CHECK(meta["_type"] == "tabular");
    CHECK(meta["features"]["cat_variables"].size() == 8);
    CHECK(meta["features"]["num_variables"].size() == 5);
    CHECK(meta["columns"]["age"]["min"] == 25.0);
    CHECK(meta["columns"]["age"]["max"] == 78.0);
    CHECK(meta["columns"]["sex"]["labels"] == Json::array({"0", "1"}));
    const Json schema = Json::parse(ds.schema_json);
    CHECK(schema["oldpeak"] == "float64");
    CHECK(schema["target"] == "category");
}

TEST_CASE("tabular loads abalone for regression with raw targets and sex one-hot",
          "[unit][data][tabular]") {
    const Dataset ds = load_ok({kExamples + "/abalone/data1/train"}, "regress");
    CHECK(ds.rows == 1308);
    CHECK(ds.feature_names == std::vector<std::string>{"diameter", "height", "length", "sex_0",
                                                       "sex_1", "sex_2", "shell_weight",
                                                       "shucked_weight", "viscera_weight",
                                                       "whole_weight"});
    CHECK(ds.label_names == std::vector<std::string>{"target"});
    REQUIRE(ds.labels.size() == 1308);
    CHECK(ds.labels[0] == 15.0f);  // unscaled
    CHECK(*std::max_element(ds.labels.begin(), ds.labels.end()) > 20.0f);
    CHECK(cell(ds, 0, "sex_1") == 1.0f);
}

TEST_CASE("tabular concatenates several folders and drops duplicate rows",
          "[unit][data][tabular]") {
    const std::string iid = kExamples + "/heart_disease/data1/iid_1";
    const std::string non_iid = kExamples + "/heart_disease/data1/non_iid_1";
    SECTION("the same folder twice gives the rows once") {
        const Dataset ds = load_ok({iid, iid});
        CHECK(ds.rows == 771);
        CHECK(Json::parse(ds.metadata_json)["duplicates_dropped"] == 771);
    }
    SECTION("two folders are stacked") {
        const Dataset a = load_ok({iid});
        const Dataset b = load_ok({non_iid});
        const Dataset both = load_ok({iid, non_iid});
        const auto dups = Json::parse(both.metadata_json)["duplicates_dropped"].get<std::int64_t>();
        CHECK(both.rows == a.rows + b.rows - dups);
        CHECK(both.rows > a.rows);
    }
}

TEST_CASE("tabular imputes missing values locally: median for numbers, mode for categories",
          "[unit][data][tabular]") {
    TempDir tmp;
    const std::string dir = tmp.folder("impute", kSchema,
                                       {{"data.csv",
                                         "age,sex,chol,target\n"
                                         "10,1,100,0\n"
                                         "20,1,,1\n"
                                         ",0,300,0\n"
                                         "40,,abc,1\n"
                                         "31,1,200.5,1\n"}});
    const Dataset ds = load_ok({dir});
    REQUIRE(ds.rows == 5);
    const Json meta = Json::parse(ds.metadata_json);
    // age: median of 10,20,31,40 = 25.5, rounded for an int dtype -> 26.
    CHECK(meta["imputed"]["age"]["strategy"] == "median");
    CHECK(meta["imputed"]["age"]["value"] == 26.0);
    CHECK(meta["imputed"]["age"]["count"] == 1);
    // chol: "abc" is unparseable: counted, then imputed with the median of 100,200.5,300.
    CHECK(meta["unparseable_values"]["chol"] == 1);
    CHECK(meta["missing_values"]["chol"] == 1);
    CHECK(meta["imputed"]["chol"]["value"] == 200.5);
    CHECK(meta["imputed"]["chol"]["count"] == 2);
    // sex: mode of 1,1,0,1 is 1.
    CHECK(meta["imputed"]["sex"]["strategy"] == "mode");
    CHECK(meta["imputed"]["sex"]["value"] == "1");
    // age scaled over 10..40: the imputed 26 is (26-10)/30.
    CHECK(cell(ds, 2, "age") == Approx(16.0 / 30.0));
    CHECK(cell(ds, 3, "sex_1") == 1.0f);
}

TEST_CASE("tabular drops an all-empty column with a note and rows without a target",
          "[unit][data][tabular]") {
    TempDir tmp;
    Json schema = kSchema;
    schema["fbs"] = "category";
    const std::string dir = tmp.folder("na", schema,
                                       {{"data.csv",
                                         "age,sex,chol,fbs,target\n"
                                         "10,1,100,,0\n"
                                         "20,0,200,NA,1\n"
                                         "30,0,300,,\n"
                                         "40,1,400,,1\n"}});
    const Dataset ds = load_ok({dir});
    CHECK(ds.rows == 3);
    const Json meta = Json::parse(ds.metadata_json);
    REQUIRE(meta["dropped_columns"].size() == 1);
    CHECK(meta["dropped_columns"][0]["column"] == "fbs");
    CHECK(meta["rows_missing_target"] == 1);
    for (const std::string& name : ds.feature_names) {
        CHECK(name.rfind("fbs", 0) != 0);
    }
    CHECK(Json::parse(ds.schema_json).count("fbs") == 0);
}

TEST_CASE("tabular names levels as integers for numeric codes and sorts them numerically",
          "[unit][data][tabular]") {
    TempDir tmp;
    const Json schema = {{"grade", "category"}, {"colour", "category"}, {"target", "category"}};
    const std::string dir = tmp.folder("levels", schema,
                                       {{"data.csv",
                                         "grade,colour,target\n"
                                         "10.0,red,10\n"
                                         "9,blue,2.0\n"
                                         "2.5,red,9\n"
                                         "10,green,2\n"}});
    const Dataset ds = load_ok({dir});
    // Feature columns are sorted by name as strings (as the original did); levels become
    // integers when integral; class labels keep numeric order.
    CHECK(ds.feature_names == std::vector<std::string>{"colour_blue", "colour_green", "colour_red",
                                                       "grade_10", "grade_2.5", "grade_9"});
    CHECK(Json::parse(ds.metadata_json)["columns"]["grade"]["labels"] ==
          Json::array({"2.5", "9", "10"}));
    CHECK(ds.label_names == std::vector<std::string>{"target_2", "target_9", "target_10"});
    // Row 4 duplicates nothing (colour differs from row 1), so 4 rows; row 0 is class 10.
    REQUIRE(ds.rows == 4);
    CHECK(ds.labels[0 * 3 + 2] == 1.0f);
    CHECK(ds.labels[1 * 3 + 0] == 1.0f);
}

TEST_CASE("tabular keeps integer levels past a double's precision apart and names them exactly",
          "[unit][data][tabular]") {
    // Read through a double, the two account ids were one level 'account_123456789012345680'.
    TempDir tmp;
    const Json schema = {{"account", "category"}, {"x", "float64"}, {"target", "int64"}};
    const std::string dir = tmp.folder("ids", schema,
                                       {{"data.csv",
                                         "account,x,target\n"
                                         "123456789012345678,1,0\n"
                                         "123456789012345679,2,1\n"
                                         "0042.000,3,0\n"}});
    const Dataset ds = load_ok({dir});
    CHECK(ds.feature_names == std::vector<std::string>{"account_123456789012345678",
                                                       "account_123456789012345679",
                                                       "account_42", "x"});
}

TEST_CASE("tabular scales a constant column to 0", "[unit][data][tabular]") {
    TempDir tmp;
    const std::string dir = tmp.folder("const", kSchema,
                                       {{"data.csv",
                                         "age,sex,chol,target\n"
                                         "5,1,100,0\n"
                                         "5,1,200,1\n"
                                         "5,1,300,1\n"}});
    const Dataset ds = load_ok({dir});
    for (std::size_t r = 0; r < 3; ++r) {
        CHECK(cell(ds, r, "age") == 0.0f);
        CHECK(cell(ds, r, "sex_1") == 0.0f);  // a one-hot column that is all ones, too
    }
    CHECK(cell(ds, 1, "chol") == Approx(0.5));
}

TEST_CASE("tabular scales a column spanning more than the largest double", "[unit][data][tabular]") {
    // 1.7e308 - (-1.7e308) overflows to infinity: the scaled cells came out NaN (and 0), and
    // training then failed on non-finite features without naming the column.
    TempDir tmp;
    const std::string dir = tmp.folder("huge", kSchema,
                                       {{"data.csv",
                                         "age,sex,chol,target\n"
                                         "1,1,1.7e308,0\n"
                                         "2,1,-1.7e308,1\n"
                                         "3,1,0,1\n"}});
    const Dataset ds = load_ok({dir});
    CHECK(cell(ds, 0, "chol") == 1.0f);
    CHECK(cell(ds, 1, "chol") == 0.0f);
    CHECK(cell(ds, 2, "chol") == Approx(0.5));
}

TEST_CASE("tabular reads only files inside the dataset folder, whatever links it holds",
          "[unit][data][tabular]") {
    // A CSV or schema.json that is a symbolic link out of the folder was read, and statistics
    // of the outside file went to the TTP in the poll answer.
    TempDir tmp;
    const fs::path outside = tmp.path / "outside.csv";
    std::ofstream(outside) << "age,sex,chol,target\n1,1,42,0\n2,1,7,1\n";
    SECTION("a linked CSV") {
        const std::string dir = tmp.folder("csvlink", kSchema, {});
        fs::create_symlink(outside, fs::path(dir) / "data.csv");
        const auto e = load_error({dir});
        CHECK(e.code == ErrorCode::InvalidArgument);
        CHECK_THAT(e.message, Catch::Contains("data.csv") &&
                                  Catch::Contains("resolves outside its dataset folder"));
    }
    SECTION("a linked schema.json") {
        const fs::path schema = tmp.path / "schema-outside.json";
        std::ofstream(schema) << kSchema.dump();
        const std::string dir =
            tmp.folder("schemalink", kSchema, {{"data.csv", "age,sex,chol,target\n1,1,1,0\n"}});
        fs::remove(fs::path(dir) / "schema.json");
        fs::create_symlink(schema, fs::path(dir) / "schema.json");
        CHECK_THAT(load_error({dir}).message, Catch::Contains("schema.json") &&
                                                 Catch::Contains("resolves outside"));
    }
    SECTION("a link that stays inside is read") {
        const std::string dir = tmp.folder("inner", kSchema, {});
        fs::create_directories(fs::path(dir) / "raw");
        std::ofstream(fs::path(dir) / "raw" / "rows.txt") << "age,sex,chol,target\n1,1,5,0\n";
        fs::create_symlink(fs::path(dir) / "raw" / "rows.txt", fs::path(dir) / "data.csv");
        CHECK(load_ok({dir}).features.size() > 0);
    }
}

TEST_CASE("tabular refuses rows far shorter than a wide header before padding them",
          "[unit][data][tabular]") {
    // Short rows are padded with empty cells (16 bytes each): 2000 columns and 20000 rows of
    // "1" is an 80 KB file that would have taken about 640 MB.
    TempDir tmp;
    std::string text;
    for (int c = 0; c < 2000; ++c) {
        text += "c" + std::to_string(c) + ",";
    }
    text += "target\n";
    for (int r = 0; r < 20000; ++r) {
        text += "1\n";
    }
    const std::string dir = tmp.folder("wide", {{"target", "int64"}}, {{"data.csv", text}});
    const auto e = load_error({dir});
    CHECK(e.code == ErrorCode::InvalidArgument);
    CHECK_THAT(e.message, Catch::Contains("data.csv") &&
                              Catch::Contains("far fewer fields than the header"));
}

TEST_CASE("tabular reads quoted fields, CRLF line ends and a byte-order mark",
          "[unit][data][tabular]") {
    TempDir tmp;
    const Json schema = {{"name, with comma", "category"}, {"x", "float64"}, {"target", "float64"}};
    const std::string dir = tmp.folder("quoted", schema,
                                       {{"data.csv",
                                         "\xEF\xBB\xBF\"name, with comma\",x,target\r\n"
                                         "\"a \"\"quoted\"\" level\",1.5,3\r\n"
                                         "\"multi\nline\",2.5,4\r\n"
                                         "\r\n"}});
    const Dataset ds = load_ok({dir}, "regress");
    CHECK(ds.rows == 2);
    CHECK(ds.feature_names == std::vector<std::string>{"name, with comma_a \"quoted\" level",
                                                       "name, with comma_multi\nline", "x"});
    CHECK(ds.labels == std::vector<float>{3.0f, 4.0f});
}

TEST_CASE("tabular refuses broken inputs with InvalidArgument naming file and column",
          "[unit][data][tabular]") {
    TempDir tmp;
    SECTION("a file without the target column") {
        const std::string dir = tmp.folder("no-target", {{"age", "int32"}, {"target", "category"}},
                                           {{"part.csv", "age\n1\n2\n"}});
        const auto e = load_error({dir});
        CHECK(e.code == ErrorCode::InvalidArgument);
        CHECK_THAT(e.message, Catch::Contains("part.csv") && Catch::Contains("'target'"));
    }
    SECTION("a schema naming an absent column") {
        const std::string dir =
            tmp.folder("absent", kSchema, {{"data.csv", "age,sex,target\n1,0,1\n"}});
        const auto e = load_error({dir});
        CHECK(e.code == ErrorCode::InvalidArgument);
        CHECK_THAT(e.message, Catch::Contains("data.csv") && Catch::Contains("'chol'"));
    }
    SECTION("a column the schema does not type") {
        const std::string dir = tmp.folder("untyped", {{"age", "int32"}, {"target", "category"}},
                                           {{"data.csv", "age,extra,target\n1,2,1\n"}});
        CHECK_THAT(load_error({dir}).message, Catch::Contains("'extra'"));
    }
    SECTION("an unknown dtype") {
        const std::string dir = tmp.folder("dtype", {{"age", "complex128"}, {"target", "category"}},
                                           {{"data.csv", "age,target\n1,1\n"}});
        CHECK_THAT(load_error({dir}).message, Catch::Contains("schema.json") &&
                                                  Catch::Contains("'age'") &&
                                                  Catch::Contains("complex128"));
    }
    SECTION("a row with too many fields") {
        const std::string dir = tmp.folder("ragged", {{"age", "int32"}, {"target", "category"}},
                                           {{"data.csv", "age,target\n1,1\n2,0,9\n"}});
        CHECK_THAT(load_error({dir}).message,
                   Catch::Contains("data.csv") && Catch::Contains("line 3"));
    }
    SECTION("an unterminated quote") {
        const std::string dir = tmp.folder("quote", {{"age", "int32"}, {"target", "category"}},
                                           {{"data.csv", "age,target\n\"1,1\n"}});
        CHECK_THAT(load_error({dir}).message, Catch::Contains("unterminated"));
    }
    SECTION("no schema.json") {
        const std::string dir = tmp.folder("schema", kSchema, {{"data.csv", "age\n"}});
        fs::remove(fs::path(dir) / "schema.json");
        CHECK_THAT(load_error({dir}).message, Catch::Contains("schema.json"));
    }
    SECTION("a target with no value at all") {
        const std::string dir =
            tmp.folder("empty-target", {{"age", "int32"}, {"target", "float64"}},
                       {{"data.csv", "age,target\n1,\n2,\n"}});
        CHECK_THAT(load_error({dir}, "regress").message, Catch::Contains("'target'"));
    }
    SECTION("text classes for regression") {
        const std::string dir = tmp.folder("text", {{"age", "int32"}, {"target", "category"}},
                                           {{"data.csv", "age,target\n1,cat\n2,dog\n"}});
        CHECK_THAT(load_error({dir}, "regress").message, Catch::Contains("regression"));
    }
    SECTION("conflicting dtypes across folders") {
        const std::string a = tmp.folder("a", {{"age", "int32"}, {"target", "category"}},
                                         {{"data.csv", "age,target\n1,1\n"}});
        const std::string b = tmp.folder("b", {{"age", "category"}, {"target", "category"}},
                                         {{"data.csv", "age,target\n1,1\n"}});
        CHECK_THAT(load_error({a, b}).message, Catch::Contains("'age'"));
    }
    SECTION("an unknown action") {
        const std::string dir = tmp.folder("act", kSchema, {{"data.csv", "age\n"}});
        CHECK_THAT(load_error({dir}, "cluster").message, Catch::Contains("'cluster'"));
    }
    SECTION("a folder without CSV files") {
        const std::string dir = tmp.folder("nocsv", kSchema, {});
        CHECK_THAT(load_error({dir}).message, Catch::Contains("no CSV file"));
    }
}

TEST_CASE("tabular refuses a numeric column whose values do not parse as its dtype",
          "[unit][data][tabular]") {
    // A column declared int32 holding "high"/"low" was dropped as "all values missing" and a
    // later alignment zero-filled it: the model trained on a constant without any error.
    TempDir tmp;
    SECTION("no value parses") {
        const std::string dir = tmp.folder("words", kSchema,
                                           {{"data.csv",
                                             "age,sex,chol,target\n"
                                             "high,1,100,0\n"
                                             "low,0,200,1\n"
                                             ",1,300,1\n"}});
        const auto e = load_error({dir});
        CHECK(e.code == ErrorCode::InvalidArgument);
        CHECK_THAT(e.message, Catch::Contains("data.csv") && Catch::Contains("'age'") &&
                                  Catch::Contains("'int32'") && Catch::Contains("'high'") &&
                                  Catch::Contains("2 of its 2 non-empty values"));
    }
    SECTION("more than half of the values do not parse, across files") {
        const std::string dir = tmp.folder("mostly", kSchema,
                                           {{"a.csv", "age,sex,chol,target\n10,1,100,0\n"},
                                            {"b.csv",
                                             "age,sex,chol,target\n"
                                             "20,1,x1,1\n"
                                             "30,0,x2,1\n"
                                             "40,0,x3,0\n"}});
        const auto e = load_error({dir});
        CHECK(e.code == ErrorCode::InvalidArgument);
        CHECK_THAT(e.message, Catch::Contains("b.csv") && Catch::Contains("'chol'") &&
                                  Catch::Contains("'float64'") && Catch::Contains("'x1'") &&
                                  Catch::Contains("3 of its 4"));
    }
    SECTION("a numeric target of words") {
        const std::string dir = tmp.folder("target", {{"age", "int32"}, {"target", "int64"}},
                                           {{"data.csv", "age,target\n1,yes\n2,no\n"}});
        CHECK_THAT(load_error({dir}).message, Catch::Contains("'target'") &&
                                                  Catch::Contains("'int64'") &&
                                                  Catch::Contains("'yes'"));
    }
    SECTION("half of the values unparseable is still imputed") {
        const std::string dir = tmp.folder("half", kSchema,
                                           {{"data.csv",
                                             "age,sex,chol,target\n"
                                             "10,1,100,0\n"
                                             "20,1,oops,1\n"
                                             "30,0,,1\n"
                                             "40,0,?,0\n"
                                             "50,0,300,1\n"}});
        const Dataset ds = load_ok({dir});
        const Json meta = Json::parse(ds.metadata_json);
        CHECK(meta["unparseable_values"]["chol"] == 2);
        CHECK(meta["missing_values"]["chol"] == 1);
        CHECK(meta["imputed"]["chol"]["value"] == 200.0);
    }
    SECTION("a column dropped for lack of parseable values says so") {
        // The only number sits in a row without a target, so no kept row has a value; the
        // reason names the dtype and an example instead of "all values missing".
        const std::string dir = tmp.folder("dropped", kSchema,
                                           {{"data.csv",
                                             "age,sex,chol,target\n"
                                             "10,1,100,\n"
                                             "n/a?,1,200,1\n"
                                             ",0,300,0\n"}});
        const Dataset ds = load_ok({dir});
        const Json meta = Json::parse(ds.metadata_json);
        REQUIRE(meta["dropped_columns"].size() == 1);
        CHECK(meta["dropped_columns"][0]["column"] == "age");
        const auto reason = meta["dropped_columns"][0]["reason"].get<std::string>();
        CHECK_THAT(reason, Catch::Contains("unparseable") && Catch::Contains("int32") &&
                               Catch::Contains("'n/a?'"));
    }
}

TEST_CASE("tabular matches a 30,000-column header against its schema", "[unit][data][tabular]") {
    // Header and schema were matched name by name against each other (quadratic): 30,000
    // columns took 6.5 s. This checks the result; the speed shows in the test's duration.
    TempDir tmp;
    constexpr int kColumns = 30000;
    Json schema = Json::object();
    std::string header;
    std::string row0;
    std::string row1;
    for (int c = 0; c < kColumns; ++c) {
        const std::string name = "c" + std::to_string(c);
        schema[name] = "float64";
        header += name + ",";
        row0 += std::to_string(c) + ",";
        row1 += std::to_string(c + 1) + ",";
    }
    schema["target"] = "int64";
    const std::string dir = tmp.folder(
        "wide", schema, {{"data.csv", header + "target\n" + row0 + "0\n" + row1 + "1\n"}});
    const Dataset ds = load_ok({dir});
    REQUIRE(ds.feature_names.size() == kColumns);
    CHECK(ds.rows == 2);
    // Sorted by name: "c0", "c1", "c10", ...; every column goes 0 -> 1 after scaling.
    CHECK(ds.feature_names[2] == "c10");
    CHECK(cell(ds, 0, "c29999") == 0.0f);
    CHECK(cell(ds, 1, "c29999") == 1.0f);
}

TEST_CASE("tabular aligns a folder lacking a column by treating its cells as missing",
          "[unit][data][tabular]") {
    TempDir tmp;
    const std::string a = tmp.folder(
        "full", kSchema, {{"data.csv", "age,sex,chol,target\n10,1,100,0\n20,0,200,1\n"}});
    const std::string b =
        tmp.folder("lacks-chol", {{"age", "int32"}, {"sex", "category"}, {"target", "category"}},
                   {{"data.csv", "age,sex,target\n30,1,1\n"}});
    const Dataset ds = load_ok({a, b});
    CHECK(ds.rows == 3);
    const Json meta = Json::parse(ds.metadata_json);
    CHECK(meta["missing_values"]["chol"] == 1);
    CHECK(meta["imputed"]["chol"]["value"] == 150.0);
}

TEST_CASE("tabular plugin library loads through Boost.DLL and reads heart_disease",
          "[integration][data][tabular]") {
    const fs::path lib = fs::path(SYNERGOS_TEST_PLUGIN_DIR) / "libsynergos-data-tabular.so";
    REQUIRE(fs::exists(lib));
    boost::dll::shared_library so(lib.string());
    const auto& descriptor =
        so.get_alias<const synergos::sdk::PluginDescriptor>("synergos_plugin_descriptor");
    CHECK(std::string(descriptor.name) == "tabular");
    CHECK(descriptor.kind == synergos::sdk::PluginKind::Data);
    auto& create = so.get_alias<synergos::sdk::Factory<synergos::sdk::DataPipeline>>(
        "synergos_plugin_create_data");
    FakeHost host;
    auto pipeline = create(host, Options(std::map<std::string, std::string>{
                                     {"max_file_bytes", "1000000"}, {"max_levels", "50"}}));
    REQUIRE(pipeline);
    CHECK((*pipeline)->datatype() == "tabular");
    auto ds =
        (*pipeline)->load(DataRequest{"classify", {kExamples + "/heart_disease/data2/iid_2"}});
    REQUIRE(ds);
    CHECK(ds->rows == 771);
    CHECK(ds->sample_shape == std::vector<std::int64_t>{28});

    SECTION("the file size option is enforced") {
        auto small =
            create(host, Options(std::map<std::string, std::string>{{"max_file_bytes", "100"}}));
        REQUIRE(small);
        auto refused =
            (*small)->load(DataRequest{"classify", {kExamples + "/heart_disease/data2/iid_2"}});
        REQUIRE_FALSE(refused);
        CHECK(refused.error().code == ErrorCode::ResourceExhausted);
        small->reset();
    }
    pipeline->reset();  // destroy plugin objects before the library unloads
}

TEST_CASE("tabular reads a file shorter than a small-string buffer", "[unit][data][tabular]") {
    // 13 bytes: the parsed views must survive moving the table (regression found by ASan).
    TempDir tmp;
    const std::string dir = tmp.folder("tiny", {{"a", "float64"}, {"target", "float64"}},
                                       {{"t.csv", "a,target\n1,0\n"}});
    const Dataset ds = load_ok({dir}, "regress");
    CHECK(ds.rows == 1);
    CHECK(ds.feature_names == std::vector<std::string>{"a"});
    CHECK(ds.labels == std::vector<float>{0.0f});
}

TEST_CASE("tabular keeps metadata valid JSON when names are not UTF-8", "[unit][data][tabular]") {
    TempDir tmp;
    const std::string latin1 = "caf\xe9";  // ISO-8859-1 text in a CSV header
    const fs::path dir = tmp.path / "latin1";
    fs::create_directories(dir);
    std::ofstream(dir / "schema.json")
        << "{\"caf\\u00e9\": \"category\", \"target\": \"category\"}";
    std::ofstream(dir / "data.csv") << latin1 << ",target\nx,1\ny,0\n";
    // The schema names "café" in UTF-8 while the file says "caf\xe9": a clear error, no crash.
    const auto e = load_error({dir.string()});
    CHECK(e.code == ErrorCode::InvalidArgument);
    std::ofstream(dir / "schema.json", std::ios::trunc)
        << "{\"" << latin1 << "\": \"category\", \"target\": \"category\"}";
    // nlohmann refuses invalid UTF-8 in schema.json itself: also a clear error.
    CHECK(load_error({dir.string()}).code == ErrorCode::InvalidArgument);
}

TEST_CASE("tabular refuses category levels that are not UTF-8 naming the file and column",
          "[unit][data][tabular]") {
    // A Latin-1 CSV (an Excel export): the TTP saw the level as 'caf\uFFFD' and the realignment
    // never found 'colour_caf\xe9' again ("re-run the alignment", which never helped).
    TempDir tmp;
    const fs::path dir = tmp.path / "latin1-levels";
    fs::create_directories(dir);
    std::ofstream(dir / "schema.json") << R"({"colour": "category", "target": "category"})";
    std::ofstream(dir / "data.csv") << "colour,target\ncaf\xe9,1\ntea,0\n";
    const auto e = load_error({dir.string()});
    CHECK(e.code == ErrorCode::InvalidArgument);
    CHECK_THAT(e.message, Catch::Contains("data.csv") && Catch::Contains("'colour'") &&
                              Catch::Contains("not UTF-8"));
    std::ofstream(dir / "data.csv", std::ios::trunc) << "colour,target\ncaf\xc3\xa9,1\ntea,0\n";
    const Dataset ds = load_ok({dir.string()});
    CHECK(index_of(ds.feature_names, "colour_caf\xc3\xa9") < ds.feature_names.size());
}

TEST_CASE("tabular refuses a split whose features and labels pass max_split_bytes",
          "[unit][data][tabular]") {
    // max_levels bounds each column only: 2,500 category columns of 1,000 levels made a width of
    // 2.5 million (10 GB for 1,000 rows).
    TempDir tmp;
    const auto load = [](const std::string& dir, const std::string& budget,
                         const std::string& action = "classify") {
        FakeHost host;
        TabularPipeline pipeline(
            host, Options(std::map<std::string, std::string>{{"max_split_bytes", budget}}));
        return pipeline.load(DataRequest{action, {dir}, "{}"});
    };
    SECTION("one-hot features") {
        // 100 rows; c0 has 100 levels, c1 50, c2 25, c3 10, x is numeric: 186 features,
        // 74,400 bytes as floats.
        const Json schema = {{"c0", "category"}, {"c1", "category"}, {"c2", "category"},
                             {"c3", "category"}, {"x", "float64"},   {"target", "int64"}};
        std::string text = "c0,c1,c2,c3,x,target\n";
        for (int r = 0; r < 100; ++r) {
            text += "a" + std::to_string(r) + ",b" + std::to_string(r % 50) + ",c" +
                    std::to_string(r % 25) + ",d" + std::to_string(r % 10) + "," +
                    std::to_string(r) + "," + std::to_string(r % 2) + "\n";
        }
        const std::string dir = tmp.folder("wide", schema, {{"data.csv", text}});
        auto refused = load(dir, "40000");
        REQUIRE_FALSE(refused);
        CHECK(refused.error().code == ErrorCode::ResourceExhausted);
        CHECK_THAT(refused.error().message,
                   Catch::Contains("100 rows") && Catch::Contains("186 features") &&
                       Catch::Contains("'c0' (100 levels)") &&
                       Catch::Contains("'c1' (50 levels)") &&
                       Catch::Contains("'c2' (25 levels)") && Catch::Contains("max_split_bytes"));
        CHECK_FALSE(load(dir, "40000", "regress"));
        auto ok = load(dir, "1000000");
        REQUIRE(ok);
        CHECK(ok->feature_names.size() == 186);
    }
    SECTION("one-hot labels") {
        // 200 rows of 200 classes: 800 bytes of features, 160,000 of labels.
        std::string text = "x,target\n";
        for (int r = 0; r < 200; ++r) {
            text += std::to_string(r) + "," + std::to_string(r) + "\n";
        }
        const std::string dir =
            tmp.folder("classes", {{"x", "float64"}, {"target", "int64"}}, {{"data.csv", text}});
        auto refused = load(dir, "100000");
        REQUIRE_FALSE(refused);
        CHECK(refused.error().code == ErrorCode::ResourceExhausted);
        CHECK_THAT(refused.error().message, Catch::Contains("200 rows") &&
                                                Catch::Contains("200 label columns") &&
                                                Catch::Contains("max_split_bytes"));
        CHECK(load(dir, "100000", "regress"));  // one label column
        CHECK(load(dir, "200000"));
    }
    SECTION("the option is validated and declared") {
        FakeHost host;
        CHECK_THROWS_WITH(
            TabularPipeline(host,
                            Options(std::map<std::string, std::string>{{"max_split_bytes", "0"}})),
            Catch::Contains("max_split_bytes"));
        const auto& d = synergos::plugins::tabular::kTabularDescriptor;
        bool declared = false;
        for (std::size_t i = 0; i < d.option_count; ++i) {
            declared = declared || std::string(d.options[i].key) == "max_split_bytes";
        }
        CHECK(declared);
    }
}

TEST_CASE("tabular refuses a regression target beyond the float32 range",
          "[unit][data][tabular]") {
    // 1e39 became an infinite label (a double to float conversion out of range).
    TempDir tmp;
    const std::string dir =
        tmp.folder("huge", {{"a", "float64"}, {"target", "float64"}},
                   {{"a.csv", "a,target\n1,2\n"}, {"b.csv", "a,target\n2,3\n3,1e39\n"}});
    const auto e = load_error({dir}, "regress");
    CHECK(e.code == ErrorCode::InvalidArgument);
    CHECK_THAT(e.message, Catch::Contains("b.csv") && Catch::Contains("row 2") &&
                              Catch::Contains("'target'") && Catch::Contains("1e+39") &&
                              Catch::Contains("float32"));
    // As a class it is only a name.
    CHECK(load_ok({dir}).label_names.size() == 3);
    // The largest float is still a label.
    const std::string edge = tmp.folder("edge", {{"a", "float64"}, {"target", "float64"}},
                                        {{"a.csv", "a,target\n1,3.4e38\n"}});
    CHECK(load_ok({edge}, "regress").labels == std::vector<float>{3.4e38f});
}

TEST_CASE("tabular shortens long column names and levels quoted in its errors",
          "[unit][data][tabular]") {
    // A header name or cell of megabytes went whole into the error message (logged and sent on).
    TempDir tmp;
    const std::string long_text(100000, 'x');
    SECTION("a column without a dtype") {
        const std::string dir = tmp.folder("untyped", {{"target", "category"}},
                                           {{"data.csv", long_text + ",target\n1,1\n"}});
        const auto e = load_error({dir});
        CHECK(e.message.size() < 1000);
        CHECK_THAT(e.message, Catch::Contains("has no dtype") && Catch::Contains("x'..."));
    }
    SECTION("a text target for regression") {
        const std::string dir = tmp.folder("text", {{"a", "float64"}, {"target", "category"}},
                                           {{"data.csv", "a,target\n1," + long_text + "\n"}});
        const auto e = load_error({dir}, "regress");
        CHECK(e.message.size() < 1000);
        CHECK_THAT(e.message, Catch::Contains("text classes") && Catch::Contains("x'..."));
    }
    SECTION("a column over max_levels") {
        std::string text = long_text + ",target\n";
        for (int r = 0; r < 1001; ++r) {
            text += "v" + std::to_string(r) + ",1\n";
        }
        const std::string dir = tmp.folder(
            "levels", {{long_text, "category"}, {"target", "category"}}, {{"data.csv", text}});
        const auto e = load_error({dir});
        CHECK(e.message.size() < 1000);
        CHECK_THAT(e.message, Catch::Contains("max_levels"));
    }
}

TEST_CASE("tabular names a categorical value alike in every split whatever the column's mix",
          "[unit][data][tabular]") {
    // The level kind was decided per split by majority: train (3 numbers, 1 text) named 3.0
    // 'grade_3' and imputed 'x' as the mode '3'; evaluate (1 number, 2 texts) named it
    // 'grade_3.0'. The same raw value must give the same feature in train, evaluate and predict.
    TempDir tmp;
    const Json schema = {{"age", "int32"}, {"grade", "category"}, {"target", "category"}};
    const std::string train = tmp.folder("train", schema,
                                         {{"data.csv",
                                           "age,grade,target\n"
                                           "30,3.0,0\n"
                                           "40,4.0,1\n"
                                           "50,x,1\n"
                                           "60,3.0,0\n"}});
    const std::string evaluate = tmp.folder("evaluate", schema,
                                            {{"data.csv",
                                              "age,grade,target\n"
                                              "30,3.0,0\n"
                                              "40,x,1\n"
                                              "50,y,1\n"}});
    const Dataset a = load_ok({train});
    CHECK(a.feature_names ==
          std::vector<std::string>{"age", "grade_3", "grade_4", "grade_x"});
    CHECK(cell(a, 2, "grade_x") == 1.0f);  // a real category, not imputed away
    CHECK(cell(a, 2, "grade_3") == 0.0f);
    const Json meta = Json::parse(a.metadata_json);
    CHECK(meta["unparseable_values"].count("grade") == 0);
    CHECK(meta["imputed"].count("grade") == 0);
    CHECK(meta["columns"]["grade"]["labels"] == Json::array({"3", "4", "x"}));
    const Dataset b = load_ok({evaluate});
    CHECK(b.feature_names ==
          std::vector<std::string>{"age", "grade_3", "grade_x", "grade_y"});
    CHECK(cell(b, 0, "grade_3") == 1.0f);

    SECTION("classes of a categorical target follow the same rule") {
        const std::string dir = tmp.folder("classes", schema,
                                           {{"data.csv",
                                             "age,grade,target\n"
                                             "30,a,1.0\n"
                                             "40,b,no\n"
                                             "50,c,1\n"}});
        CHECK(load_ok({dir}).label_names == std::vector<std::string>{"target_1", "target_no"});
        // Regression refuses a text class, naming where it is.
        const auto e = load_error({dir}, "regress");
        CHECK(e.code == ErrorCode::InvalidArgument);
        CHECK_THAT(e.message, Catch::Contains("data.csv, row 2") && Catch::Contains("'no'") &&
                                  Catch::Contains("regression needs a numeric target"));
    }
}

TEST_CASE("tabular refuses numbers its schema dtype cannot hold naming file row and column",
          "[unit][data][tabular]") {
    // {"flag": "bool", "n": "int32"} took flag=2 and n=3.7 or -5.2 without a word.
    TempDir tmp;
    const Json schema = {{"flag", "bool"}, {"n", "int32"}, {"u", "uint8"}, {"target", "float64"}};
    const auto refused = [&](const std::string& name, const std::string& rows) {
        const std::string dir =
            tmp.folder(name, schema, {{"data.csv", "flag,n,u,target\n" + rows}});
        const auto e = load_error({dir}, "regress");
        CHECK(e.code == ErrorCode::InvalidArgument);
        return e.message;
    };
    CHECK_THAT(refused("bool", "true,1,1,0.5\n2,4,1,1.5\n"),
               Catch::Contains("data.csv, row 2") && Catch::Contains("'flag'") &&
                   Catch::Contains("'bool'") && Catch::Contains("'2'") &&
                   Catch::Contains("not a boolean"));
    CHECK_THAT(refused("int", "0,3.7,1,0.5\n"),
               Catch::Contains("data.csv, row 1") && Catch::Contains("'n'") &&
                   Catch::Contains("'int32'") && Catch::Contains("'3.7'") &&
                   Catch::Contains("not an integer"));
    CHECK_THAT(refused("int-range", "0,1,1,0.5\n1,3000000000,1,1\n"),
               Catch::Contains("row 2") && Catch::Contains("'n'") &&
                   Catch::Contains("outside its range [-2147483648, 2147483647]"));
    CHECK_THAT(refused("uint", "0,1,-1,0.5\n"),
               Catch::Contains("'u'") && Catch::Contains("'uint8'") &&
                   Catch::Contains("outside its range [0, 255]"));
    CHECK_THAT(refused("uint-range", "0,1,256,0.5\n"), Catch::Contains("'256'"));

    // Boolean spellings, 0/1 and integral numbers written as decimals still load.
    const std::string ok = tmp.folder("ok", schema,
                                      {{"data.csv",
                                        "flag,n,u,target\n"
                                        "True,-2147483648,0,0.5\n"
                                        "false,3.0,255,1.5\n"
                                        "1,2147483647,7,2.5\n"
                                        "0,,,3.5\n"}});
    const Dataset ds = load_ok({ok}, "regress");
    CHECK(ds.rows == 4);
    const Json meta = Json::parse(ds.metadata_json);
    CHECK(meta["columns"]["flag"]["max"] == 1.0);
    CHECK(meta["columns"]["n"]["min"] == -2147483648.0);
    CHECK(meta["unparseable_values"].empty());

    // 64-bit bounds are exact for integer literals (a double rounds INT64_MAX up to 2^63).
    const Json wide = {{"i", "int64"}, {"u", "uint64"}, {"target", "float64"}};
    const std::string limits = tmp.folder("limits", wide,
                                          {{"data.csv",
                                            "i,u,target\n"
                                            "9223372036854775807,18446744073709551615,1\n"
                                            "-9223372036854775808,0,2\n"}});
    CHECK(load_ok({limits}, "regress").rows == 2);
    const std::string over = tmp.folder("over", wide,
                                        {{"data.csv", "i,u,target\n9223372036854775808,0,1\n"}});
    CHECK_THAT(load_error({over}, "regress").message,
               Catch::Contains("'i'") && Catch::Contains("outside its range"));
}

TEST_CASE("tabular builds one-hot levels from the rows it keeps only", "[unit][data][tabular]") {
    // 'green' appears only in a row dropped for its missing target: it made an all-zero feature
    // 'colour_green' and was listed in the metadata labels, leaving the worker.
    TempDir tmp;
    const Json schema = {{"colour", "category"}, {"x", "float64"}, {"target", "category"}};
    const std::string dir = tmp.folder("levels", schema,
                                       {{"data.csv",
                                         "colour,x,target\n"
                                         "red,1,a\n"
                                         "blue,2,b\n"
                                         "green,3,\n"
                                         "red,4,b\n"}});
    const Dataset ds = load_ok({dir});
    CHECK(ds.feature_names == std::vector<std::string>{"colour_blue", "colour_red", "x"});
    const Json meta = Json::parse(ds.metadata_json);
    CHECK(meta["columns"]["colour"]["labels"] == Json::array({"blue", "red"}));
    CHECK(meta["columns"]["colour"]["unique"] == 2);
    CHECK(meta["rows_missing_target"] == 1);
    CHECK(cell(ds, 0, "colour_red") == 1.0f);
    CHECK(cell(ds, 1, "colour_blue") == 1.0f);
    CHECK(cell(ds, 2, "colour_red") == 1.0f);
}
