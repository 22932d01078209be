#!/usr/bin/env bash
# CTest wrapper of the interop tests: makes the Python environment once per
# build folder (scripts/python-env.sh, serialised with a lock: tests run in
# parallel) and runs test_peft_export.py for one case.
# usage: run.sh BUILD_DIR S2FT_CLI DATA_DIR CASE
# Exit status 77 (the tests' SKIP_RETURN_CODE) when the environment cannot be
# made on this machine (no network for pip, python3-torch not installed) or
# the case's data is absent; with CI=true an environment that cannot be made
# fails the test instead, so CI never passes without running it.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$1 cli=$2 data=${S2FT_TEST_DATA:-$3} case=$4

mkdir -p "$build"
flock "$build/python-env.lock" bash "$repo/scripts/python-env.sh" "$build"
rc=$?
if [ "$rc" -ne 0 ]; then
  if [ "${CI:-}" = true ]; then
    echo "FAIL: the interop Python environment could not be made (scripts/python-env.sh exit $rc, see above)"
    exit 1
  fi
  echo "SKIP: the interop Python environment could not be made here (scripts/python-env.sh exit $rc, see above)"
  exit 77
fi
# Only the venv's and Debian's packages; never the network (everything is local).
unset PYTHONPATH
export PYTHONNOUSERSITE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$build/python-env/bin/python" "$here/test_peft_export.py" --s2ft "$cli" --data "$data" --case "$case"
