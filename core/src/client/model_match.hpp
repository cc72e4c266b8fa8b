// SPDX-License-Identifier: Apache-2.0
#pragma once
// Internal to the client: does a job file's model still match the stored experiment's?

#include <cstddef>

#include <nlohmann/json.hpp>

namespace synergos::core::client {

using nlohmann::json;

/// A model's layers as the store shows them: is_input, l_type, structure and activation.
inline json stored_shape(const json& model) {
    if (!model.is_array()) {
        return model;
    }
    json out = json::array();
    for (const auto& layer : model) {
        if (!layer.is_object()) {
            out.push_back(layer);
            continue;
        }
        json l = json::object();
        for (const char* k : {"is_input", "l_type", "structure", "activation"}) {
            l[k] = layer.contains(k) ? layer[k] : json();
        }
        out.push_back(std::move(l));
    }
    return out;
}

/// Whether the stored model is the job file's model, allowing (when `fitted`: auto_align and
/// auto_fix on) exactly what alignment's auto_fix sets (plugins/ttp/align auto_fix_model): the
/// first layer's in_features when that layer is Linear, the last Linear layer's out_features,
/// and its activation when the stored one is softmax over more than two outputs.
inline bool same_model(const json& stored_model, const json& file_model, bool fitted) {
    json stored = stored_shape(stored_model);
    json file = stored_shape(file_model);
    if (!fitted || !stored.is_array() || !file.is_array() || stored.size() != file.size()) {
        return stored == file;
    }
    const auto linear = [](const json& l) { return l.is_object() && l["l_type"] == "Linear"; };
    const auto drop = [](json& layer, const char* field) {
        if (layer["structure"].is_object()) {
            layer["structure"].erase(field);
        }
    };
    if (!stored.empty() && linear(stored.front()) && linear(file.front())) {
        drop(stored.front(), "in_features");
        drop(file.front(), "in_features");
    }
    for (std::size_t i = stored.size(); i-- > 0;) {
        if (linear(stored[i]) && linear(file[i])) {
            const json& out = stored[i]["structure"].is_object() ? stored[i]["structure"].value("out_features", json())
                                                                 : json();
            if (stored[i]["activation"] == "softmax" && out.is_number() && out.get<double>() > 2) {
                stored[i]["activation"] = file[i]["activation"];
            }
            drop(stored[i], "out_features");
            drop(file[i], "out_features");
            break;
        }
    }
    return stored == file;
}

}  // namespace synergos::core::client
