#!/usr/bin/env bash
# Remakes the committed seed corpora in tests/fuzz/corpus/<target>/: the
# seed generator (make_seeds.cpp) writes valid files and folders of every
# kind, then libFuzzer's -merge=1 keeps the smallest set of them that covers
# what they all cover. Run it after a format changes, and commit the result.
#
# usage: tests/fuzz/update_corpora.sh BUILD_DIR   (a build with -DS2FT_BUILD_FUZZERS=ON)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:?usage: tests/fuzz/update_corpora.sh BUILD_DIR}
SEEDS=$(mktemp -d "${TMPDIR:-/tmp}/s2ft-seeds.XXXXXX")
trap 'rm -rf "$SEEDS"' EXIT

"$BUILD/tests/fuzz/fuzz_make_seeds" "$SEEDS"
for dir in "$SEEDS"/*/; do
  t=$(basename "$dir")
  rm -rf "tests/fuzz/corpus/$t"
  mkdir -p "tests/fuzz/corpus/$t"
  "$BUILD/tests/fuzz/fuzz_$t" -merge=1 "tests/fuzz/corpus/$t" "$dir" >"$SEEDS/$t.log" 2>&1 ||
    { cat "$SEEDS/$t.log" >&2; exit 1; }
  echo "corpus/$t: $(ls "tests/fuzz/corpus/$t" | wc -l) files, $(cat "tests/fuzz/corpus/$t"/* | wc -c) bytes"
done
