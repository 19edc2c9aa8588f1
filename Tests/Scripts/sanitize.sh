#!/bin/sh
# The whole test suite under a sanitizer (`make soak`): address or thread. Builds the package and its tests with
# `--sanitize=KIND` into a scratch path of its own (.build-asan, .build-tsan), then runs every suite but the systemd
# one (it tests the Debian package of the release build, not memory safety) with CONNVAULT_BIN_DIR pointing at that
# build, so the connvaultd and connvaultctl the end-to-end suites start are sanitized too.
#
# Every sanitized process (the test runner and each daemon or CLI child) writes its reports to
# <scratch>/sanitizer-logs/KIND.PID instead of standard error, where a report in a child would only change its exit
# status; the run fails when any report file appears, whatever the tests said.
#
#   Tests/Scripts/sanitize.sh address|thread [swift test arguments…]
# Environment: SWIFT (default swift), TEST_WIDTH (tests at a time, default 4), CONNVAULT_TIME_SCALE (how much longer
# the time-outs of timing tests may be; default 4 under a sanitizer).
set -u

kind=${1:-}
case "$kind" in
address) scratch=.build-asan; prefix=asan ;;
thread) scratch=.build-tsan; prefix=tsan ;;
*) echo "usage: $0 address|thread [swift test arguments…]" >&2; exit 2 ;;
esac
shift
root=$(cd "$(dirname "$0")/../.." && pwd)
swift=${SWIFT:-swift}
cd "$root"

"$swift" build --build-tests --sanitize="$kind" --scratch-path "$scratch" || exit 1

logs=$root/$scratch/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"
# detect_leaks=0: LeakSanitizer reports the Swift runtime's and Foundation's process-lifetime allocations (metadata
# caches, the cooperative pool's threads) as leaks at exit; leaks are not what this run is for (memory hygiene of
# secrets is tested directly). halt_on_error: the first report ends the process, so nothing runs on from a corrupted
# heap. log_path: a report goes to a file per process, which the end of this script looks for.
# ThreadSanitizer goes on after a report (halt_on_error=0): a race leaves nothing corrupted that the next report
# could not be trusted on, and one run then lists every race it meets (each once per process); any report still
# fails the run.
ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=0:log_path=$logs/asan"
# suppressions: each with its reason in the file.
TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:suppressions=$root/Tests/Scripts/tsan-suppressions.txt:log_path=$logs/tsan"
export ASAN_OPTIONS TSAN_OPTIONS
export CONNVAULT_BIN_DIR="$root/$scratch/debug"
export CONNVAULT_TIME_SCALE="${CONNVAULT_TIME_SCALE:-4}"
export CONNVAULT_SANITIZER="$kind"

start=$(date +%s)
"$swift" test --skip-build --sanitize="$kind" --scratch-path "$scratch" --skip SystemdTests \
	--experimental-maximum-parallelization-width "${TEST_WIDTH:-4}" "$@"
status=$?
echo "sanitize.sh: swift test under the $kind sanitizer exited $status after $(( $(date +%s) - start )) s"

reports=$(find "$logs" -type f -name "$prefix.*" | sort)
if [ -n "$reports" ]; then
	echo "sanitize.sh: $(echo "$reports" | wc -l) $kind sanitizer report(s):" >&2
	for report in $reports; do
		echo "== $report" >&2
		cat "$report" >&2
	done
	exit 1
fi
echo "sanitize.sh: no $kind sanitizer report"
exit $status
