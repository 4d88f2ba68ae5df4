#!/usr/bin/env bash
# Peak memory of the daemon draining a backlog: generated zip bundles are queued first (as when
# cbtrail was down while the CB server kept publishing), then `cbtrail run` drains them; prints its
# peak resident size (VmHWM) and the drain time. Runs in a vhost of its own, removed afterwards.
#   bash scripts/memory.sh [PREFETCH] [SPEC]
#   (defaults: the daemon's default prefetch; 582,518 events in 14,135 bundles)
#   The byte budget of the window: CBTRAIL_AMQP__PREFETCH_BYTES=N bash scripts/memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-rabbitmq.sh
cargo build --release --locked --quiet
bin=target/release/cbtrail
prefetch=${1:-}
spec=${2:-hosts=40,processes=375,events=40,mode=bundles,bundle_records=500,hit_rate=0,seed=12}

vhost="cbtrail-memory-$$"
dir=$(mktemp -d)
daemon=
cleanup() {
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
rabbitmqctl -q add_vhost "$vhost"
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'
url="amqp://guest:guest@127.0.0.1:5672/$vhost"
{
    echo "[amqp]"
    echo "url = \"$url\""
    echo "queue = \"memory\""
    [ -n "$prefetch" ] && echo "prefetch = $prefetch"
    echo "[store]"
    echo "path = \"$dir/cbtrail.db\""
    [ -n "$prefetch" ] && [ "$prefetch" -lt 10000 ] && echo "batch_size = $prefetch"
    echo "[metrics]"
    echo "listen = \"\""
    echo "[exports]"
    echo "output_dir = \"$dir/exports\""
} >"$dir/cbtrail.toml"

queued() {
    rabbitmqctl -q list_queues -p "$vhost" name messages | awk '$1 == "memory" { print $2 }'
}

# The CB server's exchanges, then the daemon's queue and bindings (a short first run), then the
# backlog.
"$bin" publish --amqp "$url" --declare-only >/dev/null
"$bin" run --config "$dir/cbtrail.toml" >"$dir/first.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -n "$(queued)" ] && break; sleep 0.1; done
kill -TERM "$daemon"; wait "$daemon" || true; daemon=
"$bin" publish --amqp "$url" --synthetic "$spec" | tail -1
echo "queued: $(queued) messages"

start=$(date +%s%N)
"$bin" run --config "$dir/cbtrail.toml" >"$dir/run.log" 2>&1 &
daemon=$!
until [ "$(queued)" = 0 ]; do
    kill -0 "$daemon" || { cat "$dir/run.log"; exit 1; }
    sleep 0.2
done
end=$(date +%s%N)
peak=$(awk '/VmHWM/ { print $2 }' "/proc/$daemon/status")
kill -TERM "$daemon"; wait "$daemon"; daemon=
"$bin" db-info --db "$dir/cbtrail.db" | awk '$1 == "event_rows" { print "stored: " $2 " events" }'
awk -v kb="$peak" -v ns="$((end - start))" -v p="${prefetch:-default}" \
    'BEGIN { printf "prefetch %s: peak resident %.0f MB, drained in %.1f s\n", p, kb / 1024, ns / 1e9 }'
