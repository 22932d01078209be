#!/usr/bin/env bash
# The quick start shown in README.md is exactly examples/c/quickstart.c.
# usage: check_readme_quickstart.sh REPO_ROOT
set -euo pipefail
root=$1
shown=$(awk '/^```c$/{on=1; next} /^```$/{if(on){exit}} on' "$root/README.md")
if [ "$shown" != "$(cat "$root/examples/c/quickstart.c")" ]; then
  echo "README.md's quick start differs from examples/c/quickstart.c:"
  diff <(echo "$shown") "$root/examples/c/quickstart.c" || true
  exit 1
fi
echo "README quick start matches"
