//! SORSA (Cao, 2024): a frozen weight split by its thin SVD into a frozen
//! residual and trained singular vectors and values, the linear layer's
//! forward and backward through the factors, and the orthonormal
//! regularizer on them.
//!
//! `W = W_res + U_p diag(S_p) V_p^T` with the top-r triplets as f32 factors
//! `u [out, r]`, `s [r]` (or `[1, r]`) and `vt [r, in]`; train them with an
//! [`Optimizer`](crate::Optimizer) (each a parameter with a slice over all
//! its columns) and keep `u` and `vt` orthonormal with
//! [`sorsa_regularizer`] or [`sorsa_regularizer_step`].

use std::ptr;

use s2ft_sys as sys;

use crate::context::Context;
use crate::error::{check, Error, Result};
use crate::partial::Accumulate;
use crate::tensor::{TensorMut, TensorRef};

/// Flags of [`sorsa_regularizer`] and [`sorsa_regularizer_step`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SorsaFlags {
    /// Plain Frobenius norms, `R = ||U^T U - I||_F + ||V^T V - I||_F`, as
    /// the released SORSA code does, instead of the paper's squares
    /// (`S2FT_SORSA_UNSQUARED`).
    pub unsquared: bool,
    /// [`sorsa_regularizer`] only: add the gradients into `du` and `dvt`
    /// (e.g. onto [`sorsa_backward`]'s) instead of overwriting them.
    pub accumulate: bool,
}

impl SorsaFlags {
    fn to_raw(self) -> u32 {
        let mut flags = 0u32;
        if self.unsquared {
            flags |= sys::S2FT_SORSA_UNSQUARED;
        }
        if self.accumulate {
            flags |= sys::S2FT_ACCUMULATE_DW;
        }
        flags
    }
}

fn flags(accumulate: Accumulate) -> u32 {
    let mut flags = 0u32;
    if accumulate.dw {
        flags |= sys::S2FT_ACCUMULATE_DW;
    }
    if accumulate.dx {
        flags |= sys::S2FT_ACCUMULATE_DX;
    }
    flags
}

/// Splits `w [out, in]` (f32, f16 or bf16) for SORSA: the thin SVD of `w`
/// in double, its top `rank` triplets written to `u [out, rank]`, `s
/// [rank]` (or `[1, rank]`) and `vt [rank, in]` (all f32), singular values
/// descending with fixed signs, and `w` overwritten by the residual `w - u
/// diag(s) vt`, rounded once to its dtype. `rank` is in `1..=min(out, in)`.
/// On failure `w` is unchanged. On a CUDA context the SVD runs on the
/// device (cuSOLVER, in double) and the call synchronises.
///
/// ```
/// use s2ft::*;
/// let ctx = Context::new().unwrap();
/// let mut w = vec![3.0f32, 0.0, 0.0, 0.0, 2.0, 0.0]; // [2, 3]
/// let (mut u, mut s, mut vt) = (vec![0.0f32; 2], vec![0.0f32; 1], vec![0.0f32; 3]);
/// sorsa_init(&ctx, &mut TensorMut::matrix(&mut w, 2, 3).unwrap(), 1, &mut TensorMut::matrix(&mut u, 2, 1).unwrap(),
///     &mut TensorMut::new(&mut s, &[1]).unwrap(), &mut TensorMut::matrix(&mut vt, 1, 3).unwrap()).unwrap();
/// assert_eq!(s, vec![3.0]);
/// assert_eq!(w, vec![0.0, 0.0, 0.0, 0.0, 2.0, 0.0]); // the residual
/// ```
pub fn sorsa_init(ctx: &Context, w: &mut TensorMut<'_>, rank: usize, u: &mut TensorMut<'_>, s: &mut TensorMut<'_>, vt: &mut TensorMut<'_>) -> Result<()> {
    let rank = i32::try_from(rank).map_err(|_| Error::invalid(format!("rank = {rank} is too large")))?;
    // SAFETY: live context; the four tensors are distinct exclusive borrows
    // for the call, so they cannot overlap.
    check(unsafe { sys::s2ft_sorsa_init(ctx.raw, &mut w.raw, rank, &mut u.raw, &mut s.raw, &mut vt.raw) })
}

/// Forward of a SORSA linear layer: `y = x w_res^T + ((x vt^T) * s) u^T`
/// for `x [T, in]`, `w_res [out, in]` and `y [T, out]` (one dtype: f32,
/// f16 or bf16) and the f32 factors; f32 accumulation, `y` rounded once.
/// `h_saved` (f32 `[T, r]`) receives `h = x vt^T` for [`sorsa_backward`].
/// The `[out, in]` factor product is never formed. On CUDA the work is
/// queued on the context's stream.
#[allow(clippy::too_many_arguments)]
pub fn sorsa_forward(ctx: &Context, x: &TensorRef<'_>, w_res: &TensorRef<'_>, u: &TensorRef<'_>, s: &TensorRef<'_>, vt: &TensorRef<'_>, y: &mut TensorMut<'_>, h_saved: Option<&mut TensorMut<'_>>) -> Result<()> {
    let h = h_saved.map_or(ptr::null_mut(), |t| &mut t.raw as *mut _);
    // SAFETY: live context; inputs borrowed for the call, outputs exclusive
    // borrows (so they overlap neither the inputs nor each other).
    check(unsafe { sys::s2ft_sorsa_forward(ctx.raw, &x.raw, &w_res.raw, &u.raw, &s.raw, &vt.raw, &mut y.raw, h) })
}

/// Backward of [`sorsa_forward`] for the output gradient `dy [T, out]`:
/// `du = dy^T (h * s)`, `ds = sum_t (dy u) * h`, `dvt = ((dy u) * s)^T x`
/// (f32, shaped as `u`, `s`, `vt`) and, when given, `dx = dy w_res + ((dy
/// u) * s) vt`. `h_saved` is the forward's `h` (or `None` to recompute it).
/// `accumulate.dw` adds into `du`, `ds` and `dvt`, `accumulate.dx` into
/// `dx`.
#[allow(clippy::too_many_arguments)]
pub fn sorsa_backward(ctx: &Context, x: &TensorRef<'_>, w_res: &TensorRef<'_>, u: &TensorRef<'_>, s: &TensorRef<'_>, vt: &TensorRef<'_>, h_saved: Option<&TensorRef<'_>>, dy: &TensorRef<'_>, dx: Option<&mut TensorMut<'_>>, du: &mut TensorMut<'_>, ds: &mut TensorMut<'_>, dvt: &mut TensorMut<'_>, accumulate: Accumulate) -> Result<()> {
    let h = h_saved.map_or(ptr::null(), |t| &t.raw as *const _);
    let dx = dx.map_or(ptr::null_mut(), |t| &mut t.raw as *mut _);
    // SAFETY: as sorsa_forward.
    check(unsafe { sys::s2ft_sorsa_backward(ctx.raw, &x.raw, &w_res.raw, &u.raw, &s.raw, &vt.raw, h, &dy.raw, dx, &mut du.raw, &mut ds.raw, &mut dvt.raw, flags(accumulate)) })
}

/// SORSA's orthonormal regularizer on `u [out, r]` and `vt [r, in]` (f32):
/// returns `gamma * (||u^T u - I||_F^2 + ||vt vt^T - I||_F^2)` (plain norms
/// with `flags.unsquared`) and writes its gradients into `du` and `dvt`
/// when given (added with `flags.accumulate`). `gamma` is finite and >= 0.
/// On a CUDA context returning the value synchronises.
///
/// ```
/// use s2ft::*;
/// let ctx = Context::new().unwrap();
/// let u = [1.0f32, 0.0, 0.0, 1.0, 0.0, 0.0]; // [3, 2], orthonormal columns
/// let vt = [0.0f32, 1.0, 1.0, 0.0];          // [2, 2], orthonormal rows
/// let r = sorsa_regularizer(&ctx, &TensorRef::matrix(&u, 3, 2).unwrap(), &TensorRef::matrix(&vt, 2, 2).unwrap(),
///     1.0, None, None, SorsaFlags::default()).unwrap();
/// assert_eq!(r, 0.0);
/// ```
pub fn sorsa_regularizer(ctx: &Context, u: &TensorRef<'_>, vt: &TensorRef<'_>, gamma: f64, du: Option<&mut TensorMut<'_>>, dvt: Option<&mut TensorMut<'_>>, flags: SorsaFlags) -> Result<f64> {
    let du = du.map_or(ptr::null_mut(), |t| &mut t.raw as *mut _);
    let dvt = dvt.map_or(ptr::null_mut(), |t| &mut t.raw as *mut _);
    let mut value = 0.0f64;
    // SAFETY: live context; inputs borrowed, outputs exclusive borrows.
    check(unsafe { sys::s2ft_sorsa_regularizer(ctx.raw, &u.raw, &vt.raw, gamma, &mut value, du, dvt, flags.to_raw()) })?;
    Ok(value)
}

/// The regularizer as the paper's separate update with its own `rate`: `u
/// -= rate * dR/du` and `vt -= rate * dR/dvt` in place (both gradients at
/// the factors before the step); returns `rate * R` before the step. Call
/// it after the backward and before the optimizer step. Only
/// `flags.unsquared` applies (`accumulate` must be false).
pub fn sorsa_regularizer_step(ctx: &Context, u: &mut TensorMut<'_>, vt: &mut TensorMut<'_>, rate: f64, flags: SorsaFlags) -> Result<f64> {
    let mut value = 0.0f64;
    // SAFETY: live context; u and vt are distinct exclusive borrows.
    check(unsafe { sys::s2ft_sorsa_regularizer_step(ctx.raw, &mut u.raw, &mut vt.raw, rate, &mut value, flags.to_raw()) })?;
    Ok(value)
}
