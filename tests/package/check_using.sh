#!/usr/bin/env bash
# Installs a build into a fresh prefix and, from copies of examples/using/<lang>
# outside the source tree, builds and runs each project of docs/using.md the
# way that page says, with no LD_LIBRARY_PATH: C through pkg-config, C++
# through find_package (and its installed copy), Rust through cargo with a
# path dependency (it must link the installed libs2ft), Java against the
# installed jars, Go through `replace` of the installed module. Also checks
# with readelf that installed programs and libraries find libs2ft through an
# $ORIGIN RUNPATH and that nothing installed names the build tree.
#
# usage: check_using.sh BUILD_DIR SCRATCH_DIR "LANGUAGES" "ABSENT"
#   LANGUAGES: those to check (c cpp rust java go); ABSENT: those whose
#   toolchain (or, for Java and Go, binding) was missing at configure time:
#   reported, not checked.
# Tools from the environment: CC, CXX, PKG_CONFIG, CARGO, JAVAC, JAVA, GO.
set -euo pipefail
build=$(cd "$1" && pwd) scratch=$2 langs=$3 absent=$4
repo=$(cd "$(dirname "$0")/../.." && pwd)
using=$repo/examples/using
# Only what the page tells a user to set may help: nothing from the caller.
unset LD_LIBRARY_PATH S2FT_LIB_DIR S2FT_BUILD_DIR PKG_CONFIG_PATH PKG_CONFIG_LIBDIR \
      CGO_CFLAGS CGO_LDFLAGS GOFLAGS GOTOOLCHAIN
fail() { echo "FAIL: $*" >&2; exit 1; }
# quiet LOG COMMAND...: runs COMMAND with its output in LOG, shown only if it fails.
quiet() { local log=$1; shift; "$@" >"$log" 2>&1 || { cat "$log"; fail "'$*' failed"; }; }
# copy_project LANG: examples/using/LANG into the scratch folder, without build outputs.
copy_project() { cp -r "$using/$1" "$scratch/$1" && rm -rf "$scratch/$1"/{target,build,Cargo.lock}; }
result='loaded .first. and .second. from files, applied, switched, removed: base restored bit-exactly'

rm -rf "$scratch" && mkdir -p "$scratch"
scratch=$(cd "$scratch" && pwd)
prefix=$scratch/prefix
quiet "$scratch/install.log" cmake --install "$build" --prefix "$prefix"
libdir=$(dirname "$(ls "$prefix"/lib*/libs2ft.so.0 2>/dev/null | head -n 1)")
[ -e "$libdir/libs2ft.so.0" ] || fail "no libs2ft.so.0 installed under $prefix/lib*"

# ---- RUNPATHs of what was installed -------------------------------------------
runpath() { readelf -d "$1" | sed -n 's/.*(\(RUNPATH\|RPATH\)).*\[\(.*\)\]/\2/p'; }
expect_runpath() {  # FILE EXPECTED
  local got; got=$(runpath "$1")
  [ "$got" = "$2" ] || fail "$1 has RUNPATH '$got', expected '$2'"
  echo "RUNPATH ok: ${1#"$prefix"/} -> $got"
}
expect_runpath "$prefix/bin/s2ft" "\$ORIGIN/$(realpath --relative-to="$prefix/bin" "$libdir")"
if [[ " $langs " == *" java "* ]]; then expect_runpath "$libdir/libs2ft_jni.so" "\$ORIGIN"; fi
while IFS= read -r -d '' f; do
  if head -c 4 "$f" | grep -q $'\x7fELF'; then
    case "$(runpath "$f")" in *"$build"*|*"$repo"*) fail "$f has a RUNPATH into the build or source tree: $(runpath "$f")";; esac
  fi
done < <(find "$prefix" -type f -print0)
# Nor may a text file name the build tree (the prefix is inside it, so this also
# catches files naming their own absolute prefix: the install is relocatable).
if named=$(grep -rIl -- "$build" "$prefix"); then fail "installed files name the build tree: $named"; fi

# ---- the projects of docs/using.md -----------------------------------------------
# run LANG WHAT DIR COMMAND...: runs a built program in DIR, checks its one line.
run() {
  local lang=$1 what=$2 dir=$3; shift 3
  local out; out=$(cd "$dir" && "$@" 2>&1) || fail "$lang ($what): '$*' failed: $out"
  echo "$out    [$what]"
  grep -q "^$lang: $result\$" <<<"$out" || fail "$lang ($what): unexpected output"
}

check_c() {
  copy_project c
  export PKG_CONFIG_PATH=$libdir/pkgconfig
  (cd "$scratch/c" && "$CC" -std=c99 -Wall -Wextra -Werror -o adapter_switch adapter_switch.c \
     $("$PKG_CONFIG" --cflags --libs s2ft))
  # README.md's quick start, built the way it says.
  (cd "$scratch/c" && "$CC" "$repo/examples/c/quickstart.c" $("$PKG_CONFIG" --cflags --libs s2ft) -o quickstart)
  unset PKG_CONFIG_PATH
  run C "pkg-config" "$scratch/c" ./adapter_switch
  local out; out=$(cd "$scratch/c" && ./quickstart 2>&1) || fail "C: README's quick start does not run: $out"
  grep -q "step 49" <<<"$out" || fail "C: README's quick start printed: $out"
  echo "README quick start built with pkg-config runs: $(tail -n 1 <<<"$out")"
}

check_cpp() {
  copy_project cpp
  quiet "$scratch/cpp/configure.log" cmake -S "$scratch/cpp" -B "$scratch/cpp/build" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror"
  quiet "$scratch/cpp/build.log" cmake --build "$scratch/cpp/build"
  run C++ "find_package, build tree" "$scratch/cpp" ./build/adapter_switch
  quiet "$scratch/cpp/install.log" cmake --install "$scratch/cpp/build" --prefix "$scratch/cpp-install"
  run C++ "find_package, installed" "$scratch/cpp" "$scratch/cpp-install/bin/adapter_switch"
}

check_rust() {
  copy_project rust
  # The page says to point the paths at the libs2ft checkout.
  sed -i "s#path = \"../../../bindings/rust/#path = \"$repo/bindings/rust/#" "$scratch/rust/Cargo.toml"
  local log=$scratch/rust/cargo.log bin=$scratch/rust/target/debug/adapter-switch real_libdir
  real_libdir=$(cd "$libdir" && pwd -P)
  (cd "$scratch/rust" && PKG_CONFIG_PATH="$libdir/pkgconfig" CARGO_TARGET_DIR="$scratch/rust/target" \
     "$CARGO" build --offline) >"$log" 2>&1 || { cat "$log"; fail "Rust: cargo build failed"; }
  grep -F "s2ft-sys links libs2ft in $real_libdir (found by pkg-config" "$log" \
    || { cat "$log"; fail "Rust: s2ft-sys did not link the installed libs2ft"; }
  if grep '^warning' "$log" | grep -v 's2ft-sys links libs2ft in'; then fail "Rust: the build printed warnings"; fi
  case "$(runpath "$bin")" in
    *"$real_libdir"*) ;;
    *) fail "Rust: $bin has RUNPATH '$(runpath "$bin")', not the installed libdir";;
  esac
  case "$(runpath "$bin")" in *"$build"/src*) fail "Rust: $bin has a RUNPATH into the build tree";; esac
  run Rust "cargo, path dependency" "$scratch/rust" "$bin"
}

check_java() {
  copy_project java
  local jar=$prefix/share/java/s2ft.jar
  (cd "$scratch/java" && "$JAVAC" -Xlint:all -Werror -cp "$jar" -d . AdapterSwitch.java)
  run Java "share/java/s2ft.jar" "$scratch/java" "$JAVA" -cp "$jar:." AdapterSwitch
  # The Maven-layout copy: org.s2ft:s2ft:<version>, jar and pom; it finds the JNI library too.
  local pom v
  pom=$(ls "$prefix"/share/maven-repo/org/s2ft/s2ft/*/s2ft-*.pom) || fail "Java: no pom installed"
  v=$(basename "$(dirname "$pom")")
  [ "$pom" = "$prefix/share/maven-repo/org/s2ft/s2ft/$v/s2ft-$v.pom" ] || fail "Java: unexpected pom $pom"
  grep -q "<groupId>org.s2ft</groupId>" "$pom" && grep -q "<artifactId>s2ft</artifactId>" "$pom" \
    && grep -q "<version>$v</version>" "$pom" || fail "Java: $pom lacks the coordinate org.s2ft:s2ft:$v"
  if command -v xmllint >/dev/null; then xmllint --noout "$pom" || fail "Java: $pom is not well-formed"; fi
  run Java "Maven layout" "$scratch/java" "$JAVA" -cp "$prefix/share/maven-repo/org/s2ft/s2ft/$v/s2ft-$v.jar:." AdapterSwitch
}

check_go() {
  copy_project go
  local log=$scratch/go/build.log
  (cd "$scratch/go" && "$GO" mod edit -replace "s2ft.dev/s2ft=$prefix/share/gocode/src/s2ft.dev/s2ft")
  # As the page says (no GOFLAGS); GOPROXY=off: nothing may be downloaded.
  (cd "$scratch/go" && PKG_CONFIG_PATH="$libdir/pkgconfig" GOPROXY=off \
     GOCACHE="$scratch/gocache" GOPATH="$scratch/gopath" CGO_ENABLED=1 "$GO" build -o adapterswitch .) \
    >"$log" 2>&1 || { cat "$log"; fail "Go: go build failed"; }
  if grep -i "warning" "$log"; then fail "Go: the build printed warnings"; fi
  run Go "replace => installed module" "$scratch/go" ./adapterswitch
}

for lang in $langs; do
  start=$SECONDS
  echo "== $lang =="
  "check_$lang"
  echo "($lang: $((SECONDS - start)) s)"
done
if [ -n "${absent// }" ]; then
  echo "not checked (toolchain or binding absent at configure time): $absent"
fi
echo "using ok: $langs"
