// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/rest/record_store.hpp>

#include <algorithm>
#include <iterator>
#include <ctime>

namespace synergos::core::rest {
namespace {

using Json = nlohmann::json;

const std::vector<KindSpec>& kind_specs() {
    // Function-local: no dynamic initialisation at load time (STYLE H9).
    static const std::vector<KindSpec> kSpecs = {
        {"Collaboration",
         {"collab_id"},
         {"Project", "Experiment", "Run", "Registration", "Tag", "Model", "Validation",
          "Prediction"},
         {"Project", "Experiment", "Run", "Registration", "Tag", "Alignment", "Model", "Validation",
          "Prediction", "Job", "Optimization"},
         true},
        {"Project",
         {"collab_id", "project_id"},
         {"Experiment", "Run", "Registration", "Tag", "Model", "Validation", "Prediction"},
         {"Experiment", "Run", "Registration", "Tag", "Alignment", "Model", "Validation",
          "Prediction", "Job", "Optimization"},
         true},
        {"Experiment",
         {"collab_id", "project_id", "expt_id"},
         {"Run", "Model", "Validation", "Prediction"},
         {"Run", "Model", "Validation", "Prediction", "Optimization"},
         true},
        {"Run",
         {"collab_id", "project_id", "expt_id", "run_id"},
         {"Model", "Validation", "Prediction"},
         {"Model", "Validation", "Prediction"},
         true},
        {"Participant",
         {"participant_id"},
         {"Registration", "Tag"},
         {"Registration", "Tag", "Alignment", "Validation", "Prediction"},
         true},
        {"Registration",
         {"collab_id", "project_id", "participant_id"},
         {"Tag"},
         {"Tag", "Alignment"},
         true},
        {"Tag", {"collab_id", "project_id", "participant_id"}, {}, {"Alignment"}, false},
        {"Alignment", {"collab_id", "project_id", "participant_id"}, {}, {}, false},
        {"Model", {"collab_id", "project_id", "expt_id", "run_id"}, {}, {}, false},
        {"Validation",
         {"participant_id", "collab_id", "project_id", "expt_id", "run_id"},
         {},
         {},
         false},
        {"Prediction",
         {"participant_id", "collab_id", "project_id", "expt_id", "run_id"},
         {},
         {},
         false},
        {"MLFlow", {"collaboration", "project", "record", "name"}, {}, {}, false},
        {"Job", {"collab_id", "project_id", "job_id"}, {}, {}, false},
        // A hyper-parameter search's summary (the optimize function archives it).
        {"Optimization", {"collab_id", "project_id", "expt_id", "optim_id"}, {}, {}, false},
    };
    return kSpecs;
}

/// Keys of `structure` that the original experiment output model declares (sorted).
constexpr std::string_view kStructureKeys[] = {"activation",
                                               "add_bias_kv",
                                               "add_zero_attn",
                                               "affine",
                                               "align_corners",
                                               "alpha",
                                               "batch_first",
                                               "beta",
                                               "bias",
                                               "bidirectional",
                                               "blank",
                                               "ceil_mode",
                                               "count_include_pad",
                                               "cutoffs",
                                               "d_model",
                                               "device_ids",
                                               "dilation",
                                               "dim",
                                               "dim_feedforward",
                                               "div_value",
                                               "dropout",
                                               "elementwise_affine",
                                               "embed_dim",
                                               "embedding_dim",
                                               "end_dim",
                                               "eps",
                                               "full",
                                               "groups",
                                               "head_bias",
                                               "hidden_size",
                                               "ignore_index",
                                               "in1_features",
                                               "in2_features",
                                               "in_channels",
                                               "in_features",
                                               "init",
                                               "inplace",
                                               "input_size",
                                               "k",
                                               "kdim",
                                               "keepdim",
                                               "kernel_size",
                                               "lambd",
                                               "log_input",
                                               "lower",
                                               "margin",
                                               "max_norm",
                                               "max_val",
                                               "min_val",
                                               "mode",
                                               "momentum",
                                               "n_classes",
                                               "negative_slope",
                                               "nhead",
                                               "nonlinearity",
                                               "norm_type",
                                               "normalized_shape",
                                               "num_channels",
                                               "num_chunks",
                                               "num_decoder_layers",
                                               "num_embeddings",
                                               "num_encoder_layers",
                                               "num_features",
                                               "num_groups",
                                               "num_heads",
                                               "num_layers",
                                               "num_parameters",
                                               "out_channels",
                                               "out_features",
                                               "output_device",
                                               "output_padding",
                                               "output_ratio",
                                               "output_size",
                                               "p",
                                               "padding",
                                               "padding_idx",
                                               "padding_mode",
                                               "pos_weight",
                                               "reduction",
                                               "requires_grad",
                                               "return_indices",
                                               "scale_factor",
                                               "scale_grad_by_freq",
                                               "size",
                                               "size_average",
                                               "sparse",
                                               "start_dim",
                                               "stride",
                                               "swap",
                                               "threshold",
                                               "track_running_stats",
                                               "upper",
                                               "upscale_factor",
                                               "value",
                                               "vdim",
                                               "zero_infinity"};

bool is_structure_key(std::string_view key) {
    return std::find(std::begin(kStructureKeys), std::end(kStructureKeys), key) !=
           std::end(kStructureKeys);
}

constexpr std::string_view kRunOutputFields[] = {"input_size",
                                                 "output_size",
                                                 "is_condensed",
                                                 "rounds",
                                                 "epochs",
                                                 "batch_size",
                                                 "lr",
                                                 "lr_decay",
                                                 "weight_decay",
                                                 "seed",
                                                 "precision_fractional",
                                                 "use_CLR",
                                                 "mu",
                                                 "reduction",
                                                 "l1_lambda",
                                                 "l2_lambda",
                                                 "dampening",
                                                 "base_lr",
                                                 "max_lr",
                                                 "step_size_up",
                                                 "step_size_down",
                                                 "mode",
                                                 "gamma",
                                                 "scale_mode",
                                                 "cycle_momentum",
                                                 "base_momentum",
                                                 "max_momentum",
                                                 "last_epoch",
                                                 "patience",
                                                 "delta",
                                                 "cumulative_delta"};

/// flask-restx "skip none": omit null, missing and empty-object values.
void put(Json& out, const Json& doc, std::string_view name) {
    auto it = doc.find(name);
    if (it == doc.end() || it->is_null() || (it->is_object() && it->empty())) {
        return;
    }
    out[std::string(name)] = *it;
}

Json field_or_null(const Json& doc, std::string_view name) {
    auto it = doc.find(name);
    return it == doc.end() ? Json(nullptr) : *it;
}

Json as_string(const Json& value) {
    if (value.is_string() || value.is_null()) {
        return value;
    }
    return value.dump();
}

Json marshal_layer(const Json& layer) {
    if (!layer.is_object()) {
        return layer;
    }
    Json out = Json::object();
    out["is_input"] = field_or_null(layer, "is_input");
    out["l_type"] = field_or_null(layer, "l_type");
    Json structure = Json::object();
    if (auto it = layer.find("structure"); it != layer.end() && it->is_object()) {
        for (auto& [key, value] : it->items()) {
            if (is_structure_key(key)) {
                structure[key] = value;
            }
        }
    }
    out["structure"] = std::move(structure);
    out["activation"] = field_or_null(layer, "activation");
    return out;
}

Json marshal_artifact(const Json& block, std::initializer_list<std::string_view> fields) {
    Json out = Json::object();
    for (auto field : fields) {
        out[std::string(field)] = block.is_object() ? field_or_null(block, field) : Json(nullptr);
    }
    return out;
}

Json parse_document(const std::string& text) {
    Json doc = Json::parse(text, nullptr, false);
    return doc.is_object() ? doc : Json::object();
}

void marshal_fields(const std::string& kind, const Json& doc, Json& out) {
    if (kind == "Collaboration") {
        for (auto block : {"catalogue", "logs", "meter", "mlops", "mq"}) {
            put(out, doc, block);
        }
    } else if (kind == "Project") {
        put(out, doc, "action");
        put(out, doc, "incentives");
        put(out, doc, "universe_alignment");
        if (auto it = doc.find("start_at"); it != doc.end() && !it->is_null()) {
            out["start_at"] = as_string(*it);
        }
    } else if (kind == "Experiment") {
        if (auto it = doc.find("model"); it != doc.end() && it->is_array()) {
            Json layers = Json::array();
            for (const auto& layer : *it) {
                layers.push_back(marshal_layer(layer));
            }
            out["model"] = std::move(layers);
        }
    } else if (kind == "Run") {
        for (auto field : kRunOutputFields) {
            put(out, doc, field);
        }
    } else if (kind == "Participant") {
        for (auto field : {"id", "category", "summary", "phone", "email", "socials"}) {
            put(out, doc, field);
        }
    } else if (kind == "Registration") {
        put(out, doc, "role");
        put(out, doc, "n_count");
        for (auto& [key, value] : doc.items()) {
            if (key.rfind("node_", 0) == 0) {
                out[key] =
                    marshal_artifact(value, {"host", "port", "log_msgs", "verbose", "f_port"});
            }
        }
    } else if (kind == "Tag") {
        for (auto field : {"train", "evaluate", "predict", "model", "hyperparameters"}) {
            put(out, doc, field);
        }
    } else if (kind == "Alignment") {
        for (auto meta : {"train", "evaluate", "predict"}) {
            Json block = Json::object({{"X", Json::array()}, {"y", Json::array()}});
            if (auto it = doc.find(meta); it != doc.end() && it->is_object()) {
                for (auto axis : {"X", "y"}) {
                    if (auto a = it->find(axis); a != it->end() && !a->is_null()) {
                        block[axis] = *a;
                    }
                }
            }
            out[meta] = std::move(block);
        }
    } else if (kind == "Model") {
        for (auto& [key, value] : doc.items()) {
            if (key == "global" || key.rfind("local_", 0) == 0) {
                out[key] = marshal_artifact(value, {"origin", "path", "loss_history"});
            }
        }
    } else if (kind == "Validation" || kind == "Prediction") {
        for (auto meta : {"train", "evaluate", "predict"}) {
            if (auto it = doc.find(meta); it != doc.end() && it->is_object()) {
                Json stats = it->value("statistics", Json::object());
                out[meta] = Json{{"statistics", stats.is_null() ? Json::object() : stats},
                                 {"res_path", field_or_null(*it, "res_path")}};
            }
        }
    } else {
        for (auto& [key, value] : doc.items()) {
            out[key] = value;
        }
    }
}

Json output_key(const sdk::Record& record, const KindSpec* spec) {
    Json key = Json::object();
    if (spec == nullptr) {
        return RecordStore::key_json(record.key);
    }
    const bool drop_collab = record.kind == "Model" || record.kind == "Prediction";
    for (const auto& field : spec->key_fields) {
        if (drop_collab && field == "collab_id") {
            continue;  // the original's model and prediction output keys omit collab_id
        }
        Json value = nullptr;
        for (const auto& f : record.key) {
            if (f.name == field) {
                value = f.value;
            }
        }
        key[field] = value;
    }
    return key;
}

}  // namespace

const KindSpec* RecordStore::spec(std::string_view kind) noexcept {
    for (const auto& s : kind_specs()) {
        if (s.name == kind) {
            return &s;
        }
    }
    return nullptr;
}

sdk::Result<sdk::Key> RecordStore::make_key(std::string_view kind, const Params& params) {
    const KindSpec* s = spec(kind);
    if (s == nullptr) {
        return sdk::Error{sdk::ErrorCode::Internal,
                          "unknown record kind '" + std::string(kind) + "'"};
    }
    sdk::Key key;
    for (const auto& field : s->key_fields) {
        auto it = params.find(field);
        if (it == params.end()) {
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              "field '" + field + "' is required for " + s->name};
        }
        key.push_back({field, it->second});
    }
    return key;
}

sdk::Key RecordStore::partial_key(std::string_view kind, const Params& params) {
    sdk::Key key;
    if (const KindSpec* s = spec(kind)) {
        for (const auto& field : s->key_fields) {
            if (auto it = params.find(field); it != params.end()) {
                key.push_back({field, it->second});
            }
        }
    }
    return key;
}

nlohmann::json RecordStore::key_json(const sdk::Key& key) {
    Json out = Json::object();
    for (const auto& f : key) {
        out[f.name] = f.value;
    }
    return out;
}

sdk::Result<sdk::Record> RecordStore::get(std::string_view kind, const sdk::Key& key) {
    return backend_.get(std::string(kind), key);
}

sdk::Result<std::vector<sdk::Record>> RecordStore::list(std::string_view kind,
                                                        const sdk::Key& match) {
    return backend_.list(sdk::Query{std::string(kind), match, 0, 0});
}

sdk::Result<bool> RecordStore::exists(std::string_view kind, const sdk::Key& key) {
    auto got = get(kind, key);
    if (got) {
        return true;
    }
    if (got.error().code == sdk::ErrorCode::NotFound) {
        return false;
    }
    return got.error();
}

sdk::Result<Relations> RecordStore::relations_of(const sdk::Record& record) {
    Relations out;
    const KindSpec* s = spec(record.kind);
    if (s == nullptr) {
        return out;
    }
    for (const auto& related : s->relations) {
        auto records = list(related, record.key);
        if (!records) {
            return records.error();
        }
        out.emplace(related, std::move(*records));
    }
    return out;
}

Relations RecordStore::no_relations(std::string_view kind) {
    Relations out;
    if (const KindSpec* s = spec(kind)) {
        for (const auto& related : s->relations) {
            out.emplace(related, std::vector<sdk::Record>{});
        }
    }
    return out;
}

nlohmann::json RecordStore::marshal(const sdk::Record& record, const Relations* relations) {
    Json out = Json::object();
    marshal_fields(record.kind, parse_document(record.document), out);
    const KindSpec* s = spec(record.kind);
    out["doc_id"] = std::to_string(record.doc_id);
    out["kind"] = record.kind;
    out["key"] = output_key(record, s);
    if (relations != nullptr && s != nullptr && s->has_relations_field) {
        Json rel = Json::object();
        for (const auto& related : s->relations) {
            Json items = Json::array();
            if (auto it = relations->find(related); it != relations->end()) {
                for (const auto& r : it->second) {
                    items.push_back(marshal(r, nullptr));
                }
            }
            rel[related] = std::move(items);
        }
        out["relations"] = std::move(rel);
    }
    return out;
}

nlohmann::json RecordStore::raw(const sdk::Record& record, const Relations* relations) {
    Json out = parse_document(record.document);
    out["created_at"] = format_created_at(record.created_at_ms);
    out["doc_id"] = record.doc_id;
    out["kind"] = record.kind;
    out["key"] = key_json(record.key);
    if (relations != nullptr) {
        Json rel = Json::object();
        for (const auto& [kind, records] : *relations) {
            Json items = Json::array();
            for (const auto& r : records) {
                items.push_back(raw(r, nullptr));
            }
            rel[kind] = std::move(items);
        }
        out["relations"] = std::move(rel);
    }
    return out;
}

namespace {

/// The registration's `collaboration`, `project` and `participant` blocks (parents, without
/// their relations); a missing parent yields the declared empty shape rather than an error.
void add_registration_blocks(RecordStore& store, const sdk::Record& record, Json& out) {
    Params params;
    for (const auto& f : record.key) {
        params[f.name] = f.value;
    }
    auto load = [&](std::string_view kind) -> Json {
        auto key = RecordStore::make_key(kind, params);
        if (!key) {
            return Json::object();
        }
        auto got = store.get(kind, *key);
        return got ? parse_document(got->document) : Json::object();
    };
    const Json collab = load("Collaboration");
    Json c = Json::object();
    for (auto block : {"catalogue", "logs", "meter", "mlops", "mq"}) {
        auto it = collab.find(block);
        c[block] = (it != collab.end() && it->is_object()) ? *it : Json::object();
    }
    out["collaboration"] = std::move(c);
    const Json project = load("Project");
    out["project"] = Json{{"action", field_or_null(project, "action")},
                          {"incentives", project.value("incentives", Json::object())},
                          {"start_at", as_string(field_or_null(project, "start_at"))}};
    const Json participant = load("Participant");
    Json p = Json::object();
    for (auto field : {"id", "summary", "phone", "email", "socials"}) {
        p[field] = field_or_null(participant, field);
    }
    auto category = field_or_null(participant, "category");
    p["category"] = category.is_null() ? Json::array() : category;
    out["participant"] = std::move(p);
}

}  // namespace

sdk::Result<nlohmann::json> RecordStore::read(std::string_view kind, const sdk::Key& key) {
    auto record = get(kind, key);
    if (!record) {
        return record.error();
    }
    return read(*record);
}

sdk::Result<nlohmann::json> RecordStore::read(const sdk::Record& record) {
    auto rel = relations_of(record);
    if (!rel) {
        return rel.error();
    }
    Json out = marshal(record, &*rel);
    if (record.kind == "Registration") {
        add_registration_blocks(*this, record, out);
    }
    return out;
}

sdk::Result<nlohmann::json> RecordStore::read_list(std::string_view kind, const sdk::Key& match) {
    auto records = list(kind, match);
    if (!records) {
        return records.error();
    }
    Json out = Json::array();
    for (const auto& record : *records) {
        auto rel = relations_of(record);
        if (!rel) {
            return rel.error();
        }
        Json item = marshal(record, &*rel);
        if (record.kind == "Registration") {
            add_registration_blocks(*this, record, item);
        }
        out.push_back(std::move(item));
    }
    return out;
}

std::vector<sdk::Mutation> RecordStore::cascade_delete(std::string_view kind, const sdk::Key& key) {
    std::vector<sdk::Mutation> batch;
    if (const KindSpec* s = spec(kind)) {
        for (const auto& dependent : s->cascade) {
            batch.push_back({sdk::WriteMode::DeleteWhere, dependent, key, {}});
        }
    }
    batch.push_back({sdk::WriteMode::Delete, std::string(kind), key, {}});
    return batch;
}

std::string format_created_at(std::int64_t epoch_ms) {
    const std::time_t seconds = static_cast<std::time_t>(epoch_ms / 1000);
    std::tm tm{};
    gmtime_r(&seconds, &tm);
    char buffer[32];
    std::strftime(buffer, sizeof(buffer), "%Y-%m-%d %H:%M:%S N", &tm);
    return buffer;
}

}  // namespace synergos::core::rest
