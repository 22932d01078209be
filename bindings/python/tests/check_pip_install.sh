#!/usr/bin/env bash
# CTest wrapper of python_pip_install: installs the Python package with pip, as a user would, in
# fresh venvs (over Debian's python3, seeing its numpy), and uses it from outside the source tree
# with no S2FT_LIBRARY, PYTHONPATH or LD_LIBRARY_PATH:
#  1. `pip install ./bindings/python`: scikit-build-core (pinned in pyproject.toml, from PyPI)
#     compiles libs2ft and bundles it (and libs2ft_cuda.so when WITH_CUDA is on);
#  2. S2FT_PYTHON_USE_INSTALLED=1 with CMAKE_PREFIX_PATH: nothing compiled, the package loads the
#     libs2ft of a `cmake --install` of BUILD_DIR, found at build time;
#  3. the same without a prefix: found through LD_LIBRARY_PATH at import, and a clear ImportError
#     without it.
# usage: check_pip_install.sh BUILD_DIR SCRATCH_DIR WITH_CUDA(0|1)
# Exit status 77 (SKIP_RETURN_CODE) when the environment cannot be made here (no venv module, no
# route to PyPI); with CI=true that fails instead.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
build=${1:?usage} scratch=${2:?usage} cuda=${3:?usage}
python=/usr/bin/python3
package="$repo/bindings/python"
unset PYTHONPATH S2FT_LIBRARY LD_LIBRARY_PATH S2FT_PYTHON_USE_INSTALLED
export PYTHONNOUSERSITE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
pip_net=(--retries 2 --timeout 30)

source "$repo/tests/support/python_env.sh"  # cannot
fail() {
  echo "FAIL: $1"
  exit 1
}
new_venv() {
  "$python" -m venv --system-site-packages "$1" >/dev/null 2>&1 || cannot "$python -m venv failed (install python3-venv)"
}
# Runs python code in a venv from the scratch folder (outside the source tree).
check() {
  (cd "$scratch" && "$1/bin/python" -c "$2")
}

"$python" -c 'import venv, ensurepip, numpy' 2>/dev/null ||
  cannot "$python lacks venv, ensurepip or numpy (scripts/setup-debian.sh installs python3-venv, python3-numpy)"
rm -rf "$scratch" && mkdir -p "$scratch"

# The build backend must be reachable; a failure after this point is the package's.
backend=$(grep -o 'scikit-build-core==[0-9.]*' "$package/pyproject.toml")
new_venv "$scratch/venv"
"$scratch/venv/bin/pip" download -q "${pip_net[@]}" --no-deps --dest "$scratch/probe" "$backend" \
  >"$scratch/probe.log" 2>&1 || cannot "pip cannot download $backend (no route to PyPI?): $(tail -n 1 "$scratch/probe.log")"

smoke='
import sys, numpy as np, s2ft
x = np.arange(12, dtype=np.float32).reshape(3, 4)
w = np.ones((2, 4), np.float32)
y = np.full((3, 2), np.nan, np.float32)
with s2ft.Context.cpu() as ctx:
    s2ft.forward_partial(ctx, s2ft.Slice.range(s2ft.Axis.COLUMNS, 1, 2), x, w, y)
assert np.array_equal(y, np.repeat(x.sum(axis=1, keepdims=True), 2, axis=1)), y
print(s2ft.library_path())
'

# 1. Bundled: compiles libs2ft once.
start=$(date +%s)
# A CUDA build compiles the kernels for one architecture only: this checks
# that the module is built and bundled, and the gpu tests check the kernels.
arch=()
if [ "$cuda" = 1 ] || [ "$cuda" = ON ]; then arch=(--config-settings="cmake.define.CMAKE_CUDA_ARCHITECTURES=90-real"); fi
if ! "$scratch/venv/bin/pip" install -v "${pip_net[@]}" --config-settings="cmake.define.S2FT_WITH_CUDA=$cuda" \
    "${arch[@]}" "$package" >"$scratch/pip-bundled.log" 2>&1; then
  tail -n 40 "$scratch/pip-bundled.log"
  fail "pip install ./bindings/python failed (log: $scratch/pip-bundled.log)"
fi
seconds=$(( $(date +%s) - start ))
site=$(cd "$scratch" && "$scratch/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
loaded=$(check "$scratch/venv" "$smoke") || fail "the bundled package does not work (see above)"
[ "$loaded" = "$site/s2ft/libs2ft.so.0" ] || fail "the bundled package loaded $loaded, not $site/s2ft/libs2ft.so.0"
check "$scratch/venv" 'import s2ft, sys; sys.exit(0 if s2ft.library_is_bundled() else 1)' || fail "library_is_bundled() is False"
if [ "$cuda" = 1 ] || [ "$cuda" = ON ]; then
  [ -f "$site/s2ft/libs2ft_cuda.so.0" ] || fail "a CUDA build did not bundle libs2ft_cuda.so.0 in $site/s2ft"
fi
echo "bundled: pip install built libs2ft in ${seconds}s and loads $loaded"

# 2. Installed, found at build time through CMAKE_PREFIX_PATH.
cmake --install "$build" --prefix "$scratch/prefix" >"$scratch/cmake-install.log" 2>&1 ||
  fail "cmake --install $build failed (log: $scratch/cmake-install.log)"
installed=$(ls "$scratch"/prefix/lib*/libs2ft.so.0 | head -n 1)
real=$(readlink -f "$installed")
new_venv "$scratch/venv-installed"
if ! S2FT_PYTHON_USE_INSTALLED=1 "$scratch/venv-installed/bin/pip" install -v "${pip_net[@]}" \
    --config-settings="cmake.define.CMAKE_PREFIX_PATH=$scratch/prefix" "$package" >"$scratch/pip-installed.log" 2>&1; then
  tail -n 40 "$scratch/pip-installed.log"
  fail "S2FT_PYTHON_USE_INSTALLED=1 pip install failed (log: $scratch/pip-installed.log)"
fi
grep -q "Building CXX object" "$scratch/pip-installed.log" && fail "S2FT_PYTHON_USE_INSTALLED=1 compiled libs2ft"
site2=$(cd "$scratch" && "$scratch/venv-installed/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
[ -e "$site2/s2ft/libs2ft.so.0" ] && fail "S2FT_PYTHON_USE_INSTALLED=1 bundled a library"
loaded=$(check "$scratch/venv-installed" "$smoke") || fail "the package over the installed libs2ft does not work"
[ "$loaded" = "$real" ] || fail "the package loaded $loaded, not the installed $real"
echo "installed (recorded at build time): loads $loaded"

# 3. Installed, found at import through the dynamic loader.
if ! S2FT_PYTHON_USE_INSTALLED=1 "$scratch/venv-installed/bin/pip" install -v "${pip_net[@]}" --force-reinstall --no-deps \
    "$package" >"$scratch/pip-installed-loader.log" 2>&1; then
  tail -n 40 "$scratch/pip-installed-loader.log"
  fail "S2FT_PYTHON_USE_INSTALLED=1 pip install (no prefix) failed"
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libs2ft\.so\.0 '; then
  out=$(check "$scratch/venv-installed" 'import s2ft' 2>&1) && fail "import s2ft worked with no libs2ft to find"
  echo "$out" | grep -q "ImportError: cannot load libs2ft" || fail "no clear ImportError without a library: $out"
fi
loaded=$(LD_LIBRARY_PATH=$(dirname "$installed") check "$scratch/venv-installed" "$smoke") ||
  fail "the package does not find libs2ft through LD_LIBRARY_PATH"
[ "$loaded" = "$real" ] || fail "through LD_LIBRARY_PATH the package loaded $loaded, not $real"
echo "installed (dynamic loader): loads $loaded"
echo "pip install ok (bundled build ${seconds}s)"
