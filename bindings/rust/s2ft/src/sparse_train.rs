//! Unstructured sparse training (LIFT, SpIEL): sparse sets of trained
//! entries, the backward that computes the gradient at the entries only,
//! and LIFT's selection of principal weights and mask refresh (SpIEL's
//! schedule is in `spiel.rs`).

use std::marker::PhantomData;
use std::ptr;

use s2ft_sys as sys;

use crate::context::Context;
use crate::error::{check, Error, Result};
use crate::optimizer::Optimizer;
use crate::partial::Accumulate;
use crate::selection::Order;
use crate::tensor::{TensorMut, TensorRef};

/// The trained entries of one `[rows, cols]` weight as ascending flat
/// indices `r * cols + c`, held by the context it was made with (which it
/// borrows).
///
/// ```
/// use s2ft::*;
/// let ctx = Context::new().unwrap();
/// let set = SparseSet::new(&ctx, 2, 3, &[0, 4, 5]).unwrap();
/// assert_eq!(set.count().unwrap(), 3);
/// assert_eq!(set.shape().unwrap(), (2, 3));
/// assert_eq!(set.indices().unwrap(), vec![0, 4, 5]);
/// assert!(SparseSet::new(&ctx, 2, 3, &[4, 0]).is_err()); // not ascending
/// ```
#[derive(Debug)]
pub struct SparseSet<'c> {
    pub(crate) raw: *mut sys::s2ft_sparse_set,
    _ctx: PhantomData<&'c Context>,
}

impl<'c> SparseSet<'c> {
    /// Takes ownership of a set the library made on `ctx`'s device.
    pub(crate) fn from_raw(raw: *mut sys::s2ft_sparse_set) -> Self {
        SparseSet { raw, _ctx: PhantomData }
    }

    /// A set from strictly ascending flat indices in `0..rows * cols` (copied).
    pub fn new(ctx: &'c Context, rows: usize, cols: usize, indices: &[i64]) -> Result<Self> {
        let rows = i64::try_from(rows).map_err(|_| Error::invalid(format!("rows = {rows} is too large")))?;
        let cols = i64::try_from(cols).map_err(|_| Error::invalid(format!("cols = {cols} is too large")))?;
        let mut raw = ptr::null_mut();
        // SAFETY: live context; indices has indices.len() entries, copied by
        // the library; we own *raw on success.
        check(unsafe { sys::s2ft_sparse_set_create(ctx.raw, rows, cols, indices.as_ptr(), indices.len() as i64, &mut raw) })?;
        Ok(SparseSet { raw, _ctx: PhantomData })
    }

    /// The number of entries.
    pub fn count(&self) -> Result<usize> {
        let mut n = 0i64;
        // SAFETY: live handle, valid out pointer.
        check(unsafe { sys::s2ft_sparse_set_count(self.raw, &mut n) })?;
        Ok(n as usize)
    }

    /// `(rows, cols)` of the weight the set was made for.
    pub fn shape(&self) -> Result<(usize, usize)> {
        let (mut rows, mut cols) = (0i64, 0i64);
        // SAFETY: live handle, valid out pointers.
        check(unsafe { sys::s2ft_sparse_set_shape(self.raw, &mut rows, &mut cols) })?;
        Ok((rows as usize, cols as usize))
    }

    /// The flat indices, ascending.
    pub fn indices(&self) -> Result<Vec<i64>> {
        let mut out = vec![0i64; self.count()?];
        // SAFETY: live handle; out has room for every index.
        check(unsafe { sys::s2ft_sparse_set_indices(self.raw, out.as_mut_ptr(), out.len() as i64) })?;
        Ok(out)
    }
}

impl Drop for SparseSet<'_> {
    fn drop(&mut self) {
        // SAFETY: we own the handle.
        unsafe { sys::s2ft_sparse_set_destroy(self.raw) }
    }
}

/// Backward through `y = x W^T` for a weight trained at `set`'s entries:
/// `grad[n] = sum_t dy[t, r_n] x[t, c_n]` (the dense `dW` is never formed;
/// `grad` is f32 `[count]`) and, when given, `dx = dy W` (`w` is needed
/// then). `accumulate.dw` adds into `grad`, `accumulate.dx` into `dx`.
///
/// ```
/// use s2ft::*;
/// let ctx = Context::new().unwrap();
/// let set = SparseSet::new(&ctx, 2, 2, &[1, 2]).unwrap(); // W[0, 1] and W[1, 0]
/// let x = [1.0f32, 2.0, 3.0, 4.0];   // [T = 2, in = 2]
/// let dy = [1.0f32, 0.0, 0.0, 1.0];  // [T = 2, out = 2]
/// let mut g = vec![f32::NAN; 2];
/// backward_sparse(&ctx, &set, &TensorRef::matrix(&x, 2, 2).unwrap(), &TensorRef::matrix(&dy, 2, 2).unwrap(),
///     None, None, &mut TensorMut::new(&mut g, &[2]).unwrap(), Accumulate::default()).unwrap();
/// assert_eq!(g, vec![2.0, 3.0]); // (dy^T x)[0][1] = 2, (dy^T x)[1][0] = 3
/// ```
#[allow(clippy::too_many_arguments)]
pub fn backward_sparse(ctx: &Context, set: &SparseSet<'_>, x: &TensorRef<'_>, dy: &TensorRef<'_>, w: Option<&TensorRef<'_>>, dx: Option<&mut TensorMut<'_>>, grad: &mut TensorMut<'_>, accumulate: Accumulate) -> Result<()> {
    let w = w.map_or(ptr::null(), |t| &t.raw as *const _);
    let dx = dx.map_or(ptr::null_mut(), |t| &mut t.raw as *mut _);
    let mut flags = 0u32;
    if accumulate.dw {
        flags |= sys::S2FT_ACCUMULATE_DW;
    }
    if accumulate.dx {
        flags |= sys::S2FT_ACCUMULATE_DX;
    }
    // SAFETY: live handles; tensors borrowed for the call with checked
    // extents; outputs are exclusive borrows.
    check(unsafe { sys::s2ft_backward_sparse(ctx.raw, set.raw, &x.raw, &dy.raw, w, dx, &mut grad.raw, flags) })
}

c_enum! {
    /// How LIFT computes the rank-r approximation.
    LiftMethod {
        /// A full SVD (LAPACK gesdd).
        Exact = sys::S2FT_LIFT_EXACT,
        /// A randomized SVD with oversampling and power iterations.
        Randomized = sys::S2FT_LIFT_RANDOMIZED,
    }
}

/// How many entries LIFT selects.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LiftBudget {
    /// Exactly this many entries.
    Count(usize),
    /// This fraction of the weight's entries, in (0, 1].
    Density(f64),
}

/// Options of [`lift_select`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LiftOptions {
    /// The rank r of the approximation, in `1..=min(rows, cols)`.
    pub rank: usize,
    /// The number of entries.
    pub budget: LiftBudget,
    /// Largest |W_r| (LIFT's principal weights) or smallest.
    pub order: Order,
    /// Exact or randomized SVD.
    pub method: LiftMethod,
    /// Randomized: extra sketch columns p.
    pub oversampling: u32,
    /// Randomized: power iterations q.
    pub power_iterations: u32,
    /// Randomized: the sketch's seed.
    pub seed: u64,
}

impl LiftOptions {
    /// The C defaults for everything but the rank and the budget.
    pub fn new(rank: usize, budget: LiftBudget) -> Self {
        let mut r = sys::s2ft_lift_options { version: 0, rank: 0, count: 0, density: 0.0, order: 0, method: 0, oversampling: 0, power_iterations: 0, seed: 0 };
        // SAFETY: valid out pointer, compiled-in version.
        let status = unsafe { sys::s2ft_lift_options_init(&mut r, sys::S2FT_LIFT_OPTIONS_VERSION) };
        debug_assert_eq!(status, 0);
        LiftOptions {
            rank,
            budget,
            order: Order::from_raw(r.order).unwrap_or(Order::Largest),
            method: LiftMethod::from_raw(r.method).unwrap_or(LiftMethod::Exact),
            oversampling: r.oversampling as u32,
            power_iterations: r.power_iterations as u32,
            seed: r.seed,
        }
    }

    fn to_raw(self) -> Result<sys::s2ft_lift_options> {
        let mut r = sys::s2ft_lift_options { version: 0, rank: 0, count: 0, density: 0.0, order: 0, method: 0, oversampling: 0, power_iterations: 0, seed: 0 };
        // SAFETY: valid out pointer, compiled-in version.
        check(unsafe { sys::s2ft_lift_options_init(&mut r, sys::S2FT_LIFT_OPTIONS_VERSION) })?;
        r.rank = i32::try_from(self.rank).map_err(|_| Error::invalid(format!("rank = {} is too large", self.rank)))?;
        match self.budget {
            LiftBudget::Count(k) => r.count = i64::try_from(k).map_err(|_| Error::invalid(format!("count = {k} is too large")))?,
            LiftBudget::Density(d) => r.density = d,
        }
        r.order = self.order.to_raw();
        r.method = self.method.to_raw();
        r.oversampling = i32::try_from(self.oversampling).map_err(|_| Error::invalid("oversampling is too large"))?;
        r.power_iterations = i32::try_from(self.power_iterations).map_err(|_| Error::invalid("power_iterations is too large"))?;
        r.seed = self.seed;
        Ok(r)
    }
}

/// LIFT's principal weights: the flat indices (ascending) of the entries
/// of largest (or smallest) magnitude in the rank-r approximation of `w`,
/// ready for [`SparseSet::new`].
///
/// ```
/// use s2ft::*;
/// let ctx = Context::new().unwrap();
/// let w = [6.0f32, 2.0, 3.0, 1.0]; // rank 1: [2, 1]^T [3, 1]
/// let opts = LiftOptions::new(1, LiftBudget::Count(2));
/// match lift_select(&ctx, &TensorRef::matrix(&w, 2, 2).unwrap(), &opts) {
///     Ok(idx) => assert_eq!(idx, vec![0, 2]), // |6| and |3|
///     Err(e) => assert_eq!(e.kind(), ErrorKind::Unsupported), // a build without LAPACK
/// }
/// ```
pub fn lift_select(ctx: &Context, w: &TensorRef<'_>, opts: &LiftOptions) -> Result<Vec<i64>> {
    let raw = opts.to_raw()?;
    let mut count = 0i64;
    // SAFETY: live context; w borrowed for the call; NULL indices asks for the count.
    check(unsafe { sys::s2ft_lift_select(ctx.raw, &w.raw, &raw, ptr::null_mut(), 0, &mut count) })?;
    let mut out = vec![0i64; count as usize];
    // SAFETY: as above; out has room for `count` indices.
    check(unsafe { sys::s2ft_lift_select(ctx.raw, &w.raw, &raw, out.as_mut_ptr(), count, &mut count) })?;
    out.truncate(count as usize);
    Ok(out)
}

/// LIFT's mask refresh: selects the principal weights of sparse parameter
/// `index`'s current weight (as [`lift_select`] with `opts`) and moves the
/// parameter to them (as [`Optimizer::sparse_reindex`]): entries in both
/// sets keep their optimizer state, new ones start at zero, and the weight
/// is not changed. Returns a new set of the selected entries on `ctx`'s
/// device (rebuild the [`backward_sparse`] calls with it) and the number of
/// them that were in the parameter before. On failure nothing changes.
///
/// ```
/// use s2ft::*;
/// let ctx = Context::new().unwrap();
/// let mut w = vec![6.0f32, 2.0, 3.0, 1.0]; // rank 1: [2, 1]^T [3, 1]
/// let set = SparseSet::new(&ctx, 2, 2, &[1, 3]).unwrap();
/// let mut opt = Optimizer::new(&ctx, &OptimizerOptions::default()).unwrap();
/// let index = opt.add_sparse(TensorMut::matrix(&mut w, 2, 2).unwrap(), &set).unwrap();
/// match lift_refresh(&ctx, &mut opt, index, &LiftOptions::new(1, LiftBudget::Count(2))) {
///     Ok((fresh, kept)) => assert_eq!((fresh.indices().unwrap(), kept), (vec![0, 2], 0)), // |6| and |3|
///     Err(e) => assert_eq!(e.kind(), ErrorKind::Unsupported), // a build without LAPACK
/// };
/// ```
pub fn lift_refresh<'c>(ctx: &'c Context, opt: &mut Optimizer<'_>, index: usize, opts: &LiftOptions) -> Result<(SparseSet<'c>, usize)> {
    let raw_opts = opts.to_raw()?;
    let opt_raw = opt.raw();
    let weight: *const sys::s2ft_tensor = opt.weight_raw(index)?;
    let mut raw = ptr::null_mut();
    let mut kept = 0i64;
    // SAFETY: live context and optimizer (exclusively borrowed); the weight
    // descriptor is the registered one; we own *raw on success.
    check(unsafe { sys::s2ft_lift_refresh(ctx.raw, opt_raw, index as i64, weight, &raw_opts, &mut raw, &mut kept) })?;
    Ok((SparseSet::from_raw(raw), kept as usize))
}

/// The entry count parameter-matched to LoRA of rank `lora_rank` on a
/// `[rows, cols]` weight: `(rows + cols) * lora_rank`, at most `rows * cols`
/// (0 for a zero argument).
///
/// ```
/// assert_eq!(s2ft::lift_count_for_lora_rank(4096, 11008, 16), 241664);
/// assert_eq!(s2ft::lift_count_for_lora_rank(3, 4, 5), 12);
/// ```
pub fn lift_count_for_lora_rank(rows: usize, cols: usize, lora_rank: usize) -> usize {
    match (i64::try_from(rows), i64::try_from(cols), i64::try_from(lora_rank)) {
        // SAFETY: no pointers.
        (Ok(r), Ok(c), Ok(k)) => unsafe { sys::s2ft_lift_count_for_lora_rank(r, c, k) as usize },
        _ => 0,
    }
}
