#!/usr/bin/env bash
# The shared library exports exactly the C API: every exported symbol starts
# with s2ft_, and every function the header declares with S2FT_API is exported.
# usage: check_exports.sh LIBRARY HEADER
set -euo pipefail
lib=$1 header=$2
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | sed 's/@.*//' | sort -u)
bad=$(grep -v '^s2ft_' <<<"$exported" || true)
if [ -n "$bad" ]; then
  echo "symbols exported outside the C API:"; echo "$bad"; exit 1
fi
declared=$(grep -oE 'S2FT_API [^(]*\b(s2ft_[a-z0-9_]+)\(' "$header" | grep -oE 's2ft_[a-z0-9_]+\($' | tr -d '(' | sort -u)
missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
if [ -n "$missing" ]; then
  echo "declared in the header but not exported:"; echo "$missing"; exit 1
fi
extra=$(comm -13 <(echo "$declared") <(echo "$exported"))
if [ -n "$extra" ]; then
  echo "exported but not declared in the header:"; echo "$extra"; exit 1
fi
echo "exports ok: $(wc -l <<<"$exported") functions"
