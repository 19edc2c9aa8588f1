#!/usr/bin/env bash
# Allocations, system calls and context switches per cached token request, for bare NIO and the vault: the uprobe
# method of BENCHMARKS.md, scripted. Runs connvault-bench with 16 connections for one long round and attaches
# `perf stat` to each Swift server while the load generator measures it (the round's order is nginx, bare NIO, the
# vault; each case is 1 s of warm-up, then the window). One answer is one write or writev (a prepared answer is one
# buffer, so NIO writes it with write), so per request = count / (write + writev).
#
#   Benchmarks/allocations.sh [BIN_DIR] [HARNESS]
#     BIN_DIR   release build to measure (default .build/release): connvaultd, connvaultctl, bench-nio-server
#     HARNESS   the connvault-bench binary (default BIN_DIR/connvault-bench)
# Needs perf and root (a uprobe on libc's malloc).
set -euo pipefail
bin_dir=$(realpath "${1:-.build/release}")
harness=${2:-$bin_dir/connvault-bench}
window=${WINDOW:-8}
libc=$(ldconfig -p | awk '/libc\.so\.6 .*x86-64/ { print $NF; exit }')
perf probe -l 2>/dev/null | grep -q 'probe_libc:malloc' || perf probe -q -x "$libc" malloc
work=$(mktemp -d /tmp/cv-alloc-XXXXXX)
trap 'kill "$harness_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

"$harness" --bin-dir "$bin_dir" --skip-proxy --connections 16 --rounds 1 --duration $((window + 4)) \
    --cold-samples 1 --herd 10 \
    --results-file "$work/results.txt" >"$work/out.txt" 2>&1 &
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

# perf stat on one pid for the window; prints "name: N allocations, N syscalls, N context switches per request".
measure() {
    local name=$1 pid=$2
    perf stat -x, -e probe_libc:malloc,syscalls:sys_enter_write,syscalls:sys_enter_writev \
        -e raw_syscalls:sys_enter,context-switches \
        -p "$pid" -o "$work/$name.csv" -- sleep "$window"
    awk -F, -v name="$name" '
        $3 == "probe_libc:malloc" { malloc = $1 }
        $3 == "syscalls:sys_enter_write" || $3 == "syscalls:sys_enter_writev" { answers += $1 }
        $3 == "raw_syscalls:sys_enter" { syscalls = $1 } $3 == "context-switches" { switches = $1 }
        END {
            if (answers == 0) { print name ": no answers in the window"; exit 1 }
            printf "%s: %.2f allocations, %.2f system calls, %.2f context switches per request (%d answers)\n",
                name, malloc / answers, syscalls / answers, switches / answers, answers
        }' "$work/$name.csv" || cat "$work/$name.csv" >&2
}

wait_for 'vault: GET'
# The harness's own children: other daemons may run on the machine.
nio_pid=$(pgrep -P "$harness_pid" -f bench-nio-server)
vault_pid=$(pgrep -P "$harness_pid" -x connvaultd)
wait_for 'round 1: nginx, 16'
sleep 2
measure "bare NIO" "$nio_pid"
wait_for 'round 1: bare NIO, 16'
sleep 2
measure "vault" "$vault_pid"
wait_for 'round 1: vault, 16'
grep 'round 1:' "$work/out.txt"
