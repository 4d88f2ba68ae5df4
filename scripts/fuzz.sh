#!/usr/bin/env bash
# Coverage-guided fuzzing of decode and store (fuzz/fuzz_targets/decode_store.rs) with libFuzzer.
# Not part of CI: a run is open-ended. Crashing inputs land in fuzz/artifacts/decode_store/.
#   bash scripts/fuzz.sh [SECONDS]        (default 600)
# cargo-fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP lets the stable toolchain take them.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

corpus=fuzz/corpus/decode_store
mkdir -p "$corpus"
# Seeds from the real captures (read in place; the corpus is git-ignored and never shipped), each
# prefixed with the selector byte the target reads: 0x08 JSON followed by its routing key (the
# directory's name, after a length byte), 0x01 single protobuf, 0x06 zip and 0x07 bare bundle (the
# last two with the raw-bundle headers).
captures=../shared/fixtures/cb-event-forwarder
if [ -d "$captures" ] && [ -z "$(ls -A "$corpus")" ]; then
    seed() { # selector, files...
        local sel="$1" f key
        shift
        for f in "$@"; do
            key="$(basename "$(dirname "$f")")"
            {
                printf "\\x$sel"
                if [ "$sel" = 08 ]; then
                    printf "\\x$(printf %02x "${#key}")%s" "$key"
                fi
                cat "$f"
            } >"$corpus/seed-$sel-$key-$(basename "$f")"
        done
    }
    # Every routing key's directory, a few files of each.
    mapfile -t json < <(find "$captures/json" -type f | sort | awk -F/ 'n[$(NF-1)]++ < 8')
    mapfile -t pb < <(find "$captures/protobuf" -type f | sort | awk -F/ 'n[$(NF-1)]++ < 30')
    seed 08 "${json[@]}"
    seed 01 "${pb[@]}"
    seed 06 "$captures"/zip/*.zip
    seed 07 "$captures/bundle/bundleone"
    echo "fuzz: seeded $(ls "$corpus" | wc -l) inputs from $captures"
fi
cargo fuzz run --fuzz-dir fuzz decode_store "$corpus" -- \
    -max_len=262144 -timeout=20 -rss_limit_mb=4096 -max_total_time="$secs" -print_final_stats=1
