#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the README's first command (scripts/run-example.sh) against this build, from a fresh clone
# of the committed tree when the source is a git checkout, and checks that it trains, prints the
# final metrics table, names its output folder, and leaves no process behind.
set -euo pipefail
src="$1"; build="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    git clone -q "$src" "$work/clone"
    # The working tree's example data and scripts may be newer than the last commit in a dev
    # loop: the clone is what a new user gets.
    repo="$work/clone"
else
    repo="$src"
fi
out="$work/out.txt"
SYNERGOS_BUILD_DIR="$build" SYNERGOS_RUN_DIR="$work/run" timeout 900 "$repo/scripts/run-example.sh" heart_disease >"$out" 2>&1 || {
    echo "run-example.sh failed:"; cat "$out"; exit 1; }
cat "$out"
grep -q "validation of run fedavg_run" "$out" || { echo "no validation table"; exit 1; }
grep -Eq "^hospital_a +evaluate +0\.[0-9]+" "$out" || { echo "no metrics row for hospital_a"; exit 1; }
grep -q "run-example: the trained model" "$out" || { echo "no output folder named"; exit 1; }
test -f "$work/run/director/outputs/heart_collab/heart_project/heart_expt/fedavg_run/global_model.safetensors"
test -d "$work/run/mlflow/1"
if pgrep -f "$work/run" >/dev/null; then
    echo "processes of the run are still alive:"; pgrep -af "$work/run"; exit 1
fi
echo "run-example: ok"
