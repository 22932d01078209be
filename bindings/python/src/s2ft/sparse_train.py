"""Unstructured sparse training (LIFT, SpIEL): sparse sets, the sparse backward, LIFT's selection."""

import ctypes

from . import _capi
from ._convert import enum_arg, float_arg, int64_array, int_arg
from ._handle import Handle, live
from ._library import api as _api
from .context import borrow, context_arg
from .enums import LiftMethod, Order
from .errors import check


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


def lift_select(ctx, w, rank, *, count=None, density=None, order=Order.LARGEST, method=LiftMethod.EXACT,
                oversampling=None, power_iterations=None, seed=None):
    """LIFT's principal weights: the flat indices (ascending list) of the count (or density * size) entries
    of largest (or smallest) magnitude in w's rank-``rank`` approximation.

    Exactly one of count and density is given. The randomized method takes
    oversampling (default 10), power_iterations (default 2) and seed (default 0).
    """
    opts = _capi.s2ft_lift_options()
    check(_api.s2ft_lift_options_init(ctypes.byref(opts), _capi.S2FT_LIFT_OPTIONS_VERSION))
    opts.rank = int_arg(rank, "rank")
    if count is not None:
        opts.count = int_arg(count, "count")
    if density is not None:
        opts.density = float_arg(density, "density")
    opts.order = int(enum_arg(order, Order, "order"))
    opts.method = int(enum_arg(method, LiftMethod, "method"))
    if oversampling is not None:
        opts.oversampling = int_arg(oversampling, "oversampling")
    if power_iterations is not None:
        opts.power_iterations = int_arg(power_iterations, "power_iterations")
    if seed is not None:
        opts.seed = int_arg(seed, "seed")
    res = context_arg(ctx)
    n = ctypes.c_int64()
    with borrow(res) as b:
        pw = b.pointer(w, "w")
        check(_api.s2ft_lift_select(res.ptr, pw, ctypes.byref(opts), None, 0, ctypes.byref(n)))
        out = (ctypes.c_int64 * n.value)()
        check(_api.s2ft_lift_select(res.ptr, pw, ctypes.byref(opts), out, n.value, ctypes.byref(n)))
    return list(out[: n.value])


def lift_count_for_lora_rank(rows, cols, lora_rank):
    """(rows + cols) * lora_rank, at most rows * cols: LIFT's entry count parameter-matched to LoRA of that rank."""
    return int(_api.s2ft_lift_count_for_lora_rank(int_arg(rows, "rows"), int_arg(cols, "cols"),
                                                   int_arg(lora_rank, "lora_rank")))
