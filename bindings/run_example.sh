#!/bin/sh
# Runs a serving example on the inputs example_inputs.sh made in DIR:
#   COMMAND... DIR/first.safetensors DIR/second.safetensors BASE
# usage: run_example.sh DIR COMMAND...
set -eu
dir=$1
shift
exec "$@" "$dir/first.safetensors" "$dir/second.safetensors" "$(cat "$dir/base-path")"
