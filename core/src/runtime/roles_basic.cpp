// SPDX-License-Identifier: Apache-2.0
// The first role loops: start the configured plugins, wait, stop. The director, TTP and worker
// loops proper replace these functions; the Runtime API they use stays the same.
#include <synergos/core/runtime/roles.hpp>

#include <synergos/core/runtime/runtime.hpp>

namespace synergos::core {

namespace {

int run_basic_role(Runtime& runtime) {
    const auto& config = runtime.config();
    if (sdk::Status status = runtime.start_plugins(); !status) {
        runtime.fatal("start-up failed", {{"error", status.message()}});
        runtime.stop_all();
        return 1;
    }
    nlohmann::json fields = {{"role", role_name(config.node.role)},
                             {"node_id", config.node.id},
                             {"components", runtime.started_components()}};
    if (config.node.role == Role::Ttp) {
        fields["grid"] = config.ttp.grid;
    }
    runtime.logger().info("role started", std::move(fields));
    runtime.wait_for_stop();
    runtime.stop_all();
    return 0;
}

}  // namespace

int run_director(Runtime& runtime) {
    return run_basic_role(runtime);
}

int run_ttp(Runtime& runtime) {
    return run_basic_role(runtime);
}

int run_worker(Runtime& runtime) {
    return run_basic_role(runtime);
}

}  // namespace synergos::core
