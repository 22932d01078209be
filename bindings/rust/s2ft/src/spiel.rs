//! SpIEL (Ansell et al., 2024): a schedule that moves the trained entries
//! of one sparse optimizer parameter during training (drop the entries
//! that moved least, regrow by accumulated gradient or by a row x column
//! score).

use std::marker::PhantomData;
use std::ptr;

use s2ft_sys as sys;

use crate::context::Context;
use crate::error::{check, Error, Result};
use crate::optimizer::Optimizer;
use crate::sparse_train::SparseSet;
use crate::tensor::TensorRef;

c_enum! {
    /// How a schedule regrows entries.
    SpielRegrow {
        /// By the gradient accumulated over the window's candidates ("rigl").
        Ag = sys::S2FT_SPIEL_AG,
        /// By the SM3-style score `R[r] * C[c]` of rows and columns.
        Ma = sys::S2FT_SPIEL_MA,
    }
}

c_enum! {
    /// How the replacement rate decays over the run.
    SpielDecay {
        /// `p0 * (1 - t / T)`.
        Linear = sys::S2FT_SPIEL_DECAY_LINEAR,
        /// `p0 * (1 + cos(pi * t / T)) / 2`.
        Cosine = sys::S2FT_SPIEL_DECAY_COSINE,
    }
}

c_enum! {
    /// Where MA's row and column scores come from.
    SpielMaSource {
        /// The SM3 optimizer's own row and column accumulators (needs an
        /// [`OptimizerKind::Sm3`](crate::OptimizerKind::Sm3) optimizer).
        Optimizer = sys::S2FT_SPIEL_MA_OPTIMIZER,
        /// Sums of `dy^2` per row and `x^2` per column over the window's
        /// [`Spiel::observe`] calls.
        Activations = sys::S2FT_SPIEL_MA_ACTIVATIONS,
    }
}

/// Options of a [`Spiel`] schedule; `Default` is the C default
/// (`s2ft_spiel_options_init`), whose `total_steps` 0 must be set
/// ([`SpielOptions::new`] does).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpielOptions {
    /// AG (default) or MA.
    pub regrow: SpielRegrow,
    /// N: reselect after steps `M, M + N, M + 2N, ...` (default 20).
    pub reselect_interval: usize,
    /// M in `1..=N`: the steps observed before a reselection (default 5).
    pub accumulation_steps: usize,
    /// T: the run's optimizer steps (needed by the decay).
    pub total_steps: usize,
    /// p0 in `[0, 1]` (default 0.2).
    pub initial_rate: f64,
    /// Linear (default) or cosine decay.
    pub decay: SpielDecay,
    /// p = 1 at the first reselection (default true).
    pub first_full: bool,
    /// AG: candidates per window; 0 (default) is the entry count.
    pub candidates: usize,
    /// AG with AdamW: seed the regrown entries' moments from the window
    /// (default true).
    pub seed_moments: bool,
    /// MA: the optimizer's accumulators (default) or activation sums.
    pub ma_source: SpielMaSource,
    /// Observe calls per optimizer step (gradient accumulation; default 1).
    pub observations_per_step: usize,
}

fn raw_defaults() -> sys::s2ft_spiel_options {
    let mut r = sys::s2ft_spiel_options {
        version: 0,
        regrow: 0,
        reselect_interval: 0,
        accumulation_steps: 0,
        total_steps: 0,
        initial_rate: 0.0,
        decay: 0,
        first_full: 0,
        candidates: 0,
        seed_moments: 0,
        ma_source: 0,
        observations_per_step: 0,
    };
    // SAFETY: valid out pointer, compiled-in version.
    let status = unsafe { sys::s2ft_spiel_options_init(&mut r, sys::S2FT_SPIEL_OPTIONS_VERSION) };
    debug_assert_eq!(status, 0);
    r
}

fn to_i64(value: usize, name: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::invalid(format!("{name} = {value} is too large")))
}

impl Default for SpielOptions {
    /// ```
    /// let o = s2ft::SpielOptions::default();
    /// assert_eq!((o.reselect_interval, o.accumulation_steps, o.total_steps, o.initial_rate), (20, 5, 0, 0.2));
    /// assert_eq!((o.regrow, o.decay, o.first_full), (s2ft::SpielRegrow::Ag, s2ft::SpielDecay::Linear, true));
    /// ```
    fn default() -> Self {
        let r = raw_defaults();
        SpielOptions {
            regrow: SpielRegrow::from_raw(r.regrow).unwrap_or(SpielRegrow::Ag),
            reselect_interval: r.reselect_interval as usize,
            accumulation_steps: r.accumulation_steps as usize,
            total_steps: r.total_steps as usize,
            initial_rate: r.initial_rate,
            decay: SpielDecay::from_raw(r.decay).unwrap_or(SpielDecay::Linear),
            first_full: r.first_full != 0,
            candidates: r.candidates as usize,
            seed_moments: r.seed_moments != 0,
            ma_source: SpielMaSource::from_raw(r.ma_source).unwrap_or(SpielMaSource::Optimizer),
            observations_per_step: r.observations_per_step as usize,
        }
    }
}

impl SpielOptions {
    /// The C defaults for a run of `total_steps` optimizer steps.
    pub fn new(total_steps: usize) -> Self {
        SpielOptions { total_steps, ..Default::default() }
    }

    fn to_raw(self) -> Result<sys::s2ft_spiel_options> {
        let mut r = raw_defaults();
        r.regrow = self.regrow.to_raw();
        r.reselect_interval = to_i64(self.reselect_interval, "reselect_interval")?;
        r.accumulation_steps = to_i64(self.accumulation_steps, "accumulation_steps")?;
        r.total_steps = to_i64(self.total_steps, "total_steps")?;
        r.initial_rate = self.initial_rate;
        r.decay = self.decay.to_raw();
        r.first_full = self.first_full as i32;
        r.candidates = to_i64(self.candidates, "candidates")?;
        r.seed_moments = self.seed_moments as i32;
        r.ma_source = self.ma_source.to_raw();
        r.observations_per_step = to_i64(self.observations_per_step, "observations_per_step")?;
        Ok(r)
    }

    /// The replacement rate `p(step)` of these options (whether or not
    /// `step` is a reselection step): `p0 * (1 - step / T)` (linear) or
    /// `p0 * (1 + cos(pi * step / T)) / 2` (cosine), 1 at step M with
    /// `first_full`, 0 after T. Errors: invalid options, `step` 0.
    ///
    /// ```
    /// let o = s2ft::SpielOptions { accumulation_steps: 2, reselect_interval: 4, ..s2ft::SpielOptions::new(12) };
    /// assert!((o.rate(6).unwrap() - 0.1).abs() < 1e-12);
    /// assert_eq!(o.rate(2).unwrap(), 1.0); // first_full
    /// assert!(o.rate(0).is_err());
    /// ```
    pub fn rate(&self, step: usize) -> Result<f64> {
        let raw = self.to_raw()?;
        let mut p = 0.0f64;
        // SAFETY: valid pointers for the call.
        check(unsafe { sys::s2ft_spiel_rate(&raw, to_i64(step, "step")?, &mut p) })?;
        Ok(p)
    }
}

/// What a schedule has done ([`Spiel::stats`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpielStats {
    /// Steps counted by [`Spiel::step`].
    pub steps: i64,
    /// The trained entries k (constant).
    pub count: i64,
    /// Reselection steps run.
    pub reselections: i64,
    /// Observe calls used (inside accumulation windows).
    pub observations: i64,
    /// Dense `[out, in]` gradients formed (AG: one per window).
    pub dense_gradients: i64,
    /// The next reselection step, 0 when none is left.
    pub next_reselection: i64,
    /// The last reselection's step (0: none yet).
    pub last_step: i64,
    /// Its rate p.
    pub last_rate: f64,
    /// Its n = floor(p * k).
    pub last_target: i64,
    /// Entries it dropped (their base values written back).
    pub last_dropped: i64,
    /// Entries it regrew (as many as it dropped).
    pub last_regrown: i64,
}

/// A SpIEL schedule for one sparse parameter of an [`Optimizer`] (made by
/// [`Optimizer::add_sparse`], normally from random entries). Create it
/// before the first training step: the weight's current values at the
/// entries become their base values. Each step: [`backward_sparse`]
/// with the current set, [`Spiel::observe`] for every micro-batch, the
/// optimizer's step, then [`Spiel::step`]; when that returns `true` the
/// set changed: take [`Spiel::current_set`].
///
/// The library keeps the optimizer in the schedule, so the calls that use
/// it ([`Spiel::observe`], [`Spiel::step`]) take that optimizer (checked:
/// the same one) as proof that it is still alive; `step` borrows it
/// exclusively because it writes the weight and reindexes the parameter.
/// The schedule borrows the context it was made with.
///
/// ```
/// use s2ft::*;
/// let ctx = Context::new().unwrap();
/// let mut w = vec![0.5f32; 12]; // [3, 4]
/// let mut set = SparseSet::new(&ctx, 3, 4, &[0, 5, 10]).unwrap();
/// let mut opt = Optimizer::new(&ctx, &OptimizerOptions::default()).unwrap();
/// let index = opt.add_sparse(TensorMut::matrix(&mut w, 3, 4).unwrap(), &set).unwrap();
/// let opts = SpielOptions { reselect_interval: 2, accumulation_steps: 1, ..SpielOptions::new(4) };
/// let mut spiel = Spiel::new(&ctx, &opt, index, &opts).unwrap();
/// let (x, dy) = ([1.0f32, 2.0, 3.0, 4.0], [1.0f32, -1.0, 2.0]); // T = 1
/// for _ in 0..2 {
///     let mut g = vec![0.0f32; 3];
///     let (x, dy) = (TensorRef::matrix(&x, 1, 4).unwrap(), TensorRef::matrix(&dy, 1, 3).unwrap());
///     backward_sparse(&ctx, &set, &x, &dy, None, None, &mut TensorMut::new(&mut g, &[3]).unwrap(), Accumulate::default()).unwrap();
///     spiel.observe(&ctx, &opt, &x, &dy).unwrap();
///     opt.step(0.1, &[TensorRef::new(&g, &[3]).unwrap()]).unwrap();
///     if spiel.step(&ctx, &mut opt).unwrap() {
///         set = spiel.current_set(&ctx).unwrap();
///     }
/// }
/// assert_eq!(spiel.stats().unwrap().reselections, 1); // after step 1 (M = 1)
/// assert_eq!(set.count().unwrap(), 3);
/// ```
///
/// [`backward_sparse`]: crate::backward_sparse
#[derive(Debug)]
pub struct Spiel<'c> {
    raw: *mut sys::s2ft_spiel,
    opt: *mut sys::s2ft_optimizer,
    index: usize,
    opts: SpielOptions,
    _ctx: PhantomData<&'c Context>,
}

impl<'c> Spiel<'c> {
    /// A schedule for sparse parameter `index` of `opt` (its weight as
    /// registered). Errors: a bad option (the message names it), `index`
    /// not a sparse parameter, MA with the optimizer source on a non-SM3
    /// optimizer.
    pub fn new(ctx: &'c Context, opt: &Optimizer<'_>, index: usize, opts: &SpielOptions) -> Result<Self> {
        let raw_opts = opts.to_raw()?;
        let weight: *const sys::s2ft_tensor = opt.weight_ref(index)?;
        let mut raw = ptr::null_mut();
        // SAFETY: live context and optimizer; the weight descriptor is the
        // registered one (read during the call); we own *raw on success.
        check(unsafe { sys::s2ft_spiel_create(ctx.raw, opt.raw(), index as i64, weight, &raw_opts, &mut raw) })?;
        Ok(Spiel { raw, opt: opt.raw(), index, opts: *opts, _ctx: PhantomData })
    }

    fn same_optimizer(&self, opt: &Optimizer<'_>) -> Result<()> {
        if opt.raw() != self.opt {
            return Err(Error::invalid("opt is not the optimizer this SpIEL schedule was made for"));
        }
        Ok(())
    }

    /// The optimizer parameter the schedule moves.
    pub fn param_index(&self) -> usize {
        self.index
    }

    /// The schedule's options.
    pub fn options(&self) -> &SpielOptions {
        &self.opts
    }

    /// The replacement rate `p(step)` of the schedule's options.
    pub fn rate(&self, step: usize) -> Result<f64> {
        self.opts.rate(step)
    }

    /// Shows the schedule one micro-batch of the coming step: `x [T, in]`
    /// and `dy [T, out]` as given to [`backward_sparse`](crate::backward_sparse).
    /// Call it for every backward of the weight, before [`Spiel::step`];
    /// it does nothing outside accumulation windows.
    pub fn observe(&mut self, ctx: &Context, opt: &Optimizer<'_>, x: &TensorRef<'_>, dy: &TensorRef<'_>) -> Result<()> {
        self.same_optimizer(opt)?;
        // SAFETY: live handles (the optimizer the schedule keeps is `opt`,
        // borrowed for the call); tensors borrowed for the call.
        check(unsafe { sys::s2ft_spiel_observe(self.raw, ctx.raw, &x.raw, &dy.raw) })
    }

    /// Counts one step (call it after the optimizer's step); at a
    /// reselection step drops and regrows entries, writing the dropped
    /// entries' base values into the weight and reindexing the parameter.
    /// Returns whether the set changed. On failure nothing changes.
    pub fn step(&mut self, ctx: &Context, opt: &mut Optimizer<'_>) -> Result<bool> {
        self.same_optimizer(opt)?;
        let weight: *mut sys::s2ft_tensor = opt.weight_raw(self.index)?;
        let mut moved = 0i32;
        // SAFETY: live handles; `opt` (which the schedule keeps) and its
        // weight are exclusively borrowed for the call.
        check(unsafe { sys::s2ft_spiel_step(self.raw, ctx.raw, weight, &mut moved) })?;
        Ok(moved != 0)
    }

    /// A new set of the schedule's current entries (for
    /// [`backward_sparse`](crate::backward_sparse)).
    pub fn current_set(&self, ctx: &'c Context) -> Result<SparseSet<'c>> {
        let mut raw = ptr::null_mut();
        // SAFETY: live handles; we own *raw on success.
        check(unsafe { sys::s2ft_spiel_current_set(self.raw, ctx.raw, &mut raw) })?;
        Ok(SparseSet::from_raw(raw))
    }

    /// What the schedule has done so far.
    pub fn stats(&self) -> Result<SpielStats> {
        let mut r = sys::s2ft_spiel_stats {
            version: sys::S2FT_SPIEL_STATS_VERSION,
            steps: 0,
            count: 0,
            reselections: 0,
            observations: 0,
            dense_gradients: 0,
            next_reselection: 0,
            last_step: 0,
            last_rate: 0.0,
            last_target: 0,
            last_dropped: 0,
            last_regrown: 0,
        };
        // SAFETY: live handle (the call does not use the optimizer), valid out pointer.
        check(unsafe { sys::s2ft_spiel_stats_get(self.raw, &mut r) })?;
        Ok(SpielStats {
            steps: r.steps,
            count: r.count,
            reselections: r.reselections,
            observations: r.observations,
            dense_gradients: r.dense_gradients,
            next_reselection: r.next_reselection,
            last_step: r.last_step,
            last_rate: r.last_rate,
            last_target: r.last_target,
            last_dropped: r.last_dropped,
            last_regrown: r.last_regrown,
        })
    }
}

impl Drop for Spiel<'_> {
    fn drop(&mut self) {
        // SAFETY: we own the handle; destroying it does not touch the optimizer.
        unsafe { sys::s2ft_spiel_destroy(self.raw) }
    }
}
