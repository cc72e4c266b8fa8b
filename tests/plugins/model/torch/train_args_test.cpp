// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <string>

#include "spec_error.hpp"
#include "train_args.hpp"

namespace {

using namespace synergos::plugins::torch;

std::string args_error(const std::string& json, bool training = false) {
    try {
        const auto args = parse_train_args(json);
        if (training) {
            require_training_fields(args);
        }
    } catch (const SpecError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("Run arguments default like the original's Arguments", "[unit][torch]") {
    const auto a = parse_train_args(R"({"rounds": 2, "algorithm": "FedProx", "unrelated": [1]})");
    CHECK_FALSE(a.batch_size.has_value());  // full batch
    CHECK(a.epochs == 100);
    CHECK(a.lr == 0.001);
    CHECK(a.lr_decay == 0.1);
    CHECK(a.mu == 0.1);
    CHECK(a.l1_lambda == 0.0);
    CHECK(a.l2_lambda == 0.0);
    CHECK(a.optimizer == OptimizerKind::Sgd);
    CHECK(a.criterion == CriterionKind::BceLoss);
    CHECK(a.scheduler == SchedulerKind::CyclicLr);
    CHECK(a.delta == 0.0);
    CHECK(a.patience == 10);
    CHECK(a.seed == 42);
    CHECK(a.round == 0);
    CHECK(a.cyclic.step_size_up == 2000.0);
    CHECK(a.cyclic.max_momentum == 0.9);
    CHECK(a.cyclic.base_momentum == 0.8);
    CHECK(a.cycles_momentum());
    CHECK(a.initial_momentum() == 0.9);  // CyclicLR starts SGD at max_momentum
}

TEST_CASE("Weight decay reaches the optimizer only without l2_lambda", "[unit][torch]") {
    CHECK(parse_train_args(R"({"weight_decay": 0.3})").effective_weight_decay() == 0.3);
    CHECK(parse_train_args(R"({"weight_decay": 0.3, "l2_lambda": 0.1})").effective_weight_decay() ==
          0.0);
    CHECK(parse_train_args(R"({"optimizer": "AdamW"})").effective_weight_decay() == 0.01);
    CHECK(
        parse_train_args(R"({"optimizer": "AdamW", "weight_decay": 0})").effective_weight_decay() ==
        0.0);
}

TEST_CASE("An empty or null lr_scheduler falls back to LambdaLR", "[unit][torch]") {
    CHECK(parse_train_args(R"({"lr_scheduler": ""})").scheduler == SchedulerKind::LambdaLr);
    CHECK(parse_train_args(R"({"lr_scheduler": null})").scheduler == SchedulerKind::LambdaLr);
    CHECK(parse_train_args(R"({"lr_scheduler": "StepLR"})").scheduler == SchedulerKind::StepLr);
    CHECK(parse_train_args(R"({"patience": null})").patience == std::nullopt);
    CHECK(parse_train_args(R"({"batch_size": null})").batch_size == std::nullopt);
}

TEST_CASE("Unknown optimizer, loss or scheduler is an error naming it", "[unit][torch]") {
    auto message = args_error(R"({"optimizer": "LBFGS"})");
    CHECK_THAT(message, Catch::Contains("'optimizer'"));
    CHECK_THAT(message, Catch::Contains("unknown optimizer 'LBFGS'"));
    CHECK_THAT(message, Catch::Contains("SGD, Adam, AdamW, RMSprop, Adagrad"));
    message = args_error(R"({"criterion": "HingeEmbeddingLoss"})");
    CHECK_THAT(message, Catch::Contains("unknown criterion 'HingeEmbeddingLoss'"));
    message = args_error(R"({"lr_scheduler": "OneCycleLR"})");
    CHECK_THAT(message, Catch::Contains("unknown lr_scheduler 'OneCycleLR'"));
}

TEST_CASE("Mistyped or out-of-range run fields are errors naming the field", "[unit][torch]") {
    struct Case {
        const char* json;
        const char* expected;
        bool training;
    };
    const auto c = GENERATE(
        Case{R"({"lr": "fast"})", "run field 'lr' must be a number", false},
        Case{R"({"lr": -1})", "run field 'lr' must not be negative", false},
        Case{R"({"lr": 1e308})", "run field 'lr' must be within the float32 range", false},
        Case{R"({"mu": 3.5e38})", "run field 'mu' must be within the float32 range", false},
        Case{R"({"eps": 0})", "run field 'eps' must be positive", false},
        Case{R"({"eps": 1e-50})", "run field 'eps' must be positive and at least 1.2e-38", false},
        Case{R"({"batch_size": 0})", "run field 'batch_size' must be at least 1", false},
        Case{R"({"epochs": 2.5})", "run field 'epochs' must be an integer", false},
        Case{R"({"mu": -0.1})", "run field 'mu' must not be negative", false},
        Case{R"({"momentum": 2})", "run field 'momentum' must be between 0.0 and 1.0", false},
        Case{R"({"betas": [0.9]})", "run field 'betas' must be a list of two numbers", false},
        Case{R"({"mode": "sawtooth"})", "run field 'mode'", false},
        Case{R"({"reduction": "none"})", "run field 'reduction'", false},
        Case{R"({"action": "cluster"})", "run field 'action'", false},
        Case{R"({"nesterov": true, "lr_scheduler": ""})", "run field 'nesterov'", false},
        Case{R"({"patience": -2})", "run field 'patience'", false},
        Case{R"({"optimizer": "Adam", "max_momentum": 1.0})", "run field 'max_momentum' must be below 1 with Adam",
             false},
        Case{R"([1, 2])", "must be a JSON object", false},
        Case{R"({})", "run field 'base_lr' is required by lr_scheduler CyclicLR", true},
        Case{R"({"base_lr": 0.1})", "run field 'max_lr' is required", true},
        Case{R"({"lr_scheduler": "StepLR"})", "run field 'step_size' is required", true},
        Case{R"({"lr_scheduler": "ExponentialLR"})", "run field 'gamma' is required", true});
    INFO(c.json);
    CHECK_THAT(args_error(c.json, c.training), Catch::Contains(c.expected));
}
