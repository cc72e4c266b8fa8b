// SPDX-License-Identifier: Apache-2.0
#include "synergos/core/jobs/tensor_files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "synergos/core/tensor/safetensors.hpp"

namespace synergos::core::jobs {

namespace fs = std::filesystem;

sdk::Status write_file_atomic(const std::string& path, std::string_view content) {
    std::error_code ec;
    const fs::path target(path);
    if (target.has_parent_path()) {
        fs::create_directories(target.parent_path(), ec);
        if (ec) {
            return {sdk::ErrorCode::Internal, "cannot create folder '" + target.parent_path().string() +
                                                  "': " + ec.message()};
        }
    }
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return {sdk::ErrorCode::Internal, "cannot write '" + tmp + "': " + std::strerror(errno)};
    }
    std::size_t done = 0;
    while (done < content.size()) {
        const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            const std::string err = std::strerror(errno);
            ::close(fd);
            ::unlink(tmp.c_str());
            return {sdk::ErrorCode::Internal, "cannot write '" + tmp + "': " + err};
        }
        done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        ::unlink(tmp.c_str());
        return {sdk::ErrorCode::Internal, "cannot flush '" + tmp + "': " + std::strerror(errno)};
    }
    fs::rename(tmp, target, ec);
    if (ec) {
        fs::remove(tmp, ec);
        return {sdk::ErrorCode::Internal, "cannot rename into '" + path + "': " + ec.message()};
    }
    // The rename itself is durable only once the folder is synced: without it a power cut could
    // keep a checkpoint's state.json (written last) but lose its weights' rename.
    const std::string folder = target.has_parent_path() ? target.parent_path().string() : ".";
    const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0 || ::fsync(dir) != 0) {
        const std::string err = std::strerror(errno);
        if (dir >= 0) {
            ::close(dir);
        }
        return {sdk::ErrorCode::Internal, "cannot sync folder '" + folder + "' after writing '" + path + "': " + err};
    }
    ::close(dir);
    return {};
}

sdk::Status write_tensor_file(const std::string& path, const sdk::TensorMap& tensors,
                              std::string_view metadata_json) {
    tensor::Metadata metadata;
    if (!metadata_json.empty()) {
        auto j = nlohmann::json::parse(metadata_json, nullptr, false);
        if (j.is_discarded() || !j.is_object()) {
            return {sdk::ErrorCode::InvalidArgument, "tensor file metadata must be a JSON object"};
        }
        for (auto it = j.begin(); it != j.end(); ++it) {
            metadata[it.key()] = it->is_string() ? it->get<std::string>() : it->dump();
        }
    }
    std::string body;
    if (auto st = tensor::encode_into(tensors, metadata, body); !st) {
        return st;
    }
    return write_file_atomic(path, body);
}

sdk::Result<sdk::TensorMap> read_tensor_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return sdk::Error{sdk::ErrorCode::NotFound, "model file '" + path + "' cannot be opened"};
    }
    std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto decoded = tensor::decode(std::string_view(body));
    if (!decoded) {
        return sdk::Error{decoded.error().code, "model file '" + path + "': " + decoded.error().message};
    }
    return std::move(decoded->tensors);
}

}  // namespace synergos::core::jobs
