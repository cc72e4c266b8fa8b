// SPDX-License-Identifier: Apache-2.0
// PluginLoader::validate_options: the config's textual options against the descriptor's table.
#include <synergos/core/plugin/loader.hpp>

#include <map>
#include <string>
#include <vector>

#include "error_text.hpp"
#include "option_values.hpp"

namespace synergos::core {

sdk::Result<sdk::Options> PluginLoader::validate_options(const PluginLibrary& library,
                                                         const PluginRequest& request) {
    using plugin_detail::join;
    using plugin_detail::sanitize;
    const PluginInfo& info = library.info();
    const std::vector<OptionInfo>& table = info.option_info;
    auto find_spec = [&table](const std::string& key) -> const OptionInfo* {
        for (const auto& option : table) {
            if (option.key == key) {
                return &option;
            }
        }
        return nullptr;
    };

    std::vector<std::string> unknown;
    for (const auto& [key, value] : request.options) {
        if (find_spec(key) == nullptr) {
            unknown.push_back("'" + sanitize(key, 64) + "'");
        }
    }
    if (!unknown.empty()) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          library.error_prefix() + ": unknown option" +
                              (unknown.size() > 1 ? "s " : " ") + join(unknown) +
                              "; valid options: " + join(info.option_keys)};
    }

    std::map<std::string, std::string> values;
    std::vector<std::string> missing;
    for (const auto& option : table) {
        auto given = request.options.find(option.key);
        const bool is_given = given != request.options.end();
        if (!is_given && !option.default_value) {
            if (option.required) {
                missing.push_back("'" + option.key + "' (" + sdk::to_string(option.type) + ")");
            }
            continue;
        }
        const std::string& text = is_given ? given->second : *option.default_value;
        auto value = plugin_detail::normalise_option_value(option.type, text);
        if (!value) {
            // Defaults were checked at open(); this is a configured value.
            return sdk::Error{sdk::ErrorCode::InvalidArgument,
                              library.error_prefix() + ": option '" + option.key + "' expects " +
                                  sdk::to_string(option.type) + ", found '" +
                                  (option.secret ? std::string("***") : sanitize(text)) + "'"};
        }
        values.emplace(option.key, std::move(*value));
    }
    if (!missing.empty()) {
        return sdk::Error{sdk::ErrorCode::InvalidArgument,
                          library.error_prefix() + ": missing required option" +
                              (missing.size() > 1 ? "s " : " ") + join(missing)};
    }
    return sdk::Options(std::move(values));
}

}  // namespace synergos::core
