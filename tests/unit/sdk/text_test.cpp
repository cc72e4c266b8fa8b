// SPDX-License-Identifier: Apache-2.0
// sdk/text.hpp: the UTF-8 check the storage, data and tracking plugins share.
#include <string>
#include <string_view>

#include <catch2/catch.hpp>

#include <synergos/sdk/text.hpp>

using synergos::sdk::is_utf8;
using synergos::sdk::utf8_length;
using namespace std::string_literals;

TEST_CASE("utf8_length counts the code points of well-formed UTF-8", "[unit][sdk]") {
    CHECK(utf8_length("") == 0);
    CHECK(utf8_length("abc") == 3);
    CHECK(utf8_length("\0x"s) == 2);                  // NUL is a code point
    CHECK(utf8_length("\xc3\xa9t\xc3\xa9") == 3);     // U+00E9 (2 bytes)
    CHECK(utf8_length("\xe2\x82\xac") == 1);          // U+20AC (3 bytes)
    CHECK(utf8_length("\xf0\x9f\x98\x80!") == 2);     // U+1F600 (4 bytes)
    CHECK(utf8_length("\xc2\x80") == 1);              // smallest 2-byte value
    CHECK(utf8_length("\xe0\xa0\x80") == 1);          // smallest 3-byte value
    CHECK(utf8_length("\xf0\x90\x80\x80") == 1);      // smallest 4-byte value
    CHECK(utf8_length("\xed\x9f\xbf") == 1);          // U+D7FF, just below the surrogates
    CHECK(utf8_length("\xee\x80\x80") == 1);          // U+E000, just above them
    CHECK(utf8_length("\xf4\x8f\xbf\xbf") == 1);      // U+10FFFF, the last code point
    CHECK(is_utf8("plain ascii"));
}

TEST_CASE("utf8_length refuses malformed UTF-8", "[unit][sdk]") {
    const auto npos = std::string_view::npos;
    CHECK(utf8_length("\xe9t\xe9") == npos);          // Latin-1, as an old CSV has it
    CHECK(utf8_length("\x80") == npos);               // a continuation byte first
    CHECK(utf8_length("\xc0\x80") == npos);           // overlong NUL
    CHECK(utf8_length("\xc1\xbf") == npos);           // overlong 2-byte
    CHECK(utf8_length("\xe0\x9f\xbf") == npos);       // overlong 3-byte
    CHECK(utf8_length("\xf0\x8f\xbf\xbf") == npos);   // overlong 4-byte
    CHECK(utf8_length("\xed\xa0\x80") == npos);       // U+D800, a surrogate
    CHECK(utf8_length("\xed\xbf\xbf") == npos);       // U+DFFF, a surrogate
    CHECK(utf8_length("\xf4\x90\x80\x80") == npos);   // U+110000, past the last
    CHECK(utf8_length("\xf8\x88\x80\x80\x80") == npos);  // 5-byte form
    CHECK(utf8_length("\xff") == npos);
    CHECK(utf8_length("ab\xe2\x82") == npos);         // truncated at the end
    CHECK(utf8_length("\xe2\x82x") == npos);          // a continuation byte missing
    CHECK_FALSE(is_utf8("ok\xc3"));
}
