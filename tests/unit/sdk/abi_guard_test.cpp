// SPDX-License-Identifier: Apache-2.0
// The ABI guard (STYLE.md D3): any change under sdk/include/** changes the hash, so it cannot land
// without someone deciding whether it breaks plugins (major) or not (minor).
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <openssl/evp.h>
#include <catch2/catch.hpp>

#include <synergos/sdk/version.hpp>

namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw std::runtime_error("cannot read " + path.string());
    }
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// sha256 over every regular file under `root`, sorted by relative path: for each file its
/// relative path (with '/'), a newline, then its bytes. Renames, additions and edits all count.
std::string hash_tree(const fs::path& root) {
    std::vector<std::string> files;
    for (const auto& entry : fs::recursive_directory_iterator(root)) {
        if (entry.is_regular_file()) {
            files.push_back(fs::relative(entry.path(), root).generic_string());
        }
    }
    std::sort(files.begin(), files.end());

    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    if (ctx == nullptr || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) {
        EVP_MD_CTX_free(ctx);
        throw std::runtime_error("cannot initialise sha256");
    }
    for (const auto& file : files) {
        const std::string header = file + "\n";
        const std::string content = read_file(root / file);
        EVP_DigestUpdate(ctx, header.data(), header.size());
        EVP_DigestUpdate(ctx, content.data(), content.size());
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(ctx, digest, &length);
    EVP_MD_CTX_free(ctx);

    static const char kHex[] = "0123456789abcdef";
    std::string hex;
    for (unsigned int i = 0; i < length; ++i) {
        hex.push_back(kHex[digest[i] >> 4]);
        hex.push_back(kHex[digest[i] & 0xf]);
    }
    return hex;
}

struct AbiRecord {
    std::string version;
    std::string hash;
};

AbiRecord read_record() {
    std::istringstream in(read_file(fs::path(SYNERGOS_TEST_SOURCE_DIR) / "sdk" / "abi.sha256"));
    AbiRecord record;
    std::getline(in, record.version);
    std::getline(in, record.hash);
    return record;
}

const fs::path kIncludeDir = fs::path(SYNERGOS_TEST_SOURCE_DIR) / "sdk" / "include";

/// A scratch copy of sdk/include, removed on destruction.
class IncludeCopy {
public:
    IncludeCopy() {
        std::string pattern = (fs::temp_directory_path() / "synergos-abi-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        root_ = pattern;
        fs::copy(kIncludeDir, root_, fs::copy_options::recursive);
    }
    ~IncludeCopy() {
        std::error_code ec;
        fs::remove_all(root_, ec);
    }
    IncludeCopy(const IncludeCopy&) = delete;
    IncludeCopy& operator=(const IncludeCopy&) = delete;
    const fs::path& root() const { return root_; }

private:
    fs::path root_;
};

}  // namespace

TEST_CASE("The SDK headers hash to the value recorded in sdk/abi.sha256", "[unit][sdk]") {
    const AbiRecord record = read_record();
    const std::string actual = hash_tree(kIncludeDir);
    if (actual != record.hash) {
        FAIL("sdk/include/** changed: sdk/abi.sha256 records " + record.hash +
             ", the headers now hash to " + actual +
             ". Decide whether this is a major ABI change (class layout, virtual functions, struct "
             "fields: old plugins break) or a minor one (additions old plugins cannot observe), "
             "see STYLE.md D3; bump SYNERGOS_SDK_ABI_MAJOR or SYNERGOS_SDK_ABI_MINOR in "
             "sdk/include/synergos/sdk/version.hpp and SYNERGOS_SDK_VERSION in CMakeLists.txt, "
             "then write the new version (line 1) and the new hash (line 2) into sdk/abi.sha256");
    }
    CHECK(actual.size() == 64);
}

TEST_CASE("sdk/abi.sha256 records the version of version.hpp and of the CMake package",
          "[unit][sdk]") {
    const AbiRecord record = read_record();
    const std::string header_version = std::to_string(SYNERGOS_SDK_ABI_MAJOR) + "." +
                                       std::to_string(SYNERGOS_SDK_ABI_MINOR) + "." +
                                       std::to_string(SYNERGOS_SDK_ABI_PATCH);
    CHECK(record.version == header_version);
    CHECK(record.version == SYNERGOS_TEST_SDK_PACKAGE_VERSION);
    CHECK(synergos::sdk::kAbiMajor == SYNERGOS_SDK_ABI_MAJOR);
    CHECK(record.hash.size() == 64);
    CHECK(record.hash.find_first_not_of("0123456789abcdef") == std::string::npos);
}

TEST_CASE("The ABI hash changes with any edit, addition or rename under sdk/include",
          "[unit][sdk]") {
    IncludeCopy copy;
    const std::string original = hash_tree(copy.root());
    REQUIRE(original == hash_tree(kIncludeDir));
    const fs::path plugin_hpp = copy.root() / "synergos" / "sdk" / "plugin.hpp";

    SECTION("one changed byte") {
        std::string text = read_file(plugin_hpp);
        text[text.size() / 2] ^= 1;
        std::ofstream(plugin_hpp, std::ios::binary | std::ios::trunc) << text;
        CHECK(hash_tree(copy.root()) != original);
    }
    SECTION("a new header") {
        std::ofstream(copy.root() / "synergos" / "sdk" / "extra.hpp") << "#pragma once\n";
        CHECK(hash_tree(copy.root()) != original);
    }
    SECTION("a renamed header") {
        fs::rename(plugin_hpp, copy.root() / "synergos" / "sdk" / "plugin2.hpp");
        CHECK(hash_tree(copy.root()) != original);
    }
}
