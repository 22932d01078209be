//! The context: one backend and device, and its workspace.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::ptr;

use s2ft_sys as sys;

use crate::error::{check, Result};
use crate::tensor::Device;

c_enum! {
    /// How [`crate::forward_mixed`] adds a column/row adapter's delta on a
    /// context ([`Context::set_delta_path`]).
    DeltaPath {
        /// CUDA: time both paths once per shape and keep the faster; on the
        /// CPU the same as `Dense`.
        Auto = sys::S2FT_DELTA_PATH_AUTO,
        /// Gather the lines, then a dense GEMM.
        Dense = sys::S2FT_DELTA_PATH_DENSE,
        /// The delta as CSR through cuSPARSE SpMM (CUDA only).
        Sparse = sys::S2FT_DELTA_PATH_SPARSE,
    }
}

/// Kinds of device, for [`device_count`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceType {
    /// The host CPU (always one).
    Cpu,
    /// CUDA devices.
    Cuda,
}

/// The number of devices of a kind this build of libs2ft can use: 1 for
/// the CPU; for CUDA the devices present, or 0 when the build has no CUDA
/// backend or no driver is installed (not an error; [`crate::last_error`]
/// says why).
///
/// ```
/// assert_eq!(s2ft::device_count(s2ft::DeviceType::Cpu).unwrap(), 1);
/// ```
pub fn device_count(device_type: DeviceType) -> Result<i32> {
    let t = match device_type {
        DeviceType::Cpu => sys::S2FT_DEVICE_CPU,
        DeviceType::Cuda => sys::S2FT_DEVICE_CUDA,
    } as i32;
    let mut n = 0i32;
    // SAFETY: n is a valid out pointer.
    check(unsafe { sys::s2ft_device_count(t, &mut n) })?;
    Ok(n)
}

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

    /// Blocks until all work the context has queued is done, and reports a
    /// device fault that happened in it (`ErrorKind::Backend`). A no-op on a
    /// CPU context, whose calls finish before they return.
    pub fn synchronize(&self) -> Result<()> {
        // SAFETY: self.raw is live; the context is not shared between
        // threads (not Sync), so no other call runs on it now.
        check(unsafe { sys::s2ft_context_synchronize(self.raw) })
    }

    /// The most per-call scratch, in bytes, any call on this CUDA context
    /// has used so far (0 on a CPU context).
    pub fn workspace_needed(&self) -> Result<usize> {
        let mut n = 0;
        // SAFETY: self.raw is live; n is a valid out pointer.
        check(unsafe { sys::s2ft_context_workspace_needed(self.raw, &mut n) })?;
        Ok(n as usize)
    }

    /// Chooses the delta path of [`crate::forward_mixed`] on this context
    /// (default `Auto`). A CPU context has only `Dense` (`Auto` means it);
    /// `Sparse` there gives `ErrorKind::Unsupported`.
    pub fn set_delta_path(&self, path: DeltaPath) -> Result<()> {
        // SAFETY: self.raw is live; not shared between threads.
        check(unsafe { sys::s2ft_context_set_delta_path(self.raw, path.to_raw()) })
    }

    /// The CUDA stream (a `cudaStream_t`) the context queues its work on;
    /// null on a CPU context and for the legacy default stream.
    pub fn stream(&self) -> Result<*mut c_void> {
        let mut s = ptr::null_mut();
        // SAFETY: self.raw is live; s is a valid out pointer.
        check(unsafe { sys::s2ft_context_stream(self.raw, &mut s) })?;
        Ok(s)
    }

    /// Sets the CUDA stream the context queues its work on (null: the
    /// legacy default stream); the new stream waits for the work queued on
    /// the old one. A CPU context gives `ErrorKind::Unsupported`.
    ///
    /// # Safety
    /// `stream` must be null or a valid `cudaStream_t` of the context's
    /// device that stays alive while the context may use it.
    pub unsafe fn set_stream(&self, stream: *mut c_void) -> Result<()> {
        // SAFETY: self.raw is live; the caller vouches for the stream.
        check(unsafe { sys::s2ft_context_set_stream(self.raw, stream) })
    }

    /// Gives a CUDA context `bytes` of caller-owned device memory at
    /// `workspace` for per-call scratch, so that calls allocate nothing
    /// (null returns to the context's own workspace). A call needing more
    /// fails with `ErrorKind::OutOfMemory`; see
    /// [`Context::workspace_needed`]. A CPU context gives
    /// `ErrorKind::Unsupported`.
    ///
    /// # Safety
    /// `workspace` must be null or `bytes` of device memory of the
    /// context's device that stays valid, and is not used by the caller,
    /// while work queued by the context may still read it.
    pub unsafe fn set_workspace(&self, workspace: *mut c_void, bytes: usize) -> Result<()> {
        // SAFETY: self.raw is live; the caller vouches for the memory.
        check(unsafe { sys::s2ft_context_set_workspace(self.raw, workspace, bytes as _) })
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
