#!/usr/bin/env bash
# One run on a GPU machine (the device tool's H200): builds libs2ft with its
# CUDA backend, runs the gpu test suite, runs the gpu test programs under
# compute-sanitizer memcheck, runs s2ft-bench-gpu and the PyTorch/PEFT
# baselines, and writes a report. Everything lands under $OUT, in at most
# 8 files (what the device tool brings back):
#   steps.log      one line per step: exit status, seconds, limit, command
#   build.log      machine and tool versions, dependency unpacking, configure, build
#   ctest.log      ctest -L gpu
#   memcheck.log   compute-sanitizer --tool memcheck over every test_gpu_* program
#   bench.log      s2ft-bench-gpu
#   torch.log      torch_baselines.py
#   results.jsonl  the JSON lines of both benchmark programs
#   report.md      report.py's tables (also printed last)
#
# From the repository root on the GPU machine:
#   bash bench/gpu/run_h200.sh
# with the .deb files of bench/gpu/prepare_deps.sh in build-h200-deps/ (the
# image has CMake, nvcc 13 and PyTorch + PEFT but no GoogleTest, nlohmann-json
# or OpenBLAS, and no network). Building there, not here: binaries built on
# another image may not run on that one, and the build takes about a minute
# on its 16 cores.
#
# Environment: OUT (default build-h200-out/), S2FT_H200_DEPS (default
# build-h200-deps/), S2FT_H200_BUILD (default build-h200/), S2FT_H200_BUDGET_S
# (whole run, default 540 s), JOBS (default: all cores).
#
# Time budget (seconds; a step is cut off at its limit, later steps still run,
# and the report always gets the last 15 s):
#   dependencies + configure   60
#   build                     180
#   ctest -L gpu               90
#   s2ft-bench-gpu            150
#   torch_baselines.py        100
#   memcheck                  what is left (all programs in parallel)
#   report                     15
# Steps normally end far inside their limits; memcheck gets the rest.
set -u -o pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-$root/build-h200-out}
deps=${S2FT_H200_DEPS:-$root/build-h200-deps}
build=${S2FT_H200_BUILD:-$root/build-h200}
budget=${S2FT_H200_BUDGET_S:-540}
jobs=${JOBS:-$(nproc)}
start=$(date +%s)
reserve=15  # for the report
mkdir -p "$out"
: >"$out/steps.log"

source "$root/bench/gpu/steps.sh"  # remaining, note, step_limit, run_step

cd "$root" || exit 1
[ -d /usr/local/cuda/bin ] && export PATH=/usr/local/cuda/bin:$PATH
orig_ld=${LD_LIBRARY_PATH:-}
note "run_h200.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${budget}s, jobs $jobs, repo $root, out $out"

# ---- machine and tools ------------------------------------------------------------
{
  echo "== machine"
  uname -a
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit \
    --format=csv 2>&1
  echo "== tools"
  command -v cmake nvcc g++ ninja python3 compute-sanitizer dpkg 2>&1
  cmake --version 2>&1 | head -1
  nvcc --version 2>&1 | tail -2
  g++ --version 2>&1 | head -1
} >"$out/build.log" 2>&1

# ---- dependencies: carried .deb files, unpacked into a private prefix --------------
prefix=/tmp/s2ft-h200-deps
dep_args=()
if compgen -G "$deps/*.deb" >/dev/null; then
  rm -rf "$prefix"
  mkdir -p "$prefix"
  for f in "$deps"/*.deb; do
    echo "unpacking $(basename "$f")" >>"$out/build.log"
    dpkg -x "$f" "$prefix" >>"$out/build.log" 2>&1 || note "dpkg -x failed for $f"
  done
  libdir=$prefix/usr/lib/x86_64-linux-gnu
  # Debian makes libopenblas.so(.0) through update-alternatives, which dpkg -x skips.
  if [ -e "$libdir/openblas-pthread/libopenblas.so.0" ]; then
    ln -sf openblas-pthread/libopenblas.so.0 "$libdir/libopenblas.so"
    ln -sf openblas-pthread/libopenblas.so.0 "$libdir/libopenblas.so.0"
  fi
  # The linker (for libopenblas' own needs) and the programs find libgfortran here.
  export LD_LIBRARY_PATH=$libdir:$libdir/openblas-pthread${orig_ld:+:$orig_ld}
  dep_args+=("-DCMAKE_PREFIX_PATH=$prefix/usr" "-DCMAKE_LIBRARY_PATH=$libdir")
  # The prebuilt GoogleTest was compiled on Debian 12 (GCC 12). If it does not
  # link with this machine's compiler, build it from the carried sources.
  gtest_dir=$libdir/cmake/GTest
  probe_src='#include <gtest/gtest.h>
TEST(Probe, Links) {}'
  if [ -f "$libdir/libgtest.a" ] && ! printf '%s\n' "$probe_src" | g++ -std=c++17 -x c++ - -I"$prefix/usr/include" \
    "$libdir/libgtest_main.a" "$libdir/libgtest.a" -pthread -o /tmp/s2ft-gtest-probe >>"$out/build.log" 2>&1; then
    note "the carried GoogleTest does not link here; building it from /usr/src/googletest of the carried sources"
    gsrc=$prefix/usr/src/googletest
    if [ -f "$gsrc/CMakeLists.txt" ] &&
      run_step gtest-config 30 "$out/build.log" cmake -S "$gsrc" -B /tmp/s2ft-gtest-build -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_GMOCK=OFF -DCMAKE_INSTALL_PREFIX="$prefix/gtest" &&
      run_step gtest-build 60 "$out/build.log" cmake --build /tmp/s2ft-gtest-build -j "$jobs" &&
      run_step gtest-install 15 "$out/build.log" cmake --install /tmp/s2ft-gtest-build; then
      gtest_dir=$(dirname "$(find "$prefix/gtest" -name GTestConfig.cmake | head -1)")
    fi
  fi
  [ -d "$gtest_dir" ] && dep_args+=("-DGTest_DIR=$gtest_dir")
  [ -d "$prefix/usr/share/cmake/nlohmann_json" ] && dep_args+=("-Dnlohmann_json_DIR=$prefix/usr/share/cmake/nlohmann_json")
else
  note "no .deb files in $deps: relying on the image's GoogleTest, nlohmann-json and BLAS"
fi

# ---- configure and build ----------------------------------------------------------------
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
[ -f "$build/CMakeCache.txt" ] && generator=()  # keep the generator of an existing build
cfg=(cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90
  -DS2FT_WITH_CUDA=ON -DS2FT_BUILD_TESTS=ON -DS2FT_BUILD_BENCHMARKS=ON -DS2FT_BUILD_EXAMPLES=OFF "${dep_args[@]}")
if ! run_step configure 60 "$out/build.log" "${cfg[@]}"; then
  note "configure failed; trying again without BLAS (the CPU backend's portable GEMM)"
  run_step configure-noblas 60 "$out/build.log" "${cfg[@]}" -DS2FT_WITH_BLAS=OFF
fi

gpu_tests=()
for f in "$root"/tests/gpu/test_gpu_*.cpp; do
  [ -e "$f" ] && gpu_tests+=("$(basename "$f" .cpp)")
done
keep_going=(-k)
grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja' "$build/CMakeCache.txt" 2>/dev/null && keep_going=(-k 0)
run_step build 180 "$out/build.log" cmake --build "$build" -j "$jobs" --target s2ft s2ft_cuda s2ft-bench-gpu "${gpu_tests[@]}" \
  -- "${keep_going[@]}"

# ---- the gpu test suite ---------------------------------------------------------------
: >"$out/ctest.log"
run_step ctest-gpu 90 "$out/ctest.log" ctest --test-dir "$build" -L gpu --output-on-failure -j 12 --timeout 120
note "  ctest: $(grep -E 'tests passed|tests failed' "$out/ctest.log" | tail -1)"
note "  ctest: $(grep -c '(Skipped)' "$out/ctest.log") skipped, $(grep -c '(Failed)' "$out/ctest.log") failed, $(grep -c 'Not Run' "$out/ctest.log") not run"

# ---- benchmarks -----------------------------------------------------------------------
: >"$out/bench.log"
: >"$out/results.jsonl"
bench_exe=$build/bench/gpu/s2ft-bench-gpu
if [ -x "$bench_exe" ]; then
  run_step bench 150 "$out/bench.log" "$bench_exe" --json "$out/results.jsonl"
else
  note "bench          not built: $bench_exe missing (see build.log)"
fi
: >"$out/torch.log"
run_step torch 100 "$out/torch.log" env LD_LIBRARY_PATH="$orig_ld" PYTHONUNBUFFERED=1 \
  python3 "$root/bench/gpu/torch_baselines.py" --json "$out/results.jsonl"

# ---- compute-sanitizer memcheck over the gpu test programs ------------------------------
: >"$out/memcheck.log"
sanitizer=$(command -v compute-sanitizer || true)
for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [ -z "$sanitizer" ] && [ -x "$c" ] && sanitizer=$c
done
if [ -z "$sanitizer" ]; then
  note "memcheck       skipped: compute-sanitizer not found"
else
  exes=()
  for t in "${gpu_tests[@]}"; do
    [ -x "$build/tests/gpu/$t" ] && exes+=("$build/tests/gpu/$t")
  done
  # All programs at once (16 cores; memcheck is slow mostly on the host side),
  # each with its own log, all cut off at the same deadline.
  limit=$(step_limit 100000)
  if ((limit < 20)); then
    note "memcheck       skipped: no time left"
  else
    t0=$(date +%s)
    mdir=$(mktemp -d)
    for exe in "${exes[@]}"; do
      (
        timeout --kill-after=10 "$limit" "$sanitizer" --tool memcheck --leak-check full --error-exitcode 86 \
          "$exe" --gtest_brief=1 >"$mdir/$(basename "$exe").log" 2>&1
        echo "exit status $?" >>"$mdir/$(basename "$exe").log"
      ) &
    done
    wait
    for exe in "${exes[@]}"; do
      log=$mdir/$(basename "$exe").log
      {
        echo "\$ $sanitizer --tool memcheck --leak-check full --error-exitcode 86 $exe --gtest_brief=1"
        cat "$log"
      } >>"$out/memcheck.log"
      summary=$(grep -E 'ERROR SUMMARY|^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ test|^exit status' "$log" | tr '\n' ' ')
      note "  memcheck $(basename "$exe"): ${summary:-no output}"
    done
    note "$(printf '%-14s %4ss (limit %ss, %s programs in parallel)' memcheck "$(($(date +%s) - t0))" "$limit" "${#exes[@]}")"
    note "  exit status 0 = memcheck clean and tests passed, 86 = memcheck errors, 124/137 = cut off, else failed tests"
  fi
fi

# ---- report ------------------------------------------------------------------------------
note "total $(($(date +%s) - start))s"
echo
env LD_LIBRARY_PATH="$orig_ld" python3 "$root/bench/gpu/report.py" "$out/results.jsonl" --steps "$out/steps.log" \
  --out "$out/report.md"
