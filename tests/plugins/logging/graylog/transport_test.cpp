// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <random>
#include <string>

#include "gelf_receiver.hpp"
#include "record_ring.hpp"
#include "transport.hpp"

namespace sdk = synergos::sdk;
using namespace synergos::plugins::graylog;

TEST_CASE("write_chunk_header lays out magic, message id, sequence and count", "[unit][logging]") {
    unsigned char header[kChunkHeaderSize];
    write_chunk_header(header, 0x0102030405060708ULL, 3, 9);
    const unsigned char expected[] = {0x1e, 0x0f, 1, 2, 3, 4, 5, 6, 7, 8, 3, 9};
    CHECK(std::equal(std::begin(header), std::end(header), std::begin(expected)));
}

TEST_CASE("chunk_count sends small messages whole and splits the rest", "[unit][logging]") {
    CHECK(chunk_count(0, 100) == 1);
    CHECK(chunk_count(100, 100) == 1);
    CHECK(chunk_count(101, 100) == 2);
    CHECK(chunk_count(12800, 100) == 128);
    CHECK(chunk_count(12801, 100) == 129);
}

TEST_CASE("Compressor output inflates back, in zlib and gzip framing", "[unit][logging]") {
    const auto [mode, expected] = GENERATE(table<Compression, synergos::test::Encoding>({
        {Compression::Zlib, synergos::test::Encoding::Zlib},
        {Compression::Gzip, synergos::test::Encoding::Gzip},
    }));
    Compressor compressor(mode);
    std::mt19937 rng(7);
    std::string out;
    for (int round = 0; round < 3; ++round) {  // the stream is reset and reused
        std::string input;
        for (int i = 0; i < 5000 * (round + 1); ++i) {
            input.push_back(static_cast<char>('a' + rng() % 6));
        }
        REQUIRE(compressor.compress(input, out));
        CHECK(synergos::test::detect_encoding(out) == expected);
        CHECK(out.size() < input.size());
        CHECK(synergos::test::inflate_payload(out) == input);
    }
    REQUIRE(compressor.compress("", out));
    CHECK(synergos::test::inflate_payload(out).empty());
}

TEST_CASE("RecordRing copies records, keeps FIFO order and refuses when full", "[unit][logging]") {
    RecordRing ring(3);
    std::string event = "e0";
    sdk::LogRecord record;
    record.level = sdk::Level::Error;
    record.logger = "lg";
    record.host = "h";
    record.fields_json = R"({"a":1})";
    record.location = {"f.cpp", 9, "fn"};
    for (int i = 0; i < 3; ++i) {
        event = "event-" + std::to_string(i);
        record.event = event;
        REQUIRE(ring.push(record));
    }
    event = "overwritten";  // the ring holds copies, not views of the caller's memory
    record.event = event;
    CHECK_FALSE(ring.push(record));
    CHECK(ring.size() == 3);
    const auto first = ring.at(ring.head()).view();
    CHECK(first.event == "event-0");
    CHECK(first.logger == "lg");
    CHECK(first.host == "h");
    CHECK(first.fields_json == R"({"a":1})");
    CHECK(std::string(first.location.file) == "f.cpp");
    CHECK(std::string(first.location.function) == "fn");
    CHECK(first.location.line == 9);
    CHECK(first.level == sdk::Level::Error);
    ring.pop_until(ring.head() + 2);
    REQUIRE(ring.push(record));  // wraps around into the freed slots
    CHECK(ring.size() == 2);
    CHECK(ring.at(ring.head()).view().event == "event-2");
    CHECK(ring.at(ring.head() + 1).view().event == "overwritten");
}
