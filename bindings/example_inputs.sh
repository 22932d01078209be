#!/bin/sh
# Makes the inputs of the serving examples' test runs in OUT:
# first.safetensors and second.safetensors (examples/c/make_adapters.c) for
# the base checkpoint whose path OUT/base-path holds: stories260K-hf of the
# test data ($S2FT_TEST_DATA, else DATA) when present, else a small random
# checkpoint (examples/c/tiny_checkpoint.c) in OUT/tiny-base.
# usage: example_inputs.sh OUT TINY_CHECKPOINT MAKE_ADAPTERS DATA
set -eu
out=$1 tiny=$2 make=$3 data=${S2FT_TEST_DATA:-$4}
rm -rf "$out"
mkdir -p "$out"
base=$data/stories260K-hf
if [ ! -f "$base/config.json" ]; then
  echo "no stories260K-hf in $data: the examples serve a small random checkpoint"
  base=$out/tiny-base
  mkdir -p "$base"
  "$tiny" "$base"
fi
"$make" "$base" "$out"
printf '%s\n' "$base" >"$out/base-path"
