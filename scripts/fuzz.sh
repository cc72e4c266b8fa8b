#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets (preset `fuzz`: clang, ASan + UBSan) and runs each one for a while
# on its seed corpus, one after the other, printing executions per second. Fails on any crash,
# leak, sanitizer report or broken invariant, and names the input that caused it.
#   scripts/fuzz.sh                          every target, 600 s each
#   scripts/fuzz.sh --seconds 20 http config  two targets, 20 s each
#   scripts/fuzz.sh --no-build ...            skip configure/build
# Environment: SYNERGOS_JOBS (build jobs, 2), FUZZ_NICE (nice level, 10), FUZZ_ARGS (extra
# libFuzzer flags). New corpus entries go to build/fuzz/fuzz-work/<target>/ (not the repo);
# crash inputs to build/fuzz/fuzz-artifacts/<target>/, logs to build/fuzz/fuzz-logs/<target>.log.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
all_targets=(http architecture tabular messages safetensors config jpeg)
seconds=600
build=1
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '3,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "fuzz: unknown option '$1'" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")
case "$seconds" in ''|*[!0-9]*) echo "fuzz: --seconds must be a whole number" >&2; exit 2 ;; esac
for t in "${targets[@]}"; do
    if [ ! -d "fuzz/corpus/$t" ]; then
        echo "fuzz: unknown target '$t' (known: ${all_targets[*]})" >&2
        exit 2
    fi
done

out="$root/build/fuzz"
if [ "$build" = 1 ]; then
    export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=true
    cmake --preset fuzz >/dev/null
    cmake --build --preset fuzz -j "${SYNERGOS_JOBS:-2}" --target "${targets[@]/#/fuzz_}"
fi

# Sanitizer reports are fatal (libFuzzer then saves the input); leaks are checked per input.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

max_len_of() {
    case "$1" in
        http) echo 16384 ;;
        tabular) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

failed=()
summary=()
for t in "${targets[@]}"; do
    exe="$out/fuzz/fuzz_$t"
    work="$out/fuzz-work/$t"
    artifacts="$out/fuzz-artifacts/$t"
    log="$out/fuzz-logs/$t.log"
    mkdir -p "$work" "$artifacts" "$(dirname "$log")"
    echo "fuzz: $t for ${seconds}s (log $log)"
    set +e
    # shellcheck disable=SC2086
    nice -n "${FUZZ_NICE:-10}" "$exe" -max_total_time="$seconds" -print_final_stats=1 \
        -timeout=25 -rss_limit_mb=2560 -max_len="$(max_len_of "$t")" \
        -dict="$root/fuzz/dict/$t.dict" -artifact_prefix="$artifacts/" ${FUZZ_ARGS:-} \
        "$work" "$root/fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
    # `|| true`: a target that crashed before its first coverage line must still be reported.
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
    if [ $rc -eq 0 ]; then
        outcome="ok"
    else
        outcome="FAILED (exit $rc)"
        failed+=("$t")
        echo "fuzz: $t failed; the report:" >&2
        grep -E -A30 '^==[0-9]+==ERROR|runtime error|fuzz invariant broken|ERROR: libFuzzer' \
            "$log" | head -60 >&2 || tail -40 "$log" >&2
        for a in "$artifacts"/*; do
            [ -e "$a" ] && echo "fuzz: input saved as $a; replay: $exe $a" >&2
        done
        echo "fuzz: after the fix, add it as fuzz/corpus/$t/regress-<what>" >&2
    fi
    line=$(printf '%-13s %5ss  %10s execs  %7s exec/s  cov %6s  rss %5s MB  %s' "$t" "$seconds" \
        "${execs:-?}" "${rate:-?}" "${cov:-?}" "${rss:-?}" "$outcome")
    echo "fuzz: $line"
    summary+=("$line")
done

echo
load="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "fuzz summary ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load $load):"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
