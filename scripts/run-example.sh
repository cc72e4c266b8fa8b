#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# One command from a fresh Debian 12 machine to a trained federated model:
#   installs what is missing, builds, starts two workers (each with its own outputs folder, both
#   reading the example data) and a standalone director (embedded queue and TTP), submits the
#   example job, shows progress and the final metrics, leaves the model and the MLflow runs in a
#   folder it names, and stops every process it started.
#
#   scripts/run-example.sh [heart_disease|abalone]
#   SYNERGOS_RUN_DIR=/some/dir scripts/run-example.sh      (where outputs go; default run/<example>-<time>)
#   SYNERGOS_BUILD_DIR=build/x scripts/run-example.sh      (use an existing build; skip install and build)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
example="${1:-heart_disease}"
job="$root/examples/$example/job.yaml"
[ -f "$job" ] || { echo "run-example: no example '$example' (examples/*/job.yaml)" >&2; exit 2; }
jobs_n="${SYNERGOS_JOBS:-2}"

if [ -n "${SYNERGOS_BUILD_DIR:-}" ]; then
    # A build that already has `synergos` and the plugins (the test of this script uses its own).
    bin="$SYNERGOS_BUILD_DIR/bin/synergos"
else
    "$root/scripts/install-deps.sh"
    cmake --preset ci >/dev/null
    cmake --build --preset ci -j "$jobs_n" --target synergos synergos_plugins
    bin="$root/build/ci/bin/synergos"
fi

run="${SYNERGOS_RUN_DIR:-$root/run/$example-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$run/logs"
run="$(cd "$run" && pwd)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

pids=()
cleanup() {
    local code=$?
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # Every process gets 20 s to stop in order, then it is killed.
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    echo "run-example: stopped ${#pids[@]} processes; logs in $run/logs"
    exit "$code"
}
trap cleanup EXIT INT TERM

# Waits (bounded) until a log says the process listens; fails if it died.
wait_listening() {
    local log="$1" pid="$2" what="$3"
    for _ in $(seq 1 600); do
        grep -q "listening on" "$log" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { echo "run-example: $what exited; see $log" >&2; tail -20 "$log" >&2; return 1; }
        sleep 0.1
    done
    echo "run-example: $what did not start within 60 s; see $log" >&2
    return 1
}

start() {  # name, log, then the command
    local name="$1" log="$2"
    shift 2
    "$@" >"$log" 2>&1 &
    pids+=("$!")
    wait_listening "$log" "$!" "$name"
}

port_a="$(free_port)"; port_b="$(free_port)"; port_d="$(free_port)"
for w in a b; do
    port_var="port_$w"
    start "worker $w" "$run/logs/worker_$w.log" "$bin" worker --config "$root/configs/worker.yaml" \
        --id "worker_$w" --port "${!port_var}" --data-dir "$root/examples/data" \
        --outputs-dir "$run/workers/worker_$w/outputs" --mlflow-dir "$run/workers/worker_$w/mlflow"
done
start director "$run/logs/director.log" "$bin" director --config "$root/configs/director-standalone.yaml" \
    --id director --port "$port_d" --data-dir "$run/director/data" \
    --outputs-dir "$run/director/outputs" --mlflow-dir "$run/mlflow"
echo "run-example: director on 127.0.0.1:$port_d, workers on $port_a and $port_b; outputs in $run"

WORKER_A_PORT="$port_a" WORKER_B_PORT="$port_b" "$bin" submit "$job" --server "http://127.0.0.1:$port_d"

echo
echo "run-example: the trained model and loss histories: $run/director/outputs"
echo "run-example: MLflow runs: $run/mlflow   (view with: mlflow ui --backend-store-uri $run/mlflow)"
echo "run-example: predictions stayed on the workers: $run/workers/*/outputs"
