// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/logging/logger_factory.hpp>

#include <unistd.h>

#include <cstdio>
#include <ctime>

#include <spdlog/logger.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace synergos::core {

namespace {

std::string local_host_name() {
    char buffer[256] = {};
    if (::gethostname(buffer, sizeof buffer - 1) != 0) {
        return "unknown";
    }
    return buffer;
}

/// The console fallback: spdlog's stderr sink, one line per record, flushed at once so the
/// lines an operator needs before a crash are on screen.
LoggerFactory::ConsoleWriter stderr_writer() {
    auto logger = std::make_shared<spdlog::logger>(
        "synergos.console", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::trace);
    logger->flush_on(spdlog::level::trace);
    return [logger](std::string_view line) { logger->info("{}", line); };
}

/// Keeps the file name only: build paths say nothing useful and leak the build host's layout.
const char* base_name(const char* path) {
    if (path == nullptr) {
        return "";
    }
    const char* last = path;
    for (const char* p = path; *p != '\0'; ++p) {
        if (*p == '/') {
            last = p + 1;
        }
    }
    return last;
}

}  // namespace

HostLogger::HostLogger(LoggerFactory& factory, std::string component)
    : factory_(factory), component_(std::move(component)) {}

void HostLogger::log(sdk::Level level, std::string_view event, std::string_view fields_json,
                     sdk::SourceLocation location) noexcept {
    if (!factory_.enabled(level)) {
        return;
    }
    nlohmann::json fields = nlohmann::json::object();
    if (!fields_json.empty()) {
        try {
            fields = nlohmann::json::parse(fields_json);
        } catch (const std::exception& e) {
            // A plugin's malformed fields must not lose the record: keep the text beside a note.
            fields = {{"fields_error", std::string("fields are not valid JSON: ") + e.what()},
                      {"fields_text", std::string(fields_json)}};
        }
    }
    factory_.emit(level, component_, event, std::move(fields), location);
}

bool HostLogger::enabled(sdk::Level level) const noexcept {
    return factory_.enabled(level);
}

void HostLogger::log_json(sdk::Level level, std::string_view event, nlohmann::json fields,
                          std::source_location where) noexcept {
    if (!factory_.enabled(level)) {
        return;
    }
    factory_.emit(level, component_, event, std::move(fields),
                  sdk::SourceLocation{where.file_name(), static_cast<int>(where.line()),
                                      where.function_name()});
}

LoggerFactory::LoggerFactory(std::string logger_name, ConsoleWriter console)
    : logger_name_(std::move(logger_name)),
      host_name_(local_host_name()),
      console_(console ? std::move(console) : stderr_writer()) {}

LoggerFactory::~LoggerFactory() = default;

HostLogger& LoggerFactory::logger(const std::string& component) {
    std::lock_guard<std::mutex> lock(loggers_mutex_);
    auto it = loggers_.find(component);
    if (it == loggers_.end()) {
        it = loggers_.emplace(component, std::make_unique<HostLogger>(*this, component)).first;
    }
    return *it->second;
}

void LoggerFactory::set_censor(std::optional<Censor> censor) {
    std::unique_lock<std::shared_mutex> lock(route_mutex_);
    censor_ = censor ? std::make_shared<const Censor>(std::move(*censor)) : nullptr;
}

void LoggerFactory::attach_sink(sdk::LogSink* sink) {
    std::unique_lock<std::shared_mutex> lock(route_mutex_);
    sink_ = sink;
}

sdk::LogSink* LoggerFactory::detach_sink() {
    std::unique_lock<std::shared_mutex> lock(route_mutex_);
    return std::exchange(sink_, nullptr);
}

bool LoggerFactory::has_sink() const {
    std::shared_lock<std::shared_mutex> lock(route_mutex_);
    return sink_ != nullptr;
}

void LoggerFactory::flush_sink() noexcept {
    std::shared_lock<std::shared_mutex> lock(route_mutex_);
    if (sink_ != nullptr) {
        sink_->flush();
    }
}

void LoggerFactory::emit(sdk::Level level, std::string_view component, std::string_view event,
                         nlohmann::json fields, sdk::SourceLocation location) noexcept {
    if (!enabled(level)) {
        return;
    }
    try {
        if (fields.is_null()) {
            fields = nlohmann::json::object();
        } else if (!fields.is_object()) {
            fields = nlohmann::json{{"value", std::move(fields)}};
        }
        if (!component.empty()) {
            fields["module"] = component;
        }
        std::shared_lock<std::shared_mutex> lock(route_mutex_);
        if (censor_) {
            censor_->apply(fields);
            if (fields.contains("fields_text")) {
                fields["fields_text"] = Censor::kRedacted;  // unparsed text cannot be censored
            }
        }
        // Replace invalid UTF-8 instead of throwing: a log line must never be lost to encoding.
        const std::string fields_text =
            fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        sdk::LogRecord record;
        record.level = level;
        record.event = event;
        record.logger = logger_name_;
        record.host = host_name_;
        record.time = std::chrono::system_clock::now();
        record.location =
            sdk::SourceLocation{base_name(location.file), location.line,
                                location.function != nullptr ? location.function : ""};
        record.fields_json = fields_text;
        if (sink_ != nullptr) {
            sink_->write(record);
            sink_records_.fetch_add(1, std::memory_order_relaxed);
        } else {
            console_(format_json_line(record));
            console_records_.fetch_add(1, std::memory_order_relaxed);
        }
    } catch (const std::exception& e) {
        // Last resort: the logging path itself failed; say so on stderr rather than go silent.
        std::fprintf(stderr, "synergos: log record dropped (%s): %.*s\n", e.what(),
                     static_cast<int>(event.size()), event.data());
    }
}

std::string LoggerFactory::iso8601_utc(std::chrono::system_clock::time_point time) {
    const auto since_epoch = time.time_since_epoch();
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
    const std::time_t t = static_cast<std::time_t>(seconds.count());
    std::tm utc{};
    ::gmtime_r(&t, &utc);
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                  utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                  static_cast<int>(millis));
    return buffer;
}

std::string LoggerFactory::format_json_line(const sdk::LogRecord& record) {
    // Same keys as the basic sink's JSON lines, so both read alike.
    nlohmann::json line;
    line["time"] = iso8601_utc(record.time);
    line["level"] = sdk::to_string(record.level);
    line["logger"] = record.logger;
    line["host"] = record.host;
    line["event"] = record.event;
    line["file"] = record.location.file != nullptr ? record.location.file : "";
    line["line"] = record.location.line;
    line["function"] = record.location.function != nullptr ? record.location.function : "";
    nlohmann::json fields = nlohmann::json::parse(record.fields_json, nullptr, false);
    line["fields"] = fields.is_discarded() ? nlohmann::json::object() : std::move(fields);
    return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace synergos::core
