//! Unstructured sparse deltas: a weight delta in CSR form on a context's
//! device.

use std::marker::PhantomData;
use std::ptr;

use s2ft_sys as sys;

use crate::adapter::Adapter;
use crate::context::Context;
use crate::error::{check, Error, Result};
use crate::partial::require_len;
use crate::selection::Selection;
use crate::shape::Target;
use crate::tensor::{TensorMut, TensorRef};

/// A weight delta D `[rows, cols]` in CSR form, held on the device of the
/// context it was made with (which it borrows): the path for deltas that
/// are not whole rows or columns. cuSPARSE SpMM on a CUDA context, a plain
/// loop on the CPU.
///
/// ```
/// use s2ft::*;
/// let ctx = Context::new().unwrap();
/// // D = [[0, 2], [1, 0]]
/// let d = SparseDelta::new(&ctx, 2, 2, &[0, 1, 2], &[1, 0], &[2.0, 1.0]).unwrap();
/// assert_eq!(d.info().unwrap(), (2, 2, 1 + 1));
/// let x = [1.0f32, 10.0]; // [T = 1, cols = 2]
/// let mut y = vec![0.5f32; 2];
/// d.forward(&ctx, 1.0, &TensorRef::matrix(&x, 1, 2).unwrap(), &mut TensorMut::matrix(&mut y, 1, 2).unwrap()).unwrap();
/// assert_eq!(y, vec![20.5, 1.5]); // y += x D^T
/// ```
#[derive(Debug)]
pub struct SparseDelta<'c> {
    raw: *mut sys::s2ft_sparse_delta,
    _ctx: PhantomData<&'c Context>,
}

impl<'c> SparseDelta<'c> {
    /// A sparse delta from host CSR arrays (copied): `row_offsets` has
    /// `rows + 1` non-decreasing entries from 0 to nnz, `col_indices` and
    /// `values` have nnz entries, column indices strictly ascending within
    /// each row and in `0..cols`, values finite.
    pub fn new(ctx: &'c Context, rows: usize, cols: usize, row_offsets: &[i64], col_indices: &[i64], values: &[f32]) -> Result<Self> {
        require_len("row_offsets", row_offsets.len(), rows.saturating_add(1))?;
        require_len("col_indices", col_indices.len(), values.len())?;
        let rows = i64::try_from(rows).map_err(|_| Error::invalid(format!("rows = {rows} is too large")))?;
        let cols = i64::try_from(cols).map_err(|_| Error::invalid(format!("cols = {cols} is too large")))?;
        let mut raw = ptr::null_mut();
        // SAFETY: live context; row_offsets has rows + 1 entries and
        // col_indices and values nnz each (checked above); the library
        // copies them. We own *raw on success.
        check(unsafe { sys::s2ft_sparse_delta_create(ctx.raw, rows, cols, row_offsets.as_ptr(), col_indices.as_ptr(), values.as_ptr(), values.len() as i64, &mut raw) })?;
        Ok(SparseDelta { raw, _ctx: PhantomData })
    }

    /// The delta of an adapter's (layer, target) entry over the full
    /// weight shape, its lines in base order or in `perm`'s permuted
    /// order. No entry gives an empty delta (nnz 0).
    pub fn from_adapter(ctx: &'c Context, adapter: &Adapter, layer: i32, target: Target, perm: Option<&Selection>) -> Result<Self> {
        let mut raw = ptr::null_mut();
        // SAFETY: live handles, borrowed for the call; we own *raw on success.
        check(unsafe { sys::s2ft_sparse_delta_from_adapter(ctx.raw, adapter.raw, layer, target.to_raw(), perm.map_or(ptr::null(), |p| p.raw as *const _), &mut raw) })?;
        Ok(SparseDelta { raw, _ctx: PhantomData })
    }

    /// `(rows, cols, nnz)`: the shape and the number of stored entries.
    pub fn info(&self) -> Result<(i64, i64, i64)> {
        let (mut rows, mut cols, mut nnz) = (0i64, 0i64, 0i64);
        // SAFETY: live handle, valid out pointers.
        check(unsafe { sys::s2ft_sparse_delta_info(self.raw, &mut rows, &mut cols, &mut nnz) })?;
        Ok((rows, cols, nnz))
    }

    /// `y += scale * x D^T` for `x [T, cols]` and `y [T, rows]` on the
    /// context's device (the one the delta was made with); one dtype, f32
    /// arithmetic. On a CUDA context the product is queued, not waited for.
    pub fn forward(&self, ctx: &Context, scale: f64, x: &TensorRef<'_>, y: &mut TensorMut<'_>) -> Result<()> {
        // SAFETY: live handles; x borrowed shared and y exclusively for the
        // call, so they cannot overlap.
        check(unsafe { sys::s2ft_sparse_delta_forward(ctx.raw, self.raw, scale, &x.raw, &mut y.raw) })
    }

    /// The C handle (for use with `s2ft-sys`); still owned by this value.
    pub fn as_raw(&self) -> *const sys::s2ft_sparse_delta {
        self.raw
    }
}

impl Drop for SparseDelta<'_> {
    fn drop(&mut self) {
        // SAFETY: we own the handle; the context outlives it (borrow).
        unsafe { sys::s2ft_sparse_delta_destroy(self.raw) }
    }
}
