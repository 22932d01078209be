//! Errors: the library's status codes and messages as a Rust error type.

use std::ffi::CStr;
use std::fmt;

use s2ft_sys as sys;

/// What kind of failure a status code names (the `S2FT_ERR_*` codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `S2FT_ERR_INVALID_ARGUMENT`: NULL where not allowed, a bad value.
    InvalidArgument,
    /// `S2FT_ERR_SHAPE`: tensor shapes do not fit together.
    Shape,
    /// `S2FT_ERR_DTYPE`: unsupported or mismatched element type.
    DType,
    /// `S2FT_ERR_DEVICE`: mixed devices, or the wrong device.
    Device,
    /// `S2FT_ERR_OUT_OF_MEMORY`: an allocation failed.
    OutOfMemory,
    /// `S2FT_ERR_IO`: a file could not be read or written.
    Io,
    /// `S2FT_ERR_FORMAT`: a file is malformed, or a fingerprint differs.
    Format,
    /// `S2FT_ERR_UNSUPPORTED`: not available in this build or backend.
    Unsupported,
    /// `S2FT_ERR_STATE`: the call is not valid in the object's state.
    State,
    /// `S2FT_ERR_BACKEND`: BLAS, CUDA or cuBLAS failed.
    Backend,
    /// `S2FT_ERR_INTERNAL`: a bug in libs2ft.
    Internal,
    /// A status this binding does not know (from a newer library).
    Other(i32),
}

impl ErrorKind {
    /// Maps a (negative) status code to its kind; unknown codes give `Other`.
    ///
    /// ```
    /// use s2ft::ErrorKind;
    /// assert_eq!(ErrorKind::from_status(-2), ErrorKind::Shape);
    /// assert_eq!(ErrorKind::from_status(-99), ErrorKind::Other(-99));
    /// ```
    pub fn from_status(status: i32) -> ErrorKind {
        match status {
            sys::S2FT_ERR_INVALID_ARGUMENT => ErrorKind::InvalidArgument,
            sys::S2FT_ERR_SHAPE => ErrorKind::Shape,
            sys::S2FT_ERR_DTYPE => ErrorKind::DType,
            sys::S2FT_ERR_DEVICE => ErrorKind::Device,
            sys::S2FT_ERR_OUT_OF_MEMORY => ErrorKind::OutOfMemory,
            sys::S2FT_ERR_IO => ErrorKind::Io,
            sys::S2FT_ERR_FORMAT => ErrorKind::Format,
            sys::S2FT_ERR_UNSUPPORTED => ErrorKind::Unsupported,
            sys::S2FT_ERR_STATE => ErrorKind::State,
            sys::S2FT_ERR_BACKEND => ErrorKind::Backend,
            sys::S2FT_ERR_INTERNAL => ErrorKind::Internal,
            other => ErrorKind::Other(other),
        }
    }
}

/// A failed call: the library's status code and its message, which names
/// the argument and what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The negative `S2FT_ERR_*` status code.
    pub status: i32,
    /// The message (from `s2ft_last_error()`, or from this binding's own
    /// checks, which use the same codes).
    pub message: String,
}

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::from_status(self.status)
    }

    /// An error raised by the binding itself before calling into C.
    pub(crate) fn new(status: i32, message: impl Into<String>) -> Error {
        Error { status, message: message.into() }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::new(sys::S2FT_ERR_INVALID_ARGUMENT, message)
    }

    pub(crate) fn shape(message: impl Into<String>) -> Error {
        Error::new(sys::S2FT_ERR_SHAPE, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", status_string(self.status), self.status, self.message)
    }
}

impl std::error::Error for Error {}

/// The result of a fallible call.
pub type Result<T> = std::result::Result<T, Error>;

/// A short static name for a status code, e.g. `"invalid argument"`.
///
/// ```
/// assert_eq!(s2ft::status_string(0), "ok");
/// ```
pub fn status_string(status: i32) -> &'static str {
    // SAFETY: the library returns a static, never-NULL, NUL-terminated string.
    unsafe { CStr::from_ptr(sys::s2ft_status_string(status)) }.to_str().unwrap_or("unknown status")
}

/// The message of the last failed call on this thread ("" if none).
///
/// The safe API already puts this message into every [`Error`]; this is for
/// completeness.
pub fn last_error() -> String {
    // SAFETY: never NULL; valid until the next failing call on this thread,
    // and we copy it right away.
    unsafe { CStr::from_ptr(sys::s2ft_last_error()) }.to_string_lossy().into_owned()
}

/// Clears this thread's last error message.
///
/// ```
/// s2ft::clear_error();
/// assert_eq!(s2ft::last_error(), "");
/// ```
pub fn clear_error() {
    // SAFETY: no arguments, thread-local state only.
    unsafe { sys::s2ft_clear_error() }
}

/// Turns a status into a `Result`, taking the thread's last error message.
pub(crate) fn check(status: sys::s2ft_status) -> Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(Error { status, message: last_error() })
    }
}
