// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <synergos/core/config/runtime_config.hpp>
#include <synergos/core/logging/censor.hpp>

using nlohmann::json;
using synergos::core::Censor;

TEST_CASE("Censor redacts matching keys at any depth", "[unit][logging][censor]") {
    const Censor censor({"*_dir", "*_path", "path", "host", "hosts", "password", "token",
                         "authorization", "secret", "api_key", "credentials", "url"});
    json fields = json::parse(R"({
        "DATA_DIR": "/srv/data",
        "job": {"id": "j1", "out_path": "/o/m.safetensors",
                "nodes": [{"Host": "10.0.0.1", "port": 8020}, {"host": "10.0.0.2"}]},
        "credentials": {"user": "u", "password": "p"},
        "hosts": ["a", "b"],
        "Authorization": "Bearer x",
        "token": null,
        "count": 3,
        "note": "a value that names no path stays"
    })");
    censor.apply(fields);
    CHECK(fields["DATA_DIR"] == Censor::kRedacted);
    CHECK(fields["job"]["id"] == "j1");
    CHECK(fields["job"]["out_path"] == Censor::kRedacted);
    CHECK(fields["job"]["nodes"][0]["Host"] == Censor::kRedacted);
    CHECK(fields["job"]["nodes"][0]["port"] == 8020);
    CHECK(fields["job"]["nodes"][1]["host"] == Censor::kRedacted);
    CHECK(fields["credentials"] == Censor::kRedacted);  // a whole object goes
    CHECK(fields["hosts"] == Censor::kRedacted);        // a whole list goes
    CHECK(fields["Authorization"] == Censor::kRedacted);
    CHECK(fields["token"].is_null());  // nothing to hide
    CHECK(fields["count"] == 3);
    CHECK(fields["note"] == "a value that names no path stays");
}

TEST_CASE("Censor replaces paths and addresses inside free text", "[unit][logging][censor]") {
    const Censor censor({"token"}, true);
    json fields = {
        {"error", "http.tokens[0]: cannot read the token file '/nonexistent.token'"},
        {"reason", "connect to 10.0.0.3:5672 failed (timeout), retry at /srv/x/y and 192.168.1.1"},
        {"nested", {{"msg", "open(/data/a b.csv) failed"}}},
        {"plain", "ratio 3/4 of v1.2.3.4.5 in 12.5 s"},
        {"route", "/ttp/connect/collaborations"}};
    censor.apply(fields);
    CHECK(fields["error"] == "http.tokens[0]: cannot read the token file '*CENSORED*'");
    CHECK(fields["reason"] ==
          "connect to *CENSORED* failed (timeout), retry at *CENSORED* and *CENSORED*");
    CHECK(fields["nested"]["msg"] == "open(*CENSORED* b.csv) failed");
    CHECK(fields["plain"] == "ratio 3/4 of v1.2.3.4.5 in 12.5 s");  // no path, no address
    CHECK(fields["route"] == "*CENSORED*");
    // Only when asked (--censored): hiding secrets alone keeps paths readable.
    json kept = {{"error", "cannot read '/srv/x'"}};
    Censor({"token"}).apply(kept);
    CHECK(kept["error"] == "cannot read '/srv/x'");
}

TEST_CASE("Censor patterns are case-insensitive globs", "[unit][logging][censor]") {
    const Censor censor({"*_DIR", "db_*", "x*y*z"});
    CHECK(censor.matches("mlflow_dir"));
    CHECK(censor.matches("MLFLOW_DIR"));
    CHECK_FALSE(censor.matches("dir"));
    CHECK_FALSE(censor.matches("directory"));
    CHECK(censor.matches("DB_PATH"));
    CHECK(censor.matches("xAyBz"));
    CHECK(censor.matches("xyz"));
    CHECK_FALSE(censor.matches("xzy"));
}

TEST_CASE("Censor with a configured key list redacts only those keys", "[unit][logging][censor]") {
    const Censor censor({"participant_id"});
    json fields = {{"participant_id", "p1"}, {"host", "h"}, {"list", {{{"participant_id", "p2"}}}}};
    censor.apply(fields);
    CHECK(fields["participant_id"] == Censor::kRedacted);
    CHECK(fields["list"][0]["participant_id"] == Censor::kRedacted);
    CHECK(fields["host"] == "h");
}

TEST_CASE("The default key list censors path-like keys", "[unit][logging][censor]") {
    const Censor censor(synergos::core::default_censor_keys());
    for (const char* key : {"data_dir", "OUT_DIR", "db_path", "path", "url", "api_key", "secret",
                            "search_paths", "json_file", "plugin_dirs", "root", "artifact_root"}) {
        INFO(key);
        CHECK(censor.matches(key));
    }
    for (const char* key : {"collab_id", "port", "event", "level"}) {
        INFO(key);
        CHECK_FALSE(censor.matches(key));
    }
}
