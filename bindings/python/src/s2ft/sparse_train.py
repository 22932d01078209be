"""Unstructured sparse training (LIFT, SpIEL): sparse sets, the sparse backward, LIFT's selection and mask
refresh, and SpIEL's dynamic sparse sets."""

import ctypes
import dataclasses

from . import _capi
from ._convert import enum_arg, float_arg, int64_array, int_arg
from ._handle import Handle, live
from ._library import api as _api
from .context import borrow, context_arg
from .enums import LiftMethod, Order, SpielDecay, SpielMaSource, SpielRegrow
from .errors import check, invalid


class SparseSet(Handle):
    """The trained entries of one [rows, cols] weight: strictly ascending flat indices r * cols + c.

    Held by its context's backend (device memory on CUDA); keeps the context alive.
    """

    _what = "SparseSet"

    def __init__(self, ctx, rows, cols, indices):
        """A set from flat indices (copied; strictly ascending, in [0, rows * cols))."""
        ctx_res = context_arg(ctx)
        raw_indices = int64_array(indices, "indices")
        raw = ctypes.c_void_p()
        check(_api.s2ft_sparse_set_create(ctx_res.ptr, int_arg(rows, "rows"), int_arg(cols, "cols"), raw_indices,
                                          len(raw_indices), ctypes.byref(raw)))
        self._init_resource(raw.value, _api.s2ft_sparse_set_destroy, [ctx_res])

    @property
    def count(self):
        """The number of entries."""
        out = ctypes.c_int64()
        check(_api.s2ft_sparse_set_count(self._live().ptr, ctypes.byref(out)))
        return out.value

    @property
    def shape(self):
        """(rows, cols) of the weight the set was made for."""
        rows, cols = ctypes.c_int64(), ctypes.c_int64()
        check(_api.s2ft_sparse_set_shape(self._live().ptr, ctypes.byref(rows), ctypes.byref(cols)))
        return rows.value, cols.value

    def indices(self):
        """The flat indices, ascending, as a list."""
        n = self.count
        out = (ctypes.c_int64 * n)()
        check(_api.s2ft_sparse_set_indices(self._live().ptr, out, n))
        return list(out)

    @classmethod
    def _adopt(cls, ptr, ctx_res):
        """Takes ownership of a set the library made on ``ctx_res``'s context."""
        obj = cls.__new__(cls)
        obj._init_resource(ptr, _api.s2ft_sparse_set_destroy, [ctx_res])
        return obj


def backward_sparse(ctx, set, x, dy, grad, w=None, dx=None, *, accumulate_grad=False, accumulate_dx=False):
    """Backward of y = x W^T for a weight trained at SparseSet ``set``'s entries; the dense dW is never formed.

    grad[n] = sum_t dy[t, r_n] x[t, c_n] (f32, [count]); dx = dy W when dx is
    given (then w is needed). With accumulate_grad / accumulate_dx the
    results are added instead of overwriting. On CUDA the work is queued on
    the context's stream.
    """
    res = context_arg(ctx)
    set_res = live(set, SparseSet, "set")
    flags = (_capi.S2FT_ACCUMULATE_DW if accumulate_grad else 0) | (_capi.S2FT_ACCUMULATE_DX if accumulate_dx else 0)
    with borrow(res) as b:
        px = b.pointer(x, "x")
        pdy = b.pointer(dy, "dy")
        pw = b.pointer(w, "w")
        pdx = b.pointer(dx, "dx", writable=True)
        pg = b.pointer(grad, "grad", writable=True)
        check(_api.s2ft_backward_sparse(res.ptr, set_res.ptr, px, pdy, pw, pdx, pg, flags))
    return grad


def _lift_options(rank, count, density, order, method, oversampling, power_iterations, seed):
    """An s2ft_lift_options: the C defaults, then the arguments given."""
    opts = _capi.s2ft_lift_options()
    check(_api.s2ft_lift_options_init(ctypes.byref(opts), _capi.S2FT_LIFT_OPTIONS_VERSION))
    opts.rank = int_arg(rank, "rank", bits=32)
    if count is not None:
        opts.count = int_arg(count, "count")
    if density is not None:
        opts.density = float_arg(density, "density")
    opts.order = int(enum_arg(order, Order, "order"))
    opts.method = int(enum_arg(method, LiftMethod, "method"))
    if oversampling is not None:
        opts.oversampling = int_arg(oversampling, "oversampling", bits=32)
    if power_iterations is not None:
        opts.power_iterations = int_arg(power_iterations, "power_iterations", bits=32)
    if seed is not None:
        opts.seed = int_arg(seed, "seed", unsigned=True)
    return opts


def lift_select(ctx, w, rank, *, count=None, density=None, order=Order.LARGEST, method=LiftMethod.EXACT,
                oversampling=None, power_iterations=None, seed=None):
    """LIFT's principal weights: the flat indices (ascending list) of the count (or density * size) entries
    of largest (or smallest) magnitude in w's rank-``rank`` approximation.

    Exactly one of count and density is given. The randomized method takes
    oversampling (default 10), power_iterations (default 2) and seed (default 0).
    """
    opts = _lift_options(rank, count, density, order, method, oversampling, power_iterations, seed)
    res = context_arg(ctx)
    n = ctypes.c_int64()
    with borrow(res) as b:
        pw = b.pointer(w, "w")
        check(_api.s2ft_lift_select(res.ptr, pw, ctypes.byref(opts), None, 0, ctypes.byref(n)))
        out = (ctypes.c_int64 * n.value)()
        check(_api.s2ft_lift_select(res.ptr, pw, ctypes.byref(opts), out, n.value, ctypes.byref(n)))
    return list(out[: n.value])


def _sparse_param(optimizer, param_index):
    """(the optimizer's Resource, the index as an int, the weight registered as that parameter)."""
    from .optimizer import Optimizer  # optimizer.py imports this module

    opt_res = live(optimizer, Optimizer, "optimizer")
    index = int_arg(param_index, "param_index")
    params = opt_res.attached["params"]
    if not 0 <= index < len(params):
        raise invalid("param_index = %d is out of range [0, %d)" % (index, len(params)))
    return opt_res, index, params[index]


def lift_refresh(ctx, optimizer, param_index, rank, *, count=None, density=None, order=Order.LARGEST,
                 method=LiftMethod.EXACT, oversampling=None, power_iterations=None, seed=None):
    """LIFT's mask refresh: selects the principal weights of sparse parameter ``param_index``'s current weight
    (as lift_select with these options) and moves the parameter to them (as Optimizer.sparse_reindex).

    Entries in both sets keep their optimizer state, new ones start at zero;
    the weight is not changed. Returns ``(new_set, kept)``: a new SparseSet
    of the selected entries (rebuild the backward_sparse calls with it) and
    the number of them that were in the parameter before. On failure nothing
    changes. CPU contexts with LAPACK only (else UnsupportedError).
    """
    res = context_arg(ctx)
    opt_res, index, weight = _sparse_param(optimizer, param_index)
    opts = _lift_options(rank, count, density, order, method, oversampling, power_iterations, seed)
    raw = ctypes.c_void_p()
    kept = ctypes.c_int64()
    with borrow(res) as b:
        view = b.view(weight, "weight")
        check(_api.s2ft_lift_refresh(res.ptr, opt_res.ptr, index, ctypes.byref(view.desc), ctypes.byref(opts),
                                     ctypes.byref(raw), ctypes.byref(kept)))
    return SparseSet._adopt(raw.value, res), kept.value


def _spiel_options(total_steps=None, regrow=None, reselect_interval=None, accumulation_steps=None,
                   initial_rate=None, decay=None, first_full=None, candidates=None, seed_moments=None,
                   ma_source=None, observations_per_step=None):
    """An s2ft_spiel_options: the C defaults (s2ft_spiel_options_init), then the arguments not None."""
    opts = _capi.s2ft_spiel_options()
    check(_api.s2ft_spiel_options_init(ctypes.byref(opts), _capi.S2FT_SPIEL_OPTIONS_VERSION))
    if total_steps is not None:
        opts.total_steps = int_arg(total_steps, "total_steps")
    if regrow is not None:
        opts.regrow = int(enum_arg(regrow, SpielRegrow, "regrow"))
    if reselect_interval is not None:
        opts.reselect_interval = int_arg(reselect_interval, "reselect_interval")
    if accumulation_steps is not None:
        opts.accumulation_steps = int_arg(accumulation_steps, "accumulation_steps")
    if initial_rate is not None:
        opts.initial_rate = float_arg(initial_rate, "initial_rate")
    if decay is not None:
        opts.decay = int(enum_arg(decay, SpielDecay, "decay"))
    if first_full is not None:
        opts.first_full = 1 if first_full else 0
    if candidates is not None:
        opts.candidates = int_arg(candidates, "candidates")
    if seed_moments is not None:
        opts.seed_moments = 1 if seed_moments else 0
    if ma_source is not None:
        opts.ma_source = int(enum_arg(ma_source, SpielMaSource, "ma_source"))
    if observations_per_step is not None:
        opts.observations_per_step = int_arg(observations_per_step, "observations_per_step")
    return opts


def _rate(opts, step):
    """s2ft_spiel_rate of an options struct."""
    out = ctypes.c_double()
    check(_api.s2ft_spiel_rate(ctypes.byref(opts), int_arg(step, "step"), ctypes.byref(out)))
    return out.value


def spiel_rate(step, *, total_steps, **options):
    """SpIEL's replacement rate p(step) for the schedule these options (Spiel's keywords) describe.

    LINEAR decay: initial_rate * (1 - step / total_steps); COSINE:
    initial_rate * (1 + cos(pi * step / total_steps)) / 2; 1 at step
    accumulation_steps when first_full (the default); 0 after total_steps.
    """
    return _rate(_spiel_options(total_steps=total_steps, **options), step)


@dataclasses.dataclass(frozen=True)
class SpielStats:
    """What a Spiel schedule has done (s2ft_spiel_stats).

    steps: steps counted by Spiel.step; count: the trained entries k;
    reselections: reselection steps run; observations: observe calls used
    (inside accumulation windows); dense_gradients: dense [out, in]
    gradients formed (AG: one per window); next_reselection: the next
    reselection step (0: none left); last_step, last_rate, last_target,
    last_dropped, last_regrown: the last reselection's step (0: none yet),
    rate p, n = floor(p * k), and the entries it dropped and regrew.
    """

    steps: int
    count: int
    reselections: int
    observations: int
    dense_gradients: int
    next_reselection: int
    last_step: int
    last_rate: float
    last_target: int
    last_dropped: int
    last_regrown: int


class Spiel(Handle):
    """A SpIEL schedule (Ansell et al., 2024): moves the trained entries of one sparse optimizer parameter.

    Made for sparse parameter ``param_index`` of ``optimizer`` (registered with
    Optimizer.add_sparse, normally from random entries) before the first
    training step: the weight's current values at the entries become their
    base values. Each training step: backward_sparse with the current set,
    observe(x, dy) for every micro-batch, the optimizer's step, then step();
    when step() returns True, the set changed: use current_set() from then
    on. At a reselection the entries of smallest |W - W_base| are dropped
    (their base values are written back into the weight) and as many regrow,
    by accumulated gradient (AG) or by a row x column score (MA); the
    parameter is reindexed (surviving entries keep their optimizer state).

    Options (None keeps the library's default, s2ft_spiel_options_init):
    total_steps (required: the run's optimizer steps), regrow (AG),
    reselect_interval (20), accumulation_steps (5), initial_rate (0.2),
    decay (LINEAR), first_full (True: p = 1 at the first reselection),
    candidates (0: the entry count), seed_moments (True), ma_source
    (OPTIMIZER: needs an SM3 optimizer; or ACTIVATIONS), observations_per_step (1).
    Keeps its context and optimizer (and so the weight) alive until closed.
    """

    _what = "Spiel"

    def __init__(self, ctx, optimizer, param_index, *, total_steps, regrow=None, reselect_interval=None,
                 accumulation_steps=None, initial_rate=None, decay=None, first_full=None, candidates=None,
                 seed_moments=None, ma_source=None, observations_per_step=None):
        """Creates the schedule of sparse parameter ``param_index`` of ``optimizer`` (on ``ctx``'s device)."""
        ctx_res = context_arg(ctx)
        opt_res, index, weight = _sparse_param(optimizer, param_index)
        opts = _spiel_options(total_steps, regrow, reselect_interval, accumulation_steps, initial_rate, decay,
                              first_full, candidates, seed_moments, ma_source, observations_per_step)
        raw = ctypes.c_void_p()
        with borrow(ctx_res) as b:
            view = b.view(weight, "weight")
            check(_api.s2ft_spiel_create(ctx_res.ptr, opt_res.ptr, index, ctypes.byref(view.desc),
                                         ctypes.byref(opts), ctypes.byref(raw)))
        # The schedule keeps the optimizer: its handle lives until this one is destroyed.
        self._init_resource(raw.value, _api.s2ft_spiel_destroy, [ctx_res, opt_res])
        self._res.attached.update(context=ctx_res, optimizer=opt_res, index=index, weight=weight, options=opts)

    @property
    def param_index(self):
        """The optimizer parameter the schedule moves."""
        return self._live().attached["index"]

    def rate(self, step):
        """The replacement rate p(step) of this schedule's options (see spiel_rate)."""
        return _rate(self._live().attached["options"], step)

    def observe(self, x, dy):
        """Shows the schedule one micro-batch of the coming step: x [T, in] and dy [T, out] as given to
        backward_sparse. Call it for every backward of the weight, before step(); it does nothing outside
        accumulation windows."""
        res = self._live()
        ctx_res = res.attached["context"]
        with borrow(ctx_res) as b:
            px = b.pointer(x, "x")
            pdy = b.pointer(dy, "dy")
            check(_api.s2ft_spiel_observe(res.ptr, ctx_res.ptr, px, pdy))

    def step(self):
        """Counts one step (call it after the optimizer's step); at a reselection step drops and regrows
        entries, writing the dropped entries' base values into the weight. True when the set changed."""
        res = self._live()
        ctx_res = res.attached["context"]
        moved = ctypes.c_int32()
        with borrow(ctx_res) as b:
            view = b.view(res.attached["weight"], "weight", writable=True)
            check(_api.s2ft_spiel_step(res.ptr, ctx_res.ptr, ctypes.byref(view.desc), ctypes.byref(moved)))
        return moved.value != 0

    def current_set(self):
        """A new SparseSet of the schedule's current entries (for backward_sparse)."""
        res = self._live()
        ctx_res = res.attached["context"]
        raw = ctypes.c_void_p()
        check(_api.s2ft_spiel_current_set(res.ptr, ctx_res.ptr, ctypes.byref(raw)))
        return SparseSet._adopt(raw.value, ctx_res)

    @property
    def stats(self):
        """A SpielStats of what the schedule has done so far."""
        res = self._live()
        out = _capi.s2ft_spiel_stats()
        out.version = _capi.S2FT_SPIEL_STATS_VERSION
        check(_api.s2ft_spiel_stats_get(res.ptr, ctypes.byref(out)))
        return SpielStats(**{f.name: getattr(out, f.name) for f in dataclasses.fields(SpielStats)})


def lift_count_for_lora_rank(rows, cols, lora_rank):
    """(rows + cols) * lora_rank, at most rows * cols: LIFT's entry count parameter-matched to LoRA of that rank."""
    return int(_api.s2ft_lift_count_for_lora_rank(int_arg(rows, "rows"), int_arg(cols, "cols"),
                                                   int_arg(lora_rank, "lora_rank")))
