//! Finds libs2ft and tells cargo how to link it.
//!
//! Search order (the first that yields a directory holding the library wins):
//!  1. the `S2FT_LIB_DIR` environment variable;
//!  2. `pkg-config --libs-only-L s2ft` (the pkg-config command, no crate);
//!  3. the CMake build tree: `S2FT_BUILD_DIR` if set, else
//!     `../../../build/src` relative to this crate.
//! An rpath to the directory is added so that tests, doctests and examples
//! run without `LD_LIBRARY_PATH`.

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

fn find_library() -> Option<PathBuf> {
    if let Some(dir) = env::var_os("S2FT_LIB_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = from_pkg_config() {
        return Some(dir);
    }
    let build_dir = match env::var_os("S2FT_BUILD_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let manifest = env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
            Path::new(&manifest).join("../../../build/src")
        }
    };
    if has_library(&build_dir) {
        Some(build_dir)
    } else {
        None
    }
}

fn main() {
    for var in ["S2FT_LIB_DIR", "S2FT_BUILD_DIR", "PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");

    let dir = find_library().unwrap_or_else(|| {
        panic!(
            "s2ft-sys: libs2ft was not found. Build it with CMake \
             (cmake -S . -B build && cmake --build build) and either set \
             S2FT_LIB_DIR to the directory holding libs2ft.so, set S2FT_BUILD_DIR \
             to the CMake build tree's src directory, or install it where \
             `pkg-config --libs-only-L s2ft` finds it (PKG_CONFIG_PATH)."
        )
    });
    let dir = dir.canonicalize().unwrap_or(dir);
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=s2ft");
    // Dependents' binaries (tests, doctests, examples) get the rpath through
    // DEP_S2FT_LIB_DIR; this crate's own test binaries get it here.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    println!("cargo:lib_dir={}", dir.display());
}
