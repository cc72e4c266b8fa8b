// SPDX-License-Identifier: Apache-2.0
#pragma once

/// The TLS policy both sides of our HTTP share (internal to core/src/http).

#include <string>

#include <boost/asio/ssl/context.hpp>
#include <openssl/ssl.h>

namespace synergos::core::http::detail {

/// TLS 1.2 suites with forward secrecy and AEAD only (OpenSSL's default list also offers
/// static-RSA and CBC-SHA1 suites); TLS 1.3 suites are OpenSSL's, all of which qualify.
inline constexpr const char* kTls12Ciphers = "ECDHE+AESGCM:ECDHE+CHACHA20";

/// TLS 1.2 or later with the suites above. Returns an empty string or what failed.
inline std::string apply_tls_policy(boost::asio::ssl::context& ctx) {
    SSL_CTX* native = ctx.native_handle();
    if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1) {
        return "cannot require TLS 1.2 or later";
    }
    if (SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1) {
        return std::string("cannot set the TLS 1.2 cipher list '") + kTls12Ciphers + "'";
    }
    return {};
}

}  // namespace synergos::core::http::detail
