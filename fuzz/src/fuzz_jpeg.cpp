// SPDX-License-Identifier: Apache-2.0
// The JPEG marker check of the image data plugin (plugins/data/image/src/jpeg_check.cpp), which
// walks every JPEG a participant lists before Debian's stb_image 2.27 decodes it (stb writes past
// its Huffman tables on a DHT of more than 256 codes). Input: the file's bytes. Besides crashes,
// fails when a refusal does not say where, or when the same bytes get two answers.

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "jpeg_check.hpp"

namespace image = synergos::plugins::image;
using synergos::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes = synergos::fuzz::as_text(data, size);
    (void)image::starts_like_jpeg(bytes);
    const auto problem = image::jpeg_structure_problem(bytes);
    if (problem) {
        check(problem->find("byte") != std::string::npos ||
                  problem->find("scan") != std::string::npos,
              "a refusal that does not say where", *problem);
    }
    // A pure function of the bytes (it decides alone whether stb may see them).
    check(image::jpeg_structure_problem(bytes) == problem, "two answers for the same bytes");
    return 0;
}
