//! A model: base weights that adapters are applied to, removed from and
//! switched on, in place.

use std::marker::PhantomData;
use std::ptr;

use s2ft_sys as sys;

use crate::adapter::Adapter;
use crate::context::Context;
use crate::error::{check, Result};
use crate::partial::require_len;
use crate::selection::Selection;
use crate::shape::ModelShape;
use crate::weights::LayerWeights;

/// Options of [`Model::apply`] and [`Model::switch`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ApplyOptions {
    /// The scale; `None` means the adapter's default scale.
    pub scale: Option<f64>,
    /// Apply even where the base fingerprints differ.
    pub force: bool,
}

/// The caller's base weights, edited in place by adapters. The model takes
/// the [`LayerWeights`] (exclusive borrows of the weight memory) for `'a`,
/// as the C model keeps pointers to them; an applied adapter is borrowed
/// for `'a` too, so it can be neither changed nor dropped while applied.
/// Get the weights back by dropping the model (an applied adapter stays
/// merged; call [`Model::remove`] first to restore the base).
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
    applied: Option<&'a Adapter>,
    _ctx: PhantomData<&'a Context>,
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
        Ok(Model { raw, _weights: layers, _raw_layers: raw_layers, applied: None, _ctx: PhantomData })
    }

    /// Merges `adapter` into the weights (`W[line] += scale * delta`),
    /// saving the displaced lines. `ErrorKind::State` if one is applied.
    pub fn apply(&mut self, adapter: &'a Adapter, opts: ApplyOptions) -> Result<()> {
        // SAFETY: live handles; the adapter is borrowed for 'a, so it
        // outlives its application.
        check(unsafe { sys::s2ft_adapter_apply(self.raw, adapter.raw, scale(opts), flags(opts)) })?;
        self.applied = Some(adapter);
        Ok(())
    }

    /// Restores the lines the applied adapter displaced, bit-exactly.
    pub fn remove(&mut self) -> Result<()> {
        // SAFETY: live handle.
        check(unsafe { sys::s2ft_adapter_remove(self.raw) })?;
        self.applied = None;
        Ok(())
    }

    /// Replaces the applied adapter (if any) by `adapter`; bit-identical to
    /// remove then apply. On error the model is unchanged.
    pub fn switch(&mut self, adapter: &'a Adapter, opts: ApplyOptions) -> Result<()> {
        // SAFETY: as apply.
        check(unsafe { sys::s2ft_adapter_switch(self.raw, adapter.raw, scale(opts), flags(opts)) })?;
        self.applied = Some(adapter);
        Ok(())
    }

    /// The applied adapter and its scale, if any.
    pub fn applied(&self) -> Result<Option<(&'a Adapter, f64)>> {
        let mut a: *const sys::s2ft_adapter = ptr::null();
        let mut s = 0.0f64;
        // SAFETY: live handle, valid out pointers.
        check(unsafe { sys::s2ft_model_applied(self.raw, &mut a, &mut s) })?;
        Ok(match self.applied {
            Some(adapter) if ptr::eq(adapter.raw, a) => Some((adapter, s)),
            _ => None,
        })
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
