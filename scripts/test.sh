#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds libs2ft (with the CUDA backend when
# nvcc exists) and runs every test: the full suite in a release build, then
# the unit, realdata and hostile suites again under AddressSanitizer + UBSan.
# usage: scripts/test.sh            (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
[ "${S2FT_SKIP_SETUP:-0}" = 1 ] || bash scripts/setup-debian.sh

echo "== release build =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$JOBS"
ctest --test-dir build --output-on-failure -j"$JOBS" -LE bench

echo "== ASan + UBSan build =="
cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DS2FT_SANITIZE=address,undefined \
  -DS2FT_WITH_CUDA=OFF -DS2FT_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-sanitize -j"$JOBS"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-sanitize --output-on-failure -j"$JOBS" -L 'unit|realdata|hostile'

echo "== portable build (no BLAS) =="
cmake -S . -B build-noblas -DCMAKE_BUILD_TYPE=Release -DS2FT_WITH_BLAS=OFF -DS2FT_WITH_CUDA=OFF \
  -DS2FT_BUILD_BENCHMARKS=OFF -DS2FT_BUILD_EXAMPLES=OFF >/dev/null 2>&1
cmake --build build-noblas -j"$JOBS" --target test_partial
ctest --test-dir build-noblas --output-on-failure -j"$JOBS" -R '^(Shapes/PartialParity|Partial\.)'

echo "== fuzzers (libFuzzer + ASan + UBSan, ${S2FT_FUZZ_SECONDS:-20} s per target) =="
# clang-14 is the clang whose libFuzzer runtime setup-debian.sh installs.
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -DS2FT_BUILD_FUZZERS=ON -DS2FT_SANITIZE=address,undefined \
  -DS2FT_WITH_CUDA=OFF -DS2FT_BUILD_TESTS=OFF -DS2FT_BUILD_EXAMPLES=OFF -DS2FT_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-fuzz -j"$JOBS" --target fuzzers
bash tests/fuzz/run.sh build-fuzz "${S2FT_FUZZ_SECONDS:-20}"
