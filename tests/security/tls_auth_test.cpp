// SPDX-License-Identifier: Apache-2.0
// TLS and bearer tokens on the director's API and on the worker protocol, over real loopback
// sockets with certificates made at test time. The servers are configured the way the roles do
// it: a YAML config through build_config() and server_options() (config/security.hpp).

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/core/config/config_loader.hpp>
#include <synergos/core/config/security.hpp>
#include <synergos/core/http/client.hpp>
#include <synergos/core/http/router.hpp>
#include <synergos/core/http/server.hpp>
#include <synergos/core/roles/worker_client.hpp>
#include <synergos/core/worker/service.hpp>
#include <synergos/sdk/testing/fake_host.hpp>

#include "certs.hpp"
#include "unit/core/http/http_test_util.hpp"
#include "unit/core/rest/rest_fixture.hpp"

namespace {

using namespace synergos;
using core::http::ClientOptions;
using core::http::HttpClient;
using nlohmann::json;
using testing::test_certs;

constexpr const char* kAdminToken = "admin-token-0123456789abcdef";
constexpr const char* kReadToken = "read-token-0123456789abcdef";
constexpr const char* kTtpToken = "ttp-token-0123456789abcdef";

/// A config built from YAML text the way `synergos <role> --config F` builds it.
core::RuntimeConfig load_config(const testing::TempDir& dir, core::Role role,
                                const std::string& yaml) {
    const std::string file = dir.path + "/config.yaml";
    std::ofstream(file) << yaml;
    return core::build_config(role, file, {});
}

std::vector<std::pair<std::string, std::string>> bearer(const std::string& token) {
    return {{"Authorization", "Bearer " + token}};
}

ClientOptions tls_client(const std::string& ca, const std::string& cert = {},
                         const std::string& key = {}) {
    ClientOptions o;
    o.tls.enabled = true;
    o.tls.ca_file = ca;
    o.tls.cert_file = cert;
    o.tls.key_file = key;
    return o;
}

/// The director's API (connect routes on sqlite) with TLS and two tokens from a config file.
struct SecureDirector {
    testing::TempDir config_dir;
    std::unique_ptr<testing::RestServer> server;

    SecureDirector() {
        const auto& certs = test_certs();
        std::ofstream(config_dir.path + "/admin.token") << kAdminToken << "\n";
        ::setenv("SYNERGOS_TEST_READ_TOKEN", kReadToken, 1);
        const auto config = load_config(config_dir, core::Role::Director,
                                        "http:\n"
                                        "  host: 127.0.0.1\n"
                                        "  port: 0\n"
                                        "  tls: {cert_file: " +
                                            certs.server_cert + ", key_file: " + certs.server_key +
                                            "}\n"
                                            "  tokens:\n"
                                            "    - {scope: admin, file: admin.token}\n"
                                            "    - {scope: read, env: SYNERGOS_TEST_READ_TOKEN}\n");
        auto options = core::server_options(config);
        REQUIRE(options.has_value());
        REQUIRE(options->tokens.size() == 2);
        server = std::make_unique<testing::RestServer>(*options);
    }
    std::uint16_t port() const {
        return server->port();
    }
};

TEST_CASE("director API over TLS refuses plain and untrusted peers and accepts the configured ones",
          "[security][tls]") {
    SecureDirector director;
    const auto& certs = test_certs();
    const auto port = director.port();

    // A plain-HTTP client gets no answer: the server wants a TLS handshake.
    HttpClient plain;
    auto refused = plain.request("GET", "127.0.0.1", port, "/healthz");
    CHECK_FALSE(refused.has_value());

    // A client that trusts another CA refuses the server's certificate.
    HttpClient untrusting(tls_client(certs.rogue_ca));
    auto untrusted = untrusting.request("GET", "127.0.0.1", port, "/healthz");
    REQUIRE_FALSE(untrusted.has_value());
    CHECK_THAT(untrusted.error().message, Catch::Contains("TLS handshake"));

    // The configured CA: health is open, the API needs the token.
    HttpClient client(tls_client(certs.ca));
    auto health = client.request("GET", "127.0.0.1", port, "/healthz");
    REQUIRE(health.has_value());
    CHECK(health->status == 200);
    auto listed = client.request("GET", "127.0.0.1", port, "/ttp/connect/collaborations", {},
                                 "application/json", std::chrono::seconds(10), bearer(kReadToken));
    REQUIRE(listed.has_value());
    CHECK(listed->status == 200);

    // Reached by name: the certificate names "localhost" too.
    HttpClient by_name(tls_client(certs.ca));
    auto named = by_name.request("GET", "localhost", port, "/healthz");
    REQUIRE(named.has_value());
    CHECK(named->status == 200);
}

/// A TLS 1.2 handshake with 127.0.0.1:`port` offering only `ciphers`; the error, empty when it
/// succeeded.
std::string tls12_handshake(std::uint16_t port, const char* ciphers) {
    namespace net = boost::asio;
    net::io_context ioc;
    net::ssl::context ctx(net::ssl::context::tls_client);
    SSL_CTX_set_max_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    REQUIRE(SSL_CTX_set_cipher_list(ctx.native_handle(), ciphers) == 1);
    ctx.set_verify_mode(net::ssl::verify_none);  // the suites are under test, not the chain
    net::ssl::stream<net::ip::tcp::socket> stream(ioc, ctx);
    boost::system::error_code ec;
    stream.next_layer().connect({net::ip::make_address("127.0.0.1"), port}, ec);
    REQUIRE_FALSE(ec);
    // A blocked handshake must not hang the suite: the server's header timeout closes it.
    stream.handshake(net::ssl::stream_base::client, ec);
    return ec ? ec.message() : std::string();
}

TEST_CASE("TLS 1.2 offers only forward-secret AEAD suites", "[security][tls]") {
    SecureDirector director;
    // The test certificates are ECDSA (certs.hpp).
    CHECK(tls12_handshake(director.port(), "ECDHE-ECDSA-AES128-GCM-SHA256").empty());
    CHECK(tls12_handshake(director.port(), "ECDHE-ECDSA-CHACHA20-POLY1305").empty());
    CHECK_FALSE(tls12_handshake(director.port(), "ECDHE-ECDSA-AES128-SHA").empty());     // CBC-SHA1
    CHECK_FALSE(tls12_handshake(director.port(), "ECDHE-ECDSA-AES256-SHA384").empty());  // CBC
}

TEST_CASE("refused TLS handshakes are logged at most once per interval with a count",
          "[security][tls]") {
    const auto& certs = test_certs();
    core::http::ServerOptions o;
    o.port = 0;
    o.tls.cert_file = certs.server_cert;
    o.tls.key_file = certs.server_key;
    sdk::testing::CapturingLogger logger;
    core::http::Router router;
    core::http::HttpServer server(o, router, logger);
    REQUIRE(server.start().is_ok());
    // Plain-text peers: no token is needed to make the server refuse a handshake.
    for (int i = 0; i < 20; ++i) {
        testing::RawConnection raw(server.bound_port());
        raw.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        (void)raw.read_all();
    }
    std::size_t warned = 0;
    for (const auto& line : logger.lines()) {
        warned += line.event.find("TLS handshake refused") != std::string::npos ? 1 : 0;
    }
    CHECK(warned == 1);
    server.stop(std::chrono::seconds(5));
}

TEST_CASE("a server with an untrusted certificate is refused by a verifying client",
          "[security][tls]") {
    const auto& certs = test_certs();
    core::http::ServerOptions o;
    o.port = 0;
    o.tls.cert_file = certs.rogue_server_cert;
    o.tls.key_file = certs.rogue_server_key;
    testing::RestServer rogue(o);
    HttpClient client(tls_client(certs.ca));
    auto r = client.request("GET", "127.0.0.1", rogue.port(), "/healthz");
    REQUIRE_FALSE(r.has_value());
    CHECK_THAT(r.error().message, Catch::Contains("TLS handshake"));
}

TEST_CASE(
    "director API tokens: 401 without or with a bad token, 403 read-only on a mutating "
    "route, admin allowed",
    "[security][auth]") {
    SecureDirector director;
    const auto port = director.port();
    HttpClient client(tls_client(test_certs().ca));
    const std::string collabs = "/ttp/connect/collaborations";
    auto call = [&](const std::string& method, const std::string& body,
                    std::vector<std::pair<std::string, std::string>> headers) {
        auto r = client.request(method, "127.0.0.1", port, collabs, body, "application/json",
                                std::chrono::seconds(10), headers);
        REQUIRE(r.has_value());
        return *r;
    };
    const std::string body = R"({"collab_id": "sec-1"})";

    auto none = call("GET", "", {});
    CHECK(none.status == 401);
    CHECK(none.header("WWW-Authenticate").find("Bearer") != std::string::npos);
    CHECK(json::parse(none.body).contains("message"));
    CHECK(call("POST", body, {}).status == 401);
    CHECK(call("GET", "", bearer("not-the-token-0123456789")).status == 401);
    CHECK(call("GET", "", {{"Authorization", std::string("Basic ") + kAdminToken}}).status == 401);
    // A token that only shares a prefix with a real one is not accepted.
    CHECK(call("GET", "", bearer(std::string(kAdminToken) + "x")).status == 401);

    CHECK(call("GET", "", bearer(kReadToken)).status == 200);
    auto forbidden = call("POST", body, bearer(kReadToken));
    CHECK(forbidden.status == 403);
    CHECK_THAT(json::parse(forbidden.body)["message"].get<std::string>(), Catch::Contains("admin"));
    CHECK(call("POST", body, bearer(kAdminToken)).status == 201);
    // Nothing was created by the refused requests: exactly the admin's one.
    auto listed = call("GET", "", bearer(kAdminToken));
    CHECK(json::parse(listed.body)["data"].size() == 1);
    // Probes stay open for load balancers and orchestrators.
    CHECK(client.request("GET", "127.0.0.1", port, "/readyz")->status == 200);
}

/// A worker's protocol server as `synergos worker` builds it (WorkerService routes), configured
/// for mutual TLS and its TTP's token.
struct SecureWorker {
    testing::TempDir dir;
    sdk::testing::CapturingLogger logger;
    std::shared_ptr<core::worker::WorkerService> service;
    core::http::Router router;
    std::unique_ptr<core::http::HttpServer> server;

    SecureWorker() {
        const auto& certs = test_certs();
        ::setenv("SYNERGOS_TEST_TTP_TOKEN", kTtpToken, 1);
        const auto config =
            load_config(dir, core::Role::Worker,
                        "http:\n"
                        "  host: 127.0.0.1\n"
                        "  port: 0\n"
                        "  body_limit_bytes: 1048576\n"
                        "  tls:\n"
                        "    cert_file: " +
                            certs.server_cert +
                            "\n"
                            "    key_file: " +
                            certs.server_key +
                            "\n"
                            "    ca_file: " +
                            certs.ca +
                            "\n"
                            "    require_client_cert: true\n"
                            "  tokens: [{scope: admin, env: SYNERGOS_TEST_TTP_TOKEN}]\n");
        core::worker::WorkerServiceConfig wc;
        wc.participant_id = "worker-sec";
        wc.data_dir = dir.path;
        wc.outputs_dir = dir.path;
        wc.logger = &logger;
        service = std::make_shared<core::worker::WorkerService>(wc);
        auto forward = [svc = service](const core::http::Request& req) {
            core::worker::WorkerHttpRequest wr{req.method, req.path, req.header("content-type"),
                                               req.body};
            auto out = svc->handle(wr);
            core::http::Response resp;
            resp.status = out.status;
            resp.content_type = out.content_type;
            resp.body = std::move(out.body);
            return resp;
        };
        router.add("GET", "/v1/health", forward);
        router.add("POST", "/v1/projects/{collab_id}/{project_id}/poll", forward);
        auto options = core::server_options(config);
        REQUIRE(options.has_value());
        server = std::make_unique<core::http::HttpServer>(*options, router, logger);
        REQUIRE(server->start().is_ok());
    }
    ~SecureWorker() {
        server->stop(std::chrono::seconds(2));
    }
    std::uint16_t port() const {
        return server->bound_port();
    }
};

/// The TTP side as the roles build it: worker_client options from the config (here a standalone
/// director's, whose embedded TTP calls the workers; a `synergos ttp` reads the same section).
ClientOptions ttp_client_options(const testing::TempDir& dir, const std::string& extra) {
    const auto& certs = test_certs();
    const auto config = load_config(dir, core::Role::Director,
                                    "worker_client:\n"
                                    "  tls: true\n"
                                    "  ca_file: " +
                                        certs.ca + "\n" + extra);
    auto options = core::worker_client_options(config);
    REQUIRE(options.has_value());
    return *options;
}

TEST_CASE(
    "worker protocol: mutual TLS and the TTP's token: plain, untrusted and token-less "
    "peers are refused",
    "[security][tls][auth]") {
    SecureWorker worker;
    const auto& certs = test_certs();
    const auto port = worker.port();
    testing::TempDir ttp_dir;
    std::ofstream(ttp_dir.path + "/ttp.token") << kTtpToken << "\n";

    // The TTP configured with its client certificate and token: accepted, through the same
    // worker client the TTP functions use.
    {
        HttpClient http(ttp_client_options(ttp_dir, "  cert_file: " + certs.client_cert +
                                                        "\n"
                                                        "  key_file: " +
                                                        certs.client_key +
                                                        "\n"
                                                        "  token: {file: ttp.token}\n"));
        core::roles::HttpWorkerClient workers(http);
        sdk::GridNode node;
        node.participant_id = "worker-sec";
        node.host = "127.0.0.1";
        node.port = port;
        sdk::WorkerRequest request;
        request.method = "GET";
        request.path = "/v1/health";
        request.timeout = std::chrono::seconds(10);
        auto reply = workers.call(node, request);
        REQUIRE(reply.has_value());
        CHECK(reply->status == 200);
        CHECK(json::parse(reply->json)["participant_id"] == "worker-sec");
    }
    // Plain HTTP: no answer.
    HttpClient plain;
    CHECK_FALSE(plain.request("GET", "127.0.0.1", port, "/v1/health").has_value());
    // TLS without a client certificate: refused in the handshake (or right after it, TLS 1.3).
    HttpClient no_cert(tls_client(certs.ca));
    auto anonymous = no_cert.request("GET", "127.0.0.1", port, "/v1/health", {}, "application/json",
                                     std::chrono::seconds(10), bearer(kTtpToken));
    CHECK_FALSE(anonymous.has_value());
    // A client certificate from another CA: refused.
    HttpClient rogue(tls_client(certs.ca, certs.rogue_client_cert, certs.rogue_client_key));
    CHECK_FALSE(rogue
                    .request("GET", "127.0.0.1", port, "/v1/health", {}, "application/json",
                             std::chrono::seconds(10), bearer(kTtpToken))
                    .has_value());
    // The right certificate but not this worker's TTP token: 401.
    HttpClient good_cert(tls_client(certs.ca, certs.client_cert, certs.client_key));
    auto wrong_token =
        good_cert.request("GET", "127.0.0.1", port, "/v1/health", {}, "application/json",
                          std::chrono::seconds(10), bearer(kAdminToken));
    REQUIRE(wrong_token.has_value());
    CHECK(wrong_token->status == 401);
    auto no_token = good_cert.request("GET", "127.0.0.1", port, "/v1/health");
    REQUIRE(no_token.has_value());
    CHECK(no_token->status == 401);
    // Still serving the right peer after all that.
    auto fine = good_cert.request("GET", "127.0.0.1", port, "/v1/health", {}, "application/json",
                                  std::chrono::seconds(10), bearer(kTtpToken));
    REQUIRE(fine.has_value());
    CHECK(fine->status == 200);
    // Every refused handshake was logged without the token.
    for (const auto& record : worker.logger.lines()) {
        CHECK(record.fields_json.find(kTtpToken) == std::string::npos);
        CHECK(record.event.find(kTtpToken) == std::string::npos);
    }
}

TEST_CASE("security config: token sources and TLS files are checked with clear errors",
          "[security][config]") {
    testing::TempDir dir;
    auto bad = [&](const std::string& yaml) {
        try {
            auto config = load_config(dir, core::Role::Director, yaml);
            auto options = core::server_options(config);
            return options.has_value() ? std::string() : options.error().message;
        } catch (const core::ConfigError& e) {
            return std::string(e.what());
        }
    };
    CHECK_THAT(bad("http: {tokens: [{scope: admin}]}\n"), Catch::Contains("http.tokens[0]"));
    CHECK_THAT(bad("http: {tokens: [{scope: root, env: X}]}\n"),
               Catch::Contains("http.tokens[0].scope"));
    ::unsetenv("SYNERGOS_TEST_UNSET_TOKEN");
    CHECK_THAT(bad("http: {tokens: [{env: SYNERGOS_TEST_UNSET_TOKEN}]}\n"),
               Catch::Contains("SYNERGOS_TEST_UNSET_TOKEN"));
    std::ofstream(dir.path + "/short.token") << "abc\n";
    const auto too_short = bad("http: {tokens: [{file: short.token}]}\n");
    CHECK_THAT(too_short, Catch::Contains("shorter than 16"));
    CHECK(too_short.find("abc\n") == std::string::npos);
    CHECK_THAT(bad("http: {tokens: [{file: missing.token}]}\n"), Catch::Contains("missing.token"));
    // A device or FIFO is not read (a FIFO waited for a writer; /dev/zero grew without bound;
    // before, /dev/null read as a token "shorter than 16").
    CHECK_THAT(bad("http: {tokens: [{file: /dev/null}]}\n"), Catch::Contains("not a regular file"));
    CHECK_THAT(bad("http: {tls: {cert_file: a.pem}}\n"), Catch::Contains("http.tls"));
    CHECK_THAT(bad("http: {tls: {kye_file: a.pem}}\n"), Catch::Contains("kye_file"));

    // A server whose files are wrong refuses to start and names the option and file.
    core::http::ServerOptions o;
    o.port = 0;
    o.tls.cert_file = dir.path + "/nope.pem";
    o.tls.key_file = test_certs().server_key;
    sdk::testing::CapturingLogger logger;
    core::http::Router router;
    core::http::HttpServer server(o, router, logger);
    const auto st = server.start();
    REQUIRE_FALSE(st.is_ok());
    CHECK_THAT(st.message(), Catch::Contains("tls.cert_file") && Catch::Contains("nope.pem"));
    // A key that does not match the certificate.
    o.tls.cert_file = test_certs().server_cert;
    o.tls.key_file = test_certs().client_key;
    core::http::HttpServer mismatched(o, router, logger);
    CHECK_THAT(mismatched.start().message(), Catch::Contains("tls.key_file"));
}

TEST_CASE("a role checks its tokens TLS files and outputs folder before anything starts",
          "[security][config]") {
    // A bad token file or TLS path used to be found only after the store was opened and the
    // embedded TTP had taken jobs; a bad outputs folder only when a job wrote into it.
    testing::TempDir dir;
    sdk::testing::CapturingLogger logger;
    const auto refused = [&](core::Role role, const std::string& yaml) {
        auto config = load_config(dir, role, yaml);
        config.node.outputs_dir = dir.path + "/outputs";
        const auto st = core::check_before_start(config, logger);
        return st.is_ok() ? std::string() : st.message();
    };
    CHECK_THAT(refused(core::Role::Director, "http: {tokens: [{file: gone.token}]}\n"),
               Catch::Contains("http.tokens[0]") && Catch::Contains("gone.token"));
    CHECK_THAT(refused(core::Role::Director,
                       "http: {tls: {cert_file: /nonexistent.pem, key_file: /nonexistent.key}}\n"),
               Catch::Contains("http.tls.cert_file") && Catch::Contains("/nonexistent.pem") &&
                   Catch::Contains("No such file"));
    // A FIFO or device: opening a FIFO waited for a writer (check-config hung on /dev/stdin).
    CHECK_THAT(refused(core::Role::Director, "http: {tls: {cert_file: /dev/null, key_file: /dev/null}}\n"),
               Catch::Contains("http.tls.cert_file") && Catch::Contains("not a regular file"));
    CHECK_THAT(refused(core::Role::Director, "http: {host: 0.0.0.0}\n"),
               Catch::Contains("--allow-insecure"));
    CHECK_THAT(refused(core::Role::Ttp, "message_queue: rabbitmq\nworker_client: {tls: true, ca_file: /nonexistent-ca.pem}\n"),
               Catch::Contains("worker_client.ca_file") && Catch::Contains("/nonexistent-ca.pem"));
    // A TTP serves no HTTP: the http block's files are not its business; a worker calls no worker.
    CHECK(refused(core::Role::Ttp, "message_queue: rabbitmq\nhttp: {tokens: [{file: gone.token}]}\n").empty());
    CHECK(refused(core::Role::Worker, "worker_client: {tls: true, ca_file: /nonexistent-ca.pem}\n").empty());

    // The outputs folder: created at start, refused when it cannot be one.
    auto config = load_config(dir, core::Role::Director, "node: {id: x}\n");
    config.node.outputs_dir = dir.path + "/made/outputs";
    REQUIRE(core::check_before_start(config, logger).is_ok());
    CHECK(std::filesystem::is_directory(config.node.outputs_dir));
    std::ofstream(dir.path + "/afile") << "x";
    config.node.outputs_dir = dir.path + "/afile";
    const auto st = core::check_before_start(config, logger);
    REQUIRE_FALSE(st.is_ok());
    CHECK_THAT(st.message(), Catch::Contains("paths.outputs_dir") && Catch::Contains("afile"));
    // check-config's mode creates nothing.
    config.node.outputs_dir = dir.path + "/not/yet";
    CHECK(core::check_before_start(config, logger, false).is_ok());
    CHECK_FALSE(std::filesystem::exists(config.node.outputs_dir));
}

TEST_CASE("exposure rule: a non-loopback bind needs TLS and tokens or an explicit allowance",
          "[security][config]") {
    testing::TempDir dir;
    sdk::testing::CapturingLogger logger;
    auto config = load_config(dir, core::Role::Director, "http: {host: 0.0.0.0}\n");
    auto refused = core::check_exposure(config, "director", logger);
    REQUIRE_FALSE(refused.is_ok());
    CHECK_THAT(refused.message(), Catch::Contains("0.0.0.0") &&
                                      Catch::Contains("--allow-insecure") &&
                                      Catch::Contains("TLS and tokens"));
    config.http.allow_insecure = true;
    CHECK(core::check_exposure(config, "director", logger).is_ok());
    bool warned = false;
    for (const auto& r : logger.lines()) {
        warned = warned || (r.level == sdk::Level::Warn && r.event.find("INSECURE") == 0);
    }
    CHECK(warned);
    // Loopback needs nothing; the default host is loopback.
    CHECK(load_config(dir, core::Role::Director, "node: {id: x}\n").http.host == "127.0.0.1");
}

}  // namespace
