#!/usr/bin/env bash
# libs2ft.so needs no CUDA library: its dynamic section names none (the CUDA
# backend is a module it loads on demand). With a module, also checks that
# the module exports exactly its one entry point.
# usage: check_no_cuda_dependency.sh LIBRARY [MODULE]
set -euo pipefail
lib=$1 module=${2:-}
needed=$(readelf -d "$lib" | awk '/\(NEEDED\)/ {gsub(/[][]/, "", $NF); print $NF}')
[ -n "$needed" ] || { echo "no NEEDED entries read from $lib"; exit 1; }
cuda=$(grep -iE 'cuda|cublas|cusparse|cusolver|nvjitlink|nvrtc|nccl' <<<"$needed" || true)
if [ -n "$cuda" ]; then
  echo "$lib needs CUDA libraries:"; echo "$cuda"; exit 1
fi
echo "NEEDED of $(basename "$lib"): $(tr '\n' ' ' <<<"$needed")"
if [ -n "$module" ]; then
  exported=$(nm -D --defined-only "$module" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | sed 's/@.*//' | sort -u)
  if [ "$exported" != "s2ft_backend_module_v1" ]; then
    echo "$module exports more or other than s2ft_backend_module_v1:"; echo "$exported"; exit 1
  fi
  echo "module exports: $exported"
fi
echo "no CUDA dependency"
