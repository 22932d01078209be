#!/usr/bin/env bash
# The S2FT paper's Fig. 5 setting on a GPU machine (one H100 or H200 with
# PyTorch, PEFT and Transformers installed, CMake and nvcc 13, no network):
# builds libs2ft with its CUDA backend from this repository, points the Python
# package at it, and runs bench/python/gpu_fig5.py (full fine-tuning vs PEFT
# LoRA r=32 vs S2FT through s2ft.torch, LLaMA-2-7B shape, 512 tokens, bf16:
# peak CUDA memory and ms per step, interleaved). Under 9 minutes in all.
#
# From the repository root on the GPU machine (the device tool's run, with
# carry ["build-h200-deps"] for nlohmann-json, which the image lacks; make
# that folder once with bash bench/gpu/prepare_deps.sh):
#   bash bench/python/run_gpu.sh            the real run
#   bash bench/python/run_gpu.sh --dry-run  the same steps, gpu_fig5.py on CPU
#                                           with a tiny model (any machine)
#
# Writes under $OUT (default build-fig5-out/):
#   steps.log   one line per step: exit status, seconds, limit, command
#   build.log   machine, tools, configure and build output
#   fig5.log    gpu_fig5.py's output
#   fig5.md     the report (tables, targets PASS/MISS, log), printed last
#   fig5.jsonl  one JSON line per variant and depth
#
# Environment: OUT, S2FT_H200_DEPS (default build-h200-deps/), S2FT_FIG5_BUILD
# (default build-fig5/), S2FT_FIG5_BUDGET_S (default 530), JOBS (default 16,
# at most the cores), S2FT_LIBRARY (with S2FT_FIG5_SKIP_BUILD=1: use this
# libs2ft.so instead of building one), FIG5_ARGS (extra gpu_fig5.py options),
# PYTHON (default python3: the interpreter with torch, transformers and peft).
#
# The build is libs2ft and its CUDA module only (targets s2ft and s2ft_cuda;
# no tests, examples or benchmarks; sm_90; the CPU backend without BLAS, which
# a GPU run does not use, so nothing but nlohmann-json needs carrying).
# Time limits per step, in seconds: configure 60, build 240, import check 30,
# gpu_fig5.py what is left of the budget (at least 5 s are kept for the end).
set -u -o pipefail

dry=0
[ "${1:-}" = "--dry-run" ] && dry=1
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-$root/build-fig5-out}
deps=${S2FT_H200_DEPS:-$root/build-h200-deps}
build=${S2FT_FIG5_BUILD:-$root/build-fig5}
budget=${S2FT_FIG5_BUDGET_S:-530}
cores=$(nproc)
jobs=${JOBS:-16}
((jobs > cores)) && jobs=$cores
start=$(date +%s)
mkdir -p "$out"
: >"$out/steps.log"
: >"$out/build.log"

reserve=5  # for the end
source "$root/bench/gpu/steps.sh"  # remaining, note, step_limit, run_step

cd "$root" || exit 1
[ -d /usr/local/cuda/bin ] && export PATH=/usr/local/cuda/bin:$PATH
note "run_gpu.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${budget}s, jobs $jobs, repo $root, out $out, dry run $dry"
{
  echo "== machine"
  uname -a
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv 2>&1
  echo "== tools"
  command -v cmake nvcc g++ ninja python3 2>&1
  cmake --version 2>&1 | head -1
  nvcc --version 2>&1 | tail -2
  ${PYTHON:-python3} -c 'import torch, transformers, peft; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "peft", peft.__version__)' 2>&1
} >>"$out/build.log" 2>&1

# ---- libs2ft with the CUDA backend ----------------------------------------------------
if [ "${S2FT_FIG5_SKIP_BUILD:-0}" = 1 ] && [ -n "${S2FT_LIBRARY:-}" ]; then
  note "build      skipped (S2FT_FIG5_SKIP_BUILD=1): S2FT_LIBRARY=$S2FT_LIBRARY"
  lib=$S2FT_LIBRARY
else
  dep_args=()
  # nlohmann-json from the carried .deb (header-only), unpacked into a private prefix.
  prefix=/tmp/s2ft-fig5-deps
  if compgen -G "$deps/nlohmann-json3-dev_*.deb" >/dev/null; then
    rm -rf "$prefix" && mkdir -p "$prefix"
    for f in "$deps"/nlohmann-json3-dev_*.deb; do
      echo "unpacking $(basename "$f")" >>"$out/build.log"
      dpkg -x "$f" "$prefix" >>"$out/build.log" 2>&1 || note "dpkg -x failed for $f"
    done
    [ -d "$prefix/usr/share/cmake/nlohmann_json" ] &&
      dep_args+=("-Dnlohmann_json_DIR=$prefix/usr/share/cmake/nlohmann_json")
  else
    note "no nlohmann-json3-dev .deb in $deps: relying on the image's nlohmann-json"
  fi
  cuda=ON
  command -v nvcc >/dev/null || { cuda=OFF; note "nvcc not found: building without the CUDA backend"; }
  generator=()
  command -v ninja >/dev/null && [ ! -f "$build/CMakeCache.txt" ] && generator=(-G Ninja)
  run_step configure 60 "$out/build.log" cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DS2FT_WITH_CUDA=$cuda -DCMAKE_CUDA_ARCHITECTURES=90 -DS2FT_WITH_BLAS=OFF -DS2FT_BUILD_TESTS=OFF \
    -DS2FT_BUILD_EXAMPLES=OFF -DS2FT_BUILD_BENCHMARKS=OFF "${dep_args[@]}"
  targets=(s2ft)
  [ "$cuda" = ON ] && targets+=(s2ft_cuda)
  run_step build 240 "$out/build.log" cmake --build "$build" -j "$jobs" --target "${targets[@]}"
  lib=$build/src/libs2ft.so
fi
export S2FT_LIBRARY=$lib
export PYTHONPATH=$root/bindings/python/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
module=$(dirname "$lib")/libs2ft_cuda.so.0
note "S2FT_LIBRARY=$S2FT_LIBRARY ($([ -e "$lib" ] && echo present || echo MISSING)); CUDA module $module ($([ -e "$module" ] && echo present || echo MISSING))"

# ---- the package imports and sees the library ---------------------------------------------
run_step import 30 "$out/build.log" "$python" -c '
import os, s2ft, s2ft.torch
print("s2ft", getattr(s2ft, "__version__", "?"), "from", os.path.dirname(s2ft.__file__))
print("s2ft.torch.prepare", s2ft.torch.prepare)'

# ---- the benchmark ----------------------------------------------------------------------------
fig_args=(--out "$out")
((dry)) && fig_args+=(--dry-run)
# shellcheck disable=SC2206  # FIG5_ARGS is split on purpose
fig_args+=(${FIG5_ARGS:-})
: >"$out/fig5.log"
run_step fig5 100000 "$out/fig5.log" "$python" "$root/bench/python/gpu_fig5.py" "${fig_args[@]}"
rc=$?
note "total $(($(date +%s) - start))s"
echo
if [ -s "$out/fig5.md" ]; then
  sed '/^## log/,$d' "$out/fig5.md"
else
  echo "no report; the last lines of fig5.log:"
  tail -40 "$out/fig5.log"
fi
exit "$rc"
