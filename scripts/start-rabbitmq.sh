#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Starts a local RabbitMQ broker for the tests and local trials when none answers, and waits
# (bounded) until it is up. Prints the AMQP URL to use.
#
# A broker started here keeps its state in a data directory of its own
# (/var/lib/rabbitmq/synergos-local, emptied at each start), never the system's default one: a
# broker that had to recover a thousand durable queues left by earlier runs with too few file
# handles stalled for minutes at boot (CI, 2026-11-26). A broker that already runs is used as it
# is. Either way, queues named like the tests' (synergos-test-*, synergos-e2e-*,
# synergos-bench-*) expire after 15 idle minutes (a broker policy), so crashed tests leave
# nothing that builds up.
set -euo pipefail
url="amqp://guest:guest@127.0.0.1:5672/%2f"
boot_timeout="${SYNERGOS_RABBITMQ_BOOT_TIMEOUT:-120}"
data_dir="/var/lib/rabbitmq/synergos-local"

log() { echo "start-rabbitmq: $*" >&2; }

# -detached returns before the node registers with epmd, and await_startup fails at once on a
# node it cannot see yet: poll, bounded, until the node answers and has finished booting.
await_boot() {
    local deadline=$((SECONDS + $1))
    until timeout 30 rabbitmqctl -q await_startup >/dev/null 2>&1; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 1
    done
}

test_queue_policy() {
    timeout 30 rabbitmqctl -q set_policy --apply-to queues synergos-test-expiry \
        '^synergos-(test|e2e|bench)-' '{"expires":900000}' >/dev/null 2>&1 ||
        log "could not set the test-queue expiry policy (continuing)"
}

show_log_tail() {
    local f
    for f in /var/log/rabbitmq/rabbit@*.log "$data_dir"/log/*.log; do
        [ -f "$f" ] || continue
        log "last lines of $f:"
        tail -n 15 "$f" >&2 || true
    done
}

# A node that runs but has not finished booting (or is stuck recovering) gets a bounded
# chance; then it is stopped, so a fresh one can take the node name and port.
if pgrep -f 'beam.*rabbit' >/dev/null 2>&1; then
    if await_boot 60; then
        test_queue_policy
        echo "$url"
        exit 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        log "a broker process runs but has not booted within 60 s, and not root to restart it"
        exit 1
    fi
    log "a broker process runs but has not booted within 60 s; stopping it"
    show_log_tail
    timeout 30 rabbitmqctl stop >/dev/null 2>&1 || true
    pkill -9 -f 'beam.*rabbit' 2>/dev/null || true
    sleep 1
elif [ "$(id -u)" -ne 0 ]; then
    log "no broker running and not root: start one with 'sudo rabbitmq-server -detached'"
    exit 1
fi

# Durable queues hold file handles while the broker recovers them; raise the soft limit to the
# hard one (asking for more than the hard limit fails and changes nothing).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
    log "only $(ulimit -n) file handles for the broker (ulimit -Hn $(ulimit -Hn))"
fi

rm -rf "$data_dir"
install -d -o rabbitmq -g rabbitmq -m 0750 "$data_dir" "$data_dir/log"
export RABBITMQ_MNESIA_BASE="$data_dir/mnesia" RABBITMQ_LOG_BASE="$data_dir/log"
# Debian's /usr/sbin/rabbitmq-server switches user with `su`, whose pam_limits puts the file
# limit back to 1024; setpriv switches user without PAM and keeps the raised limit.
(cd /var/lib/rabbitmq && HOME=/var/lib/rabbitmq setpriv --reuid=rabbitmq --regid=rabbitmq \
    --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server -detached >/dev/null 2>&1) || true
if ! await_boot "$boot_timeout"; then
    log "broker did not come up within $boot_timeout s"
    show_log_tail
    exit 1
fi
test_queue_policy
echo "$url"
