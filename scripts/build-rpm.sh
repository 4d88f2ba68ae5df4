#!/usr/bin/env bash
# Build the release binary and the cbtrail RPM.
#
#   scripts/build-rpm.sh           glibc build (runs on hosts with a glibc at least as new as the
#                                  build machine's; see deploy/INSTALL.md)
#   scripts/build-rpm.sh --musl    fully static x86_64-unknown-linux-musl build: runs on any EL8/EL9
#                                  regardless of glibc (needs `rustup target add
#                                  x86_64-unknown-linux-musl` and Debian's musl-tools for the C parts)
#
# Needs cargo-generate-rpm (`cargo install cargo-generate-rpm`). Honours CARGO_TARGET_DIR. Prints the
# RPM path, and its contents when `rpm` is installed.
set -euo pipefail

cd "$(dirname "$0")/.."

musl=false
for arg in "$@"; do
    case "$arg" in
        --musl) musl=true ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

# Files the package ships that other parts of the project provide.
missing=0
for f in deploy/cbtrail.toml deploy/summary.json deploy/INSTALL.md systemd/cbtrail.service \
         deploy/grafana-dashboard.json deploy/prometheus-alerts.yml; do
    if [ ! -f "$f" ]; then
        echo "missing $f (listed in [package.metadata.generate-rpm] assets)" >&2
        missing=1
    fi
done
[ "$missing" -eq 0 ] || exit 1

if ! command -v cargo-generate-rpm >/dev/null 2>&1; then
    echo "cargo-generate-rpm not found: cargo install cargo-generate-rpm" >&2
    exit 1
fi

target_dir=${CARGO_TARGET_DIR:-target}
target_args=()
if "$musl"; then
    target_args=(--target x86_64-unknown-linux-musl)
    # ring and the bundled SQLite are C: compile them with musl's gcc wrapper.
    export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}
    command -v "$CC_x86_64_unknown_linux_musl" >/dev/null 2>&1 || {
        echo "$CC_x86_64_unknown_linux_musl not found: apt-get install musl-tools" >&2
        exit 1
    }
fi

cargo build --release --locked "${target_args[@]}"

# The release profile keeps line tables (~70 MB binary); the package drops the DWARF but keeps the
# symbol table (~12 MB), so panics still name their functions.
if "$musl"; then
    bin="$target_dir/x86_64-unknown-linux-musl/release/cbtrail"
else
    bin="$target_dir/release/cbtrail"
fi
strip --strip-debug "$bin"

out_dir="$target_dir/generate-rpm"
mkdir -p "$out_dir"
# gzip payload: readable by every rpm version in use on EL8/EL9 (zstd needs a newer rpm).
cargo generate-rpm --target-dir "$target_dir" "${target_args[@]}" \
    --payload-compress gzip -o "$out_dir"

rpm_file=$(ls -t "$out_dir"/cbtrail-*.rpm | head -n 1)
echo "built $rpm_file ($(du -h "$rpm_file" | cut -f1))"
if command -v rpm >/dev/null 2>&1; then
    rpm -qip "$rpm_file"
    echo "--- contents"
    rpm -qlvp "$rpm_file"
    echo "--- requires"
    rpm -qRp "$rpm_file"
fi
