#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers on 127.0.0.1:5672 with guest/guest: install Debian's package
# when it is missing, start it when it is stopped. Safe to run any number of times.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v rabbitmqctl >/dev/null 2>&1; then
    echo "ensure-rabbitmq: installing rabbitmq-server" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq rabbitmq-server >/dev/null
fi

if ! as_root rabbitmqctl -q status >/dev/null 2>&1; then
    echo "ensure-rabbitmq: starting the broker" >&2
    as_root rabbitmq-server -detached >/dev/null 2>&1 || true
fi
as_root timeout 120 rabbitmqctl await_startup >/dev/null
echo "ensure-rabbitmq: broker is up" >&2
