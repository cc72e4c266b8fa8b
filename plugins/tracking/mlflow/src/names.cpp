// SPDX-License-Identifier: Apache-2.0
#include "names.hpp"

#include <cstdint>
#include <vector>

namespace synergos::plugins::mlflow {

namespace {

bool is_word(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool is_alnum(char c) {
    return is_word(c) && c != '_';
}

sdk::Status invalid(std::string message) {
    return sdk::Status(sdk::ErrorCode::InvalidArgument, "mlflow: " + std::move(message));
}

sdk::Status check_id(std::string_view what, std::string_view id, std::size_t max_tail) {
    bool ok = !id.empty() && id.size() <= max_tail + 1 && is_alnum(id.front());
    for (std::size_t i = 1; ok && i < id.size(); ++i) {
        ok = is_word(id[i]) || id[i] == '-';
    }
    if (!ok) {
        return invalid("invalid " + std::string(what) + " id '" + std::string(id) + "'");
    }
    return sdk::Status::ok();
}

}  // namespace

std::string posix_normpath(std::string_view path) {
    if (path.empty()) {
        return ".";
    }
    // POSIX keeps exactly two leading slashes; one or three-plus collapse to one.
    std::size_t leading = 0;
    while (leading < path.size() && path[leading] == '/') {
        ++leading;
    }
    const std::string prefix = leading == 0 ? "" : (leading == 2 ? "//" : "/");
    std::vector<std::string_view> parts;
    std::size_t start = leading;
    while (start <= path.size()) {
        std::size_t end = path.find('/', start);
        if (end == std::string_view::npos) {
            end = path.size();
        }
        const std::string_view part = path.substr(start, end - start);
        if (part.empty() || part == ".") {
            // skipped
        } else if (part != "..") {
            parts.push_back(part);
        } else if (prefix.empty() && (parts.empty() || parts.back() == "..")) {
            parts.push_back(part);  // a relative path keeps leading ".."
        } else if (!parts.empty()) {
            parts.pop_back();
        }
        start = end + 1;
    }
    std::string out = prefix;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i > 0) {
            out.push_back('/');
        }
        out.append(parts[i]);
    }
    return out.empty() ? "." : out;
}

sdk::Status validate_key(std::string_view what, std::string_view key) {
    const std::string quoted = "'" + std::string(key) + "'";
    for (char c : key) {
        // MLflow 2.x accepts ':' on POSIX (only its Windows rule drops it); participant ids,
        // which metric names are built from, may contain one.
        if (!(is_word(c) || c == '/' || c == '.' || c == '-' || c == ' ' || c == ':')) {
            return invalid("invalid " + std::string(what) + " name " + quoted +
                           ": names may only contain alphanumerics, underscores (_), dashes "
                           "(-), periods (.), spaces ( ), colons (:) and slashes (/)");
        }
    }
    const std::string norm = posix_normpath(key);
    if (norm != key || norm == "." || norm.rfind("..", 0) == 0 || norm.rfind('/', 0) == 0) {
        return invalid("invalid " + std::string(what) + " name " + quoted +
                       ": names are file paths and must not resolve to another name (this one "
                       "resolves to '" +
                       norm + "')");
    }
    if (key.size() > kMaxEntityKeyLength) {
        return invalid(std::string(what) + " name " + quoted.substr(0, 60) + "...' has " +
                       std::to_string(key.size()) + " characters, more than the limit of " +
                       std::to_string(kMaxEntityKeyLength));
    }
    return sdk::Status::ok();
}

sdk::Status validate_value(std::string_view what, std::string_view key, std::string_view value,
                           std::size_t limit) {
    const std::size_t length = utf8_length(value);
    if (length == std::string_view::npos) {
        return invalid(std::string(what) + " '" + std::string(key) +
                       "' has a value that is not valid UTF-8");
    }
    if (length > limit) {
        return invalid(std::string(what) + " '" + std::string(key) + "' has a value of " +
                       std::to_string(length) + " characters, more than the limit of " +
                       std::to_string(limit));
    }
    return sdk::Status::ok();
}

sdk::Status validate_experiment_name(std::string_view name) {
    if (name.empty()) {
        return invalid("experiment name must not be empty");
    }
    const std::size_t length = utf8_length(name);
    if (length == std::string_view::npos) {
        return invalid("experiment name is not valid UTF-8");
    }
    if (length > kMaxExperimentNameLength) {
        return invalid("experiment name has " + std::to_string(length) +
                       " characters, more than the limit of " +
                       std::to_string(kMaxExperimentNameLength));
    }
    return sdk::Status::ok();
}

sdk::Status validate_run_id(std::string_view run_id) {
    return check_id("run", run_id, 255);
}

sdk::Status validate_experiment_id(std::string_view experiment_id) {
    return check_id("experiment", experiment_id, 63);
}

}  // namespace synergos::plugins::mlflow
