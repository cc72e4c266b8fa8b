// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <chrono>
#include <random>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "gelf.hpp"
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

TEST_CASE("RecordRing refuses a record beyond its byte budget and frees bytes as records go",
          "[unit][logging]") {
    RecordRing ring(100, 1000);  // room for 100 records but only 1000 bytes of text
    const std::string event(300, 'e');
    sdk::LogRecord record;
    record.event = event;
    const std::size_t size = RecordSlot::size_of(record);
    CHECK(size == 302);  // the text plus two NUL bytes
    for (int i = 0; i < 3; ++i) {
        REQUIRE(ring.push(record));
    }
    CHECK(ring.bytes() == 3 * size);
    CHECK_FALSE(ring.push(record));  // 1208 > 1000: dropped, though slots are free
    CHECK(ring.size() == 3);
    sdk::LogRecord small;
    small.event = "fits";
    CHECK(ring.push(small));  // what is left still takes a smaller record
    ring.pop_until(ring.head() + 1);
    CHECK(ring.bytes() == 2 * size + RecordSlot::size_of(small));
    CHECK(ring.push(record));
    ring.pop_until(ring.tail());
    CHECK(ring.bytes() == 0);
}

TEST_CASE("RecordSlot keeps at most the ring's share of memory after a large record",
          "[unit][logging]") {
    // 64 MiB over 65536 slots (the defaults): a slot keeps 1 KiB, so idle slots hold at most
    // about the byte budget, not 65536 x 16 KiB.
    RecordRing ring(65536, 64 * 1024 * 1024);
    CHECK(ring.keep_bytes() == 1024);
    const std::string big(8000, 'b');
    sdk::LogRecord record;
    record.event = big;
    REQUIRE(ring.push(record));
    RecordSlot& slot = ring.at(ring.head());
    CHECK(slot.text.capacity() >= 8000);
    slot.trim(ring.keep_bytes());
    CHECK(slot.text.capacity() <= 1024);
    CHECK(RecordRing(4, SIZE_MAX).keep_bytes() == 16 * 1024);
    CHECK(RecordRing(1000, 1024 * 1024).keep_bytes() == 1048);
}

TEST_CASE("RecordLimiter cuts over-long texts before they are buffered", "[unit][logging]") {
    const std::string marker(kTruncationMarker);
    RecordLimiter limiter;
    sdk::LogRecord record;
    record.event = "short";
    record.fields_json = R"({"a":1})";
    CHECK(&limiter.limit(record) == &record);  // within the limits: no copy

    const std::string event(100000, 'e');
    const std::string file(40000, 'f');
    const std::string fields =
        "{\"stack\":\"" + std::string(200000, 's') + "\",\"n\":1,\"ok\":\"yes\"}";
    record.event = event;
    record.fields_json = fields;
    record.location = {file.c_str(), 7, "fn"};
    const sdk::LogRecord& limited = limiter.limit(record);
    CHECK(limited.event.size() == kMaxValueBytes);
    CHECK(limited.event.substr(limited.event.size() - marker.size()) == marker);
    CHECK(std::string(limited.location.file).size() == kMaxValueBytes);
    CHECK(std::string(limited.location.function) == "fn");
    CHECK(limited.location.line == 7);
    const auto parsed = nlohmann::json::parse(limited.fields_json);  // still JSON
    CHECK(parsed["stack"].get<std::string>().size() == kMaxValueBytes);
    CHECK(parsed["n"] == 1);
    CHECK(parsed["ok"] == "yes");

    // Too big even with its strings cut: kept as cut text (sent as _fields_raw).
    std::string numbers = "{\"list\":[";
    for (int i = 0; i < 300000; ++i) {
        numbers += "12345,";
    }
    numbers += "0]}";
    record.fields_json = numbers;
    const sdk::LogRecord& raw = limiter.limit(record);
    CHECK(raw.fields_json.size() <= kMaxValueBytes);
    CHECK(raw.fields_json.substr(raw.fields_json.size() - marker.size()) == marker);
    CHECK_FALSE(nlohmann::json::accept(raw.fields_json));
}

TEST_CASE("UdpSender reports a UDP port where nothing listens", "[integration][logging]") {
    // Graylog down: the kernel answers with ICMP port unreachable, which only a connected socket
    // hears about (on the next send, or as a pending socket error).
    const int port = synergos::test::unused_udp_port();
    auto endpoint = resolve_endpoint("127.0.0.1", port, false);
    REQUIRE(endpoint.has_value());
    StopSignal stop;
    REQUIRE(stop.open().is_ok());
    const auto deadline = [] { return Clock::now() + std::chrono::seconds(2); };

    SECTION("on a later send") {
        UdpSender sender(8154, Compression::None);
        REQUIRE(sender.open(*endpoint).is_ok());
        SendOutcome outcome = SendOutcome::Sent;
        for (int i = 0; i < 50 && outcome == SendOutcome::Sent; ++i) {
            outcome = sender.send(R"({"short_message":"x"})", stop, deadline());
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        CHECK(outcome == SendOutcome::Failed);
        CHECK_THAT(sender.last_error(), Catch::Contains("port unreachable"));
        CHECK_THAT(sender.last_error(), Catch::Contains("127.0.0.1:" + std::to_string(port)));
    }
    SECTION("as a pending error") {
        UdpSender sender(8154, Compression::None);
        REQUIRE(sender.open(*endpoint).is_ok());
        REQUIRE(sender.send(R"({"short_message":"x"})", stop, deadline()) == SendOutcome::Sent);
        CHECK(sender.datagrams() == 1);
        bool reported = false;
        for (int i = 0; i < 50 && !reported; ++i) {
            reported = !sender.check_error();
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        CHECK(reported);
        CHECK_THAT(sender.last_error(), Catch::Contains("port unreachable"));
    }
    SECTION("but not while a receiver listens") {
        synergos::test::UdpGelfReceiver receiver;
        auto live = resolve_endpoint("127.0.0.1", receiver.port(), false);
        REQUIRE(live.has_value());
        UdpSender sender(8154, Compression::None);
        REQUIRE(sender.open(*live).is_ok());
        for (int i = 0; i < 3; ++i) {
            REQUIRE(sender.send(R"({"version":"1.1","host":"h","short_message":"up","level":6})",
                                stop, deadline()) == SendOutcome::Sent);
        }
        CHECK(sender.check_error());
        auto message = receiver.receive();
        REQUIRE(message.has_value());
        CHECK(message->json["short_message"] == "up");
    }
}
