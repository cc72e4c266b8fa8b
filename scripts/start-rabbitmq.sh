#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Starts a local RabbitMQ broker for the tests when none answers on 127.0.0.1:5672, and waits
# (bounded) until it is up. Prints the AMQP URL to use.
set -euo pipefail
if rabbitmqctl -q status >/dev/null 2>&1; then
    echo "amqp://guest:guest@127.0.0.1:5672/%2f"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "start-rabbitmq: no broker running and not root: start one with 'sudo rabbitmq-server -detached'" >&2
    exit 1
fi
# Each durable queue holds file handles while the broker recovers it at boot; the default limit
# (1024: "available file handles: 927") stalls the boot once tests have left a thousand queues.
ulimit -n 65536 2>/dev/null || true
rabbitmq-server -detached >/dev/null 2>&1 || true
# -detached returns before the node registers with epmd, and await_startup fails at once on a
# node it cannot see yet: poll, bounded, until the node answers and has finished booting.
deadline=$((SECONDS + 120))
until timeout 30 rabbitmqctl -q await_startup >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "start-rabbitmq: broker did not come up within 120 s; see /var/log/rabbitmq/" >&2
        exit 1
    fi
    sleep 1
done
echo "amqp://guest:guest@127.0.0.1:5672/%2f"
