// SPDX-License-Identifier: Apache-2.0
#pragma once

// Shared by the REST and integration tests: a temp folder and an in-process server (connect routes
// on the real sqlite store) reached through real sockets.

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/core/http/client.hpp>
#include <synergos/core/http/router.hpp>
#include <synergos/core/http/server.hpp>
#include <synergos/core/rest/connect_routes.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "sqlite_storage.hpp"
#include "unit/core/http/http_test_util.hpp"

namespace synergos::testing {

struct TempDir {
    TempDir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "synergos-rest-XXXXXX").string();
        path = mkdtemp(pattern.data());
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string path;
};

/// Connect routes + sqlite + HTTP server on 127.0.0.1, port 0, and a client.
class RestServer {
public:
    /// Puts a test double between the routes and the store.
    using Wrap = std::function<std::unique_ptr<sdk::StorageBackend>(sdk::StorageBackend&)>;

    explicit RestServer(core::http::ServerOptions options = default_options(), Wrap wrap = {})
        : host_(dir_.path),
          storage_(host_,
                   sdk::Options(std::map<std::string, std::string>{{"synchronous", "NORMAL"}})),
          server_(options, router_, host_.logger()) {
        REQUIRE(storage_.start().is_ok());
        if (wrap) {
            wrapped_ = wrap(storage_);
        }
        merger_ = core::rest::register_connect_routes(router_, wrapped_ ? *wrapped_ : storage_,
                                                      host_.logger());
        REQUIRE(server_.start().is_ok());
    }
    ~RestServer() {
        server_.stop(std::chrono::seconds(2));
        storage_.stop();
    }

    static core::http::ServerOptions default_options() {
        core::http::ServerOptions options;
        options.port = 0;
        options.threads = 2;
        options.body_limit_bytes = 1024 * 1024;
        return options;
    }

    core::http::Response call(const std::string& method, const std::string& path,
                              const std::string& body = {},
                              const std::string& content_type = "application/json") {
        auto result = client_.request(method, "127.0.0.1", server_.bound_port(), path, body,
                                      content_type, std::chrono::seconds(10));
        REQUIRE(result.has_value());
        return std::move(*result);
    }
    core::http::Response call(const std::string& method, const std::string& path,
                              const nlohmann::json& body) {
        return call(method, path, body.dump());
    }
    /// A request with a literal body (string literals would be ambiguous with `call`).
    core::http::Response raw(const std::string& method, const std::string& path,
                             const std::string& body) {
        return call(method, path, body, "application/json");
    }

    std::uint16_t port() const { return server_.bound_port(); }
    sdk::testing::FakeHost& host() { return host_; }
    plugins::sqlite::SqliteStorage& storage() { return storage_; }
    core::http::HttpServer& server() { return server_; }
    core::rest::RecordMerger& merger() { return *merger_; }

private:
    TempDir dir_;
    sdk::testing::FakeHost host_;
    plugins::sqlite::SqliteStorage storage_;
    std::unique_ptr<sdk::StorageBackend> wrapped_;  // before the router: outlives its routes
    core::http::Router router_;
    std::shared_ptr<core::rest::RecordMerger> merger_;
    core::http::HttpServer server_;
    core::http::HttpClient client_;
};

inline nlohmann::json body_of(const core::http::Response& response) {
    auto parsed = nlohmann::json::parse(response.body, nullptr, false);
    INFO("body: " << response.body);
    REQUIRE_FALSE(parsed.is_discarded());
    return parsed;
}

}  // namespace synergos::testing
