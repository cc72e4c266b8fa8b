#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The compose cluster (packaging/compose/docker-compose.yml) as plain processes on loopback: one
# director, two TTPs (grids 0 and 1) and two workers per grid, started from the same config
# files with the same flags, against a RabbitMQ broker that already runs (scripts/start-rabbitmq.sh
# starts one on 127.0.0.1:5672). No container engine needed.
#
#   run-local.sh start  [--bin PATH] [--state DIR] [--config-dir DIR] [--broker HOST:PORT]
#                       [--data-root DIR] [--plugin-path DIR] [--timeout SECONDS]
#   run-local.sh status [--state DIR]
#   run-local.sh stop   [--state DIR] [--timeout SECONDS]
#
# start waits (bounded) until the director answers GET /healthz, each TTP has logged
# "role started" and each worker answers GET /v1/health; on any failure it prints the log of the
# process concerned, stops everything it started and exits 1. The state folder holds
#   pids/<name>      pid and start time of each process (written when it is spawned)
#   ports/<name>     the port a director or worker announced (they listen on --port 0)
#   logs/<name>.log  stderr (the basic log sink), logs/<name>.out stdout
#   cluster.tsv      name, role, pid, port, url of every process once all are up
# stop sends SIGTERM to every process recorded there, waits --timeout seconds (default 20),
# then sends SIGKILL and waits again (5 s). It never signals a pid that has since been reused.
#
# Environment: SYNERGOS_BIN (the executable, default: `synergos` on PATH),
# SYNERGOS_LOGGING_VARIANT (default "basic"; e.g. "graylog 127.0.0.1 12201"), as in compose.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly kDirector=director-1
readonly kTtps=(ttp-0 ttp-1)
readonly kWorkers=(worker-g0-1 worker-g0-2 worker-g1-1 worker-g1-2)
readonly kKillWaitS=5

die() {
    echo "run-local: $*" >&2
    exit 1
}

usage() {
    sed -n '8,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

now_ms() {
    local t="${EPOCHREALTIME//[.,]/}"
    echo $((t / 1000))
}

# ---- arguments --------------------------------------------------------------------------------
action="${1:-}"
[ -n "$action" ] || usage
shift
bin="${SYNERGOS_BIN:-}"
state="${SYNERGOS_LOCAL_STATE:-${TMPDIR:-/tmp}/synergos-local}"
config_dir="$here/../compose/config"
broker="127.0.0.1:5672"
data_root=""
plugin_path=""
timeout_s=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin="${2:?--bin needs a PATH}"; shift 2 ;;
        --state) state="${2:?--state needs a DIR}"; shift 2 ;;
        --config-dir) config_dir="${2:?--config-dir needs a DIR}"; shift 2 ;;
        --broker) broker="${2:?--broker needs HOST:PORT}"; shift 2 ;;
        --data-root) data_root="${2:?--data-root needs a DIR}"; shift 2 ;;
        --plugin-path) plugin_path="${2:?--plugin-path needs a DIR}"; shift 2 ;;
        --timeout) timeout_s="${2:?--timeout needs SECONDS}"; shift 2 ;;
        -h | --help) usage ;;
        *) die "unknown argument '$1' (see $0 --help)" ;;
    esac
done
if [ -n "$timeout_s" ] && ! [[ "$timeout_s" =~ ^[1-9][0-9]*$ ]]; then
    die "--timeout must be a positive number of seconds, got '$timeout_s'"
fi

# ---- process bookkeeping ----------------------------------------------------------------------
# Start time of a pid in clock ticks since boot (field 22 of /proc/PID/stat, counted after the
# ")" that ends the command name, which may itself contain spaces).
start_time_of() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    # shellcheck disable=SC2086
    set -- $stat
    echo "${20}"
}

# True while the recorded process runs: same pid, same start time, not a zombie.
is_running() {
    local pid="$1" started="$2" now stat
    now="$(start_time_of "$pid")" || return 1
    [ "$now" = "$started" ] || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [ "${stat:0:1}" != "Z" ]
}

# Every recorded process as "name pid start_time" lines.
recorded() {
    local f
    [ -d "$state/pids" ] || return 0
    for f in "$state/pids"/*; do
        [ -f "$f" ] || continue
        echo "$(basename "$f") $(cat "$f")"
    done
}

stop_all() {
    local wait_s="${timeout_s:-20}" name pid started entry deadline phase
    local -a pending=() survivors=()
    while read -r name pid started; do
        [ -n "$name" ] || continue
        if is_running "$pid" "$started"; then
            kill -TERM "$pid" 2>/dev/null || true
            pending+=("$name:$pid:$started")
        fi
    done < <(recorded)
    for phase in TERM KILL; do
        if [ "$phase" = TERM ]; then
            deadline=$(($(now_ms) + 1000 * wait_s))
        else
            deadline=$(($(now_ms) + 1000 * kKillWaitS))
        fi
        while [ ${#pending[@]} -gt 0 ]; do
            survivors=()
            for entry in "${pending[@]}"; do
                IFS=: read -r name pid started <<<"$entry"
                if is_running "$pid" "$started"; then
                    survivors+=("$entry")
                fi
            done
            pending=("${survivors[@]}")
            if [ ${#pending[@]} -eq 0 ] || [ "$(now_ms)" -ge "$deadline" ]; then
                break
            fi
            sleep 0.05
        done
        [ ${#pending[@]} -gt 0 ] || break
        if [ "$phase" = TERM ]; then
            for entry in "${pending[@]}"; do
                IFS=: read -r name pid started <<<"$entry"
                echo "run-local: $name (pid $pid) still running after ${wait_s}s: SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
            done
        fi
    done
    if [ ${#pending[@]} -gt 0 ]; then
        echo "run-local: could not stop: ${pending[*]}" >&2
        return 1
    fi
    rm -rf "$state/pids" "$state/ports" "$state/cluster.tsv"
    return 0
}

# ---- start ------------------------------------------------------------------------------------
# spawn NAME ARGS...: runs `synergos ARGS...` in the background with its logs in the state folder
# and records its pid before anything else can fail.
spawn() {
    local name="$1"
    shift
    nohup "$bin" "$@" </dev/null >"$state/logs/$name.out" 2>"$state/logs/$name.log" &
    local pid=$!
    local started
    if ! started="$(start_time_of "$pid")"; then
        started="gone"
    fi
    echo "$pid $started" >"$state/pids/$name"
    echo "run-local: started $name (pid $pid): synergos $*" >&2
}

pid_of() { cut -d' ' -f1 "$state/pids/$1"; }
alive() { is_running "$(pid_of "$1")" "$(cut -d' ' -f2 "$state/pids/$1")"; }

fail_start() {
    local name="$1" why="$2"
    echo "run-local: $name: $why" >&2
    for f in "$state/logs/$name.log" "$state/logs/$name.out"; do
        if [ -s "$f" ]; then
            echo "---- last lines of $f" >&2
            tail -n 30 "$f" >&2
        fi
    done
    echo "run-local: stopping what was started" >&2
    stop_all || true
    exit 1
}

# await_port NAME ROLE: waits for "synergos ROLE listening on http://HOST:PORT" on stdout.
await_port() {
    local name="$1" role="$2" deadline line port
    deadline=$(($(now_ms) + 1000 * start_timeout_s))
    while :; do
        line="$(grep -m1 -E "^synergos $role listening on http://" "$state/logs/$name.out" || true)"
        if [ -n "$line" ]; then
            port="${line##*:}"
            [[ "$port" =~ ^[0-9]+$ ]] || fail_start "$name" "cannot read the port in '$line'"
            echo "$port" >"$state/ports/$name"
            return 0
        fi
        alive "$name" || fail_start "$name" "exited before listening"
        [ "$(now_ms)" -lt "$deadline" ] ||
            fail_start "$name" "no listening address within ${start_timeout_s}s"
        sleep 0.05
    done
}

# await_http NAME PATH: waits until http://127.0.0.1:<port>PATH answers 200.
await_http() {
    local name="$1" path="$2" port deadline
    port="$(cat "$state/ports/$name")"
    deadline=$(($(now_ms) + 1000 * start_timeout_s))
    until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port$path" 2>/dev/null; do
        alive "$name" || fail_start "$name" "exited before answering GET $path"
        [ "$(now_ms)" -lt "$deadline" ] ||
            fail_start "$name" "GET $path did not answer 200 within ${start_timeout_s}s"
        sleep 0.05
    done
}

# await_log NAME TEXT: waits until the process logged TEXT.
await_log() {
    local name="$1" text="$2" deadline
    deadline=$(($(now_ms) + 1000 * start_timeout_s))
    until grep -qF "$text" "$state/logs/$name.log" "$state/logs/$name.out" 2>/dev/null; do
        alive "$name" || fail_start "$name" "exited before logging '$text'"
        [ "$(now_ms)" -lt "$deadline" ] ||
            fail_start "$name" "did not log '$text' within ${start_timeout_s}s"
        sleep 0.05
    done
}

# True when the broker accepts a TCP connection (bash's /dev/tcp, bounded by `timeout`).
broker_answers() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

start_cluster() {
    start_timeout_s="${timeout_s:-60}"
    if [ -z "$bin" ]; then
        bin="$(command -v synergos || true)"
        [ -n "$bin" ] || die "no synergos executable: pass --bin PATH or set SYNERGOS_BIN"
    fi
    [ -x "$bin" ] || die "--bin '$bin' is not an executable file"
    command -v curl >/dev/null || die "curl is needed to check the health routes"
    bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
    config_dir="$(cd "$config_dir" 2>/dev/null && pwd)" ||
        die "config folder not found: $config_dir"
    for f in director.yaml ttp.yaml worker.yaml; do
        [ -f "$config_dir/$f" ] || die "missing config file $config_dir/$f"
    done
    [[ "$broker" =~ ^([^:]+):([0-9]+)$ ]] || die "--broker must be HOST:PORT, got '$broker'"
    local mq_host="${BASH_REMATCH[1]}" mq_port="${BASH_REMATCH[2]}"
    if ! broker_answers "$mq_host" "$mq_port"; then
        die "no RabbitMQ broker answers on $mq_host:$mq_port" \
            "(start one with scripts/start-rabbitmq.sh)"
    fi
    if [ -n "$data_root" ]; then
        data_root="$(cd "$data_root" 2>/dev/null && pwd)" || die "--data-root not found: $data_root"
    fi
    if [ -n "$plugin_path" ]; then
        plugin_path="$(cd "$plugin_path" 2>/dev/null && pwd)" ||
            die "--plugin-path not found: $plugin_path"
    fi

    mkdir -p "$state"
    state="$(cd "$state" && pwd)"
    local name pid started
    while read -r name pid started; do
        [ -n "$name" ] || continue
        if is_running "$pid" "$started"; then
            die "$name (pid $pid) from an earlier start still runs: '$0 stop --state $state' first"
        fi
    done < <(recorded)
    rm -rf "$state/pids" "$state/ports" "$state/logs" "$state/cluster.tsv"
    mkdir -p "$state/pids" "$state/ports" "$state/logs" "$state/shared"/{data,outputs,mlflow}
    # A signal during start-up must not leave half a cluster behind.
    trap 'echo "run-local: interrupted" >&2; stop_all; exit 130' INT TERM

    # The flags compose passes, with loopback addresses and this state folder instead of volumes.
    local -a common=(--queue rabbitmq "$mq_host" "$mq_port")
    # shellcheck disable=SC2206
    local -a logging=(--logging_variant ${SYNERGOS_LOGGING_VARIANT:-basic})
    local -a shared=(--data-dir "$state/shared/data" --outputs-dir "$state/shared/outputs"
        --mlflow-dir "$state/shared/mlflow")
    local -a plugins=()
    [ -z "$plugin_path" ] || plugins=(--plugin-path "$plugin_path")
    # Servers bind 127.0.0.1 when the executable can be told so; otherwise the configs' 0.0.0.0.
    local -a loopback=()
    if "$bin" director --help 2>/dev/null | grep -qE -- '--host([^-_a-z]|$)'; then
        loopback=(--host 127.0.0.1)
    fi

    # The director first: the TTPs attach to the queues it declares (compose: depends_on).
    spawn "$kDirector" director --config "$config_dir/director.yaml" --id "$kDirector" \
        "${common[@]}" "${logging[@]}" --port 0 "${loopback[@]}" "${shared[@]}" "${plugins[@]}"
    await_port "$kDirector" director
    await_http "$kDirector" /healthz

    local grid
    for name in "${kTtps[@]}"; do
        grid="${name#ttp-}"
        spawn "$name" ttp --config "$config_dir/ttp.yaml" --id "$name" --grid "$grid" \
            "${common[@]}" "${logging[@]}" "${shared[@]}" "${plugins[@]}"
    done
    local data
    for name in "${kWorkers[@]}"; do
        data="$state/workers/$name/data"
        if [ -n "$data_root" ] && [ -d "$data_root/${name#worker-}" ]; then
            data="$data_root/${name#worker-}"
        fi
        # As in compose: no --mlflow-dir (a worker tracks nothing), its own outputs folder.
        mkdir -p "$data" "$state/workers/$name/outputs"
        spawn "$name" worker --config "$config_dir/worker.yaml" --id "$name" \
            "${logging[@]}" --port 0 "${loopback[@]}" --data-dir "$data" \
            --outputs-dir "$state/workers/$name/outputs" "${plugins[@]}"
    done
    for name in "${kTtps[@]}"; do
        await_log "$name" "role started"
    done
    for name in "${kWorkers[@]}"; do
        await_port "$name" worker
        await_http "$name" /v1/health
    done
    trap - INT TERM

    {
        printf 'name\trole\tpid\tport\turl\n'
        printf '%s\tdirector\t%s\t%s\thttp://127.0.0.1:%s\n' "$kDirector" "$(pid_of "$kDirector")" \
            "$(cat "$state/ports/$kDirector")" "$(cat "$state/ports/$kDirector")"
        for name in "${kTtps[@]}"; do
            printf '%s\tttp\t%s\t-\t-\n' "$name" "$(pid_of "$name")"
        done
        for name in "${kWorkers[@]}"; do
            printf '%s\tworker\t%s\t%s\thttp://127.0.0.1:%s\n' "$name" "$(pid_of "$name")" \
                "$(cat "$state/ports/$name")" "$(cat "$state/ports/$name")"
        done
    } >"$state/cluster.tsv"
    echo "run-local: cluster up (state in $state):" >&2
    cat "$state/cluster.tsv"
}

status_cluster() {
    local name pid started port any=0
    while read -r name pid started; do
        [ -n "$name" ] || continue
        any=1
        port="-"
        [ -f "$state/ports/$name" ] && port="$(cat "$state/ports/$name")"
        if is_running "$pid" "$started"; then
            printf '%s\tpid %s\tport %s\trunning\n' "$name" "$pid" "$port"
        else
            printf '%s\tpid %s\tport %s\tgone\n' "$name" "$pid" "$port"
        fi
    done < <(recorded)
    [ "$any" = 1 ] || echo "run-local: nothing recorded in $state" >&2
}

case "$action" in
    start) start_cluster ;;
    stop)
        [ -d "$state" ] || die "no state folder $state"
        stop_all
        echo "run-local: stopped (state in $state)" >&2
        ;;
    status) status_cluster ;;
    -h | --help | help) usage ;;
    *) die "unknown action '$action' (start, stop, status)" ;;
esac
