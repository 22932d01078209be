#!/usr/bin/env bash
# docs/using.md shows the projects of examples/using verbatim: the fenced
# block after each line "File `examples/using/<path>`:" equals that file, and
# every source file of examples/using is shown (build outputs are not).
# usage: check_using_docs.sh REPO_ROOT
set -euo pipefail
root=$1
doc=$root/docs/using.md
shown=$(mktemp -d)
trap 'rm -rf "$shown"' EXIT

# Each shown block into $shown/<path>.
awk -v out="$shown" '
  inside && /^```$/ { inside = 0; close(file); next }
  inside { print > file; next }
  want && /^```/ { inside = 1; want = 0; file = out "/" path
                   dir = file; sub(/\/[^\/]*$/, "", dir); system("mkdir -p \"" dir "\""); next }
  want && !/^$/ { print "using.md: no code block after File `examples/using/" path "`" > "/dev/stderr"; exit 1 }
  /^File `examples\/using\/[^`]+`:$/ {
    path = $0; sub(/^File `examples\/using\//, "", path); sub(/`:$/, "", path)
    if (path ~ /(^|\/)\.\.(\/|$)/) { print "using.md: bad path " path > "/dev/stderr"; exit 1 }
    want = 1
  }
' "$doc"

status=0
while IFS= read -r -d '' file; do
  rel=${file#"$root/examples/using/"}
  if [ ! -e "$shown/$rel" ]; then
    echo "docs/using.md does not show examples/using/$rel"; status=1
  elif ! cmp -s "$file" "$shown/$rel"; then
    echo "docs/using.md shows examples/using/$rel differently:"; diff -u "$file" "$shown/$rel" || true; status=1
  fi
done < <(find "$root/examples/using" -type f \( -name '*.c' -o -name '*.cpp' -o -name '*.rs' -o -name '*.java' \
           -o -name '*.go' -o -name go.mod -o -name Cargo.toml -o -name CMakeLists.txt \) \
           -not -path '*/target/*' -not -path '*/build/*' -print0)
while IFS= read -r -d '' file; do
  rel=${file#"$shown/"}
  [ -e "$root/examples/using/$rel" ] || { echo "docs/using.md shows examples/using/$rel, which does not exist"; status=1; }
done < <(find "$shown" -type f -print0)
[ "$status" = 0 ] && echo "using.md matches examples/using"
exit "$status"
