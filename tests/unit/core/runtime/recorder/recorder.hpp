// SPDX-License-Identifier: Apache-2.0
#pragma once

// Test plugins for the runtime tests: one per kind, each appending its lifecycle ("create",
// "start", "stop", "destroy") to a journal file, so tests can check start and stop order
// across real plugin libraries. Methods a lifecycle test does not exercise answer
// Unimplemented; these are test doubles, not plugins to ship.

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <string>

#include <synergos/sdk/host.hpp>
#include <synergos/sdk/log_sink.hpp>
#include <synergos/sdk/message_queue.hpp>
#include <synergos/sdk/options.hpp>
#include <synergos/sdk/storage_backend.hpp>
#include <synergos/sdk/tracker.hpp>
#include <synergos/sdk/ttp_function.hpp>

namespace synergos::plugins::recorder {

/// The options every recorder takes.
inline constexpr sdk::OptionSpec kOptions[] = {
    {"journal", sdk::OptionType::Path, true, nullptr, "file the lifecycle lines are appended to",
     false},
    {"fail_start", sdk::OptionType::Bool, false, "false", "make start() fail", false},
    {"records", sdk::OptionType::Path, false, nullptr, "log sink: file for one line per record",
     false},
    {"api_token", sdk::OptionType::String, false, nullptr, "a secret, for redaction tests", true},
};

/// Appends one line with a single write(2) on an O_APPEND file, so lines never interleave.
inline void append_line(const std::string& path, const std::string& line) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        return;
    }
    const std::string text = line + "\n";
    [[maybe_unused]] const auto written = ::write(fd, text.data(), text.size());
    ::close(fd);
}

/// Journal and options shared by every recorder.
class Recorder {
public:
    Recorder(const char* label, sdk::HostContext& host, const sdk::Options& options)
        : label_(label),
          journal_(options.get_string("journal")),
          fail_start_(options.get_bool("fail_start")) {
        note("create node=" + host.node_id() + " role=" + host.role() +
             " data_dir=" + host.data_dir());
        host.logger().info("recorder created", "{\"label\":\"" + label_ + "\"}");
    }
    ~Recorder() { note("destroy"); }

    void note(const std::string& what) const { append_line(journal_, label_ + " " + what); }
    sdk::Status do_start() const {
        note("start");
        if (fail_start_) {
            return sdk::Status(sdk::ErrorCode::Unavailable, "recorder told to fail at start");
        }
        return {};
    }

private:
    std::string label_;
    std::string journal_;
    bool fail_start_;
};

inline sdk::Status not_here() {
    return sdk::Status(sdk::ErrorCode::Unimplemented, "recorder test plugin");
}

class RecorderSink final : public sdk::LogSink {
public:
    RecorderSink(sdk::HostContext& host, const sdk::Options& options)
        : rec_("logging/recorder", host, options), records_(options.get_string("records")) {}
    sdk::Status start() noexcept override { return rec_.do_start(); }
    void write(const sdk::LogRecord& record) noexcept override {
        std::lock_guard<std::mutex> lock(mutex_);
        ++written_;
        if (!records_.empty()) {
            append_line(records_,
                        std::string(record.event) + " " + std::string(record.fields_json));
        }
    }
    void flush() noexcept override { rec_.note("flush"); }
    void stop() noexcept override { rec_.note("stop"); }
    sdk::SinkStats stats() const noexcept override {
        std::lock_guard<std::mutex> lock(mutex_);
        return {written_, 0, 0};
    }

private:
    Recorder rec_;
    std::string records_;
    mutable std::mutex mutex_;
    std::uint64_t written_ = 0;
};

class RecorderQueue final : public sdk::MessageQueue {
public:
    RecorderQueue(sdk::HostContext& host, const sdk::Options& options)
        : rec_("mq/recorder", host, options) {}
    sdk::Status start() noexcept override { return rec_.do_start(); }
    sdk::Status declare(const sdk::QueueSpec&) noexcept override { return not_here(); }
    sdk::Status publish(const std::string&, const sdk::Message&,
                        std::chrono::milliseconds) noexcept override {
        return not_here();
    }
    sdk::Result<std::unique_ptr<sdk::Consumer>> consume(const std::string&,
                                                        std::uint16_t) noexcept override {
        return not_here().error();
    }
    sdk::Result<std::uint64_t> depth(const std::string&) noexcept override {
        return not_here().error();
    }
    sdk::Result<std::uint32_t> consumer_count(const std::string&) noexcept override {
        return not_here().error();
    }
    void stop() noexcept override { rec_.note("stop"); }

private:
    Recorder rec_;
};

class RecorderStorage final : public sdk::StorageBackend {
public:
    RecorderStorage(sdk::HostContext& host, const sdk::Options& options)
        : rec_("storage/recorder", host, options) {}
    sdk::Status start() noexcept override { return rec_.do_start(); }
    int schema_version() const noexcept override { return 0; }
    sdk::Result<sdk::Record> get(const std::string&, const sdk::Key&) noexcept override {
        return not_here().error();
    }
    sdk::Result<std::vector<sdk::Record>> list(const sdk::Query&) noexcept override {
        return not_here().error();
    }
    sdk::Result<std::vector<sdk::Record>> apply(
        const std::vector<sdk::Mutation>&) noexcept override {
        return not_here().error();
    }
    void stop() noexcept override { rec_.note("stop"); }

private:
    Recorder rec_;
};

class RecorderTracker final : public sdk::Tracker {
public:
    RecorderTracker(sdk::HostContext& host, const sdk::Options& options)
        : rec_("tracking/recorder", host, options) {}
    sdk::Status start() noexcept override { return rec_.do_start(); }
    sdk::Result<std::string> ensure_experiment(const std::string&) noexcept override {
        return not_here().error();
    }
    sdk::Result<std::string> ensure_run(const std::string&, const std::string&,
                                        const sdk::StringPairs&) noexcept override {
        return not_here().error();
    }
    sdk::Status log_params(const std::string&, const sdk::StringPairs&) noexcept override {
        return not_here();
    }
    sdk::Status log_metrics(const std::string&,
                            const std::vector<sdk::MetricPoint>&) noexcept override {
        return not_here();
    }
    sdk::Status set_tags(const std::string&, const sdk::StringPairs&) noexcept override {
        return not_here();
    }
    sdk::Status log_artifact(const std::string&, const std::string&,
                             const std::string&) noexcept override {
        return not_here();
    }
    sdk::Status end_run(const std::string&, const std::string&) noexcept override {
        return not_here();
    }
    void stop() noexcept override { rec_.note("stop"); }

private:
    Recorder rec_;
};

class RecorderFunction final : public sdk::TtpFunction {
public:
    RecorderFunction(sdk::HostContext& host, const sdk::Options& options)
        : rec_("ttp/recorder", host, options) {}
    std::vector<std::string> processes() const override { return {"record"}; }
    sdk::Result<std::string> execute(sdk::JobContext&, std::string_view) noexcept override {
        return not_here().error();
    }
    sdk::Result<std::vector<sdk::Mutation>> archive(sdk::ArchiveContext&, std::string_view,
                                                    std::string_view) noexcept override {
        return not_here().error();
    }

private:
    Recorder rec_;
};

}  // namespace synergos::plugins::recorder
