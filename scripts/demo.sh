#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds libs2ft and runs the demonstration:
# the C quick start (one layer trained through a selected slice), the
# partial-vs-full backward benchmark at a LLaMA-2-7B down_proj shape, the
# s2ft tool and a real fine-tune of stories260K (when ../shared/data is
# there), and last the fidelity protocol of examples/finetune (S2FT, full
# fine-tuning and LoRA compared at matched learning), which ends with its
# table and writes build/fidelity/{traces,results}.csv and frontier.png.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
[ "${S2FT_SKIP_SETUP:-0}" = 1 ] || bash scripts/setup-debian.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$JOBS" --target s2ft-quickstart s2ft-bench-backward s2ft-cli s2ft-finetune
echo "== examples/c/quickstart.c =="
./build/examples/s2ft-quickstart
echo "== bench/bench_backward.cpp =="
./build/bench/s2ft-bench-backward --reps 3
data=${S2FT_TEST_DATA:-../shared/data}
if [ -d "$data/stories260K-hf" ]; then
  echo "== the s2ft tool on stories260K =="
  out=$(mktemp -d)
  s2ft=./build/src/cli/s2ft
  $s2ft inspect "$data/stories260K-hf"
  $s2ft select "$data/stories260K-hf" -o "$out/selection.json" --strategy weight --order smallest \
    --ratio-o 0.25 --ratio-down 0.05
  $s2ft inspect "$out/selection.json"
  $s2ft permute "$data/stories260K-hf" --selection "$out/selection.json" -o "$out/permuted"
  $s2ft inspect "$out/permuted"
  echo "== examples/finetune on stories260K: S2FT on a text file, adapter merged with libs2ft =="
  ./build/examples/finetune/s2ft-finetune --model "$data/stories260K-hf" \
    --data examples/finetune/data/pip-stories.txt --steps 200 --out "$out/finetune"
  rm -rf "$out"
else
  echo "(no $data/stories260K-hf: skipping the s2ft tool and the real fine-tune)"
fi
echo "== examples/finetune: the fidelity protocol on synthetic tasks (S2FT, full fine-tuning, LoRA) =="
/usr/bin/python3 -I examples/finetune/plot_fidelity.py --help >/dev/null 2>&1 && plot=1 || plot=0
./build/examples/finetune/s2ft-finetune --out build/fidelity
if [ "$plot" = 1 ]; then
  /usr/bin/python3 -I examples/finetune/plot_fidelity.py build/fidelity --title "fidelity protocol (scripts/demo.sh)"
fi
