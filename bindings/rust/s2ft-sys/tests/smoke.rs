//! The raw bindings link and agree with the loaded library.

use std::ffi::CStr;

use s2ft_sys::*;

#[test]
fn version_matches_the_header() {
    assert_eq!(unsafe { s2ft_version() }, S2FT_VERSION_NUMBER);
    let s = unsafe { CStr::from_ptr(s2ft_version_string()) }.to_str().unwrap();
    assert_eq!(s, format!("{S2FT_VERSION_MAJOR}.{S2FT_VERSION_MINOR}.{S2FT_VERSION_PATCH}"));
}

#[test]
fn tensor_init_fills_a_dlpack_descriptor() {
    let mut data = [0.0f32; 6];
    let mut t: s2ft_tensor = unsafe { std::mem::zeroed() };
    let shape = [2i64, 3];
    let st = unsafe { s2ft_tensor_init(&mut t, data.as_mut_ptr().cast(), S2FT_F32 as i32, S2FT_DEVICE_CPU as i32, 0, 2, shape.as_ptr()) };
    assert_eq!(st, 0);
    assert_eq!((t.ndim, t.shape[0], t.shape[1], t.strides[0], t.strides[1]), (2, 2, 3, 3, 1));
    assert_eq!((t.dtype.code as u32, t.dtype.bits, t.dtype.lanes), (S2FT_DLPACK_FLOAT, 32, 1));
    assert_eq!(std::mem::size_of::<s2ft_tensor>(), 8 + 8 + 4 + 4 + 32 + 32 + 8);
}

#[test]
fn a_bad_call_sets_the_last_error() {
    let st = unsafe { s2ft_context_create(std::ptr::null(), std::ptr::null_mut()) };
    assert_eq!(st, S2FT_ERR_INVALID_ARGUMENT);
    let msg = unsafe { CStr::from_ptr(s2ft_last_error()) }.to_str().unwrap();
    assert!(msg.contains("out"), "{msg}");
    assert_eq!(unsafe { CStr::from_ptr(s2ft_status_string(st)) }.to_str().unwrap(), "invalid argument");
}
