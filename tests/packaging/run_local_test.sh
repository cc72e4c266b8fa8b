#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The cluster's start-up path without containers (packaging/cluster/run-local.sh), against the
# local RabbitMQ broker ($SYNERGOS_TEST_AMQP_URL, default 127.0.0.1:5672):
#   1. start brings up the compose topology from packaging/compose/config: the director answers
#      GET /healthz, both TTPs log "role started" for their grid, the four workers answer
#      GET /v1/health on their own ports; pids and ports are in the state folder.
#   2. a second start refuses while the cluster runs, and leaves it running.
#   3. stop leaves no process behind.
#   4. start without a broker fails before starting anything.
#   5. a worker that cannot start makes start fail and stop what it had started.
#   6. stop sends SIGKILL to a process that ignores SIGTERM, and never signals a pid whose start
#      time differs from the recorded one (a reused pid).
# Usage: run_local_test.sh SYNERGOS_BIN SOURCE_DIR WORK_DIR
# shellcheck disable=SC2015  # `ok` never fails, so `cond && ok ... || bad ...` is an if-else.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 SYNERGOS_BIN SOURCE_DIR WORK_DIR" >&2; exit 2; }
bin="$1" source="$2" work="$3"
script="$source/packaging/cluster/run-local.sh"
configs="$source/packaging/compose/config"
readonly kStartTimeoutS=120

failures=0
ok() { echo "ok   $*"; }
bad() {
    echo "FAIL $*" >&2
    failures=$((failures + 1))
}
die() {
    echo "FAIL $*" >&2
    exit 1
}

# The broker the other RabbitMQ tests use.
url="${SYNERGOS_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
hostport="${url#*://}"
hostport="${hostport#*@}"
hostport="${hostport%%/*}"
[[ "$hostport" == *:* ]] || hostport="$hostport:5672"
if ! timeout 2 bash -c "exec 3<>/dev/tcp/${hostport%:*}/${hostport##*:}" 2>/dev/null; then
    die "no RabbitMQ broker on $hostport: start one with scripts/start-rabbitmq.sh (as root)" \
        "and set SYNERGOS_TEST_AMQP_URL"
fi

rm -rf "$work"
mkdir -p "$work"
state="$work/state"
cleanup() {
    for s in "$state" "$work/broken-state"; do
        [ -d "$s/pids" ] && "$script" stop --state "$s" --timeout 10 >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

start_time_of() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    # shellcheck disable=SC2086
    set -- $stat
    echo "${20}"
}
# Alive and not a zombie.
running() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [ "${stat:0:1}" != "Z" ]
}
# Processes whose command line mentions PATH (our own unique temp folders only).
procs_using() {
    local pid out=""
    for pid in $(pgrep -f -- "$1" || true); do
        [ "$pid" = "$$" ] && continue
        running "$pid" && out="$out $pid"
    done
    echo "${out# }"
}

# ---- 1. start -----------------------------------------------------------------------------------
if ! "$script" start --bin "$bin" --state "$state" --broker "$hostport" \
    --timeout "$kStartTimeoutS" >"$work/start.out" 2>"$work/start.err"; then
    cat "$work/start.err" >&2
    die "run-local.sh start failed (log above)"
fi
ok "run-local.sh start"
[ -f "$state/cluster.tsv" ] || die "no $state/cluster.tsv"
rows="$(tail -n +2 "$state/cluster.tsv" | wc -l)"
[ "$rows" -eq 7 ] && ok "cluster.tsv has 7 processes" ||
    bad "cluster.tsv has $rows processes, expected 7"

declare -A ports=()
for name in director-1 ttp-0 ttp-1 worker-g0-1 worker-g0-2 worker-g1-1 worker-g1-2; do
    if [ ! -f "$state/pids/$name" ]; then
        bad "no pid recorded for $name"
        continue
    fi
    read -r pid started <"$state/pids/$name"
    if running "$pid" && [ "$(start_time_of "$pid")" = "$started" ]; then
        ok "$name runs as pid $pid"
    else
        bad "$name (pid $pid) does not run"
        continue
    fi
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
    role="${name%%-*}"
    [ "$role" = "director" ] || [ "$role" = "ttp" ] || [ "$role" = "worker" ] || role="?"
    if [[ "$cmdline" == *" $role --config $configs/$role.yaml --id $name "* ]]; then
        ok "$name runs 'synergos $role' with the compose config $role.yaml"
    else
        bad "$name command line: $cmdline"
    fi
    queue="--queue rabbitmq ${hostport%:*} ${hostport##*:}"
    if [ "$role" != "worker" ] && [[ "$cmdline" != *"$queue"* ]]; then
        bad "$name does not use --queue rabbitmq ${hostport%:*} ${hostport##*:}: $cmdline"
    fi
    if [ "$role" != "ttp" ]; then
        port="$(cat "$state/ports/$name" 2>/dev/null || true)"
        if [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -gt 0 ]; then
            ports[$name]="$port"
        else
            bad "$name: no port in $state/ports/$name"
        fi
    fi
done

director_url="http://127.0.0.1:${ports[director-1]:-0}"
code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$director_url/healthz" || true)"
[ "$code" = 200 ] && ok "director GET /healthz -> 200 on port ${ports[director-1]}" \
    || bad "director GET /healthz -> $code"
for name in worker-g0-1 worker-g0-2 worker-g1-1 worker-g1-2; do
    code="$(curl -s -o "$work/$name.health" -w '%{http_code}' --max-time 5 \
        "http://127.0.0.1:${ports[$name]:-0}/v1/health" || true)"
    body="$(head -c 200 "$work/$name.health" 2>/dev/null || true)"
    [ "$code" = 200 ] && ok "$name GET /v1/health -> 200 on port ${ports[$name]}: $body" \
        || bad "$name GET /v1/health -> $code"
done
# The compose health checks (bash's /dev/tcp, no curl in the image) against the real servers, and
# against a closed port, where they must fail.
compose="$source/packaging/compose/docker-compose.yml"
# A port nothing listens on: picked by the kernel, released when Python exits.
closed_port="$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')"
for pair in director:director-1 worker-g0-1:worker-g0-1; do
    service="${pair%%:*}" name="${pair#*:}"
    probe="$(python3 -c 'import sys, yaml
print(yaml.safe_load(open(sys.argv[1]))["services"][sys.argv[2]]["healthcheck"]["test"][3])' \
        "$compose" "$service")"
    if timeout 10 bash -c "${probe//127.0.0.1\/5000/127.0.0.1\/${ports[$name]:-0}}"; then
        ok "the compose health check of $service passes against $name"
    else
        bad "the compose health check of $service fails against $name: $probe"
    fi
    if timeout 10 bash -c "${probe//127.0.0.1\/5000/127.0.0.1\/$closed_port}" 2>/dev/null; then
        bad "the compose health check of $service passes against a closed port"
    fi
done
distinct="$(printf '%s\n' "${ports[@]}" | sort -u | wc -l)"
[ "$distinct" -eq 5 ] && ok "director and workers listen on 5 distinct ports" \
    || bad "ports are not distinct: ${ports[*]}"
for grid in 0 1; do
    line="$(grep -m1 -F "role started" "$state/logs/ttp-$grid.log" || true)"
    if [ -n "$line" ] && grep -qE "grid[^0-9]{1,4}$grid([^0-9]|$)" <<<"$line"; then
        ok "ttp-$grid logged: $line"
    else
        bad "ttp-$grid did not log 'role started' for grid $grid: '$line'"
    fi
done

# ---- 2. a second start refuses -------------------------------------------------------------------
if "$script" start --bin "$bin" --state "$state" --broker "$hostport" \
    >/dev/null 2>"$work/again.err"; then
    bad "a second start succeeded while the cluster runs"
elif grep -q "still runs" "$work/again.err"; then
    ok "a second start refuses: $(head -n1 "$work/again.err")"
else
    bad "a second start failed without saying why: $(cat "$work/again.err")"
fi
code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$director_url/healthz" || true)"
[ "$code" = 200 ] && ok "the running director still answers" ||
    bad "the refused start disturbed the director ($code)"

# ---- 3. stop -------------------------------------------------------------------------------------
mapfile -t started_pids < <(cat "$state"/pids/* | cut -d' ' -f1)
if "$script" stop --state "$state" 2>"$work/stop.err"; then
    ok "run-local.sh stop"
else
    bad "run-local.sh stop failed: $(cat "$work/stop.err")"
fi
left=""
for pid in "${started_pids[@]}"; do
    running "$pid" && left="$left $pid"
done
[ -z "$left" ] && ok "no started process is left (${#started_pids[@]} stopped)" ||
    bad "still running:$left"
left="$(procs_using "$state")"
[ -z "$left" ] && ok "no process uses $state" || bad "processes still use $state: $left"
grep -q "SIGKILL" "$work/stop.err" && bad "stop needed SIGKILL: $(cat "$work/stop.err")" \
    || ok "every process stopped on SIGTERM"

# ---- 4. no broker --------------------------------------------------------------------------------
if "$script" start --bin "$bin" --state "$work/no-broker" --broker "127.0.0.1:$closed_port" \
    >/dev/null 2>"$work/no-broker.err"; then
    bad "start succeeded without a broker"
elif grep -q "no RabbitMQ broker answers on 127.0.0.1:$closed_port" "$work/no-broker.err"; then
    ok "start without a broker: $(cat "$work/no-broker.err")"
else
    bad "start without a broker failed without naming it: $(cat "$work/no-broker.err")"
fi
[ ! -d "$work/no-broker/pids" ] && ok "nothing was started without a broker" \
    || bad "processes recorded without a broker: $(ls "$work/no-broker/pids")"

# ---- 5. a worker that cannot start ---------------------------------------------------------------
broken="$work/broken-configs"
mkdir -p "$broken"
cp "$configs"/*.yaml "$broken/"
printf 'no_such_section: 1\n' >>"$broken/worker.yaml"
if "$script" start --bin "$bin" --state "$work/broken-state" --config-dir "$broken" \
    --broker "$hostport" --timeout "$kStartTimeoutS" >/dev/null 2>"$work/broken.err"; then
    bad "start succeeded with a broken worker config"
elif grep -q "worker-g0-1: exited before listening" "$work/broken.err" \
    && grep -q "no_such_section" "$work/broken.err"; then
    ok "start with a broken worker config fails naming the worker and the key"
else
    bad "start with a broken worker config: $(cat "$work/broken.err")"
fi
left="$(procs_using "$work/broken-state")"
[ -z "$left" ] && ok "the failed start stopped what it had started" \
    || bad "processes left by the failed start: $left"

# ---- 6. SIGKILL after the timeout; a reused pid is left alone ------------------------------------
kill_state="$work/kill-state"
mkdir -p "$kill_state/pids"
# It says when its trap is set: a TERM that came before would end it, and stop would have
# nothing to SIGKILL.
bash -c 'trap "" TERM; touch "$1"; while :; do sleep 0.2; done' stubborn "$kill_state/ready" &
stubborn=$!
for _ in $(seq 1 100); do
    [ -e "$kill_state/ready" ] && break
    sleep 0.1
done
sleep 300 &
bystander=$!
echo "$stubborn $(start_time_of "$stubborn")" >"$kill_state/pids/stubborn"
echo "$bystander $(($(start_time_of "$bystander") + 1))" >"$kill_state/pids/reused"
if "$script" stop --state "$kill_state" --timeout 1 2>"$work/kill.err"; then
    ok "stop with a process that ignores SIGTERM"
else
    bad "stop with a process that ignores SIGTERM failed: $(cat "$work/kill.err")"
fi
if ! running "$stubborn" &&
    grep -q "stubborn (pid $stubborn) still running after 1s: SIGKILL" "$work/kill.err"; then
    ok "the process ignoring SIGTERM got SIGKILL"
else
    bad "the process ignoring SIGTERM survived stop: $(cat "$work/kill.err")"
fi
if running "$bystander"; then
    ok "a pid whose start time changed was not signalled"
else
    bad "stop signalled a reused pid"
fi
kill "$bystander" 2>/dev/null || true
wait "$stubborn" "$bystander" 2>/dev/null || true

if [ "$failures" -gt 0 ]; then
    echo "$failures check(s) failed; logs in $work" >&2
    exit 1
fi
echo "all run-local checks passed"
