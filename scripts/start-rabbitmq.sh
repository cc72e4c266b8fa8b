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
rabbitmq-server -detached >/dev/null 2>&1 || true
# await_startup waits for the node; bound it so a broken install cannot hang the run.
timeout 120 rabbitmqctl -q await_startup >/dev/null
echo "amqp://guest:guest@127.0.0.1:5672/%2f"
