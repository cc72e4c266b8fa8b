// SPDX-License-Identifier: Apache-2.0
#include "basic_sink.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <iterator>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace synergos::plugins::basic {

namespace {

constexpr sdk::OptionSpec kOptions[] = {
    {"output", sdk::OptionType::String, false, "stderr",
     "where readable lines go: stderr, stdout, none, or a file path (appended to)", false},
    {"color", sdk::OptionType::String, false, "auto",
     "ANSI colours on readable lines: auto (only when the output is a terminal and NO_COLOR is "
     "unset), always, never",
     false},
    {"json_file", sdk::OptionType::Path, false, nullptr,
     "also write one JSON object per record and line: a file path, stdout or stderr (unset: none)",
     false},
    {"flush_level", sdk::OptionType::String, false, "warn",
     "records at or above this level (trace, debug, info, warn, error, critical) are written out "
     "at once",
     false},
    {"buffered", sdk::OptionType::Bool, false, "true",
     "buffer file outputs (written out at flush_level, 1 s after the last write-out, on flush and "
     "at stop); consoles are never buffered",
     false},
    {"show_location", sdk::OptionType::Bool, false, "false",
     "append (file:line) of the emitting code to readable lines", false},
};

/// A buffered output is written out this long after the last write-out (by the timer thread, or
/// by a record that comes later).
constexpr auto kFlushInterval = std::chrono::seconds(1);
/// How often the timer retries a console whose reader is behind.
constexpr auto kRetryInterval = std::chrono::milliseconds(50);

constexpr std::string_view kLevelTokens[] = {"TRACE", "DEBUG", "INFO ", "WARN ", "ERROR", "CRIT "};
constexpr std::string_view kLevelColors[] = {"\x1b[90m", "\x1b[36m", "\x1b[32m",
                                             "\x1b[33m", "\x1b[31m", "\x1b[1;31m"};
constexpr std::string_view kColorReset = "\x1b[0m";

std::size_t level_index(sdk::Level level) {
    const auto i = static_cast<std::size_t>(level);
    return i >= 1 && i <= 6 ? i - 1 : 2;
}

void append_int(std::string& out, long long value) {
    char digits[24];
    const auto result = std::to_chars(digits, digits + sizeof(digits), value);
    out.append(digits, result.ptr);
}

std::string_view base_name(std::string_view path) {
    const auto slash = path.find_last_of('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

bool has_fields(std::string_view fields_json) {
    // The host sends "{}" (or nothing) for a record without fields: skip the scan.
    return !fields_json.empty() && fields_json != "{}";
}

/// Opens `target` ("stderr", "stdout" or a path) on `output`.
sdk::Status open_target(FdOutput& output, const std::string& target, bool buffered) {
    if (target == "stderr") {
        output.attach(STDERR_FILENO, false);
        return {};
    }
    if (target == "stdout") {
        output.attach(STDOUT_FILENO, false);
        return {};
    }
    return output.open(target, buffered);
}

}  // namespace

const sdk::PluginDescriptor kBasicDescriptor{
    sizeof(sdk::PluginDescriptor),
    "basic",
    sdk::PluginKind::LogSink,
    "1.0.0",
    "readable console or file lines, plus optional JSON lines",
    "synergos",
    sdk::PluginStatus::Stable,
    kOptions,
    std::size(kOptions),
};

bool parse_level(const std::string& text, sdk::Level& level) {
    static constexpr std::pair<std::string_view, sdk::Level> kNames[] = {
        {"trace", sdk::Level::Trace},      {"debug", sdk::Level::Debug},
        {"info", sdk::Level::Info},        {"warn", sdk::Level::Warn},
        {"warning", sdk::Level::Warn},     {"error", sdk::Level::Error},
        {"critical", sdk::Level::Critical}};
    for (const auto& [name, value] : kNames) {
        if (text == name) {
            level = value;
            return true;
        }
    }
    return false;
}

sdk::Result<BasicConfig> parse_basic_config(const sdk::Options& options) {
    BasicConfig config;
    config.output = options.get_string("output", config.output);
    if (config.output.empty()) {
        return sdk::Error{
            sdk::ErrorCode::InvalidArgument,
            "basic: option 'output' is empty; use stderr, stdout, none or a file path"};
    }

    const std::string color = options.get_string("color", "auto");
    if (color == "auto") {
        config.color = ColorMode::Auto;
    } else if (color == "always") {
        config.color = ColorMode::Always;
    } else if (color == "never") {
        config.color = ColorMode::Never;
    } else {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          "basic: option 'color' is '" + color + "'; use auto, always or never"};
    }

    config.json_file = options.get_string("json_file");
    if (config.json_file == "none") {
        config.json_file.clear();
    }
    if (!config.json_file.empty() && config.json_file == config.output) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          "basic: options 'output' and 'json_file' both name '" + config.output +
                              "'; readable and JSON lines need different destinations"};
    }

    const std::string flush_level = options.get_string("flush_level", "warn");
    if (!parse_level(flush_level, config.flush_level)) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          "basic: option 'flush_level' is '" + flush_level +
                              "'; use trace, debug, info, warn, error or critical"};
    }

    for (const char* key : {"buffered", "show_location"}) {
        const std::string value = options.get_string(key, "");
        if (!value.empty() && value != "true" && value != "false" && value != "1" && value != "0" &&
            value != "yes" && value != "no" && value != "on" && value != "off") {
            return sdk::Error{
                sdk::ErrorCode::InvalidArgument,
                std::string("basic: option '") + key + "' is '" + value + "'; use true or false"};
        }
    }
    config.buffered = options.get_bool("buffered", true);
    config.show_location = options.get_bool("show_location", false);
    return config;
}

namespace {

BasicConfig config_or_throw(const sdk::Options& options) {
    auto config = parse_basic_config(options);
    if (!config) {
        throw std::invalid_argument(config.error().message);
    }
    return std::move(config).value();
}

}  // namespace

BasicSink::BasicSink(sdk::HostContext& host, const sdk::Options& options)
    : BasicSink(host, config_or_throw(options)) {}

BasicSink::BasicSink(sdk::HostContext& host, BasicConfig config)
    : host_(host), config_(std::move(config)) {
    members_.reserve(16);
}

BasicSink::~BasicSink() {
    stop();
}

sdk::Status BasicSink::start() noexcept {
    try {
        std::lock_guard<std::mutex> lock(mutex_);
        if (started_ || stopped_) {
            return {sdk::ErrorCode::FailedPrecondition, "basic: start called twice"};
        }
        if (config_.output != "none") {
            if (auto status = open_target(console_, config_.output, config_.buffered); !status) {
                return status;
            }
        }
        if (!config_.json_file.empty()) {
            if (auto status = open_target(json_, config_.json_file, config_.buffered); !status) {
                console_.close();
                return status;
            }
        }
        switch (config_.color) {
            case ColorMode::Always:
                use_color_ = console_.is_open();
                break;
            case ColorMode::Never:
                use_color_ = false;
                break;
            case ColorMode::Auto:
                use_color_ = console_.is_open() && ::isatty(console_.fd()) == 1 &&
                             std::getenv("NO_COLOR") == nullptr;
                break;
        }
        last_flush_ = std::chrono::steady_clock::now();
        if (console_.is_open() || json_.is_open()) {
            try {
                timer_ = std::thread(&BasicSink::run_timer, this);
            } catch (const std::exception&) {
                console_.close();
                json_.close();
                throw;
            }
        }
        started_ = true;
        return {};
    } catch (const std::exception& e) {
        return {sdk::ErrorCode::Internal, std::string("basic: start failed: ") + e.what()};
    }
}

void BasicSink::write(const sdk::LogRecord& record) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!started_ || stopped_) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    const auto now = std::chrono::steady_clock::now();
    const bool force = record.level >= config_.flush_level || now - last_flush_ >= kFlushInterval;
    bool refused = false;
    bool wake_timer = false;
    for (FdOutput* output : {&console_, &json_}) {
        if (!output->is_open()) {
            continue;
        }
        const bool had_pending = output->has_pending();
        std::string& buffer = output->buffer();
        const std::size_t before = buffer.size();
        try {
            if (output == &console_) {
                format_console(record, buffer);
            } else {
                format_json(record, buffer);
            }
        } catch (const std::exception&) {
            // Out of memory while formatting: drop this record, keep the lines before it.
            buffer.resize(before);
            dropped_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        if (!output->commit(force)) {
            refused = true;  // a console reader is too far behind: the line is dropped whole
        }
        // Bytes now wait where none did: the timer must write them out (or retry) later.
        wake_timer = wake_timer || (!had_pending && output->has_pending());
    }
    if (force) {
        last_flush_ = now;
    }
    (refused ? dropped_ : written_).fetch_add(1, std::memory_order_relaxed);
    note_failures();
    if (wake_timer) {
        timer_wake_.notify_one();
    }
}

void BasicSink::flush() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    console_.flush();
    json_.flush();
    last_flush_ = std::chrono::steady_clock::now();
    note_failures();
}

void BasicSink::stop() noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopped_) {
            return;
        }
        stopped_ = true;
    }
    timer_wake_.notify_all();
    if (timer_.joinable()) {
        timer_.join();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    console_.close();
    json_.close();
    note_failures();
}

void BasicSink::run_timer() noexcept {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopped_) {
        const auto now = std::chrono::steady_clock::now();
        bool file_waiting = false;
        bool stream_waiting = false;
        for (FdOutput* output : {&console_, &json_}) {
            if (output->has_pending()) {
                (output->is_stream() ? stream_waiting : file_waiting) = true;
            }
        }
        if (file_waiting && now - last_flush_ >= kFlushInterval) {
            console_.flush();
            json_.flush();
            last_flush_ = now;
            note_failures();
            continue;
        }
        auto deadline = file_waiting ? last_flush_ + kFlushInterval : now + std::chrono::hours(1);
        if (stream_waiting) {
            for (FdOutput* output : {&console_, &json_}) {
                if (output->is_stream()) {
                    output->flush();  // never blocks: takes what the reader has room for
                }
            }
            note_failures();
            deadline = std::min(deadline, now + kRetryInterval);
        }
        // Woken early by write() when bytes start waiting, and by stop().
        timer_wake_.wait_until(lock, deadline);
    }
}

sdk::SinkStats BasicSink::stats() const noexcept {
    sdk::SinkStats stats;
    stats.written = written_.load(std::memory_order_relaxed);
    stats.dropped = dropped_.load(std::memory_order_relaxed);
    stats.failed = failed_.load(std::memory_order_relaxed);
    return stats;
}

bool BasicSink::uses_color() const noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    return use_color_;
}

void BasicSink::note_failures() {
    const std::uint64_t failures = console_.failures() + json_.failures();
    if (failures != failures_seen_) {
        failed_.fetch_add(failures - failures_seen_, std::memory_order_relaxed);
        failures_seen_ = failures;
    }
}

void BasicSink::format_console(const sdk::LogRecord& record, std::string& out) {
    timestamps_.append(out, record.time);
    out.push_back(' ');
    const std::size_t level = level_index(record.level);
    if (use_color_) {
        out.append(kLevelColors[level]);
        out.append(kLevelTokens[level]);
        out.append(kColorReset);
    } else {
        out.append(kLevelTokens[level]);
    }
    out.push_back(' ');
    if (!record.logger.empty()) {
        out.push_back('[');
        append_console_text(out, record.logger);
        out.append("] ");
    }
    append_console_text(out, record.event);
    if (has_fields(record.fields_json)) {
        if (split_json_object(record.fields_json, members_)) {
            for (const auto& member : members_) {
                out.push_back(' ');
                append_console_text(out, member.key);
                out.push_back('=');
                append_compact_json(out, member.value);
            }
        } else {
            out.append(" fields=");
            append_console_text(out, record.fields_json);
        }
    }
    if (config_.show_location && record.location.file != nullptr &&
        record.location.file[0] != '\0') {
        out.append(" (");
        append_console_text(out, base_name(record.location.file));
        if (record.location.line > 0) {
            out.push_back(':');
            append_int(out, record.location.line);
        }
        out.push_back(')');
    }
    out.push_back('\n');
}

void BasicSink::format_json(const sdk::LogRecord& record, std::string& out) {
    out.append("{\"time\":\"");
    timestamps_.append(out, record.time);
    out.append("\",\"level\":\"");
    out.append(sdk::to_string(record.level));
    out.push_back('"');
    auto append_string_field = [&out](std::string_view key, std::string_view value) {
        if (value.empty()) {
            return;  // no blank fields
        }
        out.append(",\"");
        out.append(key);
        out.append("\":\"");
        append_json_text(out, value);
        out.push_back('"');
    };
    append_string_field("logger", record.logger);
    append_string_field("host", record.host);
    out.append(",\"event\":\"");
    append_json_text(out, record.event);
    out.push_back('"');
    if (record.location.file != nullptr) {
        append_string_field("file", record.location.file);
    }
    if (record.location.line > 0) {
        out.append(",\"line\":");
        append_int(out, record.location.line);
    }
    if (record.location.function != nullptr) {
        append_string_field("function", record.location.function);
    }
    if (has_fields(record.fields_json)) {
        if (split_json_object(record.fields_json, members_)) {
            if (!members_.empty()) {
                out.append(",\"fields\":");
                append_compact_json(out, record.fields_json);
            }
        } else {
            append_string_field("fields_raw", record.fields_json);
        }
    }
    out.append("}\n");
}

}  // namespace synergos::plugins::basic
