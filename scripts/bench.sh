#!/usr/bin/env bash
# Benchmarks, all on this machine in one run:
#  1. ingest throughput through the local RabbitMQ, as ratios against a null consumer measured in the
#     same run (single protobuf events; zip bundles in committed events/s);
#  2. process-tree query timings on a host with 100,000 processes.
#   bash scripts/bench.sh [singles=N] [events=N]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-rabbitmq.sh
cargo bench --locked --bench throughput -- "$@"
cargo run --release --locked --example tree_bench -- --processes 100000
