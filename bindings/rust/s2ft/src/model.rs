//! A model: base weights that adapters are applied to, removed from and
//! switched on, in place.

use std::ffi::CString;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::os::raw::c_char;
use std::path::Path;
use std::ptr;

use s2ft_sys as sys;

use crate::adapter::Adapter;
use crate::checkpoint::Checkpoint;
use crate::context::Context;
use crate::error::{check, Error, Result};
use crate::partial::require_len;
use crate::path::c_path;
use crate::selection::Selection;
use crate::shape::ModelShape;
use crate::tensor::TensorRef;
use crate::weights::{LayerWeights, LayerWeightsRef};

/// Options of [`Model::apply`] and [`Model::switch`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ApplyOptions {
    /// The scale; `None` means the adapter's default scale.
    pub scale: Option<f64>,
    /// Apply even where the base fingerprints differ.
    pub force: bool,
}

/// Base weights, edited in place by adapters: the caller's
/// ([`Model::new`]) or a checkpoint's ([`Model::from_checkpoint`]). The
/// model takes the [`LayerWeights`] (exclusive borrows of the weight
/// memory), or the [`Checkpoint`] exclusively, for `'a`, as the C model
/// keeps pointers to them; an applied adapter is borrowed for `'a` too, so
/// it can be neither changed nor dropped while applied (an adapter applied
/// from files, [`Model::apply_files`], is owned by the model). Get the
/// weights back by dropping the model (an applied adapter stays merged;
/// call [`Model::remove`] first to restore the base).
///
/// ```
/// use s2ft::*;
/// let ctx = Context::new().unwrap();
/// let shape = ModelShape { n_layers: 1, d_model: 2, n_heads: 1, n_kv_heads: 1, head_dim: 2, d_ff: 2 };
/// let mut a = Adapter::new(&shape, "a", 1.0).unwrap();
/// a.set(0, Target::Down, &[0], &TensorRef::matrix(&[1.0, 2.0], 2, 1).unwrap(), None).unwrap();
/// let mut down = vec![10.0f32; 4];
/// {
///     let layer = LayerWeights { down: Some(TensorMut::matrix(&mut down, 2, 2).unwrap()), ..Default::default() };
///     let mut model = Model::new(&ctx, &shape, vec![layer], None).unwrap();
///     model.apply(&a, ApplyOptions { scale: Some(0.5), force: false }).unwrap();
///     assert_eq!(model.applied().unwrap().unwrap().1, 0.5);
/// }
/// assert_eq!(down, vec![10.5, 10.0, 11.0, 10.0]);
/// ```
#[derive(Debug)]
pub struct Model<'a> {
    raw: *mut sys::s2ft_model,
    // The descriptors the C model points at: a Vec that is never resized,
    // so its elements stay in place when the Model moves.
    _weights: Vec<LayerWeights<'a>>,
    _raw_layers: Vec<sys::s2ft_layer_weights>,
    applied: Applied<'a>,
    _ctx: PhantomData<&'a Context>,
}

/// The adapter the model has applied, as far as Rust knows it.
#[derive(Debug)]
enum Applied<'a> {
    None,
    /// Borrowed from the caller ([`Model::apply`], [`Model::switch`]).
    Borrowed(&'a Adapter),
    /// Loaded by [`Model::apply_files`]: the C model owns and frees it.
    Owned(ManuallyDrop<Adapter>),
}

impl<'a> Model<'a> {
    /// A model over `layers` (one per layer; the weights of every target an
    /// adapter will touch must be given), in base order or in the permuted
    /// order of `perm` (copied).
    pub fn new(ctx: &'a Context, shape: &ModelShape, mut layers: Vec<LayerWeights<'a>>, perm: Option<&Selection>) -> Result<Self> {
        shape.check()?;
        require_len("layers", layers.len(), shape.n_layers as usize)?;
        let raw_layers: Vec<sys::s2ft_layer_weights> = layers.iter_mut().map(|l| l.to_raw()).collect();
        let shape = shape.to_raw();
        let mut raw = ptr::null_mut();
        // SAFETY: raw_layers points at descriptors inside `layers`' heap
        // buffer, which the model keeps unchanged until it is destroyed.
        check(unsafe { sys::s2ft_model_create(ctx.raw, &shape, raw_layers.as_ptr(), perm.map_or(ptr::null(), |p| p.raw as *const _), &mut raw) })?;
        Ok(Model { raw, _weights: layers, _raw_layers: raw_layers, applied: Applied::None, _ctx: PhantomData })
    }

    /// A model over a checkpoint's seven projection weights, as views into
    /// it: applying an adapter changes the checkpoint's contents in this
    /// process (copy-on-write, never the files), and [`Checkpoint::write`]
    /// then writes the merged model. The model borrows the checkpoint
    /// exclusively; read its weights through [`Model::layer`]. `shape`
    /// `None` means the checkpoint's ([`Checkpoint::shape`]); `perm` is the
    /// selection the stored weights are permuted by, or `None`. The context
    /// must be a CPU context (`ErrorKind::Unsupported` otherwise).
    ///
    /// ```no_run
    /// use s2ft::*;
    /// let ctx = Context::new().unwrap();
    /// let mut ckpt = Checkpoint::open("stories260K-hf").unwrap();
    /// let mut model = Model::from_checkpoint(&ctx, &mut ckpt, None, None).unwrap();
    /// model.apply_files(&["math.safetensors"], None).unwrap();
    /// drop(model); // the adapter stays merged in this process's copy
    /// ckpt.write("stories-math", &[], &WriteOptions::new()).unwrap();
    /// ```
    pub fn from_checkpoint(ctx: &'a Context, ckpt: &'a mut Checkpoint, shape: Option<&ModelShape>, perm: Option<&Selection>) -> Result<Self> {
        let shape = shape.map(|s| s.to_raw());
        let mut raw = ptr::null_mut();
        // SAFETY: live handles; the checkpoint is borrowed exclusively and
        // the context shared for 'a, which the model lives within.
        check(unsafe {
            sys::s2ft_model_from_checkpoint(
                ctx.raw,
                ckpt.raw,
                shape.as_ref().map_or(ptr::null(), |s| s as *const _),
                perm.map_or(ptr::null(), |p| p.raw as *const _),
                &mut raw,
            )
        })?;
        Ok(Model { raw, _weights: Vec::new(), _raw_layers: Vec::new(), applied: Applied::None, _ctx: PhantomData })
    }

    /// The weights of `layer` as the model holds them (`None` for a weight
    /// the model was made without; a model from a checkpoint holds all
    /// seven projections), for running the layer's forward pass
    /// (e.g. [`forward_mixed`](crate::forward_mixed) over the base weights).
    /// They include the applied adapter, if any.
    pub fn layer(&self, layer: i32) -> Result<LayerWeightsRef<'_>> {
        let mut raw = sys::s2ft_layer_weights {
            q: ptr::null_mut(),
            k: ptr::null_mut(),
            v: ptr::null_mut(),
            o: ptr::null_mut(),
            gate: ptr::null_mut(),
            up: ptr::null_mut(),
            down: ptr::null_mut(),
        };
        // SAFETY: live handle (the library only reads the model), valid out pointer.
        check(unsafe { sys::s2ft_model_layer(self.raw, layer, &mut raw) })?;
        // SAFETY: each non-NULL pointer is a descriptor the model holds
        // while it lives; the memory it describes is the model's (borrowed
        // for 'a) and changes only through `&mut self` methods.
        let view = |t: *mut sys::s2ft_tensor| unsafe { t.as_ref().map(|t| TensorRef::from_descriptor(*t)) };
        Ok(LayerWeightsRef { q: view(raw.q), k: view(raw.k), v: view(raw.v), o: view(raw.o), gate: view(raw.gate), up: view(raw.up), down: view(raw.down) })
    }

    /// Loads the adapter files at `paths`, fuses them when there are
    /// several (`weights` as [`Adapter::fuse`]: `None` means each one's
    /// default scale; a single file is applied at `weights[0]`, `None` or
    /// NaN meaning its default scale) and applies the result, replacing the
    /// applied adapter if any, as [`Model::switch`]. The model owns the
    /// loaded adapter ([`Model::applied`] shows it). On error the model is
    /// unchanged.
    pub fn apply_files<P: AsRef<Path>>(&mut self, paths: &[P], weights: Option<&[f64]>) -> Result<()> {
        self.apply_files_with(paths, weights, false)
    }

    /// [`Model::apply_files`], with `force` applying even where the base
    /// fingerprints differ.
    pub fn apply_files_with<P: AsRef<Path>>(&mut self, paths: &[P], weights: Option<&[f64]>, force: bool) -> Result<()> {
        if paths.is_empty() {
            return Err(Error::invalid("apply_files needs at least one adapter file"));
        }
        if let Some(w) = weights {
            require_len("weights", w.len(), paths.len())?;
        }
        let c_paths: Vec<CString> = paths.iter().map(|p| c_path(p.as_ref())).collect::<Result<_>>()?;
        let ptrs: Vec<*const c_char> = c_paths.iter().map(|p| p.as_ptr()).collect();
        let flags = flags(ApplyOptions { scale: None, force });
        // SAFETY: live handle; ptrs holds n NUL-terminated paths, weights
        // NULL or n values. A borrowed adapter being replaced is only read.
        check(unsafe { sys::s2ft_model_apply_files(self.raw, ptrs.as_ptr(), weights.map_or(ptr::null(), |w| w.as_ptr()), ptrs.len() as i64, flags) })?;
        let mut a: *const sys::s2ft_adapter = ptr::null();
        // SAFETY: live handle, valid out pointer.
        check(unsafe { sys::s2ft_model_applied(self.raw, &mut a, ptr::null_mut()) })?;
        // The C model owns the loaded adapter: never destroyed from Rust.
        self.applied = Applied::Owned(ManuallyDrop::new(Adapter { raw: a as *mut _ }));
        Ok(())
    }

    /// Merges `adapter` into the weights (`W[line] += scale * delta`),
    /// saving the displaced lines. `ErrorKind::State` if one is applied.
    pub fn apply(&mut self, adapter: &'a Adapter, opts: ApplyOptions) -> Result<()> {
        // SAFETY: live handles; the adapter is borrowed for 'a, so it
        // outlives its application.
        check(unsafe { sys::s2ft_adapter_apply(self.raw, adapter.raw, scale(opts), flags(opts)) })?;
        self.applied = Applied::Borrowed(adapter);
        Ok(())
    }

    /// Restores the lines the applied adapter displaced, bit-exactly.
    pub fn remove(&mut self) -> Result<()> {
        // SAFETY: live handle.
        check(unsafe { sys::s2ft_adapter_remove(self.raw) })?;
        self.applied = Applied::None;
        Ok(())
    }

    /// Replaces the applied adapter (if any) by `adapter`; bit-identical to
    /// remove then apply. On error the model is unchanged.
    pub fn switch(&mut self, adapter: &'a Adapter, opts: ApplyOptions) -> Result<()> {
        // SAFETY: as apply.
        check(unsafe { sys::s2ft_adapter_switch(self.raw, adapter.raw, scale(opts), flags(opts)) })?;
        self.applied = Applied::Borrowed(adapter);
        Ok(())
    }

    /// The applied adapter and its scale, if any (an adapter applied from
    /// files is the model's: it lives until replaced or removed).
    pub fn applied(&self) -> Result<Option<(&Adapter, f64)>> {
        let mut a: *const sys::s2ft_adapter = ptr::null();
        let mut s = 0.0f64;
        // SAFETY: live handle, valid out pointers.
        check(unsafe { sys::s2ft_model_applied(self.raw, &mut a, &mut s) })?;
        let adapter: Option<&Adapter> = match &self.applied {
            Applied::Borrowed(adapter) => Some(adapter),
            Applied::Owned(adapter) => Some(adapter),
            Applied::None => None,
        };
        Ok(adapter.filter(|adapter| ptr::eq(adapter.raw, a)).map(|adapter| (adapter, s)))
    }
}

fn scale(opts: ApplyOptions) -> f64 {
    opts.scale.unwrap_or(f64::NAN)
}

fn flags(opts: ApplyOptions) -> u32 {
    if opts.force {
        sys::S2FT_APPLY_FORCE
    } else {
        0
    }
}

impl Drop for Model<'_> {
    fn drop(&mut self) {
        // SAFETY: we own the handle; the weights it points at are dropped
        // after it (fields drop after Drop::drop returns).
        unsafe { sys::s2ft_model_destroy(self.raw) }
    }
}
