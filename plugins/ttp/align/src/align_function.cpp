// SPDX-License-Identifier: Apache-2.0
#include "align_function.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "ttp_common.hpp"

namespace synergos::plugins::align {

using ttp::json;

namespace {

const char* const kMetas[] = {"train", "evaluate", "predict"};

bool numeric_suffix(const std::string& label, double& value) {
    const std::string prefix = "target_";
    if (label.rfind(prefix, 0) != 0 || label.size() == prefix.size()) {
        return false;
    }
    try {
        std::size_t used = 0;
        value = std::stod(label.substr(prefix.size()), &used);
        // Finite only: NaN breaks the ordering std::sort needs ("target_nan" stays a name).
        return used == label.size() - prefix.size() && std::isfinite(value);
    } catch (...) {
        return false;
    }
}

std::vector<std::string> names_of(const json& headers, const char* meta, const char* axis) {
    std::vector<std::string> out;
    if (headers.contains(meta) && headers[meta].is_object() && headers[meta].contains(axis) &&
        headers[meta][axis].is_array()) {
        for (const auto& v : headers[meta][axis]) {
            if (v.is_string()) {
                out.push_back(v.get<std::string>());
            }
        }
    }
    return out;
}

std::vector<int> spacers(const std::vector<std::string>& superset, const std::vector<std::string>& have) {
    std::set<std::string> present(have.begin(), have.end());
    std::vector<int> out;
    for (std::size_t i = 0; i < superset.size(); ++i) {
        if (!present.count(superset[i])) {
            out.push_back(static_cast<int>(i));
        }
    }
    return out;
}

}  // namespace

std::vector<std::string> sort_labels(std::vector<std::string> labels) {
    std::vector<std::pair<double, std::string>> numeric;
    for (const auto& l : labels) {
        double v = 0;
        if (!numeric_suffix(l, v)) {
            std::sort(labels.begin(), labels.end());
            return labels;
        }
        numeric.emplace_back(v, l);
    }
    std::sort(numeric.begin(), numeric.end());
    std::vector<std::string> out;
    for (auto& [v, l] : numeric) {
        out.push_back(std::move(l));
    }
    return out;
}

json auto_fix_model(json model, std::size_t x_count, std::size_t y_count) {
    if (!model.is_array() || model.empty()) {
        return model;
    }
    json& first = model.front();
    if (x_count > 0 && first.is_object() && first.value("l_type", "") == "Linear" && first.contains("structure")) {
        first["structure"]["in_features"] = x_count;
    }
    // The output layer is the last Linear; layers after it (Flatten, Dropout...) keep their shape.
    for (auto it = model.rbegin(); it != model.rend(); ++it) {
        if (it->is_object() && it->value("l_type", "") == "Linear" && it->contains("structure")) {
            if (y_count > 2) {
                (*it)["structure"]["out_features"] = y_count;
                (*it)["activation"] = "softmax";
            } else if (y_count > 0) {
                (*it)["structure"]["out_features"] = 1;
            }
            break;
        }
    }
    return model;
}

AlignFunction::AlignFunction(sdk::HostContext& host, const sdk::Options& options)
    : host_(host),
      poll_timeout_ms_(ttp::duration_option(options, "align", "poll_timeout_ms", 600000, ttp::kMinCallTimeoutMs,
                                            ttp::kMaxCallTimeoutMs)) {}

sdk::Result<std::string> AlignFunction::execute(sdk::JobContext& ctx, std::string_view job_json) noexcept {
    try {
        auto job = ttp::parse_job(job_json, 2);
        if (!job) {
            return job.error();
        }
        const json& params = job->parameters;
        const std::string action = params.value("action", "classify");
        const bool auto_align = params.value("auto_align", true);
        const bool auto_fix = params.value("auto_fix", true);
        const auto& nodes = ctx.nodes();
        if (nodes.empty()) {
            return sdk::Error{sdk::ErrorCode::FailedPrecondition, "grid " + std::to_string(ctx.grid()) + " has no workers"};
        }

        if (ctx.is_cancelled()) {
            return sdk::Error{sdk::ErrorCode::Cancelled, "stopped before the workers were polled"};
        }
        const std::string route = "/v1/projects/" + job->collab() + "/" + job->project() + "/poll";
        std::vector<sdk::WorkerRequest> requests;
        for (const auto& node : nodes) {
            auto tags = ttp::participant_tags(params, node.participant_id);
            if (!tags) {
                return tags.error();
            }
            sdk::WorkerRequest req;
            req.path = route;
            req.json = json{{"action", action}, {"tags", *tags}}.dump();
            req.timeout = std::chrono::milliseconds(poll_timeout_ms_);
            requests.push_back(std::move(req));
        }
        std::vector<json> polled(nodes.size());
        sdk::Status failure;
        ttp::fan_out(ctx.workers(), nodes, requests, [&](std::size_t i, sdk::Result<sdk::WorkerReply>&& reply) {
            auto body = ttp::reply_json(reply, nodes[i], route);
            if (!body) {
                if (failure) {
                    failure = sdk::Status(body.error());
                }
                return;
            }
            polled[i] = std::move(*body);
        });
        if (!failure) {
            return failure.error();
        }

        std::set<std::string> x_union;
        std::set<std::string> y_union;
        for (const auto& p : polled) {
            const json headers = p.value("headers", json::object());
            for (const char* meta : kMetas) {
                for (auto& n : names_of(headers, meta, "X")) {
                    x_union.insert(n);
                }
                for (auto& n : names_of(headers, meta, "y")) {
                    y_union.insert(n);
                }
            }
        }
        std::vector<std::string> x_superset(x_union.begin(), x_union.end());  // byte order, as Python sorts
        std::vector<std::string> y_superset = sort_labels({y_union.begin(), y_union.end()});
        if (y_superset.empty()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument, "no worker reported any label column ('target')"};
        }

        // Federation-wide min-max bounds of numeric features, from the participants' training
        // split summaries (ranges only, never rows): every worker then scales alike, where the
        // original scaled each split by its own range.
        json scaling = json::object();
        const std::set<std::string> x_names(x_superset.begin(), x_superset.end());
        for (const auto& p : polled) {
            const json train_meta = p.value("metadata", json::object()).value("train", json::object());
            const json columns = train_meta.value("columns", json::object());
            if (!columns.is_object()) {
                continue;
            }
            for (auto it = columns.begin(); it != columns.end(); ++it) {
                const json& summary = it.value();
                if (!x_names.count(it.key()) || !summary.is_object() || !summary.contains("min") ||
                    !summary.contains("max") || !summary["min"].is_number() || !summary["max"].is_number()) {
                    continue;
                }
                const double lo = summary["min"].get<double>();
                const double hi = summary["max"].get<double>();
                if (!scaling.contains(it.key())) {
                    scaling[it.key()] = json::array({lo, hi});
                } else {
                    scaling[it.key()][0] = std::min(scaling[it.key()][0].get<double>(), lo);
                    scaling[it.key()][1] = std::max(scaling[it.key()][1].get<double>(), hi);
                }
            }
        }

        json out = json::object();
        out["superset"] = auto_align ? json{{"X", x_superset}, {"y", y_superset}, {"scaling", scaling}} : json(nullptr);
        out["spacers"] = json::object();
        out["participants"] = json::object();
        for (std::size_t i = 0; i < nodes.size(); ++i) {
            const json headers = polled[i].value("headers", json::object());
            json per_meta = json::object();
            for (const char* meta : kMetas) {
                if (!auto_align || !headers.contains(meta)) {
                    per_meta[meta] = json{{"X", json::array()}, {"y", json::array()}};
                    continue;
                }
                per_meta[meta] = json{{"X", spacers(x_superset, names_of(headers, meta, "X"))},
                                      {"y", spacers(y_superset, names_of(headers, meta, "y"))}};
            }
            out["spacers"][nodes[i].participant_id] = per_meta;
            out["participants"][nodes[i].participant_id] =
                json{{"schemas", polled[i].value("schemas", json::object())},
                     {"metadata", polled[i].value("metadata", json::object())}};
        }
        out["experiments"] = json::array();
        if (auto_align && auto_fix) {
            for (const auto& expt : params.value("experiments", json::array())) {
                if (!expt.is_object() || !expt.contains("model")) {
                    continue;
                }
                const std::string expt_id = expt.contains("key") ? expt["key"].value("expt_id", expt.value("expt_id", ""))
                                                                 : expt.value("expt_id", "");
                if (expt_id.empty()) {
                    continue;
                }
                out["experiments"].push_back(
                    json{{"collab_id", job->collab()}, {"project_id", job->project()}, {"expt_id", expt_id},
                         {"updates", {{"model", auto_fix_model(expt["model"], x_superset.size(), y_superset.size())}}}});
            }
        }
        ctx.logger().info("features aligned",
                          ttp::log_fields({{"job_id", job->job_id}, {"participants", nodes.size()},
                                           {"features", x_superset.size()}, {"labels", y_superset.size()}}));
        return out.dump();
    } catch (const json::type_error& e) {
        // A field of the wrong type in the job or a worker's answer: another attempt reads the
        // same, so it is not retried.
        return sdk::Error{sdk::ErrorCode::InvalidArgument, std::string("align failed: ") + e.what()};
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal, std::string("align failed: ") + e.what()};
    }
}

sdk::Result<std::vector<sdk::Mutation>> AlignFunction::archive(sdk::ArchiveContext& ctx, std::string_view job_json,
                                                                std::string_view outputs_json) noexcept {
    try {
        auto job = ttp::parse_job(job_json, 2);
        if (!job) {
            return job.error();
        }
        auto out = ttp::parse_object(outputs_json, "align outputs");
        if (!out) {
            return out.error();
        }
        std::vector<sdk::Mutation> batch;
        const json superset = out->value("superset", json(nullptr));
        const json all_spacers = out->value("spacers", json::object());
        const json bases = job->parameters.value("basis", json::object());
        // A participant whose registration or tags changed while the job ran was polled on
        // data it no longer names: no alignment is archived and the job fails, naming it. (A
        // change between this read and the commit is caught where the alignment is used.)
        for (auto& [pid, metas] : all_spacers.items()) {
            if (!bases.is_object() || !bases.contains(pid)) {
                continue;  // a job submitted before bases were sent
            }
            const json& basis = bases[pid];
            const auto key = ttp::alignment_key(job->collab(), job->project(), pid);
            for (const auto& [kind, field] : {std::pair<const char*, const char*>{"Registration", "registration"},
                                              {"Tag", "tags"}}) {
                auto rec = ctx.storage().get(kind, key);
                if (!rec && rec.error().code != sdk::ErrorCode::NotFound) {
                    return rec.error();
                }
                json stored = rec ? json::parse(rec->document, nullptr, false) : json(nullptr);  // gone: changed
                json expected = basis.value(field, json(nullptr));
                if (std::string(field) == "tags") {
                    // Predict tags are not part of a basis (a predictions POST changes them).
                    for (json* doc : {&stored, &expected}) {
                        if (doc->is_object()) {
                            doc->erase("predict");
                        }
                    }
                }
                if (stored != expected) {
                    return sdk::Error{sdk::ErrorCode::FailedPrecondition,
                                      "the " + std::string(field) + " of participant '" + pid +
                                          "' changed while the alignment ran; POST the alignments again"};
                }
            }
        }
        // Under their registrations only: one deleted while the job ran gets no orphan
        // alignment (the job fails). Requires first, then the writes.
        for (auto& [pid, metas] : all_spacers.items()) {
            batch.push_back({sdk::WriteMode::Require, "Registration",
                             ttp::alignment_key(job->collab(), job->project(), pid), {}});
        }
        for (auto& [pid, metas] : all_spacers.items()) {
            json doc = metas;
            doc["superset"] = superset;
            if (bases.is_object() && bases.contains(pid)) {
                doc["basis"] = bases[pid];
            }
            batch.push_back({sdk::WriteMode::Upsert, "Alignment", ttp::alignment_key(job->collab(), job->project(), pid),
                             doc.dump()});
        }
        // The stored models are fixed to the superset's sizes, not the ones the job was
        // submitted with: a PUT of an experiment while the workers were polled would otherwise
        // be reverted. (Execute lists experiments only when it aligned, so the sizes are there.)
        const bool sized = superset.is_object() && superset.value("X", json()).is_array() &&
                           superset.value("y", json()).is_array();
        for (const auto& update : sized ? out->value("experiments", json::array()) : json::array()) {
            const std::string expt_id = update.value("expt_id", "");
            auto rec = ctx.storage().get("Experiment", ttp::experiment_key(job->collab(), job->project(), expt_id));
            if (!rec) {
                if (rec.error().code == sdk::ErrorCode::NotFound) {
                    continue;  // deleted since the job was submitted: nothing to fix
                }
                return rec.error();  // not read: the fix would be lost without a word
            }
            auto doc = ttp::parse_object(rec->document, "stored experiment '" + expt_id + "'");
            if (!doc) {
                return doc.error();
            }
            if (!doc->contains("model")) {
                continue;  // nothing to fix
            }
            (*doc)["model"] = auto_fix_model((*doc)["model"], superset["X"].size(), superset["y"].size());
            batch.push_back({sdk::WriteMode::Update, "Experiment", rec->key, doc->dump()});
        }
        return batch;
    } catch (const std::exception& e) {
        return sdk::Error{sdk::ErrorCode::Internal, std::string("align archival failed: ") + e.what()};
    }
}

}  // namespace synergos::plugins::align
