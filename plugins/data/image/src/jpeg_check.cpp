// SPDX-License-Identifier: Apache-2.0
#include "jpeg_check.hpp"

#include <cstddef>
#include <cstdint>

namespace synergos::plugins::image {

namespace {

constexpr unsigned char kFill = 0xFF;
constexpr unsigned char kSoi = 0xD8;
constexpr unsigned char kEoi = 0xD9;
constexpr unsigned char kSos = 0xDA;
constexpr unsigned char kDht = 0xC4;
constexpr int kMaxHuffmanCodes = 256;  // stb's values[256]

std::string hex(unsigned v) {
    static constexpr char kDigits[] = "0123456789ABCDEF";
    return std::string{kDigits[(v >> 4) & 0xF], kDigits[v & 0xF]};
}

std::string at_byte(std::size_t offset) { return " at byte " + std::to_string(offset); }

class Walker {
public:
    explicit Walker(std::string_view bytes) : d_(bytes) {}

    std::optional<std::string> run() {
        std::size_t pos = 0;
        unsigned marker = 0;
        if (auto p = read_marker(pos, marker)) {
            return p;
        }
        if (marker != kSoi) {
            return "no SOI marker" + at_byte(0);
        }
        bool scanned = false;
        for (;;) {
            if (pos >= d_.size()) {
                // Clean end at a segment boundary: a decoder needs a scan, or EOI after one.
                return scanned ? std::nullopt
                               : std::optional<std::string>("data ends before the first scan (SOS)");
            }
            const std::size_t where = pos;
            if (auto p = read_marker(pos, marker)) {
                return p;
            }
            if (marker == kEoi) {
                return std::nullopt;  // what follows EOI is never decoded
            }
            // Markers without a segment (SOI, RST0-7, TEM) or a stuffed 00 cannot stand here.
            if (marker == kSoi || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01 ||
                marker == 0x00) {
                return "marker FF" + hex(marker) + " out of place" + at_byte(where);
            }
            if (d_.size() - pos < 2) {
                return "segment FF" + hex(marker) + at_byte(where) + " is truncated (no length)";
            }
            const std::size_t length = (byte(pos) << 8) | byte(pos + 1);
            if (length < 2) {
                return "segment FF" + hex(marker) + at_byte(where) + " has length " +
                       std::to_string(length) + " (less than 2)";
            }
            if (length > d_.size() - pos) {
                return "segment FF" + hex(marker) + at_byte(where) + " of " +
                       std::to_string(length) + " bytes runs past the end of the data";
            }
            if (marker == kDht) {
                if (auto p = check_dht(where, pos + 2, length - 2)) {
                    return p;
                }
            }
            pos += length;
            if (marker == kSos) {
                scanned = true;
                pos = skip_entropy_data(pos);
            }
        }
    }

private:
    unsigned byte(std::size_t i) const { return static_cast<unsigned char>(d_[i]); }

    /// At `pos`: one or more FF, then the marker code (FF fill bytes are legal before a marker).
    std::optional<std::string> read_marker(std::size_t& pos, unsigned& marker) const {
        if (pos >= d_.size() || byte(pos) != kFill) {
            return "expected a marker (FF) but found " +
                   (pos >= d_.size() ? std::string("the end of the data") : "byte " + hex(byte(pos))) +
                   at_byte(pos);
        }
        while (pos < d_.size() && byte(pos) == kFill) {
            ++pos;
        }
        if (pos >= d_.size()) {
            return "data ends inside a marker" + at_byte(pos);
        }
        marker = byte(pos++);
        return std::nullopt;
    }

    /// One DHT segment: its tables must fill the `size` bytes at `pos` exactly.
    std::optional<std::string> check_dht(std::size_t where, std::size_t pos, std::size_t size) const {
        const std::string seg = "DHT segment" + at_byte(where);
        std::size_t left = size;
        while (left > 0) {
            if (left < 17) {
                return seg + ": a table header needs 17 bytes, " + std::to_string(left) + " left";
            }
            const unsigned tcth = byte(pos);
            if ((tcth >> 4) > 1 || (tcth & 0xF) > 3) {
                return seg + ": table class " + std::to_string(tcth >> 4) + " id " +
                       std::to_string(tcth & 0xF) + " (class 0-1, id 0-3)";
            }
            int codes = 0;
            for (std::size_t i = 1; i <= 16; ++i) {
                codes += static_cast<int>(byte(pos + i));
            }
            if (codes > kMaxHuffmanCodes) {
                return seg + ": table " + std::to_string(tcth >> 4) + "/" +
                       std::to_string(tcth & 0xF) + " defines " + std::to_string(codes) +
                       " codes, more than " + std::to_string(kMaxHuffmanCodes);
            }
            const auto need = 17 + static_cast<std::size_t>(codes);
            if (need > left) {
                return seg + ": table " + std::to_string(tcth >> 4) + "/" +
                       std::to_string(tcth & 0xF) + " needs " + std::to_string(need) +
                       " bytes, the segment has " + std::to_string(left) + " left";
            }
            pos += need;
            left -= need;
        }
        return std::nullopt;
    }

    /// From the first byte after an SOS segment to the FF that starts the next marker (or the end
    /// of the data). In entropy-coded data FF 00 is a stuffed FF and RST0-7 belong to the scan;
    /// FF fill bytes may precede either.
    std::size_t skip_entropy_data(std::size_t pos) const {
        while (pos < d_.size()) {
            if (byte(pos) != kFill) {
                ++pos;
                continue;
            }
            std::size_t next = pos + 1;
            while (next < d_.size() && byte(next) == kFill) {
                ++next;
            }
            if (next >= d_.size()) {
                return d_.size();
            }
            const unsigned code = byte(next);
            if (code == 0x00 || (code >= 0xD0 && code <= 0xD7)) {
                pos = next + 1;
                continue;
            }
            return pos;
        }
        return pos;
    }

    std::string_view d_;
};

}  // namespace

bool starts_like_jpeg(std::string_view bytes) {
    std::size_t i = 0;
    while (i < bytes.size() && static_cast<unsigned char>(bytes[i]) == kFill) {
        ++i;
    }
    return i > 0 && i < bytes.size() && static_cast<unsigned char>(bytes[i]) == kSoi;
}

std::optional<std::string> jpeg_structure_problem(std::string_view bytes) {
    return Walker(bytes).run();
}

}  // namespace synergos::plugins::image
