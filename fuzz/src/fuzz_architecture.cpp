// SPDX-License-Identifier: Apache-2.0
// The Synergos architecture list and run-argument parsers of the torch model plugin
// (plugins/model/torch/src/architecture.cpp, train_args.cpp), which the director runs on every
// experiment and run a client posts. Input: the architecture JSON, optionally followed by a line
// `%%` and the run arguments JSON. Every refusal must be a SpecError (the plugin turns it into
// InvalidArgument naming the layer); any other exception is a finding.

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include "architecture.hpp"
#include "fuzz_common.hpp"
#include "spec_error.hpp"
#include "train_args.hpp"

namespace {

namespace torch = synergos::plugins::torch;
using synergos::fuzz::check;
using synergos::fuzz::fail;

void architecture(std::string_view text) {
    try {
        const torch::Architecture layers = torch::parse_architecture(text);
        check(!layers.empty(), "an empty architecture was accepted");
        for (const auto& layer : layers) {
            const int dims = layer.spatial_dims();
            check(dims >= 0 && dims <= 2, "spatial_dims out of range");
            if (dims > 0) {
                check(layer.kernel_size.size() == static_cast<std::size_t>(dims),
                      "kernel_size does not match the spatial dimensions", layer.name);
            }
            (void)layer.has_parameters();
            check(!torch::layer_label(layer).empty(), "empty layer label");
        }
    } catch (const torch::SpecError& e) {
        check(e.what()[0] != '\0', "a SpecError without a message");
    } catch (const std::exception& e) {
        fail("parse_architecture threw something other than SpecError", e.what());
    }
}

void train_args(std::string_view text) {
    try {
        const torch::TrainArgs args = torch::parse_train_args(text);
        torch::require_training_fields(args);
    } catch (const torch::SpecError& e) {
        check(e.what()[0] != '\0', "a SpecError without a message");
    } catch (const std::exception& e) {
        fail("parse_train_args threw something other than SpecError", e.what());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto sections =
        synergos::fuzz::split_sections(synergos::fuzz::as_text(data, size), "\n%%\n");
    architecture(sections[0]);
    train_args(sections.size() > 1 ? sections[1] : sections[0]);
    return 0;
}
