//! Every C function in the generated bindings is called by the safe crate.

use std::fs;
use std::path::Path;

#[test]
fn every_c_function_is_wrapped() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bindings = fs::read_to_string(here.join("../s2ft-sys/src/bindings.rs")).unwrap();
    let mut sources = String::new();
    for entry in fs::read_dir(here.join("src")).unwrap() {
        sources += &fs::read_to_string(entry.unwrap().path()).unwrap();
    }
    let functions: Vec<&str> = bindings
        .split("pub fn ")
        .skip(1)
        .map(|rest| rest.split('(').next().unwrap())
        .collect();
    assert!(functions.len() >= 55, "only {} functions found", functions.len());
    let missing: Vec<&&str> = functions.iter().filter(|f| !sources.contains(&format!("sys::{f}("))).collect();
    assert!(missing.is_empty(), "C functions without a safe wrapper: {missing:?}");
}
