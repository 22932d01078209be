//! Adds an rpath to libs2ft so `cargo run` works without LD_LIBRARY_PATH
//! (s2ft-sys links the library but cannot pass an rpath to binaries of
//! crates that do not depend on it directly). Same search as s2ft-sys:
//! S2FT_LIB_DIR, else S2FT_BUILD_DIR, else ../../build/src.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=S2FT_LIB_DIR");
    println!("cargo:rerun-if-env-changed=S2FT_BUILD_DIR");
    let dir = std::env::var_os("S2FT_LIB_DIR")
        .or_else(|| std::env::var_os("S2FT_BUILD_DIR"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../build/src"));
    if let Ok(dir) = dir.canonicalize() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
