// SPDX-License-Identifier: Apache-2.0
#include "probe_function.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <nlohmann/json.hpp>

namespace synergos::fixtures {

using nlohmann::json;

namespace {

void append_line(const std::string& dir, const char* file, const std::string& line) {
    if (dir.empty()) {
        return;
    }
    const std::string path = dir + "/" + file;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        return;
    }
    const std::string text = line + "\n";
    (void)!::write(fd, text.data(), text.size());
    ::fsync(fd);  // the line must survive a SIGKILL right after
    ::close(fd);
}

}  // namespace

ProbeFunction::ProbeFunction(sdk::HostContext&, const sdk::Options& options)
    : processes_(options.get_list("processes")),
      run_ms_(options.get_int("run_ms", 0)),
      log_dir_(options.get_string("log_dir")) {
    if (processes_.empty()) {
        processes_ = {"preprocess"};
    }
}

std::vector<std::string> ProbeFunction::processes() const { return processes_; }

sdk::Result<std::string> ProbeFunction::execute(sdk::JobContext& ctx,
                                                std::string_view job_json) noexcept {
    try {
        const json job = json::parse(job_json);
        const std::string id = job.value("job_id", "");
        append_line(log_dir_, "executed.log", id + " " + std::to_string(::getpid()));
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(run_ms_);
        while (std::chrono::steady_clock::now() < until) {
            if (ctx.is_cancelled()) {
                return sdk::Error{sdk::ErrorCode::Cancelled, "probe stopped at a safe point"};
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));  // simulated work
        }
        return json{{"job_id", id}, {"pid", ::getpid()}, {"grid", ctx.grid()}}.dump();
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, std::string("probe: ") + e.what()};
    }
}

sdk::Result<std::vector<sdk::Mutation>> ProbeFunction::archive(sdk::ArchiveContext&,
                                                               std::string_view job_json,
                                                               std::string_view outputs_json) noexcept {
    try {
        const json job = json::parse(job_json);
        const std::string id = job.value("job_id", "");
        append_line(log_dir_, "archived.log", id + " " + std::to_string(::getpid()));
        return std::vector<sdk::Mutation>{
            {sdk::WriteMode::Insert, "ProbeResult", {{"job_id", id}}, std::string(outputs_json)}};
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument, std::string("probe archive: ") + e.what()};
    }
}

}  // namespace synergos::fixtures
