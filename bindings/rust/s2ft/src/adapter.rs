//! Adapters: what fine-tuning changed, as sparse line deltas.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::path::Path;
use std::ptr;

use s2ft_sys as sys;

use crate::context::Context;
use crate::error::{check, Error, Result};
use crate::partial::require_len;
use crate::path::{c_name, c_path};
use crate::selection::Selection;
use crate::shape::{ModelShape, Target, Weight};
use crate::tensor::{TensorMut, TensorRef};
use crate::weights::LayerWeightsRef;

/// What [`Adapter::info`] reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdapterInfo {
    /// The model shape.
    pub shape: ModelShape,
    /// The scale used when none is given.
    pub default_scale: f64,
    /// Mask of targets with an entry in some layer.
    pub targets: u32,
}

/// The unstructured sparse entries of one (layer, weight) of an adapter
/// ([`Adapter::sparse`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseEntries {
    /// Ascending base-order flat indices `r * cols + c`.
    pub indices: Vec<i64>,
    /// The f32 delta of each index.
    pub deltas: Vec<f32>,
    /// The base fingerprint of the whole weight (0: unknown, or no entries).
    pub fingerprint: u64,
}

/// What [`Adapter::sparse_info`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SparseInfo {
    /// Mask of [`Weight::bit`] of the weights with sparse entries in some layer.
    pub weights: u32,
    /// The number of sparse entries in all.
    pub entries: i64,
}

/// The low-rank entry of one (layer, weight) of an adapter
/// ([`Adapter::low_rank`]): the delta `b a` of the whole base-order weight
/// `[rows, cols]` as its f32 factors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LowRankEntry {
    /// The rank `k` (at least 1).
    pub rank: usize,
    /// `b [rows, k]`, row-major.
    pub b: Vec<f32>,
    /// `a [k, cols]`, row-major.
    pub a: Vec<f32>,
    /// The base fingerprint of the whole weight (0: unknown).
    pub fingerprint: u64,
}

/// What [`Adapter::low_rank_info`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LowRankInfo {
    /// Mask of [`Weight::bit`] of the weights with a low-rank entry in some layer.
    pub weights: u32,
    /// The number of low-rank entries (layer, weight) in all.
    pub entries: i64,
}

/// Options of [`Adapter::export_peft`]; `Default` matches the C defaults
/// (`s2ft_peft_export_options_init`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeftExportOptions {
    /// `base_model_name_or_path` in `adapter_config.json`; `None` writes null.
    pub base_model_name_or_path: Option<String>,
    /// The scale folded into the LoRA factors; `None` means the adapter's
    /// default scale.
    pub scale: Option<f64>,
}

/// Per (layer, target): trained base-order lines and their f32 deltas,
/// with fingerprints of the base lines, and free key/value metadata.
///
/// ```
/// use s2ft::*;
/// let shape = ModelShape { n_layers: 1, d_model: 2, n_heads: 1, n_kv_heads: 1, head_dim: 2, d_ff: 3 };
/// let mut a = Adapter::new(&shape, "demo", 1.0).unwrap();
/// let delta = [0.5f32, -0.5]; // [d_model = 2, k = 1] for a Down column
/// a.set(0, Target::Down, &[2], &TensorRef::matrix(&delta, 2, 1).unwrap(), None).unwrap();
/// assert_eq!(a.name(), "demo");
/// assert_eq!(a.lines(0, Target::Down).unwrap().0, vec![2]);
/// assert_eq!(a.delta_f32(0, Target::Down).unwrap(), vec![0.5, -0.5]);
/// ```
#[derive(Debug)]
pub struct Adapter {
    pub(crate) raw: *mut sys::s2ft_adapter,
}

// SAFETY: an adapter keeps no context or thread-bound state; moving it
// between threads is sound. Not Sync: handles are not internally locked.
unsafe impl Send for Adapter {}

impl Adapter {
    /// An empty adapter (fill it with [`Adapter::set`]).
    pub fn new(shape: &ModelShape, name: &str, default_scale: f64) -> Result<Adapter> {
        let shape = shape.to_raw();
        let name = c_name(name)?;
        let mut raw = ptr::null_mut();
        // SAFETY: valid pointers; we own *raw on success.
        check(unsafe { sys::s2ft_adapter_create(&shape, name.as_ptr(), default_scale, &mut raw) })?;
        Ok(Adapter { raw })
    }

    /// Builds an adapter from training: for every trained (layer, target),
    /// delta = trained slice - base slice. `base` and `trained` have one
    /// entry per layer; `permuted` says both are in the selection's
    /// permuted order.
    pub fn from_training(ctx: &Context, sel: &Selection, base: &[LayerWeightsRef<'_>], trained: &[LayerWeightsRef<'_>], permuted: bool, name: &str) -> Result<Adapter> {
        let n = sel.shape()?.n_layers as usize;
        require_len("base", base.len(), n)?;
        require_len("trained", trained.len(), n)?;
        let b: Vec<_> = base.iter().map(|l| l.to_raw()).collect();
        let t: Vec<_> = trained.iter().map(|l| l.to_raw()).collect();
        let name = c_name(name)?;
        let mut raw = ptr::null_mut();
        // SAFETY: b and t hold n_layers entries pointing at descriptors
        // borrowed for the call; the library only reads them.
        check(unsafe { sys::s2ft_adapter_from_training(ctx.raw, sel.raw, b.as_ptr(), t.as_ptr(), permuted as i32, name.as_ptr(), &mut raw) })?;
        Ok(Adapter { raw })
    }

    /// Sets (layer, target) to the distinct base-order `lines` and their
    /// `delta` (`[out, k]` for O/Down, `[k, in]` for V/Up). `base` is the
    /// full base weight, to fingerprint the lines, or `None`. No lines
    /// removes the entry.
    pub fn set(&mut self, layer: i32, target: Target, lines: &[i64], delta: &TensorRef<'_>, base: Option<&TensorRef<'_>>) -> Result<()> {
        let base = base.map_or(ptr::null(), |b| &b.raw as *const _);
        // SAFETY: exclusive access (no model can hold a shared borrow now);
        // lines has lines.len() values; tensors borrowed for the call.
        check(unsafe { sys::s2ft_adapter_set(self.raw, layer, target.to_raw(), lines.as_ptr(), lines.len() as i64, &delta.raw, base) })
    }

    /// Renames the adapter and sets its default scale.
    pub fn set_info(&mut self, name: &str, default_scale: f64) -> Result<()> {
        let name = c_name(name)?;
        // SAFETY: live handle, NUL-terminated name.
        check(unsafe { sys::s2ft_adapter_set_info(self.raw, name.as_ptr(), default_scale) })
    }

    /// The adapter's name.
    pub fn name(&self) -> String {
        // SAFETY: never NULL, valid until renamed (needs &mut self); copied.
        unsafe { CStr::from_ptr(sys::s2ft_adapter_name(self.raw)) }.to_string_lossy().into_owned()
    }

    /// The model shape, default scale and target mask.
    pub fn info(&self) -> Result<AdapterInfo> {
        let mut shape = ModelShape::default().to_raw();
        let (mut scale, mut targets) = (0.0f64, 0u32);
        // SAFETY: live handle, valid out pointers.
        check(unsafe { sys::s2ft_adapter_info(self.raw, &mut shape, &mut scale, &mut targets) })?;
        Ok(AdapterInfo { shape: ModelShape::from_raw(shape), default_scale: scale, targets })
    }

    /// The base-order lines of (layer, target), ascending, and their base
    /// fingerprints (0 = unknown). Empty when there is no entry.
    pub fn lines(&self, layer: i32, target: Target) -> Result<(Vec<i64>, Vec<u64>)> {
        let mut n = 0i64;
        // SAFETY: lines NULL asks for the count.
        check(unsafe { sys::s2ft_adapter_lines(self.raw, layer, target.to_raw(), ptr::null_mut(), ptr::null_mut(), 0, &mut n) })?;
        let mut lines = vec![0i64; n as usize];
        let mut prints = vec![0u64; n as usize];
        // SAFETY: both buffers have capacity n.
        check(unsafe { sys::s2ft_adapter_lines(self.raw, layer, target.to_raw(), lines.as_mut_ptr(), prints.as_mut_ptr(), n, &mut n) })?;
        lines.truncate(n as usize);
        prints.truncate(n as usize);
        Ok((lines, prints))
    }

    /// Copies the delta of (layer, target) into `out` (any dtype, rounded).
    pub fn delta(&self, layer: i32, target: Target, out: &mut TensorMut<'_>) -> Result<()> {
        // SAFETY: live handle; out exclusively borrowed for the call.
        check(unsafe { sys::s2ft_adapter_delta(self.raw, layer, target.to_raw(), &mut out.raw) })
    }

    /// The delta of (layer, target) as a row-major f32 vector (`[out, k]`
    /// for O/Down, `[k, in]` for V/Up).
    pub fn delta_f32(&self, layer: i32, target: Target) -> Result<Vec<f32>> {
        let info = self.info()?;
        let k = self.lines(layer, target)?.0.len();
        if k == 0 {
            return Err(Error::new(sys::S2FT_ERR_STATE, format!("the adapter has no entry for layer {layer}, target {target:?}")));
        }
        let s = info.shape;
        let (rows, cols) = match target {
            Target::O | Target::Down => (s.d_model as usize, k),
            Target::V => (k, s.d_model as usize),
            Target::Up => (k, s.d_model as usize),
        };
        let mut out = vec![0.0f32; rows * cols];
        self.delta(layer, target, &mut TensorMut::matrix(&mut out, rows, cols)?)?;
        Ok(out)
    }

    /// Sets the unstructured sparse entries of (layer, weight): strictly
    /// ascending base-order flat indices `r * cols + c` and their `delta`
    /// (`indices.len()` elements, `[count]` or `[1, count]`, every value
    /// finite; copied to f32). `base` is the full base weight, for the
    /// entries' fingerprint, or `None` (never checked). No index may lie on
    /// a structured line of the same (layer, weight). An empty `indices`
    /// removes the entries (see also [`Adapter::clear_sparse`]). A failed
    /// call changes nothing.
    ///
    /// ```
    /// use s2ft::*;
    /// let shape = ModelShape { n_layers: 1, d_model: 2, n_heads: 1, n_kv_heads: 1, head_dim: 2, d_ff: 3 };
    /// let mut a = Adapter::new(&shape, "sparse", 1.0).unwrap();
    /// a.set_sparse(0, Weight::Q, &[1, 2], &TensorRef::new(&[0.25, -0.5], &[2]).unwrap(), None).unwrap();
    /// let e = a.sparse(0, Weight::Q).unwrap();
    /// assert_eq!((e.indices, e.deltas, e.fingerprint), (vec![1, 2], vec![0.25, -0.5], 0));
    /// assert_eq!(a.sparse_info().unwrap(), SparseInfo { weights: Weight::Q.bit(), entries: 2 });
    /// let err = a.set_sparse(0, Weight::Q, &[2, 1], &TensorRef::new(&[1.0, 1.0], &[2]).unwrap(), None).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    /// ```
    pub fn set_sparse(&mut self, layer: i32, weight: Weight, indices: &[i64], delta: &TensorRef<'_>, base: Option<&TensorRef<'_>>) -> Result<()> {
        if indices.is_empty() {
            return self.clear_sparse(layer, weight);
        }
        let base = base.map_or(ptr::null(), |b| &b.raw as *const _);
        // SAFETY: exclusive access (no model can hold a shared borrow now);
        // indices has indices.len() values; tensors borrowed for the call.
        check(unsafe { sys::s2ft_adapter_set_sparse(self.raw, layer, weight.to_raw(), indices.as_ptr(), indices.len() as i64, &delta.raw, base) })
    }

    /// Removes the sparse entries of (layer, weight) (none is not an error).
    pub fn clear_sparse(&mut self, layer: i32, weight: Weight) -> Result<()> {
        // SAFETY: count 0 with NULL indices, delta and base removes the entries.
        check(unsafe { sys::s2ft_adapter_set_sparse(self.raw, layer, weight.to_raw(), ptr::null(), 0, ptr::null(), ptr::null()) })
    }

    /// The sparse entries of (layer, weight): ascending indices, their f32
    /// deltas and the base fingerprint (all empty / 0 when there are none).
    pub fn sparse(&self, layer: i32, weight: Weight) -> Result<SparseEntries> {
        let mut n = 0i64;
        let mut fingerprint = 0u64;
        // SAFETY: indices and deltas NULL ask for the count.
        check(unsafe { sys::s2ft_adapter_sparse(self.raw, layer, weight.to_raw(), ptr::null_mut(), ptr::null_mut(), 0, &mut n, &mut fingerprint) })?;
        let mut indices = vec![0i64; n as usize];
        let mut deltas = vec![0.0f32; n as usize];
        if n > 0 {
            // SAFETY: both buffers have capacity n; the adapter cannot
            // change in between (&self).
            check(unsafe { sys::s2ft_adapter_sparse(self.raw, layer, weight.to_raw(), indices.as_mut_ptr(), deltas.as_mut_ptr(), n, &mut n, &mut fingerprint) })?;
            indices.truncate(n as usize);
            deltas.truncate(n as usize);
        }
        Ok(SparseEntries { indices, deltas, fingerprint })
    }

    /// The weights with sparse entries in some layer (a mask of
    /// [`Weight::bit`]) and the number of sparse entries in all.
    pub fn sparse_info(&self) -> Result<SparseInfo> {
        let (mut weights, mut entries) = (0u32, 0i64);
        // SAFETY: live handle, valid out pointers.
        check(unsafe { sys::s2ft_adapter_sparse_info(self.raw, &mut weights, &mut entries) })?;
        Ok(SparseInfo { weights, entries })
    }

    /// Sets the low-rank entry of (layer, weight): the delta `b a` of the
    /// whole base-order weight `[rows, cols]`, kept as its factors
    /// `b [rows, k]` and `a [k, cols]` (f32, f16 or bf16 on the CPU, any
    /// strides; `k >= 1`, every value finite; copied to f32). A low-rank
    /// entry changes the whole weight, so (layer, weight) may hold no
    /// structured entry and no sparse entries beside it (and [`Adapter::set`]
    /// and [`Adapter::set_sparse`] refuse while it is there). `base` is the
    /// full base weight, for the entry's fingerprint, or `None` (never
    /// checked). [`Adapter::clear_low_rank`] removes the entry. A failed call
    /// changes nothing.
    ///
    /// ```
    /// use s2ft::*;
    /// let shape = ModelShape { n_layers: 1, d_model: 2, n_heads: 1, n_kv_heads: 1, head_dim: 2, d_ff: 3 };
    /// let mut a = Adapter::new(&shape, "low-rank", 1.0).unwrap();
    /// let (b, f) = ([1.0f32, 2.0], [0.5f32, -0.5]); // Q is [2, 2]: b [2, 1], a [1, 2]
    /// a.set_low_rank(0, Weight::Q, &TensorRef::matrix(&b, 2, 1).unwrap(), &TensorRef::matrix(&f, 1, 2).unwrap(), None).unwrap();
    /// let e = a.low_rank(0, Weight::Q).unwrap().unwrap();
    /// assert_eq!((e.rank, e.b, e.a, e.fingerprint), (1, b.to_vec(), f.to_vec(), 0));
    /// assert_eq!(a.low_rank_info().unwrap(), LowRankInfo { weights: Weight::Q.bit(), entries: 1 });
    /// let err = a.set_low_rank(0, Weight::K, &TensorRef::matrix(&b, 2, 1).unwrap(), &TensorRef::matrix(&f, 2, 1).unwrap(), None).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Shape);
    /// ```
    pub fn set_low_rank(&mut self, layer: i32, weight: Weight, b: &TensorRef<'_>, a: &TensorRef<'_>, base: Option<&TensorRef<'_>>) -> Result<()> {
        let base = base.map_or(ptr::null(), |t| &t.raw as *const _);
        // SAFETY: exclusive access (no model can hold a shared borrow now);
        // tensors borrowed for the call.
        check(unsafe { sys::s2ft_adapter_set_low_rank(self.raw, layer, weight.to_raw(), &b.raw, &a.raw, base) })
    }

    /// Removes the low-rank entry of (layer, weight) (none is not an error).
    pub fn clear_low_rank(&mut self, layer: i32, weight: Weight) -> Result<()> {
        // SAFETY: b and a NULL remove the entry.
        check(unsafe { sys::s2ft_adapter_set_low_rank(self.raw, layer, weight.to_raw(), ptr::null(), ptr::null(), ptr::null()) })
    }

    /// Sets the low-rank entry of (layer, weight) to what SORSA training
    /// changed: [`sorsa_init`](crate::sorsa_init) split the weight into a
    /// residual and `u0, s0, vt0`; training made them `u, s, vt` (all of rank
    /// r). The delta `u diag(s) vt - u0 diag(s0) vt0` is stored as
    /// `b = [u diag(s) | -u0 diag(s0)]` (`[rows, 2r]`, each product rounded
    /// once to f32) and `a = [vt ; vt0]` (`[2r, cols]`), so
    /// [`Adapter::low_rank`] reads back rank 2r and the entry exports to PEFT
    /// as LoRA of rank 2r. `u`, `u0` are `[rows, r]`, `s`, `s0` `[r]` or
    /// `[1, r]`, `vt`, `vt0` `[r, cols]`, all f32 on the CPU
    /// ([`ErrorKind::Shape`](crate::ErrorKind::Shape) for factors of
    /// different ranks, [`ErrorKind::DType`](crate::ErrorKind::Dtype) for
    /// factors that are not f32). `base` (may be `None`) is the weight as it
    /// was before `sorsa_init` (the base the adapter applies to), for the
    /// fingerprint. Otherwise as [`Adapter::set_low_rank`].
    #[allow(clippy::too_many_arguments)]
    pub fn set_sorsa(&mut self, layer: i32, weight: Weight, u0: &TensorRef<'_>, s0: &TensorRef<'_>, vt0: &TensorRef<'_>, u: &TensorRef<'_>, s: &TensorRef<'_>, vt: &TensorRef<'_>, base: Option<&TensorRef<'_>>) -> Result<()> {
        let base = base.map_or(ptr::null(), |t| &t.raw as *const _);
        // SAFETY: exclusive access; tensors borrowed for the call.
        check(unsafe { sys::s2ft_adapter_set_sorsa(self.raw, layer, weight.to_raw(), &u0.raw, &s0.raw, &vt0.raw, &u.raw, &s.raw, &vt.raw, base) })
    }

    /// The rank `k` of the low-rank entry of (layer, weight) (0: none) and
    /// its base fingerprint; copies `b` into `b_out` (`[rows, k]`) and `a`
    /// into `a_out` (`[k, cols]`) when given (CPU tensors of any dtype,
    /// rounded; [`ErrorKind::State`](crate::ErrorKind::State) when there is
    /// no entry to copy).
    pub fn low_rank_into(&self, layer: i32, weight: Weight, b_out: Option<&mut TensorMut<'_>>, a_out: Option<&mut TensorMut<'_>>) -> Result<(usize, u64)> {
        let (mut rank, mut fingerprint) = (0i64, 0u64);
        let b = b_out.map_or(ptr::null_mut(), |t| &mut t.raw as *mut _);
        let a = a_out.map_or(ptr::null_mut(), |t| &mut t.raw as *mut _);
        // SAFETY: live handle; the outputs are exclusively borrowed for the call.
        check(unsafe { sys::s2ft_adapter_low_rank(self.raw, layer, weight.to_raw(), &mut rank, b, a, &mut fingerprint) })?;
        Ok((rank as usize, fingerprint))
    }

    /// The low-rank entry of (layer, weight) as f32 factors, or `None` when
    /// there is none.
    pub fn low_rank(&self, layer: i32, weight: Weight) -> Result<Option<LowRankEntry>> {
        let (k, _) = self.low_rank_into(layer, weight, None, None)?;
        if k == 0 {
            return Ok(None);
        }
        let (rows, cols) = weight.dims(&self.info()?.shape);
        let (mut b, mut a) = (vec![0.0f32; rows * k], vec![0.0f32; k * cols]);
        let (rank, fingerprint) = self.low_rank_into(layer, weight, Some(&mut TensorMut::matrix(&mut b, rows, k)?), Some(&mut TensorMut::matrix(&mut a, k, cols)?))?;
        Ok(Some(LowRankEntry { rank, b, a, fingerprint }))
    }

    /// The weights with a low-rank entry in some layer (a mask of
    /// [`Weight::bit`]) and the number of low-rank entries in all.
    pub fn low_rank_info(&self) -> Result<LowRankInfo> {
        let (mut weights, mut entries) = (0u32, 0i64);
        // SAFETY: live handle, valid out pointers.
        check(unsafe { sys::s2ft_adapter_low_rank_info(self.raw, &mut weights, &mut entries) })?;
        Ok(LowRankInfo { weights, entries })
    }

    /// Saves the adapter as safetensors (written atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let p = c_path(path.as_ref())?;
        // SAFETY: live handle, NUL-terminated path.
        check(unsafe { sys::s2ft_adapter_save(self.raw, p.as_ptr()) })
    }

    /// Loads an adapter saved by [`Adapter::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Adapter> {
        let p = c_path(path.as_ref())?;
        let mut raw = ptr::null_mut();
        // SAFETY: NUL-terminated path, valid out pointer.
        check(unsafe { sys::s2ft_adapter_load(p.as_ptr(), &mut raw) })?;
        Ok(Adapter { raw })
    }

    /// Fuses adapters into one: union of lines, `sum_i weights[i] * delta_i`
    /// (`None`: each adapter's default scale). Applying the result equals
    /// applying the inputs one after another.
    pub fn fuse(adapters: &[&Adapter], weights: Option<&[f64]>) -> Result<Adapter> {
        if let Some(w) = weights {
            require_len("weights", w.len(), adapters.len())?;
        }
        let ptrs: Vec<*const sys::s2ft_adapter> = adapters.iter().map(|a| a.raw as *const _).collect();
        let mut raw = ptr::null_mut();
        // SAFETY: ptrs holds n live handles; weights NULL or n values.
        check(unsafe { sys::s2ft_adapter_fuse(ptrs.as_ptr(), weights.map_or(ptr::null(), |w| w.as_ptr()), ptrs.len() as i64, &mut raw) })?;
        Ok(Adapter { raw })
    }

    /// Copies the adapter's lines and deltas to the device of a CUDA
    /// context now, so that later apply/switch/remove and
    /// [`forward_mixed`] calls there copy nothing from the host. The copy
    /// lasts until the adapter is changed or dropped. A no-op on a CPU
    /// context.
    pub fn upload(&self, ctx: &Context) -> Result<()> {
        // SAFETY: live handles; the library only adds a device mirror,
        // which the adapter owns and frees with itself.
        check(unsafe { sys::s2ft_adapter_upload(ctx.raw, self.raw) })
    }

    /// Sets the metadata `key` (1 to 255 bytes of `[A-Za-z0-9._-]`) to
    /// `value` (UTF-8, at most 65536 bytes). Saved with the adapter; at most
    /// 256 keys. On error nothing changes.
    ///
    /// ```
    /// use s2ft::*;
    /// let shape = ModelShape { n_layers: 1, d_model: 2, n_heads: 1, n_kv_heads: 1, head_dim: 2, d_ff: 2 };
    /// let mut a = Adapter::new(&shape, "a", 1.0).unwrap();
    /// a.set_meta("base_model", "stories260K").unwrap();
    /// a.set_meta("selection.seed", "7").unwrap();
    /// assert_eq!(a.meta("base_model"), Some("stories260K"));
    /// let all: Vec<(&str, &str)> = a.metadata().collect();
    /// assert_eq!(all, vec![("base_model", "stories260K"), ("selection.seed", "7")]);
    /// a.remove_meta("base_model").unwrap();
    /// assert_eq!(a.meta("base_model"), None);
    /// assert!(a.set_meta("not a key", "x").is_err());
    /// ```
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        let k = c_name(key)?;
        let v = CString::new(value).map_err(|_| Error::invalid(format!("the value of metadata key {key:?} contains a NUL byte")))?;
        // SAFETY: exclusive access (not applied: a model would borrow it);
        // NUL-terminated strings, copied by the library.
        check(unsafe { sys::s2ft_adapter_set_meta(self.raw, k.as_ptr(), v.as_ptr()) })
    }

    /// Removes the metadata `key` (an absent key is not an error).
    pub fn remove_meta(&mut self, key: &str) -> Result<()> {
        let k = c_name(key)?;
        // SAFETY: as set_meta; a NULL value removes the key.
        check(unsafe { sys::s2ft_adapter_set_meta(self.raw, k.as_ptr(), ptr::null()) })
    }

    /// The value of metadata `key`, or `None` when the adapter has none.
    pub fn meta(&self, key: &str) -> Option<&str> {
        let k = c_name(key).ok()?;
        let mut value: *const c_char = ptr::null();
        // SAFETY: live handle, valid pointers.
        if unsafe { sys::s2ft_adapter_meta(self.raw, k.as_ptr(), &mut value) } != 0 || value.is_null() {
            return None;
        }
        // SAFETY: owned by the adapter until the next set_meta (which needs
        // &mut self) or its destruction; values are UTF-8.
        unsafe { CStr::from_ptr(value) }.to_str().ok()
    }

    /// The number of metadata keys.
    pub fn meta_count(&self) -> usize {
        let mut n = 0i64;
        // SAFETY: live handle, valid out pointer (fails only for NULL).
        let status = unsafe { sys::s2ft_adapter_meta_count(self.raw, &mut n) };
        debug_assert_eq!(status, 0);
        n.max(0) as usize
    }

    /// The metadata entries `(key, value)`, keys in ascending byte order.
    pub fn metadata(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        let entries: Vec<(&str, &str)> = (0..self.meta_count())
            .filter_map(|i| {
                let (mut k, mut v): (*const c_char, *const c_char) = (ptr::null(), ptr::null());
                // SAFETY: live handle, index in range, valid out pointers.
                if unsafe { sys::s2ft_adapter_meta_at(self.raw, i as i64, &mut k, &mut v) } != 0 || k.is_null() || v.is_null() {
                    return None;
                }
                // SAFETY: owned by the adapter, which `self` borrows.
                let (k, v) = unsafe { (CStr::from_ptr(k), CStr::from_ptr(v)) };
                Some((k.to_str().ok()?, v.to_str().ok()?))
            })
            .collect();
        entries.into_iter()
    }

    /// Writes the adapter as a Hugging Face PEFT LoRA adapter into the
    /// folder `out_dir` (made when missing; its parent must exist):
    /// `adapter_config.json` and `adapter_model.safetensors`. Each entry
    /// with k lines becomes a LoRA module of rank k whose `B A` is exactly
    /// `scale * delta` on its lines (one factor one-hot).
    pub fn export_peft(&self, out_dir: impl AsRef<Path>, opts: &PeftExportOptions) -> Result<()> {
        let dir = c_path(out_dir.as_ref())?;
        let base = opts.base_model_name_or_path.as_deref().map(c_name).transpose()?;
        let mut raw = sys::s2ft_peft_export_options { version: 0, base_model_name_or_path: ptr::null(), scale: 0.0 };
        // SAFETY: raw is a valid out pointer; the version is the one compiled in.
        check(unsafe { sys::s2ft_peft_export_options_init(&mut raw, sys::S2FT_PEFT_EXPORT_OPTIONS_VERSION) })?;
        raw.base_model_name_or_path = base.as_ref().map_or(ptr::null(), |b| b.as_ptr());
        if let Some(scale) = opts.scale {
            raw.scale = scale;
        }
        // SAFETY: live handle; the strings outlive the call.
        check(unsafe { sys::s2ft_adapter_export_peft(self.raw, dir.as_ptr(), &raw) })
    }

    /// The C handle (for use with `s2ft-sys`); still owned by this value.
    pub fn as_raw(&self) -> *const sys::s2ft_adapter {
        self.raw
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        // SAFETY: we own the handle; no model holds it (borrows).
        unsafe { sys::s2ft_adapter_destroy(self.raw) }
    }
}

/// Forward of one linear layer for a batch whose row segments use
/// different adapters, without merging: `Y = X W^T` plus, for segment j
/// (rows `offsets[j]..offsets[j+1]`) with adapter `a = segment_adapter[j]`
/// (>= 0; -1 for none), `scales[a]` times that adapter's term. `w` is the
/// base weight of `target` in `layer` (in `perm`'s order when given).
/// `scales` `None` (or a NaN entry) means the default scales.
///
/// ```
/// use s2ft::*;
/// let ctx = Context::new().unwrap();
/// let shape = ModelShape { n_layers: 1, d_model: 2, n_heads: 1, n_kv_heads: 1, head_dim: 2, d_ff: 2 };
/// let mut a = Adapter::new(&shape, "a", 1.0).unwrap();
/// a.set(0, Target::Down, &[1], &TensorRef::matrix(&[1.0, 0.0], 2, 1).unwrap(), None).unwrap();
/// let w = [0.0f32; 4];        // down_proj [d_model = 2, d_ff = 2]
/// let x = [1.0f32, 2.0, 3.0, 4.0]; // [T = 2, d_ff = 2]
/// let mut y = vec![f32::NAN; 4];
/// forward_mixed(&ctx, 0, Target::Down, &TensorRef::matrix(&x, 2, 2).unwrap(), &TensorRef::matrix(&w, 2, 2).unwrap(),
///     None, &[&a], None, &[0, 1, 2], &[-1, 0], &mut TensorMut::matrix(&mut y, 2, 2).unwrap()).unwrap();
/// assert_eq!(y, vec![0.0, 0.0, 4.0, 0.0]); // only row 1 gets x[1, 1] * delta
/// ```
#[allow(clippy::too_many_arguments)]
pub fn forward_mixed(ctx: &Context, layer: i32, target: Target, x: &TensorRef<'_>, w: &TensorRef<'_>, perm: Option<&Selection>, adapters: &[&Adapter], scales: Option<&[f64]>, offsets: &[i64], segment_adapter: &[i32], y: &mut TensorMut<'_>) -> Result<()> {
    if let Some(s) = scales {
        require_len("scales", s.len(), adapters.len())?;
    }
    require_len("offsets", offsets.len(), segment_adapter.len() + 1)?;
    let ptrs: Vec<*const sys::s2ft_adapter> = adapters.iter().map(|a| a.raw as *const _).collect();
    // SAFETY: every array has the length passed with it (checked above);
    // tensors are borrowed for the call, y exclusively.
    check(unsafe {
        sys::s2ft_adapter_forward_mixed(
            ctx.raw,
            layer,
            target.to_raw(),
            &x.raw,
            &w.raw,
            perm.map_or(ptr::null(), |p| p.raw as *const _),
            ptrs.as_ptr(),
            scales.map_or(ptr::null(), |s| s.as_ptr()),
            ptrs.len() as i64,
            offsets.as_ptr(),
            segment_adapter.as_ptr(),
            segment_adapter.len() as i64,
            &mut y.raw,
        )
    })
}
