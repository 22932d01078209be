//! Partial forward and backward of a linear layer over a trained slice.

use std::ptr;

use s2ft_sys as sys;

use crate::context::Context;
use crate::error::{check, Error, Result};
use crate::tensor::{TensorMut, TensorRef};

/// Which lines of a weight are trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Axis {
    /// Columns of W (O, Down): inputs.
    Columns,
    /// Rows of W (V, Up): outputs.
    Rows,
}

/// The trained lines of one weight: a contiguous range (permuted mode) or
/// a list of distinct lines (unpermuted mode). Slice tensors (saved inputs,
/// weight gradients) list lines in this order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Slice {
    /// Lines `[begin, begin + count)`.
    Range {
        /// Columns or rows.
        axis: Axis,
        /// First line.
        begin: i64,
        /// Number of lines (>= 1).
        count: i64,
    },
    /// The given distinct lines, in this order.
    Indices {
        /// Columns or rows.
        axis: Axis,
        /// Line indices.
        lines: Vec<i64>,
    },
}

impl Slice {
    /// The number of lines.
    pub fn len(&self) -> usize {
        match self {
            Slice::Range { count, .. } => (*count).max(0) as usize,
            Slice::Indices { lines, .. } => lines.len(),
        }
    }

    /// Whether the slice has no lines (the library rejects such slices).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The C struct; it points into `self` for `Indices`.
    pub(crate) fn to_raw(&self) -> sys::s2ft_slice {
        let axis = |a: &Axis| match a {
            Axis::Columns => sys::S2FT_AXIS_COLUMNS as i32,
            Axis::Rows => sys::S2FT_AXIS_ROWS as i32,
        };
        match self {
            Slice::Range { axis: a, begin, count } => sys::s2ft_slice { axis: axis(a), begin: *begin, count: *count, indices: ptr::null() },
            Slice::Indices { axis: a, lines } => sys::s2ft_slice { axis: axis(a), begin: 0, count: lines.len() as i64, indices: lines.as_ptr() },
        }
    }
}

/// Flags of [`backward_partial`]: add into the outputs instead of
/// overwriting them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Accumulate {
    /// `dw_slice += new gradient`.
    pub dw: bool,
    /// `dx += new gradient`.
    pub dx: bool,
}

/// `y = x W^T` for x `[T, in]`, w `[out, in]`, y `[T, out]`; for a column
/// slice also `x_saved = x[:, S]` (`[T, k]`) when given.
///
/// ```
/// use s2ft::*;
/// let ctx = Context::new().unwrap();
/// let x = [1.0f32, 2.0, 3.0];             // [1, 3]
/// let w = [1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0]; // [2, 3]
/// let (mut y, mut xs) = (vec![f32::NAN; 2], vec![f32::NAN; 1]);
/// let slice = Slice::Range { axis: Axis::Columns, begin: 2, count: 1 };
/// forward_partial(&ctx, &slice, &TensorRef::matrix(&x, 1, 3).unwrap(), &TensorRef::matrix(&w, 2, 3).unwrap(),
///     &mut TensorMut::matrix(&mut y, 1, 2).unwrap(), Some(&mut TensorMut::matrix(&mut xs, 1, 1).unwrap())).unwrap();
/// assert_eq!(y, vec![4.0, 2.0]);
/// assert_eq!(xs, vec![3.0]);
/// ```
pub fn forward_partial(ctx: &Context, slice: &Slice, x: &TensorRef<'_>, w: &TensorRef<'_>, y: &mut TensorMut<'_>, x_saved: Option<&mut TensorMut<'_>>) -> Result<()> {
    let s = slice.to_raw();
    let xs = x_saved.map_or(ptr::null_mut(), |t| &mut t.raw as *mut _);
    // SAFETY: live context; every tensor is borrowed for the call and its
    // extent was checked against its slice; outputs are exclusive borrows.
    check(unsafe { sys::s2ft_forward_partial(ctx.raw, &s, &x.raw, &w.raw, &mut y.raw, xs) })
}

/// Partial backward through `y = x W^T` for slice S: `dx = dy W` (when
/// given) and only the slice's weight gradient, `dy^T x_S` (`[out, k]`,
/// columns; `x_in` is `x[:, S]`) or `dy[:, S]^T x` (`[k, in]`, rows;
/// `x_in` is the full x).
///
/// ```
/// use s2ft::*;
/// let ctx = Context::new().unwrap();
/// let w = [1.0f32, 2.0, 3.0, 4.0];   // [2, 2]
/// let x_s = [5.0f32];                 // x[:, {1}] for T = 1
/// let dy = [1.0f32, -1.0];            // [1, 2]
/// let mut dw = vec![f32::NAN; 2];     // [out = 2, k = 1]
/// let slice = Slice::Indices { axis: Axis::Columns, lines: vec![1] };
/// backward_partial(&ctx, &slice, &TensorRef::matrix(&w, 2, 2).unwrap(), &TensorRef::matrix(&x_s, 1, 1).unwrap(),
///     &TensorRef::matrix(&dy, 1, 2).unwrap(), None, &mut TensorMut::matrix(&mut dw, 2, 1).unwrap(),
///     Accumulate::default()).unwrap();
/// assert_eq!(dw, vec![5.0, -5.0]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn backward_partial(ctx: &Context, slice: &Slice, w: &TensorRef<'_>, x_in: &TensorRef<'_>, dy: &TensorRef<'_>, dx: Option<&mut TensorMut<'_>>, dw_slice: &mut TensorMut<'_>, accumulate: Accumulate) -> Result<()> {
    let s = slice.to_raw();
    let dx = dx.map_or(ptr::null_mut(), |t| &mut t.raw as *mut _);
    let mut flags = 0u32;
    if accumulate.dw {
        flags |= sys::S2FT_ACCUMULATE_DW;
    }
    if accumulate.dx {
        flags |= sys::S2FT_ACCUMULATE_DX;
    }
    // SAFETY: as forward_partial.
    check(unsafe { sys::s2ft_backward_partial(ctx.raw, &s, &w.raw, &x_in.raw, &dy.raw, dx, &mut dw_slice.raw, flags) })
}

pub(crate) fn require_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::invalid(format!("{what} has {got} entries; expected {want}")))
    }
}
