# Sourced by the CTest wrappers of the Python tests (interop, python_core, python_torch,
# python_pip_install): the one rule for an environment that cannot be made, and the
# build's Python environment made once.
#
# cannot MSG: exit 77 (the tests' SKIP_RETURN_CODE) with "SKIP: MSG"; with CI=true
# (.ci/run sets it) exit 1 with "FAIL: MSG" instead, so CI never passes without
# running the tests.
cannot() {
  if [ "${CI:-}" = true ]; then
    echo "FAIL: $1"
    exit 1
  fi
  echo "SKIP: $1"
  exit 77
}

# use_python_env REPO BUILD_DIR: makes BUILD_DIR/python-env with scripts/python-env.sh
# (serialised with a lock: CTest runs these tests in parallel) and sets $python to its
# interpreter; the environment sees only the venv's and Debian's packages, offline.
use_python_env() {
  local repo=$1 build=$2 rc
  mkdir -p "$build"
  flock "$build/python-env.lock" bash "$repo/scripts/python-env.sh" "$build"
  rc=$?
  [ "$rc" -eq 0 ] || cannot "the Python environment could not be made (scripts/python-env.sh exit $rc, see above)"
  python="$build/python-env/bin/python"
  unset PYTHONPATH PYTHONUSERBASE
  export PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
}
