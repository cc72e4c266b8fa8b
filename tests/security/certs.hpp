// SPDX-License-Identifier: Apache-2.0
#pragma once

// Test certificates made at test time with the openssl CLI in a temp folder: a trusted CA with a
// server certificate (127.0.0.1, localhost) and a client certificate, and a rogue CA with its own
// server and client certificates (what an untrusted peer presents).

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

namespace synergos::testing {

struct Certs {
    std::string dir;
    std::string ca;           ///< trusted CA certificate
    std::string server_cert;  ///< signed by `ca`, names 127.0.0.1 and localhost
    std::string server_key;
    std::string client_cert;  ///< signed by `ca`
    std::string client_key;
    std::string rogue_ca;           ///< an unrelated CA
    std::string rogue_server_cert;  ///< signed by `rogue_ca`, names 127.0.0.1
    std::string rogue_server_key;
    std::string rogue_client_cert;  ///< signed by `rogue_ca`
    std::string rogue_client_key;
};

/// Made once per test process; the folder is removed at exit.
inline const Certs& test_certs() {
    static const Certs certs = [] {
        Certs c;
        std::string pattern =
            (std::filesystem::temp_directory_path() / "synergos-certs-XXXXXX").string();
        c.dir = mkdtemp(pattern.data());
        const std::string script = c.dir + "/make.sh";
        std::ofstream(script) << R"(set -e
cd "$1"
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2>/dev/null; }
for ca in ca rogue_ca; do
  key $ca.key
  openssl req -x509 -new -key $ca.key -out $ca.pem -days 2 -subj "/CN=synergos test $ca" 2>/dev/null
done
leaf() {  # name ca extfile
  key $1.key
  openssl req -new -key $1.key -out $1.csr -subj "/CN=$1" 2>/dev/null
  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem -days 2 \
    -extfile $3 2>/dev/null
}
leaf server ca server.ext
leaf client ca client.ext
leaf rogue_server rogue_ca server.ext
leaf rogue_client rogue_ca client.ext
)";
        const std::string command = "sh '" + script + "' '" + c.dir + "'";
        REQUIRE(std::system(command.c_str()) == 0);
        auto file = [&](const char* name) { return c.dir + "/" + name; };
        c.ca = file("ca.pem");
        c.server_cert = file("server.pem");
        c.server_key = file("server.key");
        c.client_cert = file("client.pem");
        c.client_key = file("client.key");
        c.rogue_ca = file("rogue_ca.pem");
        c.rogue_server_cert = file("rogue_server.pem");
        c.rogue_server_key = file("rogue_server.key");
        c.rogue_client_cert = file("rogue_client.pem");
        c.rogue_client_key = file("rogue_client.key");
        static const std::string dir = c.dir;
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(dir, ec);
        });
        return c;
    }();
    return certs;
}

}  // namespace synergos::testing
