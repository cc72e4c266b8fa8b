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
# synergos-bench-*) in vhost / expire after 15 idle minutes (a broker policy), so crashed tests
# leave nothing that builds up (the tests that use vhosts of their own delete them).
set -euo pipefail
url="amqp://guest:guest@127.0.0.1:5672/%2f"
boot_timeout="${SYNERGOS_RABBITMQ_BOOT_TIMEOUT:-120}"
data_dir="/var/lib/rabbitmq/synergos-local"
# The broker server itself (not rabbitmqctl, whose Erlang VM also mentions rabbit).
server_pattern='beam\.smp.* -s rabbit boot'

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

amqp_open() { timeout 2 bash -c '</dev/tcp/127.0.0.1/5672' 2>/dev/null; }

# One start at a time: a second caller waits for the first's broker instead of emptying the
# data folder under it.
if [ "$(id -u)" -eq 0 ]; then
    mkdir -p /run/lock
    exec 9>/run/lock/synergos-rabbitmq.lock
    timeout 300 flock 9 || { log "another start-rabbitmq holds /run/lock/synergos-rabbitmq.lock"; exit 1; }
fi

# A broker that takes AMQP connections is used as it is, whoever runs it (a system service, a
# container); the tests that restart it need rabbitmqctl to reach it, which they check.
if amqp_open; then
    await_boot 60 || log "127.0.0.1:5672 answers but rabbitmqctl cannot reach the node"
    test_queue_policy
    echo "$url"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "no broker on 127.0.0.1:5672 and not root: start one with 'sudo rabbitmq-server -detached'"
    exit 1
fi
# A broker server that runs but does not take connections yet is booting (or stuck recovering):
# it gets a bounded chance, then it is stopped so a fresh one can take the node name and port.
if pgrep -u rabbitmq -f "$server_pattern" >/dev/null 2>&1; then
    log "a broker is booting; waiting up to 60 s for it"
    if await_boot 60 && amqp_open; then
        test_queue_policy
        echo "$url"
        exit 0
    fi
    log "the broker has not booted within 60 s; stopping it"
    show_log_tail
    timeout 30 rabbitmqctl stop >/dev/null 2>&1 || true
    pkill -9 -u rabbitmq -f "$server_pattern" 2>/dev/null || true
    sleep 1
fi

# Durable queues hold file handles while the broker recovers them; raise the soft limit towards
# 65536 (the broker's own port limit, ERL_MAX_PORTS), within the hard limit (asking for more
# than the hard limit fails and changes nothing).
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then hard=65536; fi
ulimit -n "$hard" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
    log "only $(ulimit -n) file handles for the broker (ulimit -Hn $(ulimit -Hn))"
fi

rm -rf "$data_dir"
install -d -o rabbitmq -g rabbitmq -m 0750 "$data_dir" "$data_dir/log"
export RABBITMQ_MNESIA_BASE="$data_dir/mnesia" RABBITMQ_LOG_BASE="$data_dir/log"
# Debian's /usr/sbin/rabbitmq-server switches user with `su`, whose pam_limits puts the file
# limit back to 1024; setpriv switches user without PAM and keeps the raised limit. The broker
# must not inherit the lock (9>&-), or it would hold it for its whole life.
(cd /var/lib/rabbitmq && HOME=/var/lib/rabbitmq setpriv --reuid=rabbitmq --regid=rabbitmq \
    --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server -detached >/dev/null 2>&1 9>&-) || true
if ! await_boot "$boot_timeout"; then
    log "broker did not come up within $boot_timeout s"
    show_log_tail
    exit 1
fi
test_queue_policy
echo "$url"
