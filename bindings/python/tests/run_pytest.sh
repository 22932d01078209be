#!/usr/bin/env bash
# CTest wrapper of python_core: runs pytest on bindings/python/tests against a build's libs2ft
# (S2FT_LIBRARY, PYTHONPATH=bindings/python/src), in the build's Python environment
# (BUILD_DIR/python-env from scripts/python-env.sh: a venv over Debian's python3 that sees
# python3-numpy, python3-torch and python3-pytest; made once, under a lock, as the interop tests do).
# usage: run_pytest.sh BUILD_DIR LIBS2FT [pytest arguments (default: tests/test_*.py)...]
# Exit status 77 (SKIP_RETURN_CODE) when the environment cannot be made here; with CI=true that
# fails instead, so CI never passes without running the tests.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
build=${1:?usage: run_pytest.sh BUILD_DIR LIBS2FT} lib=${2:?usage: run_pytest.sh BUILD_DIR LIBS2FT}
shift 2

source "$repo/tests/support/python_env.sh"

use_python_env "$repo" "$build"
"$python" -c 'import pytest, numpy' 2>/dev/null ||
  cannot "$python cannot import pytest and numpy: install Debian's python3-pytest and python3-numpy (scripts/setup-debian.sh)"

# Only the source tree's package and the venv's and Debian's packages; no bytecode or pytest
# cache written into the source tree.
unset LD_LIBRARY_PATH
export PYTHONPATH="$repo/bindings/python/src" S2FT_LIBRARY="$lib"
cd "$repo/bindings/python"
# By default the core's tests: the files directly in tests/ (s2ft_torch/ has its own CTest tests).
[ "$#" -gt 0 ] || set -- tests/test_*.py
exec "$python" -m pytest -q -p no:cacheprovider -o addopts= "$@"
