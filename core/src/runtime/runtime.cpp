// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/runtime/runtime.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <system_error>
#include <thread>

#include <synergos/core/config/plugin_requests.hpp>
#include <synergos/core/logging/censor.hpp>
#include <synergos/core/runtime/signals.hpp>

#include "storage_compat.hpp"

#ifndef SYNERGOS_INSTALL_PLUGIN_DIR
#define SYNERGOS_INSTALL_PLUGIN_DIR "/usr/local/lib/synergos/plugins"
#endif

namespace synergos::core {

namespace {

namespace fs = std::filesystem;

/// Option keys whose values never appear in the snapshot, censored or not (STYLE.md C3).
std::vector<std::string> secret_option_patterns() {
    return {"*password*",    "*secret*",      "*token*",      "*api_key*",
            "*credentials*", "authorization", "*passphrase*", "*private_key*"};
}

std::string plugin_label(const PluginRequest& request) {
    return std::string(sdk::kind_name(request.kind)) + "/" + request.name;
}

std::string where(const PluginSection& section) {
    std::string text = "config key '" + section.source_key + "'";
    if (section.source_line > 0) {
        text += ", line " + std::to_string(section.source_line);
    }
    return text;
}

}  // namespace

Runtime::Runtime(RuntimeConfig config, RuntimeOptions options)
    : config_(std::move(config)),
      options_(std::move(options)),
      loggers_(std::make_unique<LoggerFactory>(
          std::string(role_name(config_.node.role)) + "/" + config_.node.id, options_.console)),
      logger_(loggers_->logger("runtime")),
      loader_(std::make_unique<PluginLoader>(config_.plugin_search_paths)) {
    loggers_->set_level(config_.logging.level);
    if (config_.logging.censored) {
        loggers_->set_censor(Censor(config_.logging.censor_keys, true));
    }
    if (options_.handle_signals) {
        signals_ = std::make_unique<SignalWatcher>([this](int signal_number) {
            const std::string name = signal_number == SIGINT ? "SIGINT" : "SIGTERM";
            if (stop_requested()) {
                // The operator asked again: whatever is still stopping is not waited for.
                force_exit("a second " + name + " while stopping", 128 + signal_number);
            }
            request_stop(name);
        });
    }
}

Runtime::~Runtime() {
    stop_all();
    signals_.reset();
}

sdk::HostContext& Runtime::host_context(const std::string& component) {
    std::lock_guard<std::mutex> lock(hosts_mutex_);
    auto it = hosts_.find(component);
    if (it == hosts_.end()) {
        it = hosts_
                 .emplace(component,
                          std::make_unique<RuntimeHost>(loggers_->logger(component), config_))
                 .first;
    }
    return *it->second;
}

template <typename Interface>
sdk::Result<std::shared_ptr<Interface>> Runtime::create(const PluginRequest& request,
                                                        int* abi_minor) {
    sdk::HostContext& host =
        host_context("plugin." + std::string(sdk::kind_name(request.kind)) + "." + request.name);
    auto handle = loader_->create<Interface>(request, host);
    if (!handle) {
        return handle.error();
    }
    const PluginInfo& info = handle.value().get_deleter().library->info();
    if (abi_minor != nullptr) {
        *abi_minor = info.abi_minor;
    }
    logger_.info("plugin loaded",
                 {{"kind", sdk::kind_name(request.kind)},
                  {"name", info.name},
                  {"version", info.version},
                  {"status", info.status},
                  {"abi", std::to_string(info.abi_major) + "." + std::to_string(info.abi_minor)},
                  {"plugin_path", info.file}});
    // The deleter (host code) holds the library, so the shared_ptr keeps it loaded (L4).
    return std::shared_ptr<Interface>(std::move(handle).value());
}

sdk::Status Runtime::start_one(const PluginRequest& request) {
    const std::string label = plugin_label(request);
    auto push = [this, &label](std::function<void()> stop) {
        std::lock_guard<std::mutex> lock(steps_mutex_);
        steps_.push_back({label, std::move(stop)});
    };
    auto started = [this, &label] { logger_.info("component started", {{"component", label}}); };

    switch (request.kind) {
        case sdk::PluginKind::LogSink: {
            auto sink = create<sdk::LogSink>(request);
            if (!sink) {
                return sink.status();
            }
            if (auto status = sink.value()->start(); !status) {
                return status;
            }
            log_sink_ = std::move(sink).value();
            started();  // still on the console: says which sink takes over
            loggers_->attach_sink(log_sink_.get());
            push([this] {
                // Detach first: once detach returns no thread is inside write().
                loggers_->detach_sink();
                log_sink_->flush();
                log_sink_->stop();
                const auto stats = log_sink_->stats();
                log_sink_.reset();
                logger_.info("log sink statistics", {{"written", stats.written},
                                                     {"dropped", stats.dropped},
                                                     {"failed", stats.failed}});
            });
            log_config_snapshot();
            return {};
        }
        case sdk::PluginKind::Tracking: {
            auto made = create<sdk::Tracker>(request);
            if (!made) {
                return made.status();
            }
            if (auto status = made.value()->start(); !status) {
                return status;
            }
            tracker_ = std::move(made).value();
            push([this] {
                tracker_->stop();
                tracker_.reset();
            });
            break;
        }
        case sdk::PluginKind::Storage: {
            int abi_minor = 0;
            auto made = create<sdk::StorageBackend>(request, &abi_minor);
            if (!made) {
                return made.status();
            }
            if (auto status = made.value()->start(); !status) {
                return status;
            }
            storage_ = runtime::with_require(std::move(made).value(), abi_minor);
            push([this] {
                storage_->stop();
                storage_.reset();
            });
            break;
        }
        case sdk::PluginKind::MessageQueue: {
            auto made = create<sdk::MessageQueue>(request);
            if (!made) {
                return made.status();
            }
            if (auto status = made.value()->start(); !status) {
                return status;
            }
            message_queue_ = std::move(made).value();
            push([this] {
                message_queue_->stop();
                message_queue_.reset();
            });
            break;
        }
        case sdk::PluginKind::Aggregator: {
            auto made = create<sdk::Aggregator>(request);
            if (!made) {
                return made.status();
            }
            aggregators_.emplace_back(request.name, std::move(made).value());
            push([this, name = request.name] {
                std::erase_if(aggregators_, [&name](const auto& a) { return a.first == name; });
            });
            break;
        }
        case sdk::PluginKind::Model: {
            auto made = create<sdk::ModelBackend>(request);
            if (!made) {
                return made.status();
            }
            model_ = std::move(made).value();
            push([this] { model_.reset(); });
            break;
        }
        case sdk::PluginKind::Data: {
            auto made = create<sdk::DataPipeline>(request);
            if (!made) {
                return made.status();
            }
            data_.emplace_back(request.name, std::move(made).value());
            push([this, name = request.name] {
                std::erase_if(data_, [&name](const auto& d) { return d.first == name; });
            });
            break;
        }
        case sdk::PluginKind::TtpFunction: {
            auto made = create<sdk::TtpFunction>(request);
            if (!made) {
                return made.status();
            }
            ttp_functions_.emplace_back(request.name, std::move(made).value());
            push([this, name = request.name] {
                std::erase_if(ttp_functions_, [&name](const auto& f) { return f.first == name; });
            });
            break;
        }
    }
    started();
    return {};
}

sdk::Status Runtime::start_plugins() {
    logger_.info("starting", {{"role", role_name(config_.node.role)},
                              {"node_id", config_.node.id},
                              {"plugin_search_paths", config_.plugin_search_paths}});
    for (const auto& plugin : configured_plugins(config_)) {
        if (plugin.request.kind != sdk::PluginKind::LogSink && !snapshot_logged_) {
            log_config_snapshot();  // no log sink plugin (or it was optional and failed)
        }
        sdk::Status status = start_one(plugin.request);
        if (!status) {
            const std::string message = "plugin " + plugin_label(plugin.request) + " (" +
                                        where(plugin.section) + "): " + status.message();
            if (plugin.request.required) {
                return sdk::Status(status.code(), message);
            }
            logger_.warn("optional plugin failed; continuing without it",
                         {{"kind", sdk::kind_name(plugin.request.kind)},
                          {"name", plugin.request.name},
                          {"error", message}});
            failed_.push_back(
                {sdk::kind_name(plugin.request.kind), plugin.request.name, status.message()});
        }
    }
    if (!snapshot_logged_) {
        log_config_snapshot();
    }
    if (config_.logging.system_metrics) {
        sampler_ = std::make_unique<SystemMetricsSampler>(
            loggers_->logger("sysmetrics"),
            std::chrono::duration<double>(config_.logging.resolution_s), options_.system_paths);
        sampler_->start();
        {
            std::lock_guard<std::mutex> lock(steps_mutex_);
            steps_.push_back({"system metrics", [this] {
                                  sampler_->stop();
                                  sampler_.reset();
                              }});
        }
        logger_.info("component started", {{"component", "system metrics"},
                                           {"resolution_s", config_.logging.resolution_s}});
    }
    return {};
}

void Runtime::log_config_snapshot() {
    nlohmann::json snapshot = config_.to_json();
    // The token entries are built without the tokens (where each comes from, and its scope),
    // but their keys match "*token*": kept as they are, so the snapshot shows the sources.
    nlohmann::json http_tokens = snapshot["http"]["tokens"];
    nlohmann::json worker_token = snapshot["worker_client"]["token"];
    Censor(secret_option_patterns()).apply(snapshot);
    snapshot["http"]["tokens"] = std::move(http_tokens);
    snapshot["worker_client"]["token"] = std::move(worker_token);
    snapshot_logged_ = true;
    logger_.info("configuration snapshot", std::move(snapshot));
}

void Runtime::fatal(std::string_view event, nlohmann::json fields,
                    std::source_location where) noexcept {
    logger_.log_json(sdk::Level::Critical, event, fields, where);
    const PluginSection& sink = config_.logging.sink;
    const auto output = sink.options.find("output");
    const auto json_file = sink.options.find("json_file");
    const bool basic_on_stderr =
        sink.backend == "basic" &&
        (output == sink.options.end() || output->second == "stderr" ||
         (json_file != sink.options.end() && json_file->second == "stderr"));
    if (!loggers_->has_sink() || basic_on_stderr) {
        return;  // the record above is on stderr already
    }
    try {
        // The console line format (LoggerFactory::format_json_line), like the bootstrap lines.
        fields["module"] = logger_.component();
        if (config_.logging.censored) {
            Censor(config_.logging.censor_keys, true).apply(fields);
        }
        const std::string fields_text =
            fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        const std::string file = fs::path(where.file_name()).filename().string();
        sdk::LogRecord record;
        record.level = sdk::Level::Critical;
        record.event = event;
        record.logger = loggers_->logger_name();
        record.host = loggers_->host_name();
        record.time = std::chrono::system_clock::now();
        record.location = sdk::SourceLocation{file.c_str(), static_cast<int>(where.line()),
                                              where.function_name()};
        record.fields_json = fields_text;
        const std::string line = LoggerFactory::format_json_line(record);
        if (options_.console) {
            options_.console(line);
        } else {
            std::fprintf(stderr, "%s\n", line.c_str());
            std::fflush(stderr);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "synergos: %.*s (%s)\n", static_cast<int>(event.size()), event.data(),
                     e.what());
    }
}

void Runtime::add_component(const std::string& name, std::function<void()> stop) {
    std::lock_guard<std::mutex> lock(steps_mutex_);
    steps_.push_back({name, std::move(stop)});
    logger_.info("component started", {{"component", name}});
}

void Runtime::stop_all() noexcept {
    std::vector<Step> steps;
    {
        std::lock_guard<std::mutex> lock(steps_mutex_);
        steps.swap(steps_);
    }
    if (steps.empty()) {
        return;
    }
    {
        std::lock_guard<std::mutex> lock(progress_mutex_);
        stop_done_ = false;
    }
    std::thread watchdog;
    if (options_.handle_signals) {
        try {
            watchdog = std::thread([this] { watch_stop(); });
        } catch (const std::system_error& e) {
            logger_.warn("stopping without a time limit", {{"error", e.what()}});
        }
    }
    logger_.info("stopping", {{"components", steps.size()}});
    for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
        {
            std::lock_guard<std::mutex> lock(progress_mutex_);
            stopping_ = it->name;
        }
        logger_.info("stopping component", {{"component", it->name}});
        try {
            it->stop();
        } catch (const std::exception& e) {
            logger_.error("component failed to stop cleanly",
                          {{"component", it->name}, {"error", e.what()}});
        }
        logger_.info("component stopped", {{"component", it->name}});
    }
    {
        std::lock_guard<std::mutex> lock(progress_mutex_);
        stopping_.clear();
        stop_done_ = true;
    }
    progress_cv_.notify_all();
    if (watchdog.joinable()) {
        watchdog.join();
    }
    logger_.info("stopped");
}

void Runtime::watch_stop() {
    std::unique_lock<std::mutex> lock(progress_mutex_);
    const auto limit = std::chrono::seconds(config_.node.stop_timeout_s);
    if (progress_cv_.wait_for(lock, limit, [this] { return stop_done_; })) {
        return;
    }
    lock.unlock();
    force_exit("stopping took longer than node.stop_timeout_s (" +
                   std::to_string(config_.node.stop_timeout_s) + " s)",
               1);
}

void Runtime::force_exit(const std::string& reason, int code) noexcept {
    // Logging can block behind a stuck sink: the process ends within 2 s whatever happens here.
    try {
        std::thread([code] {
            std::this_thread::sleep_for(std::chrono::seconds(2));
            std::_Exit(code);
        }).detach();
    } catch (...) {
        std::_Exit(code);
    }
    std::string component;
    {
        std::lock_guard<std::mutex> lock(progress_mutex_);
        component = stopping_;
    }
    fatal("forced exit", {{"reason", reason}, {"component", component}, {"exit_code", code}});
    loggers_->flush_sink();
    std::fflush(nullptr);
    std::_Exit(code);
}

void Runtime::request_stop(const std::string& reason) {
    {
        std::lock_guard<std::mutex> lock(stop_mutex_);
        if (stop_requested_) {
            return;
        }
        stop_requested_ = true;
        stop_reason_ = reason;
    }
    // Logged before waking the role, so the line precedes the stop lines.
    logger_.info("stop requested", {{"reason", reason}});
    stop_cv_.notify_all();
}

bool Runtime::stop_requested() const {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    return stop_requested_;
}

std::string Runtime::stop_reason() const {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    return stop_reason_;
}

void Runtime::wait_for_stop() {
    std::unique_lock<std::mutex> lock(stop_mutex_);
    stop_cv_.wait(lock, [this] { return stop_requested_; });
}

bool Runtime::wait_for_stop(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(stop_mutex_);
    return stop_cv_.wait_for(lock, timeout, [this] { return stop_requested_; });
}

std::vector<std::pair<std::string, sdk::TtpFunction*>> Runtime::ttp_functions() const {
    std::vector<std::pair<std::string, sdk::TtpFunction*>> out;
    for (const auto& [name, fn] : ttp_functions_) {
        out.emplace_back(name, fn.get());
    }
    return out;
}

sdk::TtpFunction* Runtime::ttp_function(const std::string& name) const {
    for (const auto& [n, fn] : ttp_functions_) {
        if (n == name) {
            return fn.get();
        }
    }
    return nullptr;
}

sdk::Aggregator* Runtime::aggregator(const std::string& name) const {
    for (const auto& [n, a] : aggregators_) {
        if (n == name) {
            return a.get();
        }
    }
    return nullptr;
}

std::vector<std::string> Runtime::aggregator_names() const {
    std::vector<std::string> out;
    for (const auto& a : aggregators_) {
        out.push_back(a.first);
    }
    return out;
}

sdk::DataPipeline* Runtime::data_pipeline(const std::string& name) const {
    for (const auto& [n, d] : data_) {
        if (n == name) {
            return d.get();
        }
    }
    return nullptr;
}

std::vector<std::pair<std::string, sdk::DataPipeline*>> Runtime::data_pipelines() const {
    std::vector<std::pair<std::string, sdk::DataPipeline*>> out;
    for (const auto& [name, d] : data_) {
        out.emplace_back(name, d.get());
    }
    return out;
}

std::vector<std::string> Runtime::started_components() const {
    std::lock_guard<std::mutex> lock(steps_mutex_);
    std::vector<std::string> out;
    for (const auto& step : steps_) {
        out.push_back(step.name);
    }
    return out;
}

sdk::Status check_configured_plugins(const RuntimeConfig& config, PluginLoader& loader,
                                     std::size_t* checked, std::vector<std::string>* warnings) {
    std::size_t count = 0;
    for (const auto& plugin : configured_plugins(config)) {
        auto fail = [&](const sdk::Error& error) {
            std::string text =
                config.source_file.empty() ? std::string("config") : config.source_file;
            if (plugin.section.source_line > 0) {
                text += ":" + std::to_string(plugin.section.source_line);
            }
            text += ": key '" + plugin.section.source_key + "': plugin " +
                    plugin_label(plugin.request) + ": " + error.message;
            return sdk::Status(error.code, text);
        };
        auto library = loader.open(plugin.request);
        sdk::Status status =
            library ? PluginLoader::validate_options(*library.value(), plugin.request).status()
                    : library.status();
        if (!status) {
            sdk::Status described = fail(status.error());
            if (plugin.request.required) {
                return described;
            }
            if (warnings != nullptr) {
                warnings->push_back(described.message() + " (required: false, ignored)");
            }
            continue;
        }
        ++count;
    }
    if (checked != nullptr) {
        *checked = count;
    }
    return {};
}

std::vector<std::string> default_plugin_search_path(const std::vector<std::string>& config_paths,
                                                    const std::string& exe_dir) {
    std::vector<std::string> candidates = config_paths;
    if (const char* env = std::getenv("SYNERGOS_PLUGIN_PATH")) {
        std::istringstream in(env);
        std::string item;
        while (std::getline(in, item, ':')) {
            if (!item.empty()) {
                candidates.push_back(item);
            }
        }
    }
    if (!exe_dir.empty()) {
        candidates.push_back((fs::path(exe_dir) / ".." / "lib" / "synergos" / "plugins")
                                 .lexically_normal()
                                 .string());
        candidates.push_back((fs::path(exe_dir) / ".." / "plugins").lexically_normal().string());
    }
    candidates.emplace_back(SYNERGOS_INSTALL_PLUGIN_DIR);
    std::vector<std::string> out;
    for (auto& path : candidates) {
        std::string normal = fs::path(path).lexically_normal().string();
        while (normal.size() > 1 && normal.back() == '/') {
            normal.pop_back();
        }
        if (std::find(out.begin(), out.end(), normal) == out.end()) {
            out.push_back(std::move(normal));
        }
    }
    return out;
}

}  // namespace synergos::core
