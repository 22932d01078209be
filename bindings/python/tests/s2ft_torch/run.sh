#!/usr/bin/env bash
# CTest wrapper of the s2ft.torch tests: makes the build's Python environment once
# (tests/support/python_env.sh; Debian's torch, transformers and peft) and runs pytest on
# this folder against the build's libs2ft and s2ft tool.
# usage: run.sh BUILD_DIR LIBS2FT S2FT_CLI DATA_DIR PYTEST_ARGS... (paths relative to this folder)
# Exit status 77 (the tests' SKIP_RETURN_CODE) when the environment cannot be made
# here (no network for pip, python3-torch missing); with CI=true that fails instead.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
build=$1 library=$2 cli=$3 data=${S2FT_TEST_DATA:-$4}
shift 4
source "$repo/tests/support/python_env.sh"

use_python_env "$repo" "$build"
export PYTHONPATH="$repo/bindings/python/src" S2FT_LIBRARY="$library" S2FT_CLI="$cli" S2FT_TEST_DATA="$data"
cd "$here" && exec "$python" -m pytest -q -p no:cacheprovider "$@"
