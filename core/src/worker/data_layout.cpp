// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/worker/data_layout.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <set>
#include <system_error>
#include <utility>

#include <synergos/core/http/message.hpp>

namespace synergos::core::worker {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using sdk::Error;
using sdk::ErrorCode;

constexpr std::size_t kMaxTokens = 64;
constexpr std::size_t kMaxTokenBytes = 255;
constexpr std::uintmax_t kMaxMetadataBytes = 1 << 20;

/// True when `inner` is `root` or below it (both canonical).
bool is_within(const fs::path& root, const fs::path& inner) {
    auto r = root.begin();
    auto i = inner.begin();
    for (; r != root.end(); ++r, ++i) {
        if (i == inner.end() || *r != *i) {
            return false;
        }
    }
    return true;
}

std::string relative_text(const fs::path& root, const fs::path& folder) {
    return folder.lexically_relative(root).generic_string();
}

sdk::Result<DatasetFolder> read_folder(const fs::path& root, const fs::path& folder,
                                       const Json& tag) {
    std::error_code ec;
    const fs::path real = fs::canonical(folder, ec);
    if (ec || !is_within(root, real)) {
        return Error{ErrorCode::InvalidArgument,
                     "tag " + tag_text(tag) + " resolves outside the data directory"};
    }
    const fs::path meta_file = real / "metadata.json";
    const fs::path meta_real = fs::canonical(meta_file, ec);
    if (ec || !is_within(root, meta_real) || !fs::is_regular_file(meta_real, ec)) {
        return Error{ErrorCode::InvalidArgument, "tag " + tag_text(tag) + ": " +
                                                     relative_text(root, meta_file) +
                                                     " is not a regular file inside the data "
                                                     "directory"};
    }
    const auto size = fs::file_size(meta_real, ec);
    if (ec || size > kMaxMetadataBytes) {
        return Error{ErrorCode::FailedPrecondition, "tag " + tag_text(tag) + ": " +
                                                        relative_text(root, meta_file) +
                                                        " cannot be read or is larger than 1 MiB"};
    }
    std::ifstream in(meta_real, std::ios::binary);
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    // Counted before parsing: a deeply nested file would crash the worker when copied or printed.
    if (http::nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth) {
        return Error{ErrorCode::FailedPrecondition,
                     "tag " + tag_text(tag) + ": " + relative_text(root, meta_file) +
                         " nests deeper than " + std::to_string(kMaxJsonDepth) + " levels"};
    }
    const Json meta = Json::parse(text, nullptr, false);
    if (meta.is_discarded() || !meta.is_object()) {
        return Error{ErrorCode::FailedPrecondition, "tag " + tag_text(tag) + ": " +
                                                        relative_text(root, meta_file) +
                                                        " is not a JSON object"};
    }
    const auto datatype = meta.find("datatype");
    if (datatype == meta.end() || !datatype->is_string() || datatype->get<std::string>().empty()) {
        return Error{ErrorCode::FailedPrecondition, "tag " + tag_text(tag) + ": " +
                                                        relative_text(root, meta_file) +
                                                        " has no string field 'datatype'"};
    }
    DatasetFolder out;
    out.path = real;
    out.relative = relative_text(root, real);
    out.datatype = datatype->get<std::string>();
    const auto operations = meta.find("operations");
    if (operations != meta.end() && !operations->is_null()) {
        if (!operations->is_object()) {
            return Error{ErrorCode::FailedPrecondition, "tag " + tag_text(tag) + ": " +
                                                            relative_text(root, meta_file) +
                                                            " field 'operations' is not an object"};
        }
        out.operations = *operations;
    }
    return out;
}

}  // namespace

std::string tag_text(const Json& tag) {
    return tag.dump(-1, ' ', false, Json::error_handler_t::replace);
}

sdk::Status check_tag(const Json& tag) {
    if (!tag.is_array() || tag.empty()) {
        return {ErrorCode::InvalidArgument,
                "tag " + tag_text(tag) + " is not a non-empty list of folder names"};
    }
    if (tag.size() > kMaxTokens) {
        return {ErrorCode::InvalidArgument, "tag has more than 64 tokens"};
    }
    for (const Json& token : tag) {
        if (!token.is_string()) {
            return {ErrorCode::InvalidArgument,
                    "tag " + tag_text(tag) + " has a token that is not a string"};
        }
        const std::string& t = token.get_ref<const std::string&>();
        bool bad = t.empty() || t == "." || t == ".." || t.size() > kMaxTokenBytes;
        for (unsigned char c : t) {
            bad = bad || c == '/' || c == '\\' || c < 0x20 || c == 0x7f;
        }
        if (bad) {
            return {ErrorCode::InvalidArgument,
                    "tag " + tag_text(tag) + " has token " +
                        Json(t).dump(-1, ' ', false, Json::error_handler_t::replace) +
                        ", which is not a plain folder name (no '/', '..', NUL or absolute path)"};
        }
    }
    return {};
}

sdk::Result<DatasetFolder> resolve_tag(const fs::path& data_root, const Json& tag,
                                       std::size_t max_entries) {
    if (auto st = check_tag(tag); !st) {
        return st.error();
    }
    std::error_code ec;
    // 1. The exact path, when it is a dataset folder.
    fs::path exact = data_root;
    for (const Json& token : tag) {
        exact /= token.get<std::string>();
    }
    if (fs::is_directory(exact, ec) && fs::exists(exact / "metadata.json", ec)) {
        return read_folder(data_root, exact, tag);
    }
    // 2. Search: every metadata.json whose folder's relative components contain all tokens.
    std::set<std::string> tokens;
    for (const Json& token : tag) {
        tokens.insert(token.get<std::string>());
    }
    std::vector<std::pair<std::size_t, fs::path>> matches;
    std::size_t visited = 0;
    fs::recursive_directory_iterator it(data_root, fs::directory_options::skip_permission_denied,
                                        ec);
    for (const fs::recursive_directory_iterator end; !ec && it != end; it.increment(ec)) {
        if (++visited > max_entries) {
            return Error{ErrorCode::ResourceExhausted,
                         "tag " + tag_text(tag) + ": the data directory has more than " +
                             std::to_string(max_entries) +
                             " entries to search; use the folder's exact path as the tag"};
        }
        if (it->path().filename() != "metadata.json") {
            continue;
        }
        const fs::path folder = it->path().parent_path();
        const fs::path rel = folder.lexically_relative(data_root);
        std::set<std::string> parts;
        std::size_t depth = 0;
        for (const fs::path& p : rel) {
            parts.insert(p.string());
            ++depth;
        }
        if (std::includes(parts.begin(), parts.end(), tokens.begin(), tokens.end())) {
            matches.emplace_back(depth, folder);
        }
    }
    if (ec) {
        return Error{ErrorCode::Internal, "the data directory cannot be searched: " + ec.message()};
    }
    if (matches.empty()) {
        return Error{ErrorCode::NotFound,
                     "no dataset folder with a metadata.json matches tag " + tag_text(tag)};
    }
    std::sort(matches.begin(), matches.end());
    return read_folder(data_root, matches.front().second, tag);
}

std::string folder_fingerprint(const fs::path& folder) {
    // Every file below the folder, not only its own entries: an image dataset's mapping.csv
    // names files in subfolders, and rewriting one of them left the cached load in use.
    constexpr std::size_t kMaxEntries = 1000000;
    std::vector<std::string> entries;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
        if (entries.size() >= kMaxEntries) {
            // Too many to compare cheaply: a key no later load shares, so nothing is reused.
            static std::atomic<std::uint64_t> uncached{0};
            return folder.string() + "#uncached#" + std::to_string(++uncached);
        }
        std::error_code e2;
        const auto size = it->is_regular_file(e2) ? it->file_size(e2) : 0;
        const auto time = it->last_write_time(e2).time_since_epoch().count();
        entries.push_back(it->path().lexically_relative(folder).string() + ":" + std::to_string(size) + ":" +
                          std::to_string(time));
    }
    std::sort(entries.begin(), entries.end());
    // FNV-1a over the sorted entries keeps the key short for folders of many images.
    std::uint64_t h = 1469598103934665603ull;
    for (const auto& e : entries) {
        for (unsigned char c : e) {
            h = (h ^ c) * 1099511628211ull;
        }
        h = (h ^ 0xffu) * 1099511628211ull;
    }
    return folder.string() + "#" + std::to_string(entries.size()) + "#" + std::to_string(h);
}

}  // namespace synergos::core::worker
