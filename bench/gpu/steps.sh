# Sourced by the device scripts (bench/gpu/run_h200.sh, bench/python/run_gpu.sh): steps that
# share one time budget, each logged with its status and time, so a run that is cut off
# still says how far it got.
# The sourcing script sets: out (folder of steps.log), start (epoch seconds), budget
# (seconds), reserve (seconds kept for the end).

remaining() { echo $((start + budget - $(date +%s))); }
note() { echo "$*" | tee -a "$out/steps.log"; }

# The limit of a step of cap $1 seconds: never past the reserve kept for the end.
step_limit() {
  local r
  r=$(($(remaining) - reserve))
  ((r > $1)) && r=$1
  echo "$r"
}

# run_step NAME CAP LOG COMMAND...: COMMAND's output appended to LOG, cut off at
# step_limit CAP; status and time noted in steps.log. Returns COMMAND's status
# (124 when there was no time left to start it).
run_step() {
  local name=$1 cap=$2 log=$3 limit t0 rc
  shift 3
  limit=$(step_limit "$cap")
  if ((limit < 5)); then
    note "$(printf '%-14s skipped: no time left  $ %s' "$name" "$*")"
    return 124
  fi
  t0=$(date +%s)
  echo "\$ $*" >>"$log"
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  rc=$?
  note "$(printf '%-14s rc=%-3s %4ss (limit %ss)  $ %s' "$name" "$rc" "$(($(date +%s) - t0))" "$limit" "$*")"
  return "$rc"
}
