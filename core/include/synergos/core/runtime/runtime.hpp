// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file runtime.hpp
/// The Runtime: owns the configuration, the loggers, the plugin loader and every plugin it
/// started, in start order, and stops them in reverse (STYLE.md L7): components such as REST
/// first, then TTP functions, message queue, storage, tracking, and the log sink last; plugin
/// libraries are released in reverse load order. It also turns SIGINT/SIGTERM into a stop
/// request, logs the configuration snapshot at start-up and runs the system-metrics sampler.
///
/// A role (roles.hpp) uses it as: `start_plugins()`, its own components (`add_component`),
/// `wait_for_stop()`, `stop_all()`.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <source_location>
#include <string>
#include <string_view>
#include <vector>

#include <synergos/core/config/runtime_config.hpp>
#include <synergos/core/logging/logger_factory.hpp>
#include <synergos/core/plugin/loader.hpp>
#include <synergos/core/runtime/system_metrics.hpp>
#include <synergos/sdk/aggregator.hpp>
#include <synergos/sdk/data_pipeline.hpp>
#include <synergos/sdk/host.hpp>
#include <synergos/sdk/log_sink.hpp>
#include <synergos/sdk/message_queue.hpp>
#include <synergos/sdk/model.hpp>
#include <synergos/sdk/status.hpp>
#include <synergos/sdk/storage_backend.hpp>
#include <synergos/sdk/tracker.hpp>
#include <synergos/sdk/ttp_function.hpp>

namespace synergos::core {

class SignalWatcher;

/// The HostContext a plugin receives: its own logger (component `plugin.<kind>.<name>`) and
/// the node's identity and directories. Owned by the Runtime; outlives the plugin.
class RuntimeHost final : public sdk::HostContext {
public:
    RuntimeHost(HostLogger& logger, const RuntimeConfig& config)
        : logger_(logger), config_(config) {}

    sdk::Logger& logger() noexcept override { return logger_; }
    std::string node_id() const override { return config_.node.id; }
    std::string role() const override { return role_name(config_.node.role); }
    std::string data_dir() const override { return config_.node.data_dir; }
    std::string outputs_dir() const override { return config_.node.outputs_dir; }
    std::string mlflow_dir() const override { return config_.node.mlflow_dir; }

private:
    HostLogger& logger_;
    const RuntimeConfig& config_;
};

/// A plugin that failed to load with `required: false` (shown by health and /v1/plugins).
struct FailedPlugin {
    std::string kind;
    std::string name;
    std::string error;
};

/// Construction options that are not configuration.
struct RuntimeOptions {
    /// Where console records go (default: stderr). Tests capture them here.
    LoggerFactory::ConsoleWriter console;
    /// Route SIGINT/SIGTERM to `request_stop` while the Runtime lives (one Runtime at a time),
    /// and bound the stop as a process must: a signal once a stop was requested, or a `stop_all`
    /// outlasting `node.stop_timeout_s`, ends the process at once ("forced exit", naming the
    /// component still stopping; exit code 128 + signal, or 1).
    bool handle_signals = false;
    /// Where system metrics are read from (tests use a fake tree).
    SystemPaths system_paths;
};

/// Owns everything a `synergos` process runs.
/// Threading: start/stop methods run on the main thread; `request_stop`, `stop_requested` and
/// the accessors may be used from any thread once start-up is done.
class Runtime {
public:
    /// Sets up loggers (level, censor) and the loader on `config.plugin_search_paths`.
    explicit Runtime(RuntimeConfig config, RuntimeOptions options = {});
    /// Stops whatever is still running (stop_all).
    ~Runtime();
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    const RuntimeConfig& config() const { return config_; }
    LoggerFactory& loggers() { return *loggers_; }
    /// The runtime's own logger (component `runtime`).
    HostLogger& logger() { return logger_; }
    PluginLoader& loader() { return *loader_; }
    /// The host context for a component (one per name, owned by the Runtime, valid while it
    /// lives). Thread-safe.
    sdk::HostContext& host_context(const std::string& component);

    /// Loads and starts every plugin the config names, in order: log sink (then the config
    /// snapshot is logged through it), tracking, storage, message queue, aggregators, model,
    /// data pipelines, TTP functions; then the system-metrics sampler. A required plugin that
    /// fails stops the start-up: the error names the plugin and its config key. Not idempotent.
    sdk::Status start_plugins();

    /// Logs `configuration snapshot` with the effective config. Option values whose key looks
    /// secret (password, token, secret, key, credentials) are always redacted; `--censored`
    /// redacts the censor keys on top.
    void log_config_snapshot();

    /// Logs an error that ends the process (event at critical, e.g. "start-up failed"). While a
    /// log sink plugin holds the records (Graylog may be unreachable, and drops them) the same
    /// record, as a console JSON line, also goes to the console writer (stderr): the operator
    /// must always see why the process stopped. Skipped for a basic sink already on stderr.
    void fatal(std::string_view event, nlohmann::json fields,
               std::source_location where = std::source_location::current()) noexcept;

    /// Registers a started component (e.g. the REST server) whose `stop` runs, in reverse
    /// order with the plugins, during `stop_all`.
    void add_component(const std::string& name, std::function<void()> stop);

    /// Stops everything in reverse start order, logging `stopping` / `stopped` per component,
    /// then releases plugin libraries in reverse load order. Idempotent; never throws.
    void stop_all() noexcept;

    /// Asks the role to stop (a signal handler, a REST shutdown, a fatal error).
    void request_stop(const std::string& reason);
    bool stop_requested() const;
    std::string stop_reason() const;
    /// Blocks until `request_stop`.
    void wait_for_stop();
    /// Blocks until `request_stop` or the timeout; true when a stop was requested.
    bool wait_for_stop(std::chrono::milliseconds timeout);

    // Started plugins (nullptr / empty when not configured or not started).
    sdk::LogSink* log_sink() const { return log_sink_.get(); }
    sdk::Tracker* tracker() const { return tracker_.get(); }
    sdk::StorageBackend* storage() const { return storage_.get(); }
    sdk::MessageQueue* message_queue() const { return message_queue_.get(); }
    sdk::ModelBackend* model() const { return model_.get(); }
    /// TTP functions by plugin name, in config order.
    std::vector<std::pair<std::string, sdk::TtpFunction*>> ttp_functions() const;
    sdk::TtpFunction* ttp_function(const std::string& name) const;
    sdk::Aggregator* aggregator(const std::string& name) const;
    std::vector<std::string> aggregator_names() const;
    /// Data pipelines by plugin name.
    sdk::DataPipeline* data_pipeline(const std::string& name) const;
    std::vector<std::pair<std::string, sdk::DataPipeline*>> data_pipelines() const;
    /// Plugins with `required: false` that failed.
    const std::vector<FailedPlugin>& failed_plugins() const { return failed_; }
    /// Names of started components in start order, e.g. "logging/basic", "system metrics".
    std::vector<std::string> started_components() const;

private:
    struct Step {
        std::string name;
        std::function<void()> stop;
    };

    sdk::Status start_one(const PluginRequest& request);
    /// Ends `stop_all` past `node.stop_timeout_s` (runs on its own thread during the stop).
    void watch_stop();
    /// Logs `forced exit` (on stderr even behind a sink), writes out the sink, _Exit(code).
    [[noreturn]] void force_exit(const std::string& reason, int code) noexcept;
    template <typename Interface>
    sdk::Result<std::shared_ptr<Interface>> create(const PluginRequest& request, int* abi_minor = nullptr);

    RuntimeConfig config_;
    RuntimeOptions options_;
    std::unique_ptr<LoggerFactory> loggers_;
    HostLogger& logger_;
    std::unique_ptr<PluginLoader> loader_;
    std::mutex hosts_mutex_;
    std::map<std::string, std::unique_ptr<RuntimeHost>> hosts_;

    std::shared_ptr<sdk::LogSink> log_sink_;
    std::shared_ptr<sdk::Tracker> tracker_;
    std::shared_ptr<sdk::StorageBackend> storage_;
    std::shared_ptr<sdk::MessageQueue> message_queue_;
    std::shared_ptr<sdk::ModelBackend> model_;
    std::vector<std::pair<std::string, std::shared_ptr<sdk::Aggregator>>> aggregators_;
    std::vector<std::pair<std::string, std::shared_ptr<sdk::DataPipeline>>> data_;
    std::vector<std::pair<std::string, std::shared_ptr<sdk::TtpFunction>>> ttp_functions_;
    std::unique_ptr<SystemMetricsSampler> sampler_;
    std::vector<FailedPlugin> failed_;
    bool snapshot_logged_ = false;

    mutable std::mutex steps_mutex_;
    std::vector<Step> steps_;  ///< start order; stopped back to front

    mutable std::mutex stop_mutex_;
    std::condition_variable stop_cv_;
    bool stop_requested_ = false;
    std::string stop_reason_;

    std::mutex progress_mutex_;
    std::condition_variable progress_cv_;
    std::string stopping_;    ///< the component `stop_all` is stopping now
    bool stop_done_ = false;  ///< `stop_all` finished (ends `watch_stop`)

    std::unique_ptr<SignalWatcher> signals_;
};

/// What `synergos check-config` does after the config itself is valid: opens every plugin the
/// config names with `loader` and validates its options against the plugin's table, creating
/// nothing. The first failure is returned as one line naming the file, line and config key.
/// A plugin marked `required: false` that fails is not an error: its line goes to `warnings`.
/// On success, `checked` (when given) receives the number of plugins that passed.
sdk::Status check_configured_plugins(const RuntimeConfig& config, PluginLoader& loader,
                                     std::size_t* checked = nullptr,
                                     std::vector<std::string>* warnings = nullptr);

/// The plugin search path of a process: the config's paths (which start with the
/// `--plugin-path` flags), then `$SYNERGOS_PLUGIN_PATH` (colon-separated), then
/// `<exe dir>/../lib/synergos/plugins`, `<exe dir>/../plugins` (the build tree), and the
/// install prefix's plugin folder. Duplicates are dropped, first wins.
std::vector<std::string> default_plugin_search_path(const std::vector<std::string>& config_paths,
                                                    const std::string& exe_dir);

}  // namespace synergos::core
