//! Lets the program find libs2ft at run time without LD_LIBRARY_PATH.
//! s2ft-sys links the library, but cargo applies a dependency's
//! `rustc-link-arg` to no other crate, so this crate adds the rpath to its
//! own binaries, from the folder s2ft-sys found (DEP_S2FT_LIB_DIR).
fn main() {
    let dir = std::env::var("DEP_S2FT_LIB_DIR").expect("s2ft-sys sets DEP_S2FT_LIB_DIR");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
}
