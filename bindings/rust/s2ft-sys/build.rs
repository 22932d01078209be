//! Finds libs2ft and tells cargo how to link it.
//!
//! Search order (the first that yields a directory holding the library wins):
//!  1. the `S2FT_LIB_DIR` environment variable (an error if it holds no libs2ft);
//!  2. `pkg-config --libs-only-L s2ft` (the pkg-config command, no crate):
//!     an installed libs2ft, with `PKG_CONFIG_PATH` for a private prefix;
//!  3. the repository's CMake build tree: `S2FT_BUILD_DIR` if set, else
//!     `../../../build/src` relative to this crate. A fallback for working
//!     on libs2ft itself, never silent: programs linked this way load the
//!     build tree's library.
//! Every build prints a `cargo:warning` naming the folder it links and
//! which of these found it, so a wrong libs2ft is seen at once.
//!
//! An rpath to the folder is added to this crate's own test binaries, and
//! the folder is published as `DEP_S2FT_LIB_DIR` (the `links = "s2ft"`
//! metadata) for crates that depend on this one directly: cargo applies a
//! dependency's `rustc-link-arg` to no other crate, so each crate that
//! builds binaries adds its own rpath from that variable (see README.md).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn has_library(dir: &Path) -> bool {
    ["libs2ft.so", "libs2ft.dylib", "libs2ft.a", "s2ft.lib"]
        .iter()
        .any(|name| dir.join(name).exists())
}

fn from_pkg_config() -> Option<PathBuf> {
    let out = Command::new("pkg-config")
        .args(["--libs-only-L", "s2ft"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace()
        .filter_map(|flag| flag.strip_prefix("-L"))
        .map(PathBuf::from)
        .find(|dir| has_library(dir))
}

/// The folder of the library and how it was found.
fn find_library() -> (PathBuf, String) {
    if let Some(dir) = env::var_os("S2FT_LIB_DIR") {
        let dir = PathBuf::from(dir);
        if !has_library(&dir) {
            panic!("s2ft-sys: S2FT_LIB_DIR is set to {}, which holds no libs2ft.so", dir.display());
        }
        return (dir, "found by S2FT_LIB_DIR".to_string());
    }
    if let Some(dir) = from_pkg_config() {
        return (dir, "found by pkg-config (s2ft.pc)".to_string());
    }
    let (build_dir, named_by) = match env::var_os("S2FT_BUILD_DIR") {
        Some(dir) => (PathBuf::from(dir), "S2FT_BUILD_DIR"),
        None => {
            let manifest = env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
            (Path::new(&manifest).join("../../../build/src"), "the default ../../../build/src")
        }
    };
    if has_library(&build_dir) {
        let why = format!(
            "FALLBACK to the repository's CMake build tree ({named_by}): neither S2FT_LIB_DIR \
             nor pkg-config found an installed libs2ft; programs built now load the build \
             tree's library. Set PKG_CONFIG_PATH=<prefix>/lib/pkgconfig or S2FT_LIB_DIR to \
             link an installed one"
        );
        return (build_dir, why);
    }
    panic!(
        "s2ft-sys: libs2ft was not found. Install it (cmake --install build --prefix <prefix>) \
         and set PKG_CONFIG_PATH=<prefix>/lib/pkgconfig so that `pkg-config --libs-only-L s2ft` \
         finds it, or set S2FT_LIB_DIR to the directory holding libs2ft.so; when working on \
         libs2ft itself, S2FT_BUILD_DIR may name the CMake build tree's src directory."
    )
}

fn main() {
    for var in ["S2FT_LIB_DIR", "S2FT_BUILD_DIR", "PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");

    let (dir, why) = find_library();
    let dir = dir.canonicalize().unwrap_or(dir);
    println!("cargo:warning=s2ft-sys links libs2ft in {} ({why})", dir.display());
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=s2ft");
    // This crate's own test binaries; dependents add theirs from DEP_S2FT_LIB_DIR.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    println!("cargo:lib_dir={}", dir.display());
}
