#!/usr/bin/env bash
# The test command: formatting, lints, and every test (unit, fixtures, end to end through the local
# RabbitMQ, systemd unit checks). Installs what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-rabbitmq.sh
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "test: installing systemd (for systemd-analyze)" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq systemd >/dev/null
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo nextest run --locked --profile ci "$@"
