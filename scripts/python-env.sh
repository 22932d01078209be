#!/usr/bin/env bash
# Makes the Python environment of the interop tests in a build folder:
# BUILD_DIR/python-env, a venv of Debian's /usr/bin/python3 that sees the
# system's packages (python3-torch 1.13.1, numpy, ...) and holds the pinned
# packages of tests/interop/requirements.txt, installed with --no-deps so
# that pip never resolves (and never downloads) torch. Does nothing when the
# environment exists for the same requirements file.
# usage: scripts/python-env.sh BUILD_DIR
# exit status: 0 ready; 3 a Debian package is missing (python3-torch,
# python3-venv); 4 pip could not install the packages (no network?).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: scripts/python-env.sh BUILD_DIR}
env="$build/python-env"
req="$repo/tests/interop/requirements.txt"
stamp="$env/s2ft-requirements.txt"
python=/usr/bin/python3
unset PYTHONPATH
export PYTHONNOUSERSITE=1

if [ -x "$env/bin/python" ] && cmp -s "$req" "$stamp"; then
  exit 0
fi
if ! "$python" -c 'import torch' >/dev/null 2>&1; then
  echo "python-env: $python cannot import torch: install Debian's python3-torch (scripts/setup-debian.sh)" >&2
  exit 3
fi
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "python-env: $python has no venv module: install Debian's python3-venv (scripts/setup-debian.sh)" >&2
  exit 3
fi

rm -rf "$env"
mkdir -p "$build"
"$python" -m venv --system-site-packages "$env"
if ! "$env/bin/pip" install --quiet --no-deps --only-binary=:all: --disable-pip-version-check --no-input \
    --retries 2 --timeout 30 -r "$req"; then
  rm -rf "$env"
  echo "python-env: pip could not install tests/interop/requirements.txt (no network, or no route to PyPI?)" >&2
  exit 4
fi
# torch must be Debian's: nothing in the venv may shadow it.
if ! "$env/bin/python" -c '
import sys, torch, transformers, peft
sys.exit(0 if torch.__file__.startswith("/usr/lib/python3/") else 1)'; then
  rm -rf "$env"
  echo "python-env: the venv does not import Debian's torch, transformers and peft together" >&2
  exit 4
fi
cp "$req" "$stamp"
echo "python-env: ready in $env"
