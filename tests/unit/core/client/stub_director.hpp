// SPDX-License-Identifier: Apache-2.0
#pragma once
/// A stand-in for a director on 127.0.0.1 (port 0) for the client tests: every path of up to 12
/// segments, every method, answered by one function.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include <catch2/catch.hpp>

#include <synergos/core/http/router.hpp>
#include <synergos/core/http/server.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

namespace synergos::tests {

class StubDirector {
public:
    using Answer = std::function<core::http::Response(const core::http::Request&)>;

    /// `port` 0: any free one.
    explicit StubDirector(Answer answer, std::uint16_t port = 0) {
        for (const char* method : {"GET", "POST", "PUT", "DELETE"}) {
            std::string pattern;
            for (int depth = 0; depth < 12; ++depth) {
                pattern += "/{s" + std::to_string(depth) + "}";
                router_.add(method, pattern, answer);
            }
        }
        core::http::ServerOptions options;
        options.port = port;
        server_ = std::make_unique<core::http::HttpServer>(options, router_, logger_);
        REQUIRE(server_->start().is_ok());
    }
    ~StubDirector() { server_->stop(std::chrono::seconds(2)); }

    std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->bound_port()); }

private:
    sdk::testing::CapturingLogger logger_;
    core::http::Router router_;
    std::unique_ptr<core::http::HttpServer> server_;
};

}  // namespace synergos::tests
