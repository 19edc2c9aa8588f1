#!/usr/bin/env bash
# Where the vault's proxy route spends its CPU time: runs connvault-bench's proxy case (`--proxy-only`, two rounds,
# CONNECTIONS connections) and attaches perf to the harness's own connvaultd while the load generator measures it:
# `perf record -g` in round 1, `perf stat` (system calls, memory-mapping calls, context switches) in round 2. The
# rounds' order is nginx proxy, bare NIO proxy, vault proxy, then bare NIO proxy, vault proxy, nginx proxy; each case
# is 1 s of warm-up, then the window.
#
#   Benchmarks/profile-proxy.sh [BIN_DIR] [HARNESS] [OUT_DIR]
#     BIN_DIR   release build to measure (default .build/release): connvaultd, connvaultctl, bench-nio-server
#     HARNESS   the connvault-bench binary (default BIN_DIR/connvault-bench)
#     OUT_DIR   where perf.data and the reports go (default bench-results/profile-proxy)
#   CONNECTIONS (default 4), WINDOW (seconds per perf run, default 10)
# Needs perf and root.
set -euo pipefail
bin_dir=$(realpath "${1:-.build/release}")
harness=${2:-$bin_dir/connvault-bench}
out=${3:-bench-results/profile-proxy}
connections=${CONNECTIONS:-4}
window=${WINDOW:-10}
mkdir -p "$out"
out=$(realpath "$out")
work=$(mktemp -d /tmp/cv-prof-XXXXXX)
trap 'kill "$harness_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

"$harness" --bin-dir "$bin_dir" --proxy-only --connections "$connections" --rounds 2 --duration $((window + 4)) \
    --results-file "$out/results.txt" >"$work/out.txt" 2>&1 &
harness_pid=$!

# Waits for a line of the harness's output, up to 5 minutes.
wait_for() {
    for _ in $(seq 3000); do
        grep -q "$1" "$work/out.txt" && return 0
        kill -0 "$harness_pid" 2>/dev/null || { cat "$work/out.txt" >&2; return 1; }
        sleep 0.1
    done
    echo "timed out waiting for: $1" >&2
    return 1
}

wait_for 'vault proxy: status'
# The harness's own child: other daemons may run on the machine.
vault_pid=$(pgrep -P "$harness_pid" -x connvaultd)

wait_for "round 1: bare NIO proxy, $connections"
sleep 2
perf record -F 999 -g -p "$vault_pid" -o "$out/perf.data" -- sleep "$window" 2>"$work/record.txt"

wait_for "round 2: bare NIO proxy, $connections"
sleep 2
perf stat -x, -o "$out/stat.csv" -p "$vault_pid" \
    -e raw_syscalls:sys_enter,syscalls:sys_enter_mprotect,syscalls:sys_enter_munmap,syscalls:sys_enter_mmap \
    -e syscalls:sys_enter_madvise,context-switches,task-clock -- sleep "$window"
wait_for "round 2: vault proxy, $connections"
wait "$harness_pid" || true
cp "$work/out.txt" "$out/harness.txt"

# Requests in the perf stat window, from round 2's rate of the vault proxy.
rate=$(awk -v c="$connections" '$0 ~ "round 2: vault proxy, " c " connection" {
    for (i = 1; i <= NF; i++) if ($(i + 1) == "req/s,") { gsub(",", "", $i); print $i } }' "$out/harness.txt")
awk -F, -v rate="$rate" -v window="$window" '
    $1 ~ /^[0-9.]+$/ { printf "%-32s %14.0f  %8.2f per request\n", $3, $1, $1 / (rate * window) }
' "$out/stat.csv" >"$out/stat.txt"

perf report -i "$out/perf.data" --no-children --sort sym --stdio 2>/dev/null | grep -v '^$' >"$out/by-symbol.txt"
perf report -i "$out/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^$' \
    >"$out/by-library.txt"
perf report -i "$out/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep -v '^$' \
    >"$out/by-thread.txt"
perf report -i "$out/perf.data" --children --sort sym --stdio -g none 2>/dev/null | grep -v '^$' \
    >"$out/with-callees.txt"
grep 'round [12]:' "$out/harness.txt"
echo "vault proxy, perf stat over ${window} s at ${rate} req/s:"
cat "$out/stat.txt"
echo "reports in $out: by-symbol.txt by-library.txt by-thread.txt with-callees.txt stat.txt"
