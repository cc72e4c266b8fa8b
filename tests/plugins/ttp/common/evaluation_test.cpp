// SPDX-License-Identifier: Apache-2.0
// The evaluation archive (validate and predict): what its results must be written under.

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <synergos/sdk/testing/fake_host.hpp>

#include "evaluation.hpp"
#include "support/archive_context.hpp"

namespace {

namespace sdk = synergos::sdk;
using nlohmann::json;
using Fields = std::vector<std::pair<std::string, std::string>>;

Fields fields(const sdk::Key& key) {
    Fields out;
    for (const auto& f : key) {
        out.emplace_back(f.name, f.value);
    }
    return out;
}

}  // namespace

TEST_CASE("evaluation results are archived under their run and participant and a trial's under its "
          "experiment",
          "[unit][ttp]") {
    sdk::testing::FakeHost host;
    for (const synergos::plugins::ttp::EvaluationKind kind :
         {synergos::plugins::ttp::EvaluationKind{"validate", "evaluate", "Validation", false},
          synergos::plugins::ttp::EvaluationKind{"predict", "predict", "Prediction", false}}) {
        INFO(kind.process);
        synergos::plugins::ttp::EvaluationFunction fn(kind, host,
                                                      sdk::Options(std::map<std::string, std::string>{}));
        synergos::testing::NoStoreArchiveContext ctx;
        const json outputs = {
            {"w", {{kind.meta, {{"statistics", {{"accuracy", 0.5}}}, {"res_path", nullptr}}}}}};
        const auto archived = [&](const json& parameters) {
            const json job = {{"job_id", "j1"},
                              {"process", kind.process},
                              {"keys", {"c", "p", "e", "r"}},
                              {"grid", 0},
                              {"parameters", parameters}};
            auto batch = fn.archive(ctx, job.dump(), outputs.dump());
            INFO((batch ? std::string() : batch.error().message));
            REQUIRE(batch.has_value());
            REQUIRE(batch->size() == 3);
            CHECK(batch->at(0).mode == sdk::WriteMode::Require);
            CHECK(batch->at(1).mode == sdk::WriteMode::Require);
            CHECK(batch->at(1).kind == "Participant");
            CHECK(fields(batch->at(1).key) == Fields{{"participant_id", "w"}});
            CHECK(batch->at(2).kind == kind.record_kind);
            return batch->at(0);
        };
        // A run deleted while it was evaluated: the Require fails the archive, the job fails.
        const sdk::Mutation plain = archived(json::object());
        CHECK(plain.kind == "Run");
        CHECK(fields(plain.key) ==
              Fields{{"collab_id", "c"}, {"project_id", "p"}, {"expt_id", "e"}, {"run_id", "r"}});
        // An optimization's trial is validated before its Run record is written.
        const sdk::Mutation trial = archived({{"optimization", "opt-job"}});
        CHECK(trial.kind == "Experiment");
        CHECK(fields(trial.key) == Fields{{"collab_id", "c"}, {"project_id", "p"}, {"expt_id", "e"}});
    }
}
