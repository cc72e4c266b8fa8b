#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite from a fresh Debian 12 machine: installs packages, starts a local RabbitMQ
# broker, builds (preset `ci`), runs every test, then rebuilds the loader tests under
# AddressSanitizer + UndefinedBehaviorSanitizer and runs them, then builds the libFuzzer targets
# (preset `fuzz`, clang), replays their corpora (seeds and regression inputs) and fuzzes each for
# FUZZ_SECONDS (20) seconds.
#   scripts/test.sh            everything
#   SKIP_ASAN=1 scripts/test.sh   without the sanitizer pass
#   SKIP_FUZZ=1 scripts/test.sh   without the fuzz step
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
jobs="${SYNERGOS_JOBS:-2}"
# ccache keys relative to the checkout, so clones in other folders share the cache.
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=true

"$root/scripts/install-deps.sh"
# Assigned apart from `export`: `export X="$(cmd)"` takes export's status, so a broker that did
# not start went unnoticed and every broker test ran against an empty URL.
if [ -z "${SYNERGOS_TEST_AMQP_URL:-}" ]; then
    SYNERGOS_TEST_AMQP_URL="$("$root/scripts/start-rabbitmq.sh")"
fi
# Debian puts rabbitmqctl in /usr/sbin, which a user's PATH may leave out.
if [ -z "${SYNERGOS_TEST_RABBITMQCTL:-}" ]; then
    SYNERGOS_TEST_RABBITMQCTL="$(PATH="$PATH:/usr/sbin:/sbin" command -v rabbitmqctl || true)"
fi
export SYNERGOS_TEST_AMQP_URL SYNERGOS_TEST_RABBITMQCTL
echo "test: broker at $SYNERGOS_TEST_AMQP_URL"

cmake --preset ci >/dev/null
cmake --build --preset ci -j "$jobs"
ctest --preset ci --timeout 900

if [ "${SKIP_ASAN:-0}" != "1" ]; then
    cmake --preset asan >/dev/null
    cmake --build --preset asan -j "$jobs" --target synergos_loader_tests synergos_fixture_plugins
    ctest --test-dir build/asan -L loader --output-on-failure --timeout 600
fi

if [ "${SKIP_FUZZ:-0}" != "1" ]; then
    cmake --preset fuzz >/dev/null
    cmake --build --preset fuzz -j "$jobs" --target synergos_fuzzers  # only what the fuzzers link
    ctest --test-dir build/fuzz/fuzz -L fuzz --output-on-failure --timeout 300
    "$root/scripts/fuzz.sh" --no-build --seconds "${FUZZ_SECONDS:-20}"
fi
