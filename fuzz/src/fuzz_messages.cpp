// SPDX-License-Identifier: Apache-2.0
// Queue message decoding (core/src/jobs/messages.cpp): a job as a TTP receives it from its grid
// queue, and an event or result as the director receives it from the results queue. Any body is
// decoded as both; an accepted message must survive to_json -> from_json unchanged.

#include <cstddef>
#include <cstdint>
#include <string>

#include <synergos/core/jobs/messages.hpp>

#include "fuzz_common.hpp"

namespace {

namespace jobs = synergos::core::jobs;
using synergos::fuzz::check;

void job_round_trip(const std::string& body) {
    auto first = jobs::JobMessage::from_json(body);
    if (!first) {
        check(!first.error().message.empty(), "a refusal without a message");
        return;
    }
    const std::string encoded = first->to_json().dump();
    auto second = jobs::JobMessage::from_json(encoded);
    check(second.has_value(), "an encoded job does not decode", encoded);
    check(second->job_id == first->job_id && second->process == first->process &&
              second->keys == first->keys && second->grid == first->grid &&
              second->grids == first->grids && second->parameters == first->parameters &&
              second->attempt == first->attempt && second->max_attempts == first->max_attempts,
          "job round trip changed a field", encoded);
    (void)jobs::priority_of(first->process);
}

void result_round_trip(const std::string& body) {
    auto first = jobs::ResultMessage::from_json(body);
    if (!first) {
        check(!first.error().message.empty(), "a refusal without a message");
        return;
    }
    const std::string encoded = first->to_json().dump();
    auto second = jobs::ResultMessage::from_json(encoded);
    check(second.has_value(), "an encoded result does not decode", encoded);
    check(second->type == first->type && second->job_id == first->job_id &&
              second->process == first->process && second->filters == first->filters &&
              second->grid == first->grid && second->attempt == first->attempt &&
              second->ttp_id == first->ttp_id && second->outcome == first->outcome &&
              second->reason == first->reason && second->final == first->final &&
              second->outputs == first->outputs && second->progress == first->progress,
          "result round trip changed a field", encoded);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string body(synergos::fuzz::as_text(data, size));
    job_round_trip(body);
    result_round_trip(body);
    return 0;
}
