//! Calibration statistics that score units for data-driven selection.

use std::marker::PhantomData;
use std::ptr;

use s2ft_sys as sys;

use crate::context::Context;
use crate::error::{check, Error, Result};
use crate::shape::{ModelShape, Target};
use crate::tensor::TensorRef;

c_enum! {
    /// Which statistic [`Statistics::get`] returns.
    StatKind {
        /// Weight norms.
        Weight = sys::S2FT_STAT_WEIGHT,
        /// Input activation norms.
        Activation = sys::S2FT_STAT_ACTIVATION,
        /// Weight-gradient norms.
        Gradient = sys::S2FT_STAT_GRADIENT,
        /// LIFT's principal-weight scores ([`Statistics::add_principal`]).
        Principal = sys::S2FT_STAT_PRINCIPAL,
    }
}

/// Per-unit sums of squares (weight, activation, gradient norms) for
/// selection by score. Borrows the context it was made with.
///
/// ```
/// use s2ft::{Context, ModelShape, Statistics, StatKind, Target, TensorRef};
/// let ctx = Context::new().unwrap();
/// let shape = ModelShape { n_layers: 1, d_model: 4, n_heads: 2, n_kv_heads: 2, head_dim: 2, d_ff: 3 };
/// let mut stats = Statistics::new(&ctx, &shape).unwrap();
/// let x: Vec<f32> = (0..12).map(|i| i as f32).collect(); // [T=4, d_ff=3]
/// stats.add_activation(0, Target::Down, &TensorRef::matrix(&x, 4, 3).unwrap()).unwrap();
/// let per_channel = stats.get(0, Target::Down, StatKind::Activation).unwrap();
/// assert_eq!(per_channel, vec![0.0 + 9.0 + 36.0 + 81.0, 1.0 + 16.0 + 49.0 + 100.0, 4.0 + 25.0 + 64.0 + 121.0]);
/// ```
#[derive(Debug)]
pub struct Statistics<'c> {
    raw: *mut sys::s2ft_statistics,
    _ctx: PhantomData<&'c Context>,
}

impl<'c> Statistics<'c> {
    /// Empty statistics for a model shape.
    pub fn new(ctx: &'c Context, shape: &ModelShape) -> Result<Self> {
        let shape = shape.to_raw();
        let mut raw = ptr::null_mut();
        // SAFETY: live context, valid pointers; we own *raw on success.
        check(unsafe { sys::s2ft_statistics_create(ctx.raw, &shape, &mut raw) })?;
        Ok(Statistics { raw, _ctx: PhantomData })
    }

    /// Records the base-order weight of `target` in `layer`.
    pub fn add_weight(&mut self, layer: i32, target: Target, weight: &TensorRef<'_>) -> Result<()> {
        // SAFETY: live handle; the tensor is borrowed for the call.
        check(unsafe { sys::s2ft_statistics_add_weight(self.raw, layer, target.to_raw(), &weight.raw) })
    }

    /// Accumulates the input activation x [T, in] of o_proj (O) or
    /// down_proj (Down).
    pub fn add_activation(&mut self, layer: i32, target: Target, x: &TensorRef<'_>) -> Result<()> {
        // SAFETY: as above.
        check(unsafe { sys::s2ft_statistics_add_activation(self.raw, layer, target.to_raw(), &x.raw) })
    }

    /// Accumulates each unit's weight-gradient norm for one batch from the
    /// layer's input x [T, in] and output gradient dy [T, out].
    pub fn add_gradient(&mut self, layer: i32, target: Target, x: &TensorRef<'_>, dy: &TensorRef<'_>) -> Result<()> {
        // SAFETY: as above.
        check(unsafe { sys::s2ft_statistics_add_gradient(self.raw, layer, target.to_raw(), &x.raw, &dy.raw) })
    }

    /// Records LIFT's principal-weight score of `target` in `layer` for
    /// [`Strategy::Principal`](crate::Strategy::Principal): each unit's sum
    /// of squares of its lines of the rank-`rank` truncated SVD of the
    /// base-order `weight` (computed in double on the host; `rank` in
    /// `1..=min(rows, cols)`). Replaces an earlier principal record for the
    /// same (layer, target). Unsupported in builds without LAPACK; on CUDA
    /// statistics the SVD runs on the device and the call synchronises.
    pub fn add_principal(&mut self, layer: i32, target: Target, weight: &TensorRef<'_>, rank: usize) -> Result<()> {
        let rank = i32::try_from(rank).map_err(|_| Error::invalid(format!("rank = {rank} is too large")))?;
        // SAFETY: live handle; the tensor is borrowed for the call.
        check(unsafe { sys::s2ft_statistics_add_principal(self.raw, layer, target.to_raw(), &weight.raw, rank) })
    }

    /// The per-unit sums of squares of one statistic.
    pub fn get(&self, layer: i32, target: Target, kind: StatKind) -> Result<Vec<f64>> {
        let mut n = 0i64;
        // SAFETY: out NULL asks for the count only.
        check(unsafe { sys::s2ft_statistics_get(self.raw, layer, target.to_raw(), kind.to_raw(), ptr::null_mut(), 0, &mut n) })?;
        let mut out = vec![0.0f64; n as usize];
        // SAFETY: out has capacity n.
        check(unsafe { sys::s2ft_statistics_get(self.raw, layer, target.to_raw(), kind.to_raw(), out.as_mut_ptr(), n, &mut n) })?;
        out.truncate(n as usize);
        Ok(out)
    }

    pub(crate) fn raw(&self) -> *const sys::s2ft_statistics {
        self.raw
    }
}

impl Drop for Statistics<'_> {
    fn drop(&mut self) {
        // SAFETY: we own the handle.
        unsafe { sys::s2ft_statistics_destroy(self.raw) }
    }
}
