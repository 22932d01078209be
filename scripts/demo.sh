#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds libs2ft and runs the demonstration:
# the C quick start (one layer trained through a selected slice) and the
# partial-vs-full backward benchmark at a LLaMA-2-7B down_proj shape.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
[ "${S2FT_SKIP_SETUP:-0}" = 1 ] || bash scripts/setup-debian.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$JOBS" --target s2ft-quickstart s2ft-bench-backward
echo "== examples/c/quickstart.c =="
./build/examples/s2ft-quickstart
echo "== bench/bench_backward.cpp =="
./build/bench/s2ft-bench-backward --reps 3
