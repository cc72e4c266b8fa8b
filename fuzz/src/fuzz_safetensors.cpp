// SPDX-License-Identifier: Apache-2.0
// The safetensors reader (core/src/tensor): weights arriving from workers and TTPs. Any byte
// string is parsed, decoded and, when accepted, re-encoded: the round trip must give the same
// tensors and metadata, and decoding into the decoded tensors (MatchExisting) must succeed.

#include <cstddef>
#include <cstdint>
#include <string>

#include <synergos/core/tensor/safetensors.hpp>

#include "fuzz_common.hpp"

namespace {

namespace st = synergos::core::tensor;
using synergos::fuzz::check;

bool same(const synergos::sdk::TensorMap& a, const synergos::sdk::TensorMap& b) {
    if (a.tensors.size() != b.tensors.size()) {
        return false;
    }
    for (const auto& t : a.tensors) {
        const auto* u = b.find(t.name);
        if (u == nullptr || u->dtype != t.dtype || u->shape != t.shape || u->data != t.data) {
            return false;
        }
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view body = synergos::fuzz::as_text(data, size);
    // Small limits as well as the defaults, so the limit paths are reached too.
    st::DecodeLimits tight;
    tight.max_total_bytes = 4096;
    tight.max_header_bytes = 512;
    (void)st::parse(body, tight);

    auto view = st::parse(body);
    auto decoded = st::decode(body);
    check(view.has_value() == decoded.has_value(), "parse and decode disagree");
    if (!decoded) {
        synergos::sdk::TensorMap untouched;
        check(!st::decode_into(body, untouched, nullptr).is_ok(), "decode_into accepted");
        check(untouched.tensors.empty(), "decode_into changed its output on error");
        return 0;
    }
    check(view->tensors.size() == decoded->tensors.tensors.size(), "tensor count differs");
    for (const auto& t : view->tensors) {
        check(t.numel() >= 0, "negative numel");
        check(view->find(t.name) != nullptr, "find misses a tensor", t.name);
    }

    auto encoded = st::encode_to_string(decoded->tensors, decoded->metadata);
    check(encoded.has_value(), "a decoded body does not re-encode",
          encoded ? std::string() : encoded.error().message);
    auto size_result = st::encoded_size(decoded->tensors, decoded->metadata);
    check(size_result.has_value() && *size_result == encoded->size(), "encoded_size is wrong");
    auto again = st::decode(*encoded);
    check(again.has_value(), "a re-encoded body does not decode");
    check(same(again->tensors, decoded->tensors), "round trip changed the tensors");
    check(again->metadata == decoded->metadata, "round trip changed the metadata");

    synergos::sdk::TensorMap existing = decoded->tensors;
    st::Metadata metadata;
    check(st::decode_into(body, existing, &metadata, st::DecodeInto::MatchExisting).is_ok(),
          "decode_into(MatchExisting) refused its own tensors");
    check(same(existing, decoded->tensors), "decode_into changed the tensors");
    return 0;
}
