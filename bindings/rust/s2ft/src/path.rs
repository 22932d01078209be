//! Conversions of Rust paths and names to C strings.

use std::ffi::CString;
use std::path::Path;

use crate::error::{Error, Result};

/// A path as a NUL-terminated C string (its bytes as they are on Unix).
pub(crate) fn c_path(path: &Path) -> Result<CString> {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = path
        .to_str()
        .ok_or_else(|| Error::invalid(format!("path {} is not valid UTF-8", path.display())))?
        .as_bytes()
        .to_vec();
    CString::new(bytes).map_err(|_| Error::invalid(format!("path {} contains a NUL byte", path.display())))
}

/// A name as a NUL-terminated C string.
pub(crate) fn c_name(name: &str) -> Result<CString> {
    CString::new(name).map_err(|_| Error::invalid(format!("name {name:?} contains a NUL byte")))
}
