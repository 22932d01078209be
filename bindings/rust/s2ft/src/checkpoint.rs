//! Checkpoints: Hugging Face model folders (or one .safetensors file)
//! opened for reading, memory-mapped copy-on-write.

use std::ffi::{c_void, CStr, CString};
use std::ops::Deref;
use std::os::raw::c_char;
use std::path::Path;
use std::ptr;

use s2ft_sys as sys;

use crate::error::{check, Error, Result};
use crate::path::{c_name, c_path};
use crate::shape::ModelShape;
use crate::tensor::{DType, TensorMut, TensorRef};

/// A checkpoint opened for reading (`s2ft_checkpoint`): a folder with
/// `config.json` and `model.safetensors` (or the shards that
/// `model.safetensors.index.json` lists), or one `.safetensors` file. Its
/// files are memory-mapped privately: nothing is read until used, and a
/// write through a view or by a [`Model`](crate::Model) made from it changes
/// this process's copy only, never the files ([`Checkpoint::write`] writes
/// a new folder). Views borrow the checkpoint, so they cannot outlive it.
///
/// ```no_run
/// let ckpt = s2ft::Checkpoint::open("stories260K-hf").unwrap();
/// let shape = ckpt.shape().unwrap();
/// let down = ckpt.tensor("model.layers.0.mlp.down_proj.weight").unwrap();
/// assert_eq!(down.shape(), vec![shape.d_model as usize, shape.d_ff as usize]);
/// for info in ckpt.tensors() {
///     println!("{} {} {:?}", info.name, info.dtype, info.shape);
/// }
/// ```
#[derive(Debug)]
pub struct Checkpoint {
    pub(crate) raw: *mut sys::s2ft_checkpoint,
}

// SAFETY: a checkpoint holds file mappings and no thread-bound state;
// moving it between threads is sound. Not Sync: handles are not locked.
unsafe impl Send for Checkpoint {}

/// What [`Checkpoint::tensor_info`] reports about one stored tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo<'c> {
    /// The tensor's name, e.g. `model.layers.0.mlp.down_proj.weight`.
    pub name: &'c str,
    /// The safetensors dtype name: `"F32"`, `"BF16"`, `"I64"`, ...
    pub dtype: &'c str,
    /// The extents (empty for a scalar).
    pub shape: Vec<usize>,
    /// The size of its data in bytes.
    pub nbytes: u64,
}

/// Options of [`Checkpoint::write`], built from the C defaults
/// (`s2ft_checkpoint_write_options_init`) and changed with the builder
/// methods.
///
/// ```
/// let opts = s2ft::WriteOptions::new().max_shard_bytes(1 << 20).exclude("tokenizer.json");
/// assert!(opts.copy_other_files);
/// assert_eq!(opts.exclude, vec!["tokenizer.json".to_string()]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// 0 (default): the source's files and split, headers and tensor order
    /// kept; else shards of at most this many data bytes (a larger tensor
    /// gets a shard of its own) with an index.
    pub max_shard_bytes: u64,
    /// Copy the folder's other regular files (tokenizer, generation config,
    /// ...); default true.
    pub copy_other_files: bool,
    /// Names of files not to copy.
    pub exclude: Vec<String>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        let raw = raw_write_defaults();
        WriteOptions { max_shard_bytes: raw.max_shard_bytes, copy_other_files: raw.copy_other_files != 0, exclude: Vec::new() }
    }
}

fn raw_write_defaults() -> sys::s2ft_checkpoint_write_options {
    // SAFETY: all-zero is a valid value of the plain C struct (NULL
    // pointers, no callback); init then sets the defaults.
    let mut raw: sys::s2ft_checkpoint_write_options = unsafe { std::mem::zeroed() };
    // SAFETY: raw is a valid out pointer; the version is the one compiled in.
    let status = unsafe { sys::s2ft_checkpoint_write_options_init(&mut raw, sys::S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION) };
    debug_assert_eq!(status, 0);
    raw
}

/// The state a progress callback runs with: the caller's closure and a
/// panic it raised, kept to resume once the library has returned.
struct Progress<'f> {
    f: &'f mut dyn FnMut(u64, u64),
    panic: Option<Box<dyn std::any::Any + Send>>,
}

extern "C" fn progress_trampoline(user: *mut c_void, done: u64, total: u64) {
    // SAFETY: `user` is the Progress that write_impl passes, alive and not
    // otherwise borrowed during the call.
    let p = unsafe { &mut *(user as *mut Progress<'_>) };
    if p.panic.is_none() {
        // A panic must not unwind into C: catch it, resume it after the call.
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (p.f)(done, total))) {
            p.panic = Some(e);
        }
    }
}

impl WriteOptions {
    /// The defaults: the source's layout, other files copied.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reshards into files of at most `bytes` data bytes (0: keep the layout).
    pub fn max_shard_bytes(mut self, bytes: u64) -> Self {
        self.max_shard_bytes = bytes;
        self
    }

    /// Whether the folder's other regular files are copied.
    pub fn copy_other_files(mut self, copy: bool) -> Self {
        self.copy_other_files = copy;
        self
    }

    /// Leaves the file `name` out of the copy.
    pub fn exclude(mut self, name: impl Into<String>) -> Self {
        self.exclude.push(name.into());
        self
    }
}

/// A string the checkpoint owns, valid while it lives.
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string that lives for `'c`.
unsafe fn owned_str<'c>(p: *const c_char) -> Option<&'c str> {
    if p.is_null() {
        None
    } else {
        // SAFETY: the caller's promise.
        unsafe { CStr::from_ptr(p) }.to_str().ok()
    }
}

impl Checkpoint {
    /// Opens the checkpoint at `path` (a folder or one `.safetensors`
    /// file). Every header, offset, dtype and the shard index are checked
    /// now (`ErrorKind::Io`, `ErrorKind::Format`).
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let p = c_path(path.as_ref())?;
        let mut raw = ptr::null_mut();
        // SAFETY: NUL-terminated path, valid out pointer; we own *raw on success.
        check(unsafe { sys::s2ft_checkpoint_open(p.as_ptr(), &mut raw) })?;
        Ok(Checkpoint { raw })
    }

    /// The model shape of a LLaMA-family checkpoint (llama, mistral,
    /// qwen2), from `config.json`, checked against the projection weights.
    /// A checkpoint opened as one file has no configuration
    /// (`ErrorKind::State`).
    pub fn shape(&self) -> Result<ModelShape> {
        let mut shape = ModelShape::default().to_raw();
        // SAFETY: live handle, valid out pointer.
        check(unsafe { sys::s2ft_checkpoint_shape(self.raw, &mut shape) })?;
        Ok(ModelShape::from_raw(shape))
    }

    /// The text of `config.json`, or `None` when the checkpoint has none
    /// (opened as one file).
    pub fn config(&self) -> Option<&str> {
        let mut json: *const c_char = ptr::null();
        // SAFETY: live handle, valid out pointer.
        if unsafe { sys::s2ft_checkpoint_config(self.raw, &mut json) } != 0 {
            return None;
        }
        // SAFETY: owned by the checkpoint, which `self` borrows.
        unsafe { owned_str(json) }
    }

    /// The number of tensors in all its files.
    pub fn tensor_count(&self) -> usize {
        let mut n = 0i64;
        // SAFETY: live handle, valid out pointer (fails only for NULL).
        let status = unsafe { sys::s2ft_checkpoint_tensor_count(self.raw, &mut n) };
        debug_assert_eq!(status, 0);
        n.max(0) as usize
    }

    /// The names of its safetensors files inside the folder (one unless
    /// sharded), in the index's order.
    pub fn files(&self) -> Result<Vec<&str>> {
        let mut n = 0i64;
        // SAFETY: live handle, valid out pointer.
        check(unsafe { sys::s2ft_checkpoint_file_count(self.raw, &mut n) })?;
        (0..n)
            .map(|i| {
                let mut name: *const c_char = ptr::null();
                // SAFETY: index in range, valid out pointer.
                check(unsafe { sys::s2ft_checkpoint_file(self.raw, i, &mut name) })?;
                // SAFETY: owned by the checkpoint, which `self` borrows.
                unsafe { owned_str(name) }.ok_or_else(|| Error::invalid(format!("file {i} has no UTF-8 name")))
            })
            .collect()
    }

    /// Describes tensor `index` (shards in index order, file order within a
    /// shard). `ErrorKind::InvalidArgument` when out of range.
    pub fn tensor_info(&self, index: usize) -> Result<TensorInfo<'_>> {
        let i = index as i64;
        let (mut name, mut dtype): (*const c_char, *const c_char) = (ptr::null(), ptr::null());
        let (mut ndim, mut nbytes) = (0i32, 0u64);
        // SAFETY: shape NULL asks for the rank only.
        check(unsafe { sys::s2ft_checkpoint_tensor_info(self.raw, i, &mut name, &mut dtype, &mut ndim, ptr::null_mut(), 0, &mut nbytes) })?;
        let mut shape = vec![0i64; ndim.max(0) as usize];
        if !shape.is_empty() {
            // SAFETY: shape has room for ndim extents.
            check(unsafe { sys::s2ft_checkpoint_tensor_info(self.raw, i, ptr::null_mut(), ptr::null_mut(), &mut ndim, shape.as_mut_ptr(), shape.len() as i32, ptr::null_mut()) })?;
        }
        // SAFETY: both strings are owned by the checkpoint, which `self` borrows.
        let (name, dtype) = unsafe { (owned_str(name), owned_str(dtype)) };
        Ok(TensorInfo {
            name: name.ok_or_else(|| Error::invalid(format!("tensor {index} has no UTF-8 name")))?,
            dtype: dtype.unwrap_or(""),
            shape: shape.into_iter().map(|v| v as usize).collect(),
            nbytes,
        })
    }

    /// Every stored tensor's [`TensorInfo`], in [`Checkpoint::tensor_info`]'s order.
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = TensorInfo<'_>> + '_ {
        let infos: Vec<TensorInfo<'_>> = (0..self.tensor_count()).filter_map(|i| self.tensor_info(i).ok()).collect();
        infos.into_iter()
    }

    /// A zero-copy view of the F32, F16 or BF16 tensor `name`, borrowing
    /// the checkpoint. Another dtype is `ErrorKind::DType` (read it with
    /// [`Checkpoint::tensor_data`]); an unknown name `ErrorKind::InvalidArgument`.
    pub fn tensor(&self, name: &str) -> Result<CheckpointTensor<'_>> {
        let raw = self.descriptor(name)?;
        // SAFETY: the view points into memory the checkpoint owns; `self`
        // is borrowed shared for the view's lifetime, so nothing writes it
        // (writers need `&mut Checkpoint`).
        Ok(CheckpointTensor { view: unsafe { TensorRef::from_descriptor(raw) } })
    }

    /// A writable view of the F32, F16 or BF16 tensor `name`: writes change
    /// this process's copy (what [`Checkpoint::write`] writes), never the file.
    pub fn tensor_mut(&mut self, name: &str) -> Result<CheckpointTensorMut<'_>> {
        let raw = self.descriptor(name)?;
        // SAFETY: `self` is borrowed exclusively for the view's lifetime.
        Ok(CheckpointTensorMut { view: unsafe { TensorMut::from_descriptor(raw) } })
    }

    fn descriptor(&self, name: &str) -> Result<sys::s2ft_tensor> {
        let n = c_name(name)?;
        // SAFETY: an all-zero descriptor is a valid out value.
        let mut raw: sys::s2ft_tensor = unsafe { std::mem::zeroed() };
        // SAFETY: live handle; the library fills `raw` and changes nothing
        // else (its mutable pointer only allows writes through views).
        check(unsafe { sys::s2ft_checkpoint_tensor(self.raw, n.as_ptr(), &mut raw) })?;
        Ok(raw)
    }

    /// The raw little-endian bytes of tensor `name`, of any dtype.
    pub fn tensor_data(&self, name: &str) -> Result<&[u8]> {
        let n = c_name(name)?;
        let mut data: *const c_void = ptr::null();
        let mut nbytes = 0u64;
        // SAFETY: live handle, valid out pointers.
        check(unsafe { sys::s2ft_checkpoint_tensor_data(self.raw, n.as_ptr(), &mut data, &mut nbytes) })?;
        if nbytes == 0 || data.is_null() {
            return Ok(&[]);
        }
        // SAFETY: nbytes bytes at data, owned by the checkpoint, unwritten
        // while `self` is borrowed shared.
        Ok(unsafe { std::slice::from_raw_parts(data as *const u8, nbytes as usize) })
    }

    /// Writes a copy of the checkpoint into the folder `out_dir` (made if
    /// missing; not the checkpoint's own): every tensor as it is now (writes
    /// through views and applied adapters included), except those named in
    /// `replacements`, whose data is replaced by the given tensors (the
    /// tensor's shape; f32, f16 or bf16 of any strides, rounded to the
    /// stored dtype). Each file is written under a temporary name and renamed.
    ///
    /// ```no_run
    /// use s2ft::*;
    /// let ckpt = Checkpoint::open("stories260K-hf").unwrap();
    /// let zeros = vec![0.0f32; 64 * 172];
    /// ckpt.write("stories-zero-down0",
    ///            &[("model.layers.0.mlp.down_proj.weight", TensorRef::matrix(&zeros, 64, 172).unwrap())],
    ///            &WriteOptions::new().copy_other_files(false)).unwrap();
    /// ```
    pub fn write(&self, out_dir: impl AsRef<Path>, replacements: &[(&str, TensorRef<'_>)], opts: &WriteOptions) -> Result<()> {
        self.write_impl(out_dir.as_ref(), replacements, opts, None)
    }

    /// [`Checkpoint::write`], calling `progress(done_bytes, total_bytes)`
    /// after each tensor is written (e.g. to draw a progress bar). A panic
    /// in `progress` is resumed once the library has returned.
    ///
    /// ```no_run
    /// let ckpt = s2ft::Checkpoint::open("stories260K-hf").unwrap();
    /// ckpt.write_with_progress("copy", &[], &s2ft::WriteOptions::new(), |done, total| {
    ///     eprint!("\r{} of {} bytes", done, total);
    /// }).unwrap();
    /// ```
    pub fn write_with_progress(&self, out_dir: impl AsRef<Path>, replacements: &[(&str, TensorRef<'_>)], opts: &WriteOptions, mut progress: impl FnMut(u64, u64)) -> Result<()> {
        let mut state = Progress { f: &mut progress, panic: None };
        let result = self.write_impl(out_dir.as_ref(), replacements, opts, Some(&mut state));
        if let Some(panic) = state.panic {
            std::panic::resume_unwind(panic);
        }
        result
    }

    fn write_impl(&self, out_dir: &Path, replacements: &[(&str, TensorRef<'_>)], opts: &WriteOptions, progress: Option<&mut Progress<'_>>) -> Result<()> {
        let dir = c_path(out_dir)?;
        let names: Vec<CString> = replacements.iter().map(|(n, _)| c_name(n)).collect::<Result<_>>()?;
        let name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let tensors: Vec<sys::s2ft_tensor> = replacements.iter().map(|(_, t)| *t.as_raw()).collect();
        let exclude: Vec<CString> = opts.exclude.iter().map(|n| c_name(n)).collect::<Result<_>>()?;
        let exclude_ptrs: Vec<*const c_char> = exclude.iter().map(|n| n.as_ptr()).collect();
        let mut raw = raw_write_defaults();
        raw.max_shard_bytes = opts.max_shard_bytes;
        raw.copy_other_files = opts.copy_other_files as i32;
        raw.exclude = if exclude_ptrs.is_empty() { ptr::null() } else { exclude_ptrs.as_ptr() };
        raw.n_exclude = exclude_ptrs.len() as i64;
        if let Some(p) = progress {
            raw.progress = Some(progress_trampoline);
            raw.progress_user = p as *mut Progress<'_> as *mut c_void;
        }
        // SAFETY: live handle; the name, tensor and exclude arrays hold the
        // counts passed with them and outlive the call; the replacements
        // are borrowed for the call (checked views).
        check(unsafe {
            sys::s2ft_checkpoint_write(
                self.raw,
                dir.as_ptr(),
                if name_ptrs.is_empty() { ptr::null() } else { name_ptrs.as_ptr() },
                if tensors.is_empty() { ptr::null() } else { tensors.as_ptr() },
                tensors.len() as i64,
                &raw,
            )
        })
    }

    /// The C handle (for use with `s2ft-sys`); still owned by this value.
    pub fn as_raw(&self) -> *mut sys::s2ft_checkpoint {
        self.raw
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        // SAFETY: we own the handle; views and models borrow it, so none is left.
        unsafe { sys::s2ft_checkpoint_destroy(self.raw) }
    }
}

/// The element count of a compact row-major CPU descriptor, or `None`.
fn compact_len(raw: &sys::s2ft_tensor) -> Option<usize> {
    if raw.device.type_ != sys::S2FT_DEVICE_CPU as i32 {
        return None;
    }
    let mut step = 1i64;
    for i in (0..raw.ndim.max(0) as usize).rev() {
        if raw.shape[i] != 1 && raw.strides[i] != step {
            return None;
        }
        step = step.checked_mul(raw.shape[i])?;
    }
    usize::try_from(step).ok()
}

/// The elements of a compact CPU descriptor of `dtype` as a slice of `T`.
///
/// # Safety
/// The descriptor must describe memory that holds its elements, aligned
/// for `T`, valid and unwritten by others for `'c`.
unsafe fn elements<'c, T>(raw: &sys::s2ft_tensor, dtype: &[DType]) -> Option<&'c [T]> {
    if !DType::from_raw(raw.dtype).is_some_and(|d| dtype.contains(&d)) {
        return None;
    }
    let n = compact_len(raw)?;
    if n == 0 {
        return Some(&[]);
    }
    let p = (raw.data as *const u8).wrapping_add(raw.byte_offset as usize) as *const T;
    // SAFETY: the caller's promise; n elements from p by compactness.
    Some(unsafe { std::slice::from_raw_parts(p, n) })
}

/// As [`elements`], writable.
///
/// # Safety
/// As [`elements`], and nobody else may read or write the memory for `'c`.
unsafe fn elements_mut<'c, T>(raw: &sys::s2ft_tensor, dtype: &[DType]) -> Option<&'c mut [T]> {
    // SAFETY: the caller's promise.
    let s: &[T] = unsafe { elements(raw, dtype) }?;
    // SAFETY: exclusive by the caller's promise.
    Some(unsafe { std::slice::from_raw_parts_mut(s.as_ptr() as *mut T, s.len()) })
}

/// A read-only view of a checkpoint's F32, F16 or BF16 tensor, borrowing
/// the [`Checkpoint`] (zero-copy into its mapping). It dereferences to a
/// [`TensorRef`], so it passes straight to the library's functions.
///
/// A view cannot outlive its checkpoint:
///
/// ```compile_fail
/// let view = {
///     let ckpt = s2ft::Checkpoint::open("model").unwrap();
///     ckpt.tensor("model.layers.0.mlp.down_proj.weight").unwrap()
/// }; // error: `ckpt` does not live long enough
/// ```
///
/// nor be taken while a model made from the checkpoint (which writes it) lives:
///
/// ```compile_fail
/// let ctx = s2ft::Context::new().unwrap();
/// let mut ckpt = s2ft::Checkpoint::open("model").unwrap();
/// let model = s2ft::Model::from_checkpoint(&ctx, &mut ckpt, None, None).unwrap();
/// let view = ckpt.tensor("model.layers.0.mlp.down_proj.weight"); // error: borrowed by the model
/// drop(model);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct CheckpointTensor<'c> {
    view: TensorRef<'c>,
}

impl<'c> Deref for CheckpointTensor<'c> {
    type Target = TensorRef<'c>;
    fn deref(&self) -> &TensorRef<'c> {
        &self.view
    }
}

impl<'c> CheckpointTensor<'c> {
    /// The view as a [`TensorRef`] with the checkpoint's lifetime.
    pub fn tensor(&self) -> TensorRef<'c> {
        self.view
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.view.shape().iter().product()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements of an F32 tensor, row-major (`None` for another dtype).
    pub fn as_f32(&self) -> Option<&'c [f32]> {
        // SAFETY: the checkpoint owns the memory, holds it for 'c, and
        // nobody writes it while it is borrowed shared.
        unsafe { elements(self.view.as_raw(), &[DType::F32]) }
    }

    /// The raw 16-bit elements of an F16 or BF16 tensor (`None` for F32).
    pub fn as_u16(&self) -> Option<&'c [u16]> {
        // SAFETY: as as_f32.
        unsafe { elements(self.view.as_raw(), &[DType::F16, DType::BF16]) }
    }

    /// The elements converted to f32 (exactly: every F16 and BF16 value is
    /// an f32), row-major.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        self.view.to_f32_vec().unwrap_or_default()
    }
}

/// A writable view of a checkpoint's F32, F16 or BF16 tensor, borrowing
/// the [`Checkpoint`] exclusively. Writes change this process's copy of
/// the checkpoint (what [`Checkpoint::write`] writes), never the file.
#[derive(Debug)]
pub struct CheckpointTensorMut<'c> {
    view: TensorMut<'c>,
}

impl CheckpointTensorMut<'_> {
    /// A read-only descriptor of the same memory, borrowing this view.
    pub fn as_ref(&self) -> TensorRef<'_> {
        self.view.as_ref()
    }

    /// A writable descriptor of the same memory, borrowing this view.
    pub fn tensor_mut(&mut self) -> TensorMut<'_> {
        self.view.reborrow()
    }

    /// The elements of an F32 tensor, row-major (`None` for another dtype).
    pub fn as_f32_mut(&mut self) -> Option<&mut [f32]> {
        // SAFETY: the checkpoint is borrowed exclusively through this view,
        // which is borrowed exclusively for the slice's lifetime.
        unsafe { elements_mut(self.view.as_raw(), &[DType::F32]) }
    }

    /// The raw 16-bit elements of an F16 or BF16 tensor (`None` for F32).
    pub fn as_u16_mut(&mut self) -> Option<&mut [u16]> {
        // SAFETY: as as_f32_mut.
        unsafe { elements_mut(self.view.as_raw(), &[DType::F16, DType::BF16]) }
    }
}
