#!/usr/bin/env bash
# Installs a build into a scratch prefix, then builds the C quick start
# against it twice: with CMake's find_package and with pkg-config. Both run
# without LD_LIBRARY_PATH: CMake's build RPATH and s2ft.pc's rpath find libs2ft.
# usage: check_install.sh BUILD_DIR SCRATCH_DIR
set -euo pipefail
build=$1 scratch=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$scratch" && mkdir -p "$scratch"
cmake --install "$build" --prefix "$scratch/prefix" >/dev/null
cmake -S "$here" -B "$scratch/cmake" -DCMAKE_PREFIX_PATH="$scratch/prefix" >/dev/null
cmake --build "$scratch/cmake" >/dev/null
env -u LD_LIBRARY_PATH "$scratch/cmake/consumer" | tail -n 1
libdir=$(ls -d "$scratch"/prefix/lib*/pkgconfig | head -n 1)
flags=$(PKG_CONFIG_PATH="$libdir" pkg-config --cflags --libs s2ft)
cc -std=c99 -o "$scratch/pc-consumer" "$here/../../examples/c/quickstart.c" $flags
env -u LD_LIBRARY_PATH "$scratch/pc-consumer" | tail -n 1
ls "$scratch"/prefix/lib*/libs2ft.so.0 >/dev/null
# A CUDA build installs its backend module next to libs2ft.so, where the loader looks first.
if [ -e "$build/src/libs2ft_cuda.so.0" ]; then
  lib=$(dirname "$(ls "$scratch"/prefix/lib*/libs2ft.so.0 | head -n 1)")
  [ -e "$lib/libs2ft_cuda.so.0" ] || { echo "libs2ft_cuda.so.0 is not installed next to libs2ft.so.0 in $lib"; exit 1; }
fi
echo "install ok"
