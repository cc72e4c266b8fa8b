// SPDX-License-Identifier: Apache-2.0
#include "mlflow_tracker.hpp"

#include <pwd.h>
#include <unistd.h>

#include <exception>
#include <stdexcept>
#include <utility>

#include <nlohmann/json.hpp>

#include "names.hpp"

namespace synergos::plugins::mlflow {

namespace {

constexpr sdk::OptionSpec kOptions[] = {
    {"root", sdk::OptionType::Path, false, nullptr,
     "MLflow file-store folder (what `mlflow ui --backend-store-uri` is given); default: the "
     "node's MLflow directory (--mlflow-dir)",
     false},
    {"sync_metrics", sdk::OptionType::Bool, false, "true",
     "fsync every metric file appended to before log_metrics returns; false leaves flushing to "
     "the OS (a crash may then lose the last lines, never corrupt earlier ones)",
     false},
    {"user", sdk::OptionType::String, false, nullptr,
     "user_id recorded on new runs (tag mlflow.user); default: the OS user of the process", false},
};

std::string os_user() {
    std::string buffer(4096, '\0');
    passwd entry{};
    passwd* found = nullptr;
    if (::getpwuid_r(::geteuid(), &entry, buffer.data(), buffer.size(), &found) == 0 &&
        found != nullptr && found->pw_name != nullptr) {
        return found->pw_name;
    }
    return "unknown";
}

}  // namespace

const sdk::PluginDescriptor kMlflowDescriptor{
    sizeof(sdk::PluginDescriptor),
    "mlflow",
    sdk::PluginKind::Tracking,
    "1.0.0",
    "experiment tracking in MLflow's file-store layout (readable by the MLflow UI)",
    "synergos",
    sdk::PluginStatus::Stable,
    kOptions,
    sizeof(kOptions) / sizeof(kOptions[0]),
};

StoreConfig parse_config(sdk::HostContext& host, const sdk::Options& options) {
    StoreConfig config;
    std::string root = options.get_string("root");
    if (root.empty()) {
        root = host.mlflow_dir();
    }
    if (root.empty()) {
        throw std::invalid_argument(
            "mlflow: option 'root' is empty and the node has no MLflow directory (--mlflow-dir)");
    }
    config.root = root;
    config.sync_metrics = options.get_bool("sync_metrics", true);
    config.user = options.get_string("user");
    if (config.user.empty()) {
        config.user = os_user();
    }
    if (utf8_length(config.user) == std::string::npos) {
        throw std::invalid_argument("mlflow: option 'user' is not valid UTF-8");
    }
    return config;
}

MlflowTracker::MlflowTracker(sdk::HostContext& host, const sdk::Options& options)
    : MlflowTracker(host, parse_config(host, options)) {}

MlflowTracker::MlflowTracker(sdk::HostContext& host, StoreConfig config)
    : host_(host), store_(std::move(config)) {}

template <typename T, typename Body>
T MlflowTracker::guarded(const char* operation, Body&& body) noexcept {
    try {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!is_started_) {
            return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                              std::string("mlflow: ") + operation + " before start()"};
        }
        return body();
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          std::string("mlflow: ") + operation + " failed: " + e.what()};
    } catch (...) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          std::string("mlflow: ") + operation + " failed"};
    }
}

sdk::Status MlflowTracker::start() noexcept {
    try {
        std::lock_guard<std::mutex> lock(mutex_);
        if (auto status = store_.open(); !status) {
            return status;
        }
        is_started_ = true;
        host_.logger().info("mlflow store ready",
                            nlohmann::json{{"root", store_.root().string()}}.dump());
        return sdk::Status::ok();
    } catch (const std::exception& e) {
        return sdk::Status(sdk::ErrorCode::Internal,
                           std::string("mlflow: start failed: ") + e.what());
    }
}

sdk::Result<std::string> MlflowTracker::ensure_experiment(const std::string& name) noexcept {
    return guarded<sdk::Result<std::string>>("ensure_experiment",
                                             [&] { return store_.ensure_experiment(name); });
}

sdk::Result<std::string> MlflowTracker::ensure_run(const std::string& experiment_id,
                                                   const std::string& run_name,
                                                   const sdk::StringPairs& tags) noexcept {
    return guarded<sdk::Result<std::string>>(
        "ensure_run", [&] { return store_.ensure_run(experiment_id, run_name, tags); });
}

sdk::Status MlflowTracker::log_params(const std::string& run_id,
                                      const sdk::StringPairs& params) noexcept {
    return guarded<sdk::Status>("log_params", [&] {
        std::vector<std::string> refused;
        auto status = store_.log_params(run_id, params, refused);
        warn_refused("mlflow params not logged", run_id, status, refused);
        return status;
    });
}

sdk::Status MlflowTracker::log_metrics(const std::string& run_id,
                                       const std::vector<sdk::MetricPoint>& metrics) noexcept {
    return guarded<sdk::Status>("log_metrics", [&] {
        std::vector<std::string> refused;
        auto status = store_.log_metrics(run_id, metrics, refused);
        warn_refused("mlflow metrics not logged", run_id, status, refused);
        return status;
    });
}

void MlflowTracker::warn_refused(const char* event, const std::string& run_id,
                                 const sdk::Status& status,
                                 const std::vector<std::string>& refused) {
    // The rest of the batch was written and the call succeeds (an error means nothing was
    // written), so the refused entries are reported here, each named.
    if (!status || refused.empty()) {
        return;
    }
    nlohmann::json fields{{"run_id", run_id}, {"refused", refused}};
    host_.logger().warn(event,
                        fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

sdk::Status MlflowTracker::set_tags(const std::string& run_id,
                                    const sdk::StringPairs& tags) noexcept {
    return guarded<sdk::Status>("set_tags", [&] { return store_.set_tags(run_id, tags); });
}

sdk::Status MlflowTracker::log_artifact(const std::string& run_id, const std::string& local_path,
                                        const std::string& artifact_path) noexcept {
    return guarded<sdk::Status>(
        "log_artifact", [&] { return store_.log_artifact(run_id, local_path, artifact_path); });
}

sdk::Status MlflowTracker::end_run(const std::string& run_id, const std::string& status) noexcept {
    return guarded<sdk::Status>("end_run", [&] { return store_.end_run(run_id, status); });
}

void MlflowTracker::stop() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    is_started_ = false;
}

std::string MlflowTracker::root() const {
    return store_.root().string();
}

}  // namespace synergos::plugins::mlflow
