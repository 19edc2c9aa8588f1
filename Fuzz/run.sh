#!/bin/sh
# Runs the libFuzzer targets of connvault-fuzz (built by `make fuzz-build` into .build-fuzz).
#   Fuzz/run.sh SECONDS [TARGET...]   each target for SECONDS (make fuzz: FUZZ_SECONDS, 120)
#   Fuzz/run.sh --short [TARGET...]   each target briefly with a fixed seed (make test)
# New inputs go to .build-fuzz/corpus/TARGET (--short: a fresh .build-fuzz/short-corpus/TARGET; the committed seeds in
# Fuzz/Corpus/TARGET are only read), crash inputs to .build-fuzz/artifacts/, each run's log to
# .build-fuzz/logs/TARGET.log. A crash, a leak or a hang fails the run.
# The last lines print per target: executions, exec/s, coverage (cov: edges, ft: features) and corpus size.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCRATCH=${FUZZ_SCRATCH:-$ROOT/.build-fuzz}
BIN=${FUZZ_BIN:-$SCRATCH/debug/connvault-fuzz}
ALL="http-admin http-app json-requests store-records proc-parsers proxy-path upstream-answer cli-args"

if [ "${1:-}" = "--short" ]; then
	# Fixed seed and a fixed number of runs (the HTTP targets are slower per input), bounded in time as well.
	MODE=short
	shift
else
	MODE=timed
	SECONDS_EACH=${1:?usage: Fuzz/run.sh SECONDS|--short [TARGET...]}
	shift
fi
TARGETS=${*:-$ALL}
[ -x "$BIN" ] || { echo "no $BIN: run 'make fuzz-build' first" >&2; exit 2; }
mkdir -p "$SCRATCH/logs" "$SCRATCH/artifacts"

failed=""
summary=""
for target in $TARGETS; do
	corpus="$SCRATCH/corpus/$target"
	case "$MODE" in
	short)
		# From the committed seeds alone, so that every make test fuzzes the same inputs first.
		corpus="$SCRATCH/short-corpus/$target"
		rm -rf "$corpus"
		case "$target" in http-*) runs=300 ;; store-records) runs=2000 ;; *) runs=20000 ;; esac
		limits="-seed=1 -runs=$runs -max_total_time=20"
		;;
	timed) limits="-max_total_time=$SECONDS_EACH" ;;
	esac
	mkdir -p "$corpus"
	dict=""
	[ -f "$ROOT/Fuzz/Dictionaries/$target.dict" ] && dict="-dict=$ROOT/Fuzz/Dictionaries/$target.dict"
	log="$SCRATCH/logs/$target.log"
	# shellcheck disable=SC2086
	SWIFT_BACKTRACE=enable=no LSAN_OPTIONS="suppressions=$ROOT/Fuzz/lsan.supp:print_suppressions=0" \
		CONNVAULT_FUZZ_TARGET=$target "$BIN" $limits $dict -timeout=30 -rss_limit_mb=4096 -max_len=8192 \
		-print_final_stats=1 -artifact_prefix="$SCRATCH/artifacts/$target-" \
		"$corpus" "$ROOT/Fuzz/Corpus/$target" >"$log" 2>&1
	status=$?
	done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
	runs_done=$(grep -E '^stat::number_of_executed_units:' "$log" | awk '{print $2}')
	rate=$(grep -E '^stat::average_exec_per_sec:' "$log" | awk '{print $2}')
	cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$done_line" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
	corp=$(echo "$done_line" | sed -n 's/.*corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p')
	line=$(printf '%-14s status %-3s execs %-9s exec/s %-6s cov %-6s ft %-6s corpus %s' "$target" "$status" \
		"${runs_done:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")
	echo "$line"
	summary="$summary$line
"
	if [ "$status" -ne 0 ]; then
		failed="$failed $target"
		grep -E 'ERROR|invariant|SUMMARY|Test unit written|crash-|timeout-|leak-' "$log" | head -20 >&2
	fi
done
printf '%s' "$summary" >"$SCRATCH/logs/summary.txt"
if [ -n "$failed" ]; then
	echo "fuzz targets failed:$failed (logs in $SCRATCH/logs)" >&2
	exit 1
fi
