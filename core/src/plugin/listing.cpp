// SPDX-License-Identifier: Apache-2.0
#include <synergos/core/plugin/listing.hpp>

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "error_text.hpp"

namespace synergos::core {
namespace {

std::string heading(const PluginInfo& info) {
    return std::string(sdk::kind_name(info.kind)) + "/" + info.name + " " + info.version + " (" +
           info.status + ")";
}

std::string render_text(const std::vector<PluginLoader::Discovered>& entries) {
    std::string out;
    std::string errors;
    for (const auto& entry : entries) {
        if (!entry.info) {
            errors += "error: " + entry.info.error().message + "\n";
            continue;
        }
        const PluginInfo& info = entry.info.value();
        out += heading(info) + " - " + info.description + "\n";
        out += "  file: " + info.file + "\n";
        out += "  vendor: " + info.vendor + "; ABI " + std::to_string(info.abi_major) + "." +
               std::to_string(info.abi_minor) + "\n";
        if (info.option_info.empty()) {
            out += "  options: none\n";
            continue;
        }
        out += "  options:\n";
        for (const auto& option : info.option_info) {
            out += "    " + option.key + " (" + sdk::to_string(option.type);
            if (option.required) {
                out += ", required";
            }
            if (option.default_value) {
                out += ", default '" + *option.default_value + "'";
            }
            if (option.secret) {
                out += ", secret";
            }
            out += "): " + option.description + "\n";
        }
    }
    if (out.empty() && errors.empty()) {
        return "no plugins found\n";
    }
    return out + errors;
}

std::string render_json(const std::vector<PluginLoader::Discovered>& entries) {
    using Json = nlohmann::ordered_json;
    Json plugins = Json::array();
    Json errors = Json::array();
    for (const auto& entry : entries) {
        if (!entry.info) {
            errors.push_back(Json{{"file", entry.file},
                                  {"code", sdk::to_string(entry.info.error().code)},
                                  {"message", entry.info.error().message}});
            continue;
        }
        const PluginInfo& info = entry.info.value();
        Json options = Json::array();
        for (const auto& option : info.option_info) {
            options.push_back(Json{
                {"key", option.key},
                {"type", sdk::to_string(option.type)},
                {"required", option.required},
                {"default", option.default_value ? Json(*option.default_value) : Json(nullptr)},
                {"description", option.description},
                {"secret", option.secret}});
        }
        plugins.push_back(Json{{"name", info.name},
                               {"kind", sdk::kind_name(info.kind)},
                               {"version", info.version},
                               {"status", info.status},
                               {"description", info.description},
                               {"vendor", info.vendor},
                               {"file", info.file},
                               {"abi", Json{{"major", info.abi_major}, {"minor", info.abi_minor}}},
                               {"fingerprint", info.fingerprint},
                               {"options", std::move(options)}});
    }
    Json doc{{"plugins", std::move(plugins)}, {"errors", std::move(errors)}};
    // Replace, not throw, on invalid UTF-8 coming from a plugin's strings.
    return doc.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

/// Escapes text for a markdown table cell.
std::string cell(const std::string& text) {
    std::string out;
    for (char c : text) {
        if (c == '|') {
            out += "\\|";
        } else {
            out.push_back(c);
        }
    }
    return out;
}

std::string render_markdown(const std::vector<PluginLoader::Discovered>& entries) {
    std::string out = "# Plugins\n";
    std::string errors;
    for (const auto& entry : entries) {
        if (!entry.info) {
            errors += "- `" + entry.file + "`: " + entry.info.error().message + "\n";
            continue;
        }
        const PluginInfo& info = entry.info.value();
        out += "\n## " + heading(info) + "\n\n";
        out += info.description + "\n\n";
        out += "File `" + info.file + "`, vendor " + info.vendor + ", ABI " +
               std::to_string(info.abi_major) + "." + std::to_string(info.abi_minor) + ".\n\n";
        if (info.option_info.empty()) {
            out += "No options.\n";
            continue;
        }
        out += "| Option | Type | Required | Default | Description |\n";
        out += "| --- | --- | --- | --- | --- |\n";
        for (const auto& option : info.option_info) {
            std::string description = cell(option.description);
            if (option.secret) {
                description += " (secret: redacted in logs)";
            }
            out += "| `" + cell(option.key) + "` | " + sdk::to_string(option.type) + " | " +
                   (option.required ? "yes" : "no") + " | " +
                   (option.default_value ? "`" + cell(*option.default_value) + "`"
                                         : std::string("-")) +
                   " | " + description + " |\n";
        }
    }
    if (!errors.empty()) {
        out += "\n## Refused files\n\n" + errors;
    }
    return out;
}

}  // namespace

bool is_listing_format(std::string_view format) {
    return format == "text" || format == "json" || format == "markdown";
}

std::string render_plugin_listing(const std::vector<PluginLoader::Discovered>& entries,
                                  std::string_view format) {
    if (format == "text") {
        return render_text(entries);
    }
    if (format == "json") {
        return render_json(entries);
    }
    if (format == "markdown") {
        return render_markdown(entries);
    }
    throw std::invalid_argument("unknown listing format '" + plugin_detail::sanitize(format) +
                                "'; valid formats: " + kListingFormats);
}

}  // namespace synergos::core
