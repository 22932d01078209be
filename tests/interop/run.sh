#!/usr/bin/env bash
# CTest wrapper of the interop tests: makes the build's Python environment once
# (tests/support/python_env.sh) and runs test_peft_export.py for one case.
# usage: run.sh BUILD_DIR S2FT_CLI DATA_DIR CASE
# Exit status 77 (the tests' SKIP_RETURN_CODE) when the environment cannot be
# made on this machine (no network for pip, python3-torch not installed) or
# the case's data is absent; with CI=true an environment that cannot be made
# fails the test instead, so CI never passes without running it.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$1 cli=$2 data=${S2FT_TEST_DATA:-$3} case=$4
source "$repo/tests/support/python_env.sh"

use_python_env "$repo" "$build"
exec "$python" "$here/test_peft_export.py" --s2ft "$cli" --data "$data" --case "$case"
