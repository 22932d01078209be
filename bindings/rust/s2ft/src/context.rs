//! The context: one backend and device, and its workspace.

use std::marker::PhantomData;
use std::ptr;

use s2ft_sys as sys;

use crate::error::{check, Result};
use crate::tensor::Device;

/// Options for [`Context::with_options`]; `Default` matches the C defaults
/// (`s2ft_context_options_init`): the CPU, BLAS's own thread count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextOptions {
    /// The device to bind to.
    pub device: Device,
    /// CPU threads for BLAS; 0 leaves BLAS's default.
    pub num_threads: i32,
}

impl Default for ContextOptions {
    fn default() -> Self {
        let raw = raw_defaults();
        ContextOptions {
            device: Device::from_raw(sys::s2ft_device { type_: raw.device_type, id: raw.device_id }),
            num_threads: raw.num_threads,
        }
    }
}

fn raw_defaults() -> sys::s2ft_context_options {
    let mut raw = sys::s2ft_context_options { version: 0, device_type: 0, device_id: 0, num_threads: 0 };
    // SAFETY: raw is a valid out pointer; the version is the one compiled in.
    let status = unsafe { sys::s2ft_context_options_init(&mut raw, sys::S2FT_CONTEXT_OPTIONS_VERSION) };
    debug_assert_eq!(status, 0);
    raw
}

/// A context binds the library to one backend and device; every computing
/// call takes one. Objects made from it (statistics, optimizers, models)
/// borrow it, so it outlives them.
///
/// ```
/// let ctx = s2ft::Context::new().unwrap();
/// assert_eq!(ctx.device().unwrap(), s2ft::Device::Cpu);
/// ```
#[derive(Debug)]
pub struct Context {
    pub(crate) raw: *mut sys::s2ft_context,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

// SAFETY: a context is not tied to the thread that made it; it is only not
// internally locked. Moving it to another thread is fine (Send); sharing it
// between threads is not (no Sync), which is what the C API asks: one
// context per thread at a time.
unsafe impl Send for Context {}

impl Context {
    /// A CPU context with default options.
    pub fn new() -> Result<Context> {
        Context::with_options(&ContextOptions::default())
    }

    /// A context with the given options. A CUDA device in a build without
    /// the CUDA backend gives `ErrorKind::Unsupported`.
    pub fn with_options(opts: &ContextOptions) -> Result<Context> {
        let mut raw_opts = raw_defaults();
        let (t, id) = opts.device.to_raw();
        raw_opts.device_type = t;
        raw_opts.device_id = id;
        raw_opts.num_threads = opts.num_threads;
        let mut raw = ptr::null_mut();
        // SAFETY: valid pointers for the call; on success we own *raw.
        check(unsafe { sys::s2ft_context_create(&raw_opts, &mut raw) })?;
        Ok(Context { raw, _not_sync: PhantomData })
    }

    /// The device the context is bound to.
    pub fn device(&self) -> Result<Device> {
        let mut d = sys::s2ft_device { type_: 0, id: 0 };
        // SAFETY: self.raw is live; d is a valid out pointer.
        check(unsafe { sys::s2ft_context_device(self.raw, &mut d) })?;
        Ok(Device::from_raw(d))
    }

    /// The C handle (for use with `s2ft-sys`); still owned by this value.
    pub fn as_raw(&self) -> *mut sys::s2ft_context {
        self.raw
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: we own the handle; borrowers are gone (lifetimes).
        unsafe { sys::s2ft_context_destroy(self.raw) }
    }
}
