#!/usr/bin/env bash
# CTest wrapper of the s2ft.torch tests: makes the build folder's Python environment
# once (scripts/python-env.sh, serialised with a lock; Debian's torch, transformers and
# peft) and runs pytest on this folder against the build's libs2ft and s2ft tool.
# usage: run.sh BUILD_DIR LIBS2FT S2FT_CLI DATA_DIR PYTEST_ARGS... (paths relative to this folder)
# Exit status 77 (the tests' SKIP_RETURN_CODE) when the environment cannot be made
# here (no network for pip, python3-torch missing); with CI=true that fails instead.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
build=$1 library=$2 cli=$3 data=${S2FT_TEST_DATA:-$4}
shift 4

mkdir -p "$build"
flock "$build/python-env.lock" bash "$repo/scripts/python-env.sh" "$build"
rc=$?
if [ "$rc" -ne 0 ]; then
  if [ "${CI:-}" = true ]; then
    echo "FAIL: the Python environment could not be made (scripts/python-env.sh exit $rc, see above)"
    exit 1
  fi
  echo "SKIP: the Python environment could not be made here (scripts/python-env.sh exit $rc, see above)"
  exit 77
fi
# Only the venv's and Debian's packages; never the network.
unset PYTHONUSERBASE
export PYTHONNOUSERSITE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONPATH="$repo/bindings/python/src" S2FT_LIBRARY="$library" S2FT_CLI="$cli" S2FT_TEST_DATA="$data"
export PYTHONDONTWRITEBYTECODE=1
cd "$here" && exec "$build/python-env/bin/python" -m pytest -q -p no:cacheprovider "$@"
