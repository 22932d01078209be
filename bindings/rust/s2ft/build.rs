//! Adds an rpath to the libs2ft directory that s2ft-sys found (it publishes
//! it as `DEP_S2FT_LIB_DIR`), so this crate's tests, doctests and examples
//! run without `LD_LIBRARY_PATH`. Linking itself is s2ft-sys's business.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_S2FT_LIB_DIR");
    if let Ok(dir) = std::env::var("DEP_S2FT_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
