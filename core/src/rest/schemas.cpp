// SPDX-License-Identifier: Apache-2.0
#include "synergos/core/rest/schemas.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

namespace synergos::core::rest {
namespace {

using Json = nlohmann::json;
using Check = std::optional<FieldError>;

bool is_integer(const Json& v) {
    if (v.is_number_integer()) {
        return true;
    }
    // JSON Schema counts 5.0 as an integer.
    return v.is_number_float() && std::isfinite(v.get<double>()) &&
           std::floor(v.get<double>()) == v.get<double>();
}

bool is_string_array(const Json& v) {
    if (!v.is_array()) {
        return false;
    }
    for (const auto& item : v) {
        if (!item.is_string()) {
            return false;
        }
    }
    return true;
}

Check fail(std::string field, std::string problem) {
    return FieldError{std::move(field), std::move(problem)};
}

const Json* find(const Json& doc, const char* name) {
    auto it = doc.find(name);
    return it == doc.end() ? nullptr : &*it;
}

/// {host: string|null, ports: {main: int|null, ...}, secure: bool|null}
Check check_connection_block(const Json& block, const std::string& name) {
    if (!block.is_object()) {
        return fail(name, "must be an object");
    }
    if (const Json* host = find(block, "host"); host && !host->is_null() && !host->is_string()) {
        return fail(name + ".host", "must be a string or null");
    }
    if (const Json* secure = find(block, "secure");
        secure && !secure->is_null() && !secure->is_boolean()) {
        return fail(name + ".secure", "must be a boolean or null");
    }
    if (const Json* ports = find(block, "ports")) {
        if (!ports->is_object()) {
            return fail(name + ".ports", "must be an object");
        }
        std::vector<const char*> required = {"main"};
        if (name == "logs") {
            required = {"main", "sysmetrics", "director", "ttp", "worker"};
        }
        for (const char* port : required) {
            if (find(*ports, port) == nullptr) {
                return fail(name + ".ports." + port, "is required");
            }
        }
        for (const auto& [port, value] : ports->items()) {
            if (!value.is_null() && !is_integer(value)) {
                return fail(name + ".ports." + port, "must be an integer or null");
            }
        }
    }
    return std::nullopt;
}

Check collaboration(const Json& doc) {
    for (const char* block : {"catalogue", "logs", "meter", "mlops", "mq"}) {
        if (const Json* b = find(doc, block); b && !b->is_null()) {
            if (auto e = check_connection_block(*b, block)) {
                return e;
            }
        }
    }
    return std::nullopt;
}

Check project(const Json& doc) {
    const Json* incentives = find(doc, "incentives");
    if (incentives == nullptr) {
        return fail("incentives", "is required");
    }
    if (!incentives->is_object()) {
        return fail("incentives", "must be an object");
    }
    if (const Json* action = find(doc, "action")) {
        if (!action->is_string() || (*action != "regress" && *action != "classify")) {
            return fail("action", "must be \"regress\" or \"classify\"");
        }
    }
    if (const Json* universe = find(doc, "universe_alignment");
        universe && !is_string_array(*universe)) {
        return fail("universe_alignment", "must be an array of strings");
    }
    return std::nullopt;
}

Check experiment(const Json& doc) {
    const Json* model = find(doc, "model");
    if (model == nullptr) {
        return fail("model", "is required");
    }
    if (!model->is_array()) {
        return fail("model", "must be an array of layers");
    }
    for (std::size_t i = 0; i < model->size(); ++i) {
        const Json& layer = (*model)[i];
        const std::string at = "model[" + std::to_string(i) + "]";
        if (!layer.is_object()) {
            return fail(at, "must be an object");
        }
        const Json* is_input = find(layer, "is_input");
        if (is_input == nullptr || !is_input->is_boolean()) {
            return fail(at + ".is_input", "is required and must be a boolean");
        }
        const Json* l_type = find(layer, "l_type");
        if (l_type == nullptr || !l_type->is_string()) {
            return fail(at + ".l_type", "is required and must be a string");
        }
        const Json* structure = find(layer, "structure");
        if (structure == nullptr || !structure->is_object()) {
            return fail(at + ".structure", "is required and must be an object");
        }
        const Json* activation = find(layer, "activation");
        if (activation == nullptr || !(activation->is_string() || activation->is_null())) {
            return fail(at + ".activation", "is required and must be a string or null");
        }
    }
    return std::nullopt;
}

Check run(const Json& doc) {
    static constexpr const char* kIntegers[] = {
        "input_size",           "output_size",  "batch_size",     "rounds",     "epochs",  "seed",
        "precision_fractional", "step_size_up", "step_size_down", "last_epoch", "patience"};
    static constexpr const char* kNumbers[] = {
        "lr",        "lr_decay", "weight_decay", "mu",    "l1_lambda",     "l2_lambda",
        "dampening", "base_lr",  "max_lr",       "gamma", "base_momentum", "max_momentum",
        "delta"};
    static constexpr const char* kBooleans[] = {"is_condensed", "use_CLR", "cycle_momentum",
                                                "cumulative_delta"};
    for (const char* f : kIntegers) {
        // null is the trainer's "none": a full batch, no local early stopping.
        const bool nullable = std::string_view(f) == "batch_size" || std::string_view(f) == "patience";
        if (const Json* v = find(doc, f); v && !is_integer(*v) && !(nullable && v->is_null())) {
            return fail(f, nullable ? "must be an integer or null" : "must be an integer");
        }
        if (const Json* v = find(doc, f); v && v->is_null()) {
            continue;
        }
        // The trainers read these as 32-bit ints (a seed as 64-bit, through a double): a larger
        // value was stored and answered, then trained as some other number or not at all.
        const bool seed = std::string_view(f) == "seed";
        const double limit = seed ? 9007199254740991.0 : 2147483647.0;
        if (const Json* v = find(doc, f); v && std::fabs(v->get<double>()) > limit) {
            return fail(f, seed ? "must be an integer between -9007199254740991 and 9007199254740991"
                                : "must be an integer between -2147483647 and 2147483647");
        }
    }
    for (const char* f : kNumbers) {
        if (const Json* v = find(doc, f); v && !v->is_number()) {
            return fail(f, "must be a number");
        }
    }
    for (const char* f : kBooleans) {
        if (const Json* v = find(doc, f); v && !v->is_boolean()) {
            return fail(f, "must be a boolean");
        }
    }
    // The aggregator is a plugin name, looked up when the job runs (in cluster mode only the TTPs
    // know which are active): here it must at least be one.
    if (const Json* a = find(doc, "algorithm")) {
        const std::string name = a->is_string() ? a->get<std::string>() : std::string();
        const bool valid = !name.empty() && name.size() <= 64 &&
                           std::all_of(name.begin(), name.end(), [](char c) {
                               return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-';
                           });
        if (!valid) {
            return fail("algorithm", "must be an aggregator name (letters, digits, '_' or '-', e.g. \"FedProx\")");
        }
    }
    // Values no training can run with: refused here rather than failing the job later.
    for (const char* f : {"rounds", "epochs", "batch_size"}) {
        if (const Json* v = find(doc, f); v && v->is_number() && v->get<double>() < 1) {
            return fail(f, "must be at least 1");
        }
    }
    for (const char* f : {"lr", "patience", "weight_decay", "mu", "lr_decay"}) {
        if (const Json* v = find(doc, f); v && v->is_number() && v->get<double>() < 0) {
            return fail(f, "must not be negative");
        }
    }
    // How many workers a round needs: a count (at least 1) or a fraction of the grid (0 to 1].
    // Anything else used to mean "every worker" without a word.
    if (const Json* q = find(doc, "quorum"); q && !q->is_null()) {
        const bool count = is_integer(*q) && q->get<double>() >= 1 && q->get<double>() <= 2147483647.0;
        const bool fraction = q->is_number_float() && q->get<double>() > 0 && q->get<double>() <= 1;
        if (!count && !fraction) {
            return fail("quorum", "must be a number of workers (1 or more) or a fraction of the grid "
                                  "(above 0, at most 1), e.g. 2 or 0.5");
        }
    }
    struct Enum {
        const char* field;
        std::vector<const char*> values;
    };
    // `none` (the original's schema allows it) leaves a loss per sample, which no training
    // can step on: refused here, not by the job.
    const Enum enums[] = {{"reduction", {"mean", "sum"}},
                          {"mode", {"triangular", "triangular2", "exp_range"}},
                          {"scale_mode", {"cycle", "iterations"}}};
    for (const auto& e : enums) {
        if (const Json* v = find(doc, e.field)) {
            bool ok = false;
            for (const char* allowed : e.values) {
                ok = ok || (v->is_string() && *v == allowed);
            }
            if (!ok) {
                std::string list;
                for (const char* allowed : e.values) {
                    list += (list.empty() ? "" : ", ") + std::string(allowed);
                }
                return fail(e.field, "must be one of " + list);
            }
        }
    }
    return std::nullopt;
}

Check participant(const Json& doc) {
    const Json* id = find(doc, "id");
    if (id == nullptr) {
        return fail("id", "is required");
    }
    if (!id->is_string()) {
        return fail("id", "must be a string");
    }
    if (auto problem = id_problem(id->get<std::string>())) {
        return fail("id", *problem);
    }
    if (const Json* c = find(doc, "category"); c && !c->is_null() && !is_string_array(*c)) {
        return fail("category", "must be an array of strings or null");
    }
    for (const char* f : {"summary", "phone", "email"}) {
        if (const Json* v = find(doc, f); v && !v->is_null() && !v->is_string()) {
            return fail(f, "must be a string or null");
        }
    }
    if (const Json* s = find(doc, "socials"); s && !s->is_null() && !s->is_object()) {
        return fail("socials", "must be an object or null");
    }
    return std::nullopt;
}

Check registration(const Json& doc) {
    const Json* role = find(doc, "role");
    if (role == nullptr) {
        return fail("role", "is required");
    }
    if (!role->is_string() || (*role != "host" && *role != "guest" && *role != "arbiter")) {
        return fail("role", "must be \"host\", \"guest\" or \"arbiter\"");
    }
    const Json* n_count = find(doc, "n_count");
    if (n_count == nullptr) {
        return fail("n_count", "is required");
    }
    if (!is_integer(*n_count) || n_count->get<double>() < 1 || n_count->get<double>() > 1024) {
        return fail("n_count", "must be an integer from 1 to 1024");
    }
    for (const auto& [key, value] : doc.items()) {
        if (key == "role" || key == "n_count") {
            continue;
        }
        if (key.find("node_") == std::string::npos) {
            return fail(key, "is not allowed (a registration has role, n_count and node_N)");
        }
        if (!value.is_object()) {
            return fail(key, "must be an object");
        }
        for (const auto& [field, v] : value.items()) {
            if (field == "host") {
                if (!v.is_string()) {
                    return fail(key + ".host", "must be a string");
                }
            } else if (field == "port" || field == "f_port") {
                if (!is_integer(v) || v.get<double>() < 0 || v.get<double>() > 65535) {
                    return fail(key + "." + field, "must be an integer port (0-65535)");
                }
            } else if (field == "log_msgs" || field == "verbose") {
                if (!v.is_boolean()) {
                    return fail(key + "." + field, "must be a boolean");
                }
            }
        }
    }
    const auto count = static_cast<int>(n_count->get<double>());
    for (int i = 0; i < count; ++i) {
        const std::string node = "node_" + std::to_string(i);
        if (find(doc, node.c_str()) == nullptr) {
            return fail(node, "is required (n_count is " + std::to_string(count) + ")");
        }
    }
    return std::nullopt;
}

Check tag(const Json& doc) {
    if (find(doc, "train") == nullptr) {
        return fail("train", "is required");
    }
    for (const char* f : {"train", "evaluate", "predict"}) {
        if (const Json* v = find(doc, f); v && !is_tag_list(*v)) {
            return fail(f, "must be an array of arrays of strings");
        }
    }
    for (const char* f : {"model", "hyperparameters"}) {
        if (const Json* v = find(doc, f); v && !is_string_array(*v)) {
            return fail(f, "must be an array of strings");
        }
    }
    return std::nullopt;
}

}  // namespace

std::optional<FieldError> validate_document(std::string_view kind, const nlohmann::json& doc) {
    if (!doc.is_object()) {
        return FieldError{"(body)", "must be a JSON object"};
    }
    if (kind == "Collaboration") {
        return collaboration(doc);
    }
    if (kind == "Project") {
        return project(doc);
    }
    if (kind == "Experiment") {
        return experiment(doc);
    }
    if (kind == "Run") {
        return run(doc);
    }
    if (kind == "Participant") {
        return participant(doc);
    }
    if (kind == "Registration") {
        return registration(doc);
    }
    if (kind == "Tag") {
        return tag(doc);
    }
    return std::nullopt;
}

bool is_tag_list(const Json& tags) {
    if (!tags.is_array()) {
        return false;
    }
    for (const auto& tag : tags) {
        if (!is_string_array(tag)) {
            return false;
        }
    }
    return true;
}

std::optional<std::string> id_problem(std::string_view id) {
    if (id.empty()) {
        return std::string("must not be empty");
    }
    if (id.size() > 128) {
        return std::string("must be at most 128 characters");
    }
    if (id == "." || id == "..") {
        return std::string("must not be '.' or '..'");
    }
    for (char c : id) {
        const auto u = static_cast<unsigned char>(c);
        if (std::isalnum(u) == 0 && c != '_' && c != '.' && c != ':' && c != '-') {
            return std::string("may contain only letters, digits and _ . : -");
        }
    }
    return std::nullopt;
}

}  // namespace synergos::core::rest
