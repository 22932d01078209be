//! Selection of the trained units and their co-permutation.

use std::ptr;

use s2ft_sys as sys;

use crate::context::Context;
use crate::error::{check, Error, Result};
use crate::path::c_path;
use crate::shape::{ModelShape, Target};
use crate::statistics::Statistics;
use std::path::Path;

c_enum! {
    /// How units are scored (the paper's S2FT-R/W/A/S/G, and LIFT's principal weights).
    Strategy {
        /// Uniform random from the seed.
        Random = sys::S2FT_STRATEGY_RANDOM,
        /// Norm of the unit's trained weight.
        Weight = sys::S2FT_STRATEGY_WEIGHT,
        /// Norm of the unit's input activation.
        Activation = sys::S2FT_STRATEGY_ACTIVATION,
        /// Weight norm times activation norm.
        WeightAct = sys::S2FT_STRATEGY_WEIGHT_ACT,
        /// Norm of the unit's weight gradient.
        Gradient = sys::S2FT_STRATEGY_GRADIENT,
        /// Norm of the unit's lines in the rank-r SVD approximation W_r
        /// (LIFT's principal weights; [`Statistics::add_principal`]).
        Principal = sys::S2FT_STRATEGY_PRINCIPAL,
    }
}

c_enum! {
    /// Whether the highest or the lowest scores are picked.
    Order {
        /// Pick the highest scores.
        Largest = sys::S2FT_ORDER_LARGEST,
        /// Pick the lowest scores.
        Smallest = sys::S2FT_ORDER_SMALLEST,
    }
}

c_enum! {
    /// How the budget is spread over layers.
    Allocation {
        /// Every layer gets the same budget.
        PerLayer = sys::S2FT_ALLOCATE_PER_LAYER,
        /// One budget ranked across all layers.
        Global = sys::S2FT_ALLOCATE_GLOBAL,
    }
}

c_enum! {
    /// Head granularity for O (and the head permutation).
    HeadGranularity {
        /// Whole KV groups: contiguous after permuting.
        ByGroup = sys::S2FT_HEADS_BY_GROUP,
        /// Single query heads: the index path under GQA.
        Single = sys::S2FT_HEADS_SINGLE,
    }
}

c_enum! {
    /// Which permutation of a layer [`Selection::permutation`] returns.
    PermKind {
        /// Over query heads.
        Heads = sys::S2FT_PERM_HEADS,
        /// Over KV heads.
        KvHeads = sys::S2FT_PERM_KV_HEADS,
        /// Over FFN channels.
        Channels = sys::S2FT_PERM_CHANNELS,
    }
}

/// What [`Selection::indices`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IndexKind {
    /// Unit indices (heads, channels).
    Units,
    /// Weight rows/columns (`head * head_dim + j`).
    Lines,
}

/// In which order [`Selection::indices`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IndexOrder {
    /// The base model's original order.
    Base,
    /// Positions after [`permute`](crate::permute).
    Permuted,
}

/// Options of [`Selection::select`]; `Default` is the C default
/// (`s2ft_select_options_init`): O and Down, random, ratios 0.05 and 0.02.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelectOptions {
    /// Mask of [`Target::bit`] values.
    pub targets: u32,
    /// How units are scored.
    pub strategy: Strategy,
    /// Highest or lowest scores.
    pub order: Order,
    /// Per layer or global budget.
    pub allocation: Allocation,
    /// O head granularity.
    pub head_granularity: HeadGranularity,
    /// Seed of the random strategy and of tie-breaking.
    pub seed: u64,
    /// Budget ratio per target (index [`Target::to_raw`]); 0 when `count` is used.
    pub ratio: [f64; 4],
    /// Budget count per target; 0 when `ratio` is used.
    pub count: [i64; 4],
}

fn raw_select_defaults() -> sys::s2ft_select_options {
    let mut raw = sys::s2ft_select_options {
        version: 0,
        targets: 0,
        strategy: 0,
        order: 0,
        allocation: 0,
        head_granularity: 0,
        seed: 0,
        ratio: [0.0; 4],
        count: [0; 4],
    };
    // SAFETY: valid out pointer, compiled-in version.
    let status = unsafe { sys::s2ft_select_options_init(&mut raw, sys::S2FT_SELECT_OPTIONS_VERSION) };
    debug_assert_eq!(status, 0);
    raw
}

impl Default for SelectOptions {
    fn default() -> Self {
        let r = raw_select_defaults();
        SelectOptions {
            targets: r.targets,
            strategy: Strategy::from_raw(r.strategy).unwrap_or(Strategy::Random),
            order: Order::from_raw(r.order).unwrap_or(Order::Largest),
            allocation: Allocation::from_raw(r.allocation).unwrap_or(Allocation::PerLayer),
            head_granularity: HeadGranularity::from_raw(r.head_granularity).unwrap_or(HeadGranularity::ByGroup),
            seed: r.seed,
            ratio: r.ratio,
            count: r.count,
        }
    }
}

impl SelectOptions {
    /// Sets target `t` to train `count` units (clearing its ratio) and adds
    /// it to the target mask.
    ///
    /// ```
    /// let o = s2ft::SelectOptions::default().with_count(s2ft::Target::Up, 3);
    /// assert_eq!(o.count[3], 3);
    /// assert_eq!(o.ratio[3], 0.0);
    /// ```
    pub fn with_count(mut self, t: Target, count: i64) -> Self {
        self.targets |= t.bit();
        self.ratio[t.to_raw() as usize] = 0.0;
        self.count[t.to_raw() as usize] = count;
        self
    }

    /// Sets target `t` to train `ratio` of its units (clearing its count)
    /// and adds it to the target mask.
    pub fn with_ratio(mut self, t: Target, ratio: f64) -> Self {
        self.targets |= t.bit();
        self.ratio[t.to_raw() as usize] = ratio;
        self.count[t.to_raw() as usize] = 0;
        self
    }

    fn to_raw(self) -> sys::s2ft_select_options {
        let mut r = raw_select_defaults();
        r.targets = self.targets;
        r.strategy = self.strategy.to_raw();
        r.order = self.order.to_raw();
        r.allocation = self.allocation.to_raw();
        r.head_granularity = self.head_granularity.to_raw();
        r.seed = self.seed;
        r.ratio = self.ratio;
        r.count = self.count;
        r
    }
}

/// Which units of each layer are trained, and the co-permutation that
/// brings them to the front. Immutable once made.
///
/// ```
/// use s2ft::{Context, IndexKind, IndexOrder, ModelShape, SelectOptions, Selection, Target};
/// let ctx = Context::new().unwrap();
/// let shape = ModelShape { n_layers: 2, d_model: 8, n_heads: 4, n_kv_heads: 2, head_dim: 2, d_ff: 10 };
/// let opts = SelectOptions { seed: 7, ..SelectOptions::default() }
///     .with_count(Target::O, 1)
///     .with_count(Target::Down, 3);
/// let sel = Selection::select(&ctx, &shape, &opts, None).unwrap();
/// let channels = sel.indices(1, Target::Down, IndexKind::Units, IndexOrder::Base).unwrap();
/// assert_eq!(channels.len(), 3);
/// // After permuting, the selected channels are the first three.
/// assert_eq!(sel.range(1, Target::Down).unwrap(), (0, 3));
/// ```
#[derive(Debug)]
pub struct Selection {
    pub(crate) raw: *mut sys::s2ft_selection,
}

// SAFETY: a selection keeps no reference to a context or thread and is
// immutable; moving it between threads is sound. It is not Sync because the
// C API documents no handle as safe to share.
unsafe impl Send for Selection {}

impl Selection {
    /// Chooses the units to train. `stats` is needed by every strategy but
    /// `Random`.
    pub fn select(ctx: &Context, shape: &ModelShape, opts: &SelectOptions, stats: Option<&Statistics<'_>>) -> Result<Selection> {
        let shape = shape.to_raw();
        let opts = opts.to_raw();
        let stats = stats.map_or(ptr::null(), |s| s.raw());
        let mut raw = ptr::null_mut();
        // SAFETY: live handles and valid pointers for the call.
        check(unsafe { sys::s2ft_select(ctx.raw, &shape, &opts, stats, &mut raw) })?;
        Ok(Selection { raw })
    }

    /// A selection from explicit base-order unit indices: `units[t]` holds
    /// `n_layers * k_t` indices, layer-major, for target `t` (index
    /// [`Target::to_raw`]); an empty list leaves the target untrained.
    ///
    /// ```
    /// use s2ft::{HeadGranularity, ModelShape, Selection, Target};
    /// let shape = ModelShape { n_layers: 1, d_model: 4, n_heads: 2, n_kv_heads: 1, head_dim: 2, d_ff: 5 };
    /// let sel = Selection::from_units(&shape, HeadGranularity::Single, [&[1], &[], &[4, 0], &[]]).unwrap();
    /// assert_eq!(sel.targets().unwrap(), Target::O.bit() | Target::Down.bit());
    /// ```
    pub fn from_units(shape: &ModelShape, granularity: HeadGranularity, units: [&[i64]; 4]) -> Result<Selection> {
        if shape.n_layers <= 0 {
            shape.check()?;
        }
        let layers = shape.n_layers as usize;
        let mut n_units = [0i64; 4];
        let mut ptrs = [ptr::null::<i64>(); 4];
        for t in 0..4 {
            if units[t].len() % layers != 0 {
                return Err(Error::invalid(format!(
                    "units[{t}] has {} indices, not a multiple of n_layers = {layers}",
                    units[t].len()
                )));
            }
            n_units[t] = (units[t].len() / layers) as i64;
            ptrs[t] = units[t].as_ptr();
        }
        let shape = shape.to_raw();
        let mut raw = ptr::null_mut();
        // SAFETY: each ptrs[t] addresses n_layers * n_units[t] values.
        check(unsafe { sys::s2ft_selection_create(&shape, granularity.to_raw(), ptrs.as_ptr(), n_units.as_ptr(), &mut raw) })?;
        Ok(Selection { raw })
    }

    /// The model shape the selection was made for.
    pub fn shape(&self) -> Result<ModelShape> {
        let mut s = ModelShape::default().to_raw();
        // SAFETY: live handle, valid out pointer.
        check(unsafe { sys::s2ft_selection_shape(self.raw, &mut s) })?;
        Ok(ModelShape::from_raw(s))
    }

    /// The mask of trained targets ([`Target::bit`] values).
    pub fn targets(&self) -> Result<u32> {
        let mut m = 0u32;
        // SAFETY: live handle, valid out pointer.
        check(unsafe { sys::s2ft_selection_targets(self.raw, &mut m) })?;
        Ok(m)
    }

    /// The selected indices of (layer, target), ascending (empty when the
    /// target is not trained).
    pub fn indices(&self, layer: i32, target: Target, kind: IndexKind, order: IndexOrder) -> Result<Vec<i64>> {
        let flags = match kind {
            IndexKind::Units => sys::S2FT_INDEX_UNITS,
            IndexKind::Lines => sys::S2FT_INDEX_LINES,
        } | match order {
            IndexOrder::Base => sys::S2FT_INDEX_BASE,
            IndexOrder::Permuted => sys::S2FT_INDEX_PERMUTED,
        };
        let mut n = 0i64;
        // SAFETY: out NULL asks for the count.
        check(unsafe { sys::s2ft_selection_indices(self.raw, layer, target.to_raw(), flags, ptr::null_mut(), 0, &mut n) })?;
        let mut out = vec![0i64; n as usize];
        // SAFETY: out has capacity n.
        check(unsafe { sys::s2ft_selection_indices(self.raw, layer, target.to_raw(), flags, out.as_mut_ptr(), n, &mut n) })?;
        out.truncate(n as usize);
        Ok(out)
    }

    /// The contiguous permuted range of (layer, target) as `(begin, count)`
    /// in weight lines; `ErrorKind::State` when it is not contiguous.
    pub fn range(&self, layer: i32, target: Target) -> Result<(i64, i64)> {
        let (mut b, mut c) = (0i64, 0i64);
        // SAFETY: live handle, valid out pointers.
        check(unsafe { sys::s2ft_selection_range(self.raw, layer, target.to_raw(), &mut b, &mut c) })?;
        Ok((b, c))
    }

    /// The co-permutation of `layer`: `out[p]` is the base index of the unit
    /// at position `p` after permuting.
    pub fn permutation(&self, layer: i32, kind: PermKind) -> Result<Vec<i64>> {
        let mut n = 0i64;
        // SAFETY: out NULL asks for the count.
        check(unsafe { sys::s2ft_selection_permutation(self.raw, layer, kind.to_raw(), ptr::null_mut(), 0, &mut n) })?;
        let mut out = vec![0i64; n as usize];
        // SAFETY: out has capacity n.
        check(unsafe { sys::s2ft_selection_permutation(self.raw, layer, kind.to_raw(), out.as_mut_ptr(), n, &mut n) })?;
        out.truncate(n as usize);
        Ok(out)
    }

    /// Saves the selection as versioned JSON (written atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let p = c_path(path.as_ref())?;
        // SAFETY: live handle, NUL-terminated path.
        check(unsafe { sys::s2ft_selection_save(self.raw, p.as_ptr()) })
    }

    /// Loads a selection saved by [`Selection::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Selection> {
        let p = c_path(path.as_ref())?;
        let mut raw = ptr::null_mut();
        // SAFETY: NUL-terminated path, valid out pointer.
        check(unsafe { sys::s2ft_selection_load(p.as_ptr(), &mut raw) })?;
        Ok(Selection { raw })
    }

    /// The C handle (for use with `s2ft-sys`); still owned by this value.
    pub fn as_raw(&self) -> *const sys::s2ft_selection {
        self.raw
    }
}

impl Drop for Selection {
    fn drop(&mut self) {
        // SAFETY: we own the handle.
        unsafe { sys::s2ft_selection_destroy(self.raw) }
    }
}
