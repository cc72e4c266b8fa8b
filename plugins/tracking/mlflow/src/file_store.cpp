// SPDX-License-Identifier: Apache-2.0
#include "file_store.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <limits>
#include <system_error>
#include <tuple>

#include <yaml-cpp/yaml.h>

#include "file_ops.hpp"
#include "names.hpp"
#include "text.hpp"

namespace synergos::plugins::mlflow {

namespace fs = std::filesystem;

namespace {

constexpr const char* kMetaFile = "meta.yaml";
constexpr const char* kTrash = ".trash";
constexpr const char* kNameLockFile = ".synergos-lock";
/// A look-up and creation takes milliseconds; a holder past this is stuck.
constexpr std::chrono::milliseconds kNameLockTimeout{10000};
constexpr const char* kDefaultExperimentId = "0";
constexpr const char* kDefaultExperimentName = "Default";
constexpr const char* kRunNameTag = "mlflow.runName";
// Folders inside an experiment that are not runs (FileStore.RESERVED_EXPERIMENT_FOLDERS), and
// folders of the root that are not experiments.
constexpr std::array<std::string_view, 3> kReservedExperimentFolders = {"tags", "datasets",
                                                                        "traces"};
constexpr std::string_view kModelsFolder = "models";

sdk::Status invalid(std::string message) {
    return sdk::Status(sdk::ErrorCode::InvalidArgument, "mlflow: " + std::move(message));
}

sdk::Error error_of(const sdk::Status& status) {
    return status.error();
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string int_or_null(const std::optional<std::int64_t>& value) {
    return value ? std::to_string(*value) : "null";
}

bool is_dir(const fs::path& path) {
    std::error_code ec;
    return fs::is_directory(path, ec);
}

bool path_exists(const fs::path& path) {
    std::error_code ec;
    return fs::exists(path, ec);
}

/// Immediate sub-folders of `dir` (empty when it cannot be read).
std::vector<std::string> list_subdirs(const fs::path& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::error_code type_ec;
        if (it->is_directory(type_ec)) {
            out.push_back(it->path().filename().string());
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

/// Non-negative decimal text -> value; nullopt for anything else (or past uint64).
std::optional<std::uint64_t> parse_id_number(const std::string& text) {
    if (text.empty() || text.size() > 20) {
        return std::nullopt;
    }
    std::uint64_t value = 0;
    const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
    if (result.ec != std::errc() || result.ptr != text.data() + text.size()) {
        return std::nullopt;
    }
    return value;
}

/// A scalar field of a YAML map, nullopt when missing or null.
std::optional<std::string> scalar_field(const YAML::Node& map, const char* key) {
    const YAML::Node node = map[key];
    if (!node.IsDefined() || node.IsNull() || !node.IsScalar()) {
        return std::nullopt;
    }
    return node.Scalar();
}

std::optional<std::int64_t> int_field(const YAML::Node& map, const char* key) {
    const auto text = scalar_field(map, key);
    if (!text) {
        return std::nullopt;
    }
    std::int64_t value = 0;
    const auto result = std::from_chars(text->data(), text->data() + text->size(), value);
    if (result.ec != std::errc() || result.ptr != text->data() + text->size()) {
        return std::nullopt;
    }
    return value;
}

/// Renders a value read from a foreign meta.yaml so that it reads back the same.
std::string render_yaml_value(const YAML::Node& node) {
    if (node.IsNull()) {
        return "null";
    }
    if (node.IsScalar()) {
        const std::string& text = node.Scalar();
        // "!" marks a quoted (string) scalar in yaml-cpp; plain ones keep their resolved type.
        bool is_plain_ok =
            node.Tag() != "!" && !text.empty() && text.front() != ' ' && text.back() != ' ';
        for (char c : text) {
            const auto u = static_cast<unsigned char>(c);
            is_plain_ok = is_plain_ok && u >= 0x20 && u < 0x7F && c != '#' && c != ':';
        }
        return is_plain_ok ? text : yaml_string(text);
    }
    YAML::Emitter emitter;
    emitter << YAML::Flow << node;
    return emitter.c_str();
}

/// Checks that `key` can become a file under `base`: no prefix of it is an existing file (as
/// "a" would be for "a/b") and it is not itself an existing folder.
sdk::Status check_key_path(std::string_view what, const fs::path& base, const std::string& key) {
    fs::path current = base;
    std::size_t start = 0;
    for (;;) {
        const std::size_t slash = key.find('/', start);
        current /=
            key.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        std::error_code ec;
        const auto status = fs::status(current, ec);
        if (slash == std::string::npos) {
            if (fs::is_directory(status)) {
                return invalid(std::string(what) + " '" + key + "' conflicts with keys below '" +
                               key + "/' of the same run");
            }
            return sdk::Status::ok();
        }
        if (fs::exists(status) && !fs::is_directory(status)) {
            return invalid(std::string(what) + " '" + key + "' conflicts with " +
                           std::string(what) + " '" + key.substr(0, slash) + "' of the same run");
        }
        start = slash + 1;
    }
}

/// The value of a synergos.attempt tag; 1 for a missing or malformed one (a run made before
/// attempts existed, or by someone else, is a first attempt).
std::int64_t attempt_number(const std::string& text) {
    std::int64_t value = 0;
    const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || result.ec != std::errc() || result.ptr != text.data() + text.size() ||
        value < 1) {
        return 1;
    }
    return value;
}

/// True when some file lies below `dir` (a logged param or metric); false for a missing folder.
bool holds_files(const fs::path& dir) {
    std::error_code ec;
    for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::error_code type_ec;
        if (!it->is_directory(type_ec)) {
            return true;
        }
    }
    return false;
}

/// `messages` (each "mlflow: ...") as one InvalidArgument, at most 20 of them spelled out.
sdk::Status all_refused(const std::string& what, const std::vector<std::string>& messages) {
    if (messages.size() == 1) {
        return sdk::Status(sdk::ErrorCode::InvalidArgument, messages.front());
    }
    std::string text = std::to_string(messages.size()) + " " + what + " refused, nothing written: ";
    for (std::size_t i = 0; i < messages.size() && i < 20; ++i) {
        const std::string& m = messages[i];
        text += (i == 0 ? "" : "; ") + (m.rfind("mlflow: ", 0) == 0 ? m.substr(8) : m);
    }
    if (messages.size() > 20) {
        text += "; and " + std::to_string(messages.size() - 20) + " more";
    }
    return invalid(std::move(text));
}

/// uuid4 as 32 hex characters (version and variant bits set as Python's uuid4 does).
std::string new_run_id() {
    std::string hex = random_hex(16);
    hex[12] = '4';
    static constexpr char kVariant[] = "89ab";
    const auto nibble =
        static_cast<std::size_t>(hex[16] >= 'a' ? hex[16] - 'a' + 10 : hex[16] - '0');
    hex[16] = kVariant[nibble & 3U];
    return hex;
}

}  // namespace

std::optional<RunStatus> parse_run_status(const std::string& text) {
    if (text == "RUNNING") {
        return RunStatus::Running;
    }
    if (text == "SCHEDULED") {
        return RunStatus::Scheduled;
    }
    if (text == "FINISHED") {
        return RunStatus::Finished;
    }
    if (text == "FAILED") {
        return RunStatus::Failed;
    }
    if (text == "KILLED") {
        return RunStatus::Killed;
    }
    return std::nullopt;
}

std::string render_run_meta(const RunMeta& meta) {
    std::map<std::string, std::string> fields = meta.extra;
    fields["artifact_uri"] = yaml_string(meta.artifact_uri);
    fields["deleted_time"] = int_or_null(meta.deleted_time);
    fields["end_time"] = int_or_null(meta.end_time);
    fields["entry_point_name"] = yaml_string(meta.entry_point_name);
    fields["experiment_id"] = yaml_string(meta.experiment_id);
    fields["lifecycle_stage"] = yaml_string(meta.lifecycle_stage);
    fields["run_id"] = yaml_string(meta.run_id);
    fields["run_name"] = yaml_string(meta.run_name);
    fields["run_uuid"] = yaml_string(meta.run_id);
    fields["source_name"] = yaml_string(meta.source_name);
    fields["source_type"] = std::to_string(meta.source_type);
    fields["source_version"] = yaml_string(meta.source_version);
    fields["start_time"] = int_or_null(meta.start_time);
    fields["status"] = std::to_string(meta.status);
    fields["tags"] = "[]";  // tags moved to tags/; MLflow keeps an empty list for old readers
    fields["user_id"] = yaml_string(meta.user_id);
    std::string out;
    for (const auto& [key, value] : fields) {
        out += key + ": " + value + "\n";
    }
    return out;
}

std::string render_experiment_meta(const ExperimentMeta& meta) {
    std::string out;
    out += "artifact_location: " + yaml_string(meta.artifact_location) + "\n";
    out += "creation_time: " + std::to_string(meta.creation_time) + "\n";
    out += "experiment_id: " + yaml_string(meta.experiment_id) + "\n";
    out += "last_update_time: " + std::to_string(meta.last_update_time) + "\n";
    out += "lifecycle_stage: " + yaml_string(meta.lifecycle_stage) + "\n";
    out += "name: " + yaml_string(meta.name) + "\n";
    return out;
}

sdk::Result<RunMeta> parse_run_meta(const std::string& text, const std::string& where) {
    YAML::Node doc;
    try {
        doc = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          "mlflow: malformed '" + where + "': " + e.what()};
    }
    if (!doc.IsMap()) {
        return sdk::Error{sdk::ErrorCode::Internal, "mlflow: malformed '" + where + "'"};
    }
    RunMeta meta;
    auto run_id = scalar_field(doc, "run_id");
    if (!run_id) {
        run_id = scalar_field(doc, "run_uuid");
    }
    const auto experiment_id = scalar_field(doc, "experiment_id");
    if (!run_id || !experiment_id) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          "mlflow: '" + where + "' has no run_id or experiment_id"};
    }
    meta.run_id = *run_id;
    meta.experiment_id = *experiment_id;
    meta.run_name = scalar_field(doc, "run_name").value_or("");
    meta.artifact_uri = scalar_field(doc, "artifact_uri").value_or("");
    meta.user_id = scalar_field(doc, "user_id").value_or("");
    meta.lifecycle_stage = scalar_field(doc, "lifecycle_stage").value_or("active");
    meta.source_name = scalar_field(doc, "source_name").value_or("");
    meta.entry_point_name = scalar_field(doc, "entry_point_name").value_or("");
    meta.source_version = scalar_field(doc, "source_version").value_or("");
    meta.source_type = static_cast<int>(int_field(doc, "source_type").value_or(kSourceTypeLocal));
    meta.status =
        static_cast<int>(int_field(doc, "status").value_or(static_cast<int>(RunStatus::Running)));
    meta.start_time = int_field(doc, "start_time");
    meta.end_time = int_field(doc, "end_time");
    meta.deleted_time = int_field(doc, "deleted_time");
    static constexpr std::array<std::string_view, 16> kKnown = {
        "artifact_uri",  "deleted_time",    "end_time",    "entry_point_name",
        "experiment_id", "lifecycle_stage", "run_id",      "run_name",
        "run_uuid",      "source_name",     "source_type", "source_version",
        "start_time",    "status",          "tags",        "user_id"};
    for (const auto& item : doc) {
        const std::string key = item.first.as<std::string>();
        if (std::find(kKnown.begin(), kKnown.end(), key) == kKnown.end()) {
            meta.extra[key] = render_yaml_value(item.second);
        }
    }
    return meta;
}

sdk::Result<ExperimentMeta> parse_experiment_meta(const std::string& text,
                                                  const std::string& where) {
    YAML::Node doc;
    try {
        doc = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          "mlflow: malformed '" + where + "': " + e.what()};
    }
    if (!doc.IsMap()) {
        return sdk::Error{sdk::ErrorCode::Internal, "mlflow: malformed '" + where + "'"};
    }
    ExperimentMeta meta;
    const auto id = scalar_field(doc, "experiment_id");
    const auto name = scalar_field(doc, "name");
    if (!id || !name) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          "mlflow: '" + where + "' has no experiment_id or name"};
    }
    meta.experiment_id = *id;
    meta.name = *name;
    meta.artifact_location = scalar_field(doc, "artifact_location").value_or("");
    meta.lifecycle_stage = scalar_field(doc, "lifecycle_stage").value_or("active");
    meta.creation_time = int_field(doc, "creation_time").value_or(0);
    meta.last_update_time = int_field(doc, "last_update_time").value_or(0);
    return meta;
}

FileStore::FileStore(StoreConfig config)
    : root_(fs::absolute(config.root).lexically_normal()),
      sync_metrics_(config.sync_metrics),
      user_(std::move(config.user)),
      name_lock_(root_ / kNameLockFile) {
    // "/a/b/" normalises to "/a/b/" with an empty last element; MLflow's paths have none.
    if (root_.has_relative_path() && root_.filename().empty()) {
        root_ = root_.parent_path();
    }
}

sdk::Status FileStore::open() {
    if (path_exists(root_) && !is_dir(root_)) {
        return sdk::Status(sdk::ErrorCode::FailedPrecondition,
                           "mlflow: root '" + root_.string() + "' is not a directory");
    }
    if (auto status = make_dirs(root_); !status) {
        return status;
    }
    bool created = false;
    if (!path_exists(root_ / kDefaultExperimentId) &&
        !path_exists(root_ / kTrash / kDefaultExperimentId)) {
        if (auto status = make_dir(root_ / kDefaultExperimentId, created); !status) {
            return status;
        }
        if (auto status =
                create_experiment_dir(kDefaultExperimentId, kDefaultExperimentName, now_ms());
            !status) {
            return status;
        }
    }
    if (auto status = make_dir(root_ / kTrash, created); !status) {
        return status;
    }
    if (created) {
        if (auto status = sync_dir(root_); !status) {
            return status;
        }
    }
    remove_abandoned_experiment_dirs();
    return scan_experiments();
}

void FileStore::remove_abandoned_experiment_dirs() {
    // A crash between claiming an id (mkdir) and writing meta.yaml leaves a folder that MLflow
    // warns about on every listing. Such a folder holds nothing but our temp files; one older
    // than a minute is no longer being created by anyone, so it goes.
    const auto cutoff = fs::file_time_type::clock::now() - std::chrono::minutes(1);
    for (const std::string& id : list_subdirs(root_)) {
        const fs::path dir = root_ / id;
        std::error_code ec;
        if (!parse_id_number(id) || path_exists(dir / kMetaFile) ||
            fs::last_write_time(dir, ec) > cutoff || ec) {
            continue;
        }
        std::vector<fs::path> temps;
        bool is_abandoned = true;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            const std::string name = it->path().filename().string();
            if (name.rfind(kTempPrefix, 0) == 0 && it->is_regular_file(ec)) {
                temps.push_back(it->path());
            } else {
                is_abandoned = false;
            }
        }
        if (ec || !is_abandoned) {
            continue;
        }
        for (const fs::path& temp : temps) {
            fs::remove(temp, ec);
        }
        fs::remove(dir, ec);  // fails harmlessly if something appeared meanwhile
    }
}

sdk::Status FileStore::scan_experiments() {
    experiment_by_name_.clear();
    deleted_names_.clear();
    for (const std::string& id : list_subdirs(root_)) {
        if (id == kTrash || id == kModelsFolder) {
            continue;
        }
        const fs::path meta_path = root_ / id / kMetaFile;
        auto text = read_file(meta_path);
        if (!text) {
            continue;  // not (yet) an experiment: MLflow skips it too
        }
        auto meta = parse_experiment_meta(*text, meta_path.string());
        if (!meta || meta->experiment_id != id) {
            continue;  // malformed or mismatched: MLflow ignores it with a warning
        }
        if (meta->lifecycle_stage == "active") {
            experiment_by_name_.emplace(meta->name, id);
        } else {
            deleted_names_.insert(meta->name);
        }
    }
    for (const std::string& id : list_subdirs(root_ / kTrash)) {
        auto text = read_file(root_ / kTrash / id / kMetaFile);
        if (!text) {
            continue;
        }
        if (auto meta = parse_experiment_meta(*text, id); meta) {
            deleted_names_.insert(meta->name);
        }
    }
    return sdk::Status::ok();
}

sdk::Status FileStore::create_experiment_dir(const std::string& id, const std::string& name,
                                             std::int64_t now) {
    const fs::path dir = root_ / id;
    ExperimentMeta meta;
    meta.experiment_id = id;
    meta.name = name;
    meta.artifact_location = file_uri(dir.string());
    meta.creation_time = now;
    meta.last_update_time = now;
    if (auto status = write_file_atomic(dir / kMetaFile, render_experiment_meta(meta), dir);
        !status) {
        return status;
    }
    return sync_dir(root_);
}

sdk::Result<std::string> FileStore::ensure_experiment(const std::string& name) {
    if (auto status = validate_experiment_name(name); !status) {
        return error_of(status);
    }
    auto cached = experiment_by_name_.find(name);
    if (cached != experiment_by_name_.end() && path_exists(root_ / cached->second / kMetaFile)) {
        return cached->second;
    }
    // Not known, or moved since: another process (the MLflow UI) may have changed the store.
    // Locked from the scan to the creation: another process creating the same name meanwhile
    // would give two experiments of one name.
    FileLockGuard locked(name_lock_);
    if (auto status = locked.lock(kNameLockTimeout); !status) {
        return error_of(status);
    }
    if (auto status = scan_experiments(); !status) {
        return error_of(status);
    }
    cached = experiment_by_name_.find(name);
    if (cached != experiment_by_name_.end()) {
        return cached->second;
    }
    if (deleted_names_.count(name) != 0) {
        return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                          "mlflow: experiment '" + name +
                              "' exists in deleted state: restore it, or remove it from '" +
                              (root_ / kTrash).string() + "' to use the name again"};
    }
    // Next id: one past the largest integer id in the root and the trash. mkdir claims it
    // atomically, so a concurrent writer makes us move on to the next one.
    std::uint64_t next = 0;
    for (const fs::path& parent : {root_, root_ / kTrash}) {
        for (const std::string& entry : list_subdirs(parent)) {
            const auto number = parse_id_number(entry);
            if (number && *number < std::numeric_limits<std::uint64_t>::max() &&
                *number + 1 > next) {
                next = *number + 1;
            }
        }
    }
    for (int attempt = 0; attempt < 1000; ++attempt, ++next) {
        const std::string id = std::to_string(next);
        bool created = false;
        if (auto status = make_dir(root_ / id, created); !status) {
            return error_of(status);
        }
        if (!created) {
            continue;
        }
        if (auto status = create_experiment_dir(id, name, now_ms()); !status) {
            return error_of(status);
        }
        experiment_by_name_[name] = id;
        return id;
    }
    return sdk::Error{sdk::ErrorCode::Internal,
                      "mlflow: no free experiment id in '" + root_.string() + "'"};
}

sdk::Result<ExperimentMeta> FileStore::load_experiment(const std::string& experiment_id) {
    if (auto status = validate_experiment_id(experiment_id); !status) {
        return error_of(status);
    }
    const fs::path meta_path = root_ / experiment_id / kMetaFile;
    auto text = read_file(meta_path);
    if (!text) {
        if (path_exists(root_ / kTrash / experiment_id)) {
            return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                              "mlflow: experiment '" + experiment_id + "' is deleted"};
        }
        if (text.error().code == sdk::ErrorCode::NotFound) {
            return sdk::Error{sdk::ErrorCode::NotFound, "mlflow: experiment '" + experiment_id +
                                                            "' does not exist in '" +
                                                            root_.string() + "'"};
        }
        return text.error();
    }
    auto meta = parse_experiment_meta(*text, meta_path.string());
    if (!meta) {
        return meta.error();
    }
    if (meta->lifecycle_stage != "active") {
        return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                          "mlflow: experiment '" + experiment_id + "' is deleted"};
    }
    return meta;
}

std::vector<FileStore::NamedRun> FileStore::runs_named(const std::string& experiment_id,
                                                       const std::string& run_name) {
    std::vector<NamedRun> out;
    const fs::path experiment_dir = root_ / experiment_id;
    for (const std::string& entry : list_subdirs(experiment_dir)) {
        if (std::find(kReservedExperimentFolders.begin(), kReservedExperimentFolders.end(),
                      entry) != kReservedExperimentFolders.end()) {
            continue;
        }
        const fs::path meta_path = experiment_dir / entry / kMetaFile;
        auto text = read_file(meta_path);
        if (!text) {
            continue;
        }
        auto meta = parse_run_meta(*text, meta_path.string());
        if (!meta || meta->experiment_id != experiment_id || meta->run_id != entry ||
            meta->lifecycle_stage != "active") {
            continue;
        }
        const fs::path tags = experiment_dir / entry / "tags";
        std::string name = meta->run_name;
        if (name.empty()) {
            // Runs of MLflow before 1.29 keep the name only in the tag.
            name = read_file(tags / kRunNameTag).value_or("");
        }
        if (name != run_name) {
            continue;
        }
        NamedRun run;
        run.run_id = entry;
        run.start_time = meta->start_time.value_or(0);
        run.attempt = attempt_number(read_file(tags / kAttemptTag).value_or(""));
        run.training_job = read_file(tags / kTrainingJobTag).value_or("");
        out.push_back(std::move(run));
    }
    // Current first: the highest attempt, then the earliest started (so repeated lookups agree
    // when runs made elsewhere share a name), then the id.
    std::sort(out.begin(), out.end(), [](const NamedRun& a, const NamedRun& b) {
        return std::tie(b.attempt, a.start_time, a.run_id) <
               std::tie(a.attempt, b.start_time, b.run_id);
    });
    return out;
}

sdk::Result<FileStore::RunEntry*> FileStore::find_run(const std::string& run_id) {
    if (auto status = validate_run_id(run_id); !status) {
        return error_of(status);
    }
    auto it = runs_.find(run_id);
    fs::path dir;
    if (it != runs_.end()) {
        dir = it->second.dir;
    }
    std::error_code ec;
    fs::file_time_type mtime =
        dir.empty() ? fs::file_time_type{} : fs::last_write_time(dir / kMetaFile, ec);
    if (dir.empty() || ec) {
        // Unknown here (a run id from storage, after a restart) or moved: look in every
        // experiment, active or deleted.
        dir.clear();
        for (const fs::path& parent : {root_, root_ / kTrash}) {
            for (const std::string& experiment : list_subdirs(parent)) {
                if (experiment == kTrash || experiment == kModelsFolder) {
                    continue;
                }
                if (path_exists(parent / experiment / run_id / kMetaFile)) {
                    dir = parent / experiment / run_id;
                    break;
                }
            }
            if (!dir.empty()) {
                break;
            }
        }
        if (dir.empty()) {
            runs_.erase(run_id);
            return sdk::Error{
                sdk::ErrorCode::NotFound,
                "mlflow: run '" + run_id + "' does not exist in '" + root_.string() + "'"};
        }
        mtime = fs::last_write_time(dir / kMetaFile, ec);
    }
    if (it != runs_.end() && it->second.dir == dir && it->second.meta_mtime == mtime) {
        return &it->second;
    }
    const fs::path meta_path = dir / kMetaFile;
    auto text = read_file(meta_path);
    if (!text) {
        return text.error();
    }
    auto meta = parse_run_meta(*text, meta_path.string());
    if (!meta) {
        return meta.error();
    }
    RunEntry& entry = runs_[run_id];
    entry.dir = dir;
    entry.meta = std::move(meta).value();
    entry.meta_mtime = mtime;
    return &entry;
}

sdk::Result<FileStore::RunEntry*> FileStore::find_active_run(const std::string& run_id) {
    auto entry = find_run(run_id);
    if (!entry) {
        return entry;
    }
    const RunMeta& meta = (*entry)->meta;
    if (meta.lifecycle_stage != "active" || (*entry)->dir.parent_path().parent_path() != root_) {
        return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                          "mlflow: run '" + run_id + "' is deleted"};
    }
    return entry;
}

sdk::Status FileStore::write_run_meta(RunEntry& entry) {
    const fs::path meta_path = entry.dir / kMetaFile;
    if (auto status = write_file_atomic(meta_path, render_run_meta(entry.meta), entry.dir);
        !status) {
        return status;
    }
    std::error_code ec;
    entry.meta_mtime = fs::last_write_time(meta_path, ec);
    return sdk::Status::ok();
}

sdk::Status FileStore::write_tags(RunEntry& entry, const sdk::StringPairs& tags) {
    for (const auto& [key, value] : tags) {
        const fs::path path = entry.dir / "tags" / key;
        if (auto status = make_dirs(path.parent_path()); !status) {
            return status;
        }
        if (auto status = write_file_atomic(path, value, entry.dir); !status) {
            return status;
        }
    }
    return sdk::Status::ok();
}

sdk::Result<std::string> FileStore::ensure_run(const std::string& experiment_id,
                                               const std::string& run_name,
                                               const sdk::StringPairs& tags) {
    if (run_name.empty()) {
        return error_of(invalid("run name must not be empty"));
    }
    if (auto status = validate_value("run name", run_name, run_name, kMaxTagValueLength); !status) {
        return error_of(status);
    }
    std::string training_job;
    for (const auto& [key, value] : tags) {
        if (auto status = validate_key("tag", key); !status) {
            return error_of(status);
        }
        if (auto status = validate_value("tag", key, value, kMaxTagValueLength); !status) {
            return error_of(status);
        }
        if (key == kRunNameTag && value != run_name) {
            return error_of(invalid("run name '" + run_name + "' and tag mlflow.runName '" + value +
                                    "' differ"));
        }
        if (key == kTrainingJobTag) {
            if (value.empty()) {
                // Written on the current run, it would detach that run from its training.
                return error_of(invalid("tag synergos.training_job must not be empty"));
            }
            training_job = value;
        }
    }
    // Locked from the look-up to the creation, as for experiments (one run per training job).
    FileLockGuard locked(name_lock_);
    if (auto status = locked.lock(kNameLockTimeout); !status) {
        return error_of(status);
    }
    auto experiment = load_experiment(experiment_id);
    if (!experiment) {
        return experiment.error();
    }
    const auto name_key = std::make_pair(experiment_id, run_name);
    std::optional<std::string> existing;
    // The cache answers only for a training job's own run. Which run is current can change
    // behind it (another process sharing the root trained the run again), so without a
    // training job the runs on disk decide (runs_named, under the name lock).
    auto cached = training_job.empty() ? run_by_name_.end() : run_by_name_.find(name_key);
    if (cached != run_by_name_.end()) {
        auto entry = find_active_run(cached->second);
        if (entry && (*entry)->meta.run_name == run_name &&
            (*entry)->meta.experiment_id == experiment_id) {
            if (read_file((*entry)->dir / "tags" / kTrainingJobTag).value_or("") == training_job) {
                existing = cached->second;
            }
        } else {
            run_by_name_.erase(cached);
        }
    }
    sdk::StringPairs run_tags = tags;
    std::optional<std::int64_t> new_attempt;
    if (!existing) {
        const std::vector<NamedRun> runs = runs_named(experiment_id, run_name);
        if (!runs.empty()) {
            const NamedRun& current = runs.front();
            run_by_name_[name_key] = current.run_id;
            const auto own = std::find_if(runs.begin(), runs.end(), [&](const NamedRun& r) {
                return r.training_job == training_job;
            });
            if (training_job.empty()) {
                existing = current.run_id;
            } else if (own != runs.end()) {
                existing = own->run_id;  // resumed or redelivered: the job keeps its run
            } else if (current.training_job.empty() &&
                       !holds_files(root_ / experiment_id / current.run_id / "params") &&
                       !holds_files(root_ / experiment_id / current.run_id / "metrics")) {
                existing = current.run_id;  // nothing logged yet: adopted by this training
                run_tags.emplace_back(kAttemptTag, std::to_string(current.attempt));
            } else {
                // An earlier training's run: params are immutable and its metric steps would
                // repeat, so this training gets a run of its own.
                new_attempt = current.attempt + 1;  // runs are sorted: no higher attempt exists
            }
        }
    }
    if (existing) {
        auto entry = find_active_run(*existing);
        if (!entry) {
            return entry.error();
        }
        if (auto status = write_tags(**entry, run_tags); !status) {
            return error_of(status);
        }
        // A training job taking its run (resumed, redelivered, or adopting it) is running
        // again, as MLflow's start_run(run_id) makes it: metrics must not land in a run still
        // marked FAILED or FINISHED by an earlier end_run.
        RunMeta& meta = (*entry)->meta;
        if (!training_job.empty() &&
            (meta.status != static_cast<int>(RunStatus::Running) || meta.end_time)) {
            meta.status = static_cast<int>(RunStatus::Running);
            meta.end_time.reset();
            if (auto status = write_run_meta(**entry); !status) {
                return error_of(status);
            }
        }
        return *existing;
    }
    if (new_attempt || !training_job.empty()) {
        run_tags.emplace_back(kAttemptTag, std::to_string(new_attempt.value_or(1)));
    }
    auto created = create_run(experiment_id, *experiment, run_name, run_tags);
    if (created) {
        run_by_name_[name_key] = *created;  // the newest attempt is the current run
    }
    return created;
}

sdk::Result<std::string> FileStore::create_run(const std::string& experiment_id,
                                               const ExperimentMeta& experiment,
                                               const std::string& run_name,
                                               const sdk::StringPairs& tags) {
    // Folders and tags first, meta.yaml last, so a half-made run stays invisible.
    const std::string run_id = new_run_id();
    const fs::path dir = root_ / experiment_id / run_id;
    bool created = false;
    if (auto status = make_dir(dir, created); !status) {
        return error_of(status);
    }
    if (!created) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          "mlflow: run folder '" + dir.string() + "' already exists"};
    }
    for (const char* folder : {"metrics", "params", "artifacts", "tags"}) {
        if (auto status = make_dir(dir / folder, created); !status) {
            return error_of(status);
        }
    }
    RunEntry entry;
    entry.dir = dir;
    RunMeta& meta = entry.meta;
    meta.run_id = run_id;
    meta.experiment_id = experiment_id;
    meta.run_name = run_name;
    std::string location = experiment.artifact_location;
    while (!location.empty() && location.back() == '/') {
        location.pop_back();
    }
    meta.artifact_uri = location + "/" + run_id + "/artifacts";
    meta.user_id = user_;
    meta.start_time = now_ms();
    // The tags MLflow's client sets on a new run, unless the caller gave its own.
    sdk::StringPairs all_tags = {{kRunNameTag, run_name},
                                 {"mlflow.user", user_},
                                 {"mlflow.source.name", "synergos"},
                                 {"mlflow.source.type", "LOCAL"}};
    for (const auto& tag : tags) {
        auto same = std::find_if(all_tags.begin(), all_tags.end(),
                                 [&](const auto& t) { return t.first == tag.first; });
        if (same != all_tags.end()) {
            same->second = tag.second;
        } else {
            all_tags.push_back(tag);
        }
    }
    if (auto status = write_tags(entry, all_tags); !status) {
        return error_of(status);
    }
    for (const char* folder : {"metrics", "params", "artifacts", "tags"}) {
        if (auto status = sync_dir(dir / folder); !status) {
            return error_of(status);
        }
    }
    if (auto status = write_run_meta(entry); !status) {
        return error_of(status);
    }
    if (auto status = sync_dir(root_ / experiment_id); !status) {
        return error_of(status);
    }
    runs_[run_id] = std::move(entry);
    return run_id;
}

sdk::Status FileStore::log_params(const std::string& run_id, const sdk::StringPairs& params,
                                  std::vector<std::string>& refused) {
    auto entry = find_active_run(run_id);
    if (!entry) {
        return entry.error();
    }
    const fs::path base = (*entry)->dir / "params";
    // Each entry stands on its own: a bad one is refused and named, the others are written, so
    // one odd key does not cost the rest of the batch.
    const std::size_t refused_before = refused.size();
    std::map<std::string, std::string> first_value;
    std::set<std::string> ambiguous;  // keys given twice with different values
    for (const auto& [key, value] : params) {
        auto [it, inserted] = first_value.try_emplace(key, value);
        if (!inserted && it->second != value) {
            ambiguous.insert(key);
        }
    }
    std::vector<const std::pair<std::string, std::string>*> to_write;
    std::set<std::string> seen;
    for (const auto& param : params) {
        const auto& [key, value] = param;
        if (!seen.insert(key).second) {
            continue;  // the same value again, or an ambiguous key already refused
        }
        if (ambiguous.count(key) != 0) {
            refused.push_back("mlflow: param '" + key +
                              "' appears twice in one call with different values");
            continue;
        }
        if (auto status = validate_key("param", key); !status) {
            refused.push_back(status.message());
            continue;
        }
        if (auto status = validate_value("param", key, value, kMaxParamValueLength); !status) {
            refused.push_back(status.message());
            continue;
        }
        if (auto status = check_key_path("param", base, key); !status) {
            refused.push_back(status.message());
            continue;
        }
        auto current = read_file(base / key);
        if (current) {
            if (*current != value) {
                refused.push_back("mlflow: param '" + key + "' of run '" + run_id +
                                  "' was already logged with value '" + *current +
                                  "'; changing param values is not allowed (new value '" +
                                  value + "')");
            }
            continue;  // same value: nothing to do
        }
        if (current.error().code != sdk::ErrorCode::NotFound) {
            return current.error();
        }
        to_write.push_back(&param);
    }
    if (to_write.empty() && refused.size() > refused_before) {
        return all_refused("params", {refused.begin() + static_cast<std::ptrdiff_t>(refused_before),
                                      refused.end()});
    }
    for (const auto* param : to_write) {
        const fs::path path = base / param->first;
        if (auto status = make_dirs(path.parent_path()); !status) {
            return status;
        }
        if (auto status = write_file_atomic(path, param->second, (*entry)->dir); !status) {
            return status;
        }
    }
    return sdk::Status::ok();
}

sdk::Status FileStore::log_metrics(const std::string& run_id,
                                   const std::vector<sdk::MetricPoint>& metrics,
                                   std::vector<std::string>& refused) {
    auto entry = find_active_run(run_id);
    if (!entry) {
        return entry.error();
    }
    const fs::path base = (*entry)->dir / "metrics";
    const std::int64_t now = now_ms();
    // One text per key, lines in call order. A refused point is named and skipped; the others
    // are still written, so one bad name does not cost a round's every metric.
    const std::size_t refused_before = refused.size();
    std::map<std::string, std::string> lines;
    // refused key -> (its message in `refused`, points dropped)
    std::map<std::string, std::pair<std::size_t, std::size_t>> bad_keys;
    std::vector<std::string> order;
    for (const auto& point : metrics) {
        if (auto bad = bad_keys.find(point.key); bad != bad_keys.end()) {
            ++bad->second.second;
            continue;
        }
        auto it = lines.find(point.key);
        if (it == lines.end()) {
            sdk::Status status = validate_key("metric", point.key);
            if (status) {
                status = check_key_path("metric", base, point.key);
            }
            if (!status) {
                bad_keys.emplace(point.key, std::make_pair(refused.size(), std::size_t{1}));
                refused.push_back(status.message());
                continue;
            }
            it = lines.emplace(point.key, std::string()).first;
            order.push_back(point.key);
        }
        if (point.timestamp_ms < 0) {
            refused.push_back("mlflow: metric '" + point.key + "' has a negative timestamp " +
                              std::to_string(point.timestamp_ms) + " (step " +
                              std::to_string(point.step) + ")");
            continue;
        }
        // timestamp 0 is the SDK's "unset": stamp it now.
        const std::int64_t timestamp = point.timestamp_ms == 0 ? now : point.timestamp_ms;
        it->second += std::to_string(timestamp) + " " + python_float_repr(point.value) + " " +
                      std::to_string(point.step) + "\n";
    }
    for (const auto& [key, bad] : bad_keys) {
        if (bad.second > 1) {
            refused[bad.first] += " (" + std::to_string(bad.second) + " points)";
        }
    }
    const bool any_line = std::any_of(lines.begin(), lines.end(),
                                      [](const auto& item) { return !item.second.empty(); });
    if (!any_line && refused.size() > refused_before) {
        return all_refused("metric points",
                           {refused.begin() + static_cast<std::ptrdiff_t>(refused_before),
                            refused.end()});
    }
    for (const std::string& key : order) {
        const std::string& text = lines[key];
        if (text.empty()) {
            continue;  // every point of this key was refused
        }
        const fs::path path = base / key;
        if (key.find('/') != std::string::npos) {
            if (auto status = make_dirs(path.parent_path()); !status) {
                return status;
            }
        }
        if (checked_metric_files_.insert(path.string()).second) {
            if (auto status = repair_torn_tail(path); !status) {
                checked_metric_files_.erase(path.string());
                return status;
            }
        }
        if (auto status = append_file(path, text, sync_metrics_); !status) {
            // append_file cuts a failed append back off; should that fail too, the next
            // append must look at the tail again rather than continue a torn line.
            checked_metric_files_.erase(path.string());
            return status;
        }
    }
    return sdk::Status::ok();
}

sdk::Status FileStore::set_tags(const std::string& run_id, const sdk::StringPairs& tags) {
    auto entry = find_active_run(run_id);
    if (!entry) {
        return entry.error();
    }
    const fs::path base = (*entry)->dir / "tags";
    std::optional<std::string> new_name;
    for (const auto& [key, value] : tags) {
        if (auto status = validate_key("tag", key); !status) {
            return status;
        }
        if (auto status = validate_value("tag", key, value, kMaxTagValueLength); !status) {
            return status;
        }
        if (auto status = check_key_path("tag", base, key); !status) {
            return status;
        }
        if (key == kRunNameTag) {
            if (value.empty()) {
                return invalid("tag mlflow.runName must not be empty");
            }
            new_name = value;
        }
    }
    if (auto status = write_tags(**entry, tags); !status) {
        return status;
    }
    if (new_name && *new_name != (*entry)->meta.run_name) {
        // MLflow keeps meta.yaml's run_name in step with the tag.
        const std::string old_name = (*entry)->meta.run_name;
        (*entry)->meta.run_name = *new_name;
        if (auto status = write_run_meta(**entry); !status) {
            return status;
        }
        run_by_name_.erase({(*entry)->meta.experiment_id, old_name});
        run_by_name_[{(*entry)->meta.experiment_id, *new_name}] = run_id;
    }
    return sdk::Status::ok();
}

sdk::Status FileStore::log_artifact(const std::string& run_id, const std::string& local_path,
                                    const std::string& artifact_path) {
    auto entry = find_active_run(run_id);
    if (!entry) {
        return entry.error();
    }
    if (!artifact_path.empty()) {
        const std::string norm = posix_normpath(artifact_path);
        if (norm != artifact_path || norm.rfind("..", 0) == 0 || norm.front() == '/' ||
            norm == ".") {
            return invalid("artifact path '" + artifact_path +
                           "' must be a relative path without '.', '..' or doubled slashes");
        }
    }
    const auto artifacts = local_path_of_uri((*entry)->meta.artifact_uri);
    if (!artifacts) {
        return sdk::Status(sdk::ErrorCode::Unimplemented,
                           "mlflow: run '" + run_id + "' stores artifacts at '" +
                               (*entry)->meta.artifact_uri + "', which is not a local file URI");
    }
    const fs::path source(local_path);
    std::error_code ec;
    const auto source_status = fs::status(source, ec);
    if (ec || !fs::exists(source_status)) {
        return sdk::Status(sdk::ErrorCode::NotFound,
                           "mlflow: artifact source '" + local_path + "' does not exist");
    }
    fs::path destination = fs::path(*artifacts);
    if (!artifact_path.empty()) {
        destination /= artifact_path;
    }
    // A file lands under artifact_path with its own name (mlflow.log_artifact); a folder's
    // content lands under artifact_path (mlflow.log_artifacts).
    std::vector<std::pair<fs::path, fs::path>> copies;
    if (fs::is_directory(source_status)) {
        for (fs::recursive_directory_iterator it(source, ec), end; !ec && it != end;
             it.increment(ec)) {
            std::error_code type_ec;
            // Only real files: a symlink could point anywhere on the host.
            if (it->is_regular_file(type_ec) && !it->is_symlink(type_ec)) {
                copies.emplace_back(it->path(),
                                    destination / it->path().lexically_relative(source));
            }
        }
        if (ec) {
            return sdk::Status(sdk::ErrorCode::Internal, "mlflow: cannot read artifact folder '" +
                                                             local_path + "': " + ec.message());
        }
    } else if (fs::is_regular_file(source_status)) {
        copies.emplace_back(source, destination / source.filename());
    } else {
        return invalid("artifact source '" + local_path + "' is neither a file nor a folder");
    }
    // Stage in the run folder when the artifacts live below it (the default), so an
    // interrupted copy leaves no stray file in the artifact view; else next to the target, on
    // the same filesystem as the rename needs.
    const fs::path artifacts_root = fs::path(*artifacts).lexically_normal();
    const auto relative = artifacts_root.lexically_relative((*entry)->dir);
    const bool is_inside_run = !relative.empty() && *relative.begin() != "..";
    std::set<fs::path> folders;
    for (const auto& [from, to] : copies) {
        if (folders.insert(to.parent_path()).second) {
            if (auto status = make_dirs(to.parent_path()); !status) {
                return status;
            }
        }
        const fs::path staging = is_inside_run ? (*entry)->dir : to.parent_path();
        if (auto status = copy_file_atomic(from, to, staging); !status) {
            return status;
        }
    }
    return sdk::Status::ok();
}

sdk::Status FileStore::end_run(const std::string& run_id, const std::string& status_text) {
    const auto status = parse_run_status(status_text);
    if (!status || *status == RunStatus::Running || *status == RunStatus::Scheduled) {
        return invalid("unknown end status '" + status_text +
                       "' (expected FINISHED, FAILED or KILLED)");
    }
    auto entry = find_active_run(run_id);
    if (!entry) {
        return entry.error();
    }
    (*entry)->meta.status = static_cast<int>(*status);
    (*entry)->meta.end_time = now_ms();
    return write_run_meta(**entry);
}

}  // namespace synergos::plugins::mlflow
