#!/usr/bin/env bash
# The demo, end to end: broker up, cbtrail built, the daemon running on a private vhost, realistic
# synthetic CB traffic published as a CB server would, then what landed: row counts, process-tree
# statistics, the tree of a process a watchlist hit, and the export that hit triggered.
#
#   bash scripts/demo.sh [SYNTH-SPEC]     e.g. bash scripts/demo.sh hosts=20,processes=300,seed=7
#
# Everything it writes goes to demo-out/ (database, config, daemon log, exports).
set -euo pipefail
cd "$(dirname "$0")/.."

SPEC="${1:-hosts=8,processes=150,events=40,mode=mixed,hit_rate=0.02,seed=42}"
OUT="$PWD/demo-out"
VHOST=cbtrail-demo
URL="amqp://guest:guest@127.0.0.1:5672/$VHOST"
METRICS=127.0.0.1:19464

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "RabbitMQ"
bash scripts/ensure-rabbitmq.sh

say "Building cbtrail (release)"
cargo build --release --locked --quiet
BIN="$PWD/target/release/cbtrail"

rm -rf "$OUT"
mkdir -p "$OUT"
rabbitmqctl -q delete_vhost "$VHOST" >/dev/null 2>&1 || true
rabbitmqctl -q add_vhost "$VHOST"
rabbitmqctl -q set_permissions -p "$VHOST" guest ".*" ".*" ".*"
# On a real CB server the exchanges exist already; cbtrail only binds its own queue to them.
"$BIN" publish --amqp "$URL" --declare-only

cat >"$OUT/cbtrail.toml" <<EOF
[amqp]
url = "$URL"
queue = "cbtrail-demo"
connection_name = "cbtrail-demo"

[store]
path = "$OUT/cbtrail.db"

[metrics]
listen = "$METRICS"

[exports]
settle = 3
poll_interval = 1
follow_window = 10
output_dir = "$OUT/exports"
EOF

say "Starting the daemon (log: demo-out/daemon.log)"
"$BIN" check-config --config "$OUT/cbtrail.toml" | sed 's/^/  /' | head -8
"$BIN" run --config "$OUT/cbtrail.toml" 2>"$OUT/daemon.log" &
DAEMON=$!
trap 'kill $DAEMON 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
    grep -q consuming "$OUT/daemon.log" && break
    kill -0 $DAEMON 2>/dev/null || { cat "$OUT/daemon.log"; exit 1; }
    sleep 0.1
done
grep -q consuming "$OUT/daemon.log" || { cat "$OUT/daemon.log"; exit 1; }

say "Publishing synthetic CB traffic: $SPEC"
"$BIN" publish --amqp "$URL" --synthetic "$SPEC" | tee "$OUT/published.txt"

say "Waiting until everything is stored and the triggered exports are written"
for _ in $(seq 1 600); do
    state=$(rabbitmqctl -q list_queues -p "$VHOST" name messages --no-table-headers | awk '$1=="cbtrail-demo"{print $2}')
    open=$("$BIN" jobs --db "$OUT/cbtrail.db" --state pending 2>/dev/null | grep -c . || true)
    running=$("$BIN" jobs --db "$OUT/cbtrail.db" --state running 2>/dev/null | grep -c . || true)
    done_jobs=$("$BIN" jobs --db "$OUT/cbtrail.db" --state done 2>/dev/null | grep -c . || true)
    if [ "${state:-1}" = 0 ] && [ "$open" -le 1 ] && [ "$running" -le 1 ] && [ "$done_jobs" -gt 1 ]; then
        break
    fi
    sleep 0.5
done

say "What landed (cbtrail db-info)"
"$BIN" db-info --db "$OUT/cbtrail.db"

say "Process-tree statistics of every host (msticpy definitions)"
"$BIN" stats --db "$OUT/cbtrail.db" | head -20

say "Export jobs the hits triggered"
"$BIN" jobs --db "$OUT/cbtrail.db" | head -12

GUID=$("$BIN" jobs --db "$OUT/cbtrail.db" --state done | grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' | head -1)
if [ -n "$GUID" ]; then
    say "Process tree around the hit process $GUID"
    "$BIN" tree --db "$OUT/cbtrail.db" --depth 2 "$GUID" | head -40

    DIR=$(dirname "$(find "$OUT/exports" -name tree.json -path "*$GUID*" | head -1)")
    say "Its export: $DIR"
    ls -l "$DIR"
    echo "--- tree.json (start)"
    head -c 800 "$DIR/tree.json"; echo
    CSV=$(ls "$DIR"/*"$GUID"*.csv | head -1)
    echo "--- $(basename "$CSV") (first lines)"
    head -6 "$CSV" | cut -c1-220
fi

say "Metrics (http://$METRICS/metrics)"
exec 3<>"/dev/tcp/${METRICS%:*}/${METRICS#*:}"
printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
grep -E '^cbtrail_(events_stored_total|notifications_stored_total|quarantined_total|bus_connected|export_jobs_total)' <&3 | head -20 || true
exec 3<&-

say "Stopping the daemon (SIGTERM)"
kill -TERM $DAEMON
wait $DAEMON && echo "daemon exited 0"
trap - EXIT
rabbitmqctl -q delete_vhost "$VHOST" >/dev/null 2>&1 || true
echo "database, log and exports are in demo-out/"
