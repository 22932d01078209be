#!/usr/bin/env bash
# Runs every fuzzer for a fixed time, starting from its committed corpus in
# tests/fuzz/corpus/, and fails on any finding: a crash, an out-of-bounds
# access or other ASan report, undefined behaviour, a leak, an input that
# runs longer than 10 s, needs more than 2 GiB or allocates more than
# 128 MiB at once (no input of a few KiB has a reason to). Each finding's
# input is kept and its path printed, to replay with `fuzz_<target> FILE`.
# scripts/test.sh runs this; docs/testing.md has the longer campaign.
#
# usage: tests/fuzz/run.sh BUILD_DIR [SECONDS_PER_TARGET]   (default 20)
#   JOBS       fuzzers run at a time (default: the number of CPUs)
#   S2FT_FUZZ_TARGETS   a subset, e.g. "checkpoint cli_args"
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:?usage: tests/fuzz/run.sh BUILD_DIR [SECONDS_PER_TARGET]}
SECONDS_PER_TARGET=${2:-20}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

# target and the largest input it is given (bytes): room for the seeds and
# their growth, small enough to keep every run in the microseconds.
declare -A MAX_LEN=([safetensors]=4096 [selection_load]=8192 [adapter_load]=8192 [checkpoint]=8192 [cli_args]=1024)
# The slowest per run last: with an odd count it runs alone, on a core of its own.
TARGETS=${S2FT_FUZZ_TARGETS:-"safetensors selection_load adapter_load cli_args checkpoint"}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/s2ft-fuzz.XXXXXX")
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_one() {
  local t=$1 bin="$BUILD/tests/fuzz/fuzz_$1"
  mkdir -p "$WORK/$t"
  # New inputs go to the scratch folder (the first one); the committed
  # corpus is only read.
  set +e
  "$bin" -max_total_time="$SECONDS_PER_TARGET" -max_len="${MAX_LEN[$t]}" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=128 -dict="tests/fuzz/$t.dict" -artifact_prefix="$WORK/$t-" -print_final_stats=1 \
    "$WORK/$t" "tests/fuzz/corpus/$t" >"$WORK/$t.log" 2>&1
  echo $? >"$WORK/$t.rc"
  set -e
}

start=$(date +%s)
for t in $TARGETS; do
  [ -x "$BUILD/tests/fuzz/fuzz_$t" ] || { echo "fuzz: $BUILD/tests/fuzz/fuzz_$t is not built" >&2; exit 1; }
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  run_one "$t" &
done
wait

failed=0
for t in $TARGETS; do
  rc=$(cat "$WORK/$t.rc")
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/$t.log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$WORK/$t.log")
  cov=$(grep -o 'cov: [0-9]*' "$WORK/$t.log" | tail -1)
  if [ "$rc" -eq 0 ]; then
    printf 'fuzz_%-15s %9s runs %6s/s  %s\n' "$t" "${runs:-?}" "${rate:-?}" "${cov:-}"
  else
    failed=1
    echo "fuzz_$t: FINDING (exit status $rc); the end of its log:" >&2
    tail -n 60 "$WORK/$t.log" >&2
    for f in "$WORK/$t-"*; do
      [ -e "$f" ] && echo "fuzz_$t: reproduce with: $BUILD/tests/fuzz/fuzz_$t $f" >&2
    done
  fi
done
echo "fuzz: $(($(date +%s) - start)) s"
if [ "$failed" -ne 0 ]; then
  echo "fuzz: inputs and logs kept in $WORK" >&2
  exit 1
fi
rm -rf "$WORK"
