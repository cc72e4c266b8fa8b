// SPDX-License-Identifier: Apache-2.0
// Where the client commands send a token.

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include <synergos/core/client/client.hpp>

#include "stub_director.hpp"

using synergos::core::client::ClientOptions;
using synergos::core::http::Request;
using synergos::core::http::Response;

TEST_CASE("A client command sends no token over plain http to another machine", "[unit][client]") {
    ClientOptions o;
    o.token = "read-token-0123456789abcdef";
    // Refused before any connection: 192.0.2.1 is a documentation address nothing answers on.
    o.server = "http://192.0.2.1:5000";
    std::ostringstream out;
    std::ostringstream err;
    CHECK(synergos::core::client::status(o, out, err) == 2);
    CHECK(err.str().find("a token is sent over https:// only") != std::string::npos);
    CHECK(out.str().empty());
    // Without a token the same server is tried (and is unreachable, but not refused).
    o.token.clear();
    o.server = "http://127.0.0.1:1";
    std::ostringstream err2;
    CHECK(synergos::core::client::status(o, out, err2) == 2);
    CHECK(err2.str().find("https://") == std::string::npos);
    // On this machine a token may go over plain http (the director's loopback default).
    o.token = "read-token-0123456789abcdef";
    std::ostringstream err3;
    CHECK(synergos::core::client::status(o, out, err3) == 2);
    CHECK(err3.str().find("unreachable") != std::string::npos);
}

namespace {

/// Sets an environment variable for one scope.
struct ScopedEnv {
    std::string name;
    ScopedEnv(std::string n, const std::string& value) : name(std::move(n)) { ::setenv(name.c_str(), value.c_str(), 1); }
    ~ScopedEnv() { ::unsetenv(name.c_str()); }
};

}  // namespace

TEST_CASE("A client flag beats the environment's token and CA", "[unit][client]") {
    const std::string file_token = "file-token-0123456789abcdef";
    synergos::tests::StubDirector server([&](const Request& r) {
        if (r.header("authorization") != "Bearer " + file_token) {
            return Response::error(401, "not the token of --token-file");
        }
        return Response::json(200, {{"data", nlohmann::json::array()}});
    });
    std::random_device rd;
    const auto token_file =
        std::filesystem::temp_directory_path() / ("synergos-client-token-" + std::to_string(rd()));
    std::ofstream(token_file) << file_token << "\n";
    const std::string url = server.url();
    {
        // Before, $SYNERGOS_TOKEN won over --token-file: the wrong token went out, 401.
        ScopedEnv env("SYNERGOS_TOKEN", "env-token-0123456789abcdef");
        const std::string file = token_file.string();
        const char* argv[] = {"synergos", "status", "--server", url.c_str(), "--token-file", file.c_str()};
        CHECK(synergos::core::client::main_if_client(6, argv) == 0);
    }
    {
        // A CA in the environment is for https:// directors; before, an http:// one was refused
        // with "--ca-file needs an https:// --server", a flag nobody gave.
        ScopedEnv env("SYNERGOS_CA_FILE", "/nonexistent/ca.pem");
        const std::string token = "--token";
        const char* argv[] = {"synergos", "status", "--server", url.c_str(), token.c_str(), file_token.c_str()};
        CHECK(synergos::core::client::main_if_client(6, argv) == 0);
    }
    std::error_code ec;
    std::filesystem::remove(token_file, ec);
}

TEST_CASE("A --server port with trailing characters is refused", "[unit][client]") {
    ClientOptions o;
    o.server = "http://127.0.0.1:5000abc";
    std::ostringstream out;
    std::ostringstream err;
    CHECK(synergos::core::client::status(o, out, err) == 2);
    CHECK_THAT(err.str(), Catch::Contains("the port is not a number"));  // before: port 5000
}

TEST_CASE("A client usage mistake exits 2 like every other command's", "[unit][client]") {
    const char* missing[] = {"synergos", "submit"};
    CHECK(synergos::core::client::main_if_client(2, missing) == 2);  // before: 64
    const char* unknown[] = {"synergos", "status", "--frobnicate"};
    CHECK(synergos::core::client::main_if_client(3, unknown) == 2);
}

TEST_CASE("The --timeout option bounds each request, not only the polling", "[unit][client]") {
    std::mutex mutex;
    std::condition_variable cv;
    bool released = false;
    {
        // Accepts and does not answer until released (10 s at most).
        synergos::tests::StubDirector server([&](const Request&) {
            std::unique_lock<std::mutex> lock(mutex);
            cv.wait_for(lock, std::chrono::seconds(10), [&] { return released; });
            return Response::json(200, {{"data", nlohmann::json::array()}});
        });
        ClientOptions o;
        o.server = server.url();
        o.timeout = std::chrono::seconds(1);
        std::ostringstream out;
        std::ostringstream err;
        const auto began = std::chrono::steady_clock::now();
        CHECK(synergos::core::client::status(o, out, err) != 0);
        // Before: each request waited up to 60 s, here the handler's 10 s.
        CHECK(std::chrono::steady_clock::now() - began < std::chrono::seconds(5));
        {
            std::lock_guard<std::mutex> lock(mutex);
            released = true;
        }
        cv.notify_all();
    }
}

TEST_CASE("A --server with a path or a broken IPv6 bracket is refused naming the form", "[unit][client]") {
    std::ostringstream out;
    ClientOptions o;
    // Before, the path was dropped and the root of the server was asked instead.
    o.server = "http://127.0.0.1:1/synergos";
    std::ostringstream err;
    CHECK(synergos::core::client::status(o, out, err) == 2);
    CHECK_THAT(err.str(), Catch::Contains("without a path"));
    // Before, "[::1" became host "[:" and port 1.
    o.server = "http://[::1";
    std::ostringstream err2;
    CHECK(synergos::core::client::status(o, out, err2) == 2);
    CHECK_THAT(err2.str(), Catch::Contains("[ADDRESS]:PORT"));
    // The bracketed form is read as an address and a port (nothing listens on port 1).
    o.server = "http://[::1]:1";
    std::ostringstream err3;
    CHECK(synergos::core::client::status(o, out, err3) == 2);
    CHECK_THAT(err3.str(), Catch::Contains("unreachable"));
    o.server = "http://127.0.0.1:5000/";  // a trailing slash is the root
    std::ostringstream err4;
    synergos::core::client::status(o, out, err4);
    CHECK_THAT(err4.str(), !Catch::Contains("without a path"));
}
