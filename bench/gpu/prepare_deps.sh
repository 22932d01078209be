#!/usr/bin/env bash
# Fetches, on a Debian 12 (bookworm) x86-64 machine with network access, the
# .deb packages that the GPU machine's image lacks and cannot download (it has
# no network): GoogleTest (prebuilt, plus its sources in case the prebuilt
# library does not link with that machine's compiler) and nlohmann-json for
# the build, OpenBLAS and its Fortran runtime for the CPU backend the gpu
# tests compare against. run_h200.sh unpacks them with `dpkg -x` into a
# private prefix, never into /.
#
#   bash bench/gpu/prepare_deps.sh [DEST]     (default DEST: build-h200-deps/)
#
# DEST is ignored by git (/build*/) and travels to the GPU machine only when
# named in the device tool's `carry` list (about 9 MB).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dest=${1:-$root/build-h200-deps}
mkdir -p "$dest"
cd "$dest"
apt-get download libgtest-dev googletest nlohmann-json3-dev libopenblas0-pthread libgfortran5 libquadmath0
ls -l "$dest"
