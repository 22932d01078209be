//! AdamW / SGD / SM3 on trained slices and sparse entries only.

use std::marker::PhantomData;
use std::path::Path;
use std::ptr;

use s2ft_sys as sys;

use crate::context::Context;
use crate::error::{check, Error, Result};
use crate::partial::Slice;
use crate::path::c_path;
use crate::sparse_train::SparseSet;
use crate::tensor::{TensorMut, TensorRef};

c_enum! {
    /// The update rule.
    OptimizerKind {
        /// Adam with decoupled weight decay.
        AdamW = sys::S2FT_OPTIMIZER_ADAMW,
        /// SGD with optional (Nesterov) momentum.
        Sgd = sys::S2FT_OPTIMIZER_SGD,
        /// SM3-II: one accumulator per row and per column.
        Sm3 = sys::S2FT_OPTIMIZER_SM3,
    }
}

/// Optimizer options; `Default` is the C default
/// (`s2ft_optimizer_options_init`): AdamW, betas 0.9/0.999, eps 1e-8, no
/// decay, no momentum, no clipping, no per-entry age correction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerOptions {
    /// AdamW, SGD or SM3.
    pub kind: OptimizerKind,
    /// AdamW first-moment decay.
    pub beta1: f64,
    /// AdamW second-moment decay.
    pub beta2: f64,
    /// AdamW and SM3 epsilon.
    pub eps: f64,
    /// Weight decay (decoupled for AdamW and SM3).
    pub weight_decay: f64,
    /// SGD momentum; SM3's average of updates (0: none).
    pub momentum: f64,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// Clip by the global norm over all slices; 0 = off.
    pub max_grad_norm: f64,
    /// AdamW on sparse parameters: bias correction by each entry's own age
    /// (steps since it joined) instead of the step count (SpIEL).
    pub age_bias_correction: bool,
}

fn raw_defaults() -> sys::s2ft_optimizer_options {
    let mut r = sys::s2ft_optimizer_options {
        version: 0,
        kind: 0,
        beta1: 0.0,
        beta2: 0.0,
        eps: 0.0,
        weight_decay: 0.0,
        momentum: 0.0,
        nesterov: 0,
        max_grad_norm: 0.0,
        age_bias_correction: 0,
    };
    // SAFETY: valid out pointer, compiled-in version.
    let status = unsafe { sys::s2ft_optimizer_options_init(&mut r, sys::S2FT_OPTIMIZER_OPTIONS_VERSION) };
    debug_assert_eq!(status, 0);
    r
}

impl Default for OptimizerOptions {
    /// ```
    /// let o = s2ft::OptimizerOptions::default();
    /// assert_eq!((o.kind, o.beta1, o.beta2, o.eps), (s2ft::OptimizerKind::AdamW, 0.9, 0.999, 1e-8));
    /// ```
    fn default() -> Self {
        let r = raw_defaults();
        OptimizerOptions {
            kind: OptimizerKind::from_raw(r.kind).unwrap_or(OptimizerKind::AdamW),
            beta1: r.beta1,
            beta2: r.beta2,
            eps: r.eps,
            weight_decay: r.weight_decay,
            momentum: r.momentum,
            nesterov: r.nesterov != 0,
            max_grad_norm: r.max_grad_norm,
            age_bias_correction: r.age_bias_correction != 0,
        }
    }
}

/// An optimizer over trained slices. It takes the weights it updates
/// ([`Optimizer::add_param`] consumes the exclusive [`TensorMut`] borrow),
/// because the C library keeps their data pointers and writes them on every
/// step; read them between steps with [`Optimizer::weight`]. Dropping the
/// optimizer ends the borrow.
///
/// ```
/// use s2ft::*;
/// let ctx = Context::new().unwrap();
/// let mut w = vec![1.0f32; 6]; // [2, 3]
/// {
///     let opts = OptimizerOptions { kind: OptimizerKind::Sgd, ..Default::default() };
///     let mut opt = Optimizer::new(&ctx, &opts).unwrap();
///     let slice = Slice::Range { axis: Axis::Columns, begin: 0, count: 1 };
///     assert_eq!(opt.add_param(TensorMut::matrix(&mut w, 2, 3).unwrap(), &slice).unwrap(), 0);
///     let g = [1.0f32, 2.0]; // [out = 2, k = 1]
///     opt.step(0.5, &[TensorRef::matrix(&g, 2, 1).unwrap()]).unwrap();
///     assert_eq!(opt.step_count().unwrap(), 1);
/// }
/// assert_eq!(w, vec![0.5, 1.0, 1.0, 0.0, 1.0, 1.0]);
/// ```
#[derive(Debug)]
pub struct Optimizer<'a> {
    raw: *mut sys::s2ft_optimizer,
    // Boxed so the descriptors never move while the library may hold them.
    weights: Vec<Box<TensorMut<'a>>>,
    _ctx: PhantomData<&'a Context>,
}

impl<'a> Optimizer<'a> {
    /// An optimizer with no parameters.
    pub fn new(ctx: &'a Context, opts: &OptimizerOptions) -> Result<Self> {
        let mut r = raw_defaults();
        r.kind = opts.kind.to_raw();
        r.beta1 = opts.beta1;
        r.beta2 = opts.beta2;
        r.eps = opts.eps;
        r.weight_decay = opts.weight_decay;
        r.momentum = opts.momentum;
        r.nesterov = opts.nesterov as i32;
        r.max_grad_norm = opts.max_grad_norm;
        r.age_bias_correction = opts.age_bias_correction as i32;
        let mut raw = ptr::null_mut();
        // SAFETY: live context, valid pointers; we own *raw on success.
        check(unsafe { sys::s2ft_optimizer_create(ctx.raw, &r, &mut raw) })?;
        Ok(Optimizer { raw, weights: Vec::new(), _ctx: PhantomData })
    }

    /// Registers the trained slice of `weight`; returns its parameter index
    /// (0, 1, ... in call order). The weight stays borrowed by the
    /// optimizer until it is dropped.
    pub fn add_param(&mut self, weight: TensorMut<'a>, slice: &Slice) -> Result<usize> {
        let mut weight = Box::new(weight);
        let s = slice.to_raw();
        let mut index = 0i64;
        // SAFETY: live handle; the weight's memory is exclusively borrowed
        // for 'a, which outlives the optimizer, so the kept pointer stays valid.
        check(unsafe { sys::s2ft_optimizer_add_param(self.raw, &mut weight.raw, &s, &mut index) })?;
        self.weights.push(weight);
        Ok(index as usize)
    }

    /// Registers the entries of `weight` at `set`'s flat indices (a set
    /// made for the weight's shape); returns the parameter index. Its
    /// gradient is `[count]` (what [`backward_sparse`](crate::backward_sparse)
    /// writes). The optimizer copies the indices, not the set.
    ///
    /// ```
    /// use s2ft::*;
    /// let ctx = Context::new().unwrap();
    /// let mut w = vec![1.0f32; 6]; // [2, 3]
    /// let set = SparseSet::new(&ctx, 2, 3, &[1, 5]).unwrap();
    /// {
    ///     let opts = OptimizerOptions { kind: OptimizerKind::Sm3, ..Default::default() };
    ///     let mut opt = Optimizer::new(&ctx, &opts).unwrap();
    ///     assert_eq!(opt.add_sparse(TensorMut::matrix(&mut w, 2, 3).unwrap(), &set).unwrap(), 0);
    ///     let g = [2.0f32, -1.0];
    ///     opt.step(0.5, &[TensorRef::new(&g, &[2]).unwrap()]).unwrap();
    /// }
    /// assert!((w[1] - 0.5).abs() < 1e-6 && (w[5] - 1.5).abs() < 1e-6); // SM3's first step: lr * sign(g)
    /// ```
    pub fn add_sparse(&mut self, weight: TensorMut<'a>, set: &SparseSet<'_>) -> Result<usize> {
        let mut weight = Box::new(weight);
        let mut index = 0i64;
        // SAFETY: live handles; the weight's memory is exclusively borrowed
        // for 'a, which outlives the optimizer; the set is read during the call.
        check(unsafe { sys::s2ft_optimizer_add_sparse(self.raw, &mut weight.raw, set.raw, &mut index) })?;
        self.weights.push(weight);
        Ok(index as usize)
    }

    /// Moves sparse parameter `index` to `set`'s entries: entries in both
    /// keep their state, new ones start at zero (LIFT's mask refresh,
    /// SpIEL's regrowth).
    pub fn sparse_reindex(&mut self, index: usize, set: &SparseSet<'_>) -> Result<()> {
        // SAFETY: live handles for the call.
        check(unsafe { sys::s2ft_optimizer_sparse_reindex(self.raw, index as i64, set.raw) })
    }

    /// One step with learning rate `lr`; `grads[i]` is parameter i's slice
    /// gradient. Returns the global gradient norm before clipping.
    pub fn step(&mut self, lr: f64, grads: &[TensorRef<'_>]) -> Result<f64> {
        let raw: Vec<sys::s2ft_tensor> = grads.iter().map(|g| g.raw).collect();
        let mut norm = 0.0f64;
        // SAFETY: live handle; raw holds grads.len() descriptors borrowed
        // for the call; the weights are exclusively ours.
        check(unsafe { sys::s2ft_optimizer_step(self.raw, lr, raw.as_ptr(), raw.len() as i64, &mut norm) })?;
        Ok(norm)
    }

    /// The number of steps taken.
    pub fn step_count(&self) -> Result<i64> {
        let mut n = 0i64;
        // SAFETY: live handle, valid out pointer.
        check(unsafe { sys::s2ft_optimizer_step_count(self.raw, &mut n) })?;
        Ok(n)
    }

    /// A read-only view of parameter `index`'s weight (the whole tensor).
    pub fn weight(&self, index: usize) -> Result<TensorRef<'_>> {
        self.weights
            .get(index)
            .map(|w| TensorMut::as_ref(w))
            .ok_or_else(|| Error::invalid(format!("parameter index {index} is out of range [0, {})", self.weights.len())))
    }

    /// The number of registered parameters.
    pub fn num_params(&self) -> usize {
        self.weights.len()
    }

    /// The C handle (for calls that take the optimizer, e.g. SpIEL's).
    pub(crate) fn raw(&self) -> *mut sys::s2ft_optimizer {
        self.raw
    }

    /// The descriptor of parameter `index`'s weight, read-only.
    pub(crate) fn weight_ref(&self, index: usize) -> Result<&sys::s2ft_tensor> {
        let n = self.weights.len();
        self.weights
            .get(index)
            .map(|w| &w.raw)
            .ok_or_else(|| Error::invalid(format!("param_index {index} is out of range [0, {n})")))
    }

    /// The descriptor of parameter `index`'s weight, exactly as registered
    /// (the library compares memory, dtype, shape and strides with it).
    pub(crate) fn weight_raw(&mut self, index: usize) -> Result<&mut sys::s2ft_tensor> {
        let n = self.weights.len();
        self.weights
            .get_mut(index)
            .map(|w| &mut w.raw)
            .ok_or_else(|| Error::invalid(format!("param_index {index} is out of range [0, {n})")))
    }

    /// Saves the state (options, step count, moments, master copies).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let p = c_path(path.as_ref())?;
        // SAFETY: live handle, NUL-terminated path.
        check(unsafe { sys::s2ft_optimizer_save(self.raw, p.as_ptr()) })
    }

    /// Restores state saved by [`Optimizer::save`] into an optimizer with
    /// the same parameters; master copies are written back to the weights.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let p = c_path(path.as_ref())?;
        // SAFETY: live handle, NUL-terminated path; we hold the weights.
        check(unsafe { sys::s2ft_optimizer_load(self.raw, p.as_ptr()) })
    }
}

impl Drop for Optimizer<'_> {
    fn drop(&mut self) {
        // SAFETY: we own the handle; the weights are dropped after it.
        unsafe { sys::s2ft_optimizer_destroy(self.raw) }
    }
}
