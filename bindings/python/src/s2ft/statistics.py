"""Statistics: per-unit sums of squares that score units for selection (s2ft_statistics)."""

import ctypes

from ._convert import enum_arg, int32_arg
from ._handle import Handle
from ._library import api as _api
from .context import borrow, context_arg
from .enums import StatKind, Target
from .errors import check
from .shape import shape_arg


class Statistics(Handle):
    """Weight, activation, gradient and principal-weight norms per unit (head or channel), gathered during calibration.

    Lives in the context's device memory; keeps the context alive. On CUDA
    the add_* calls are queued on the context's stream (tensors must stay
    valid until that work has run); the first get() after adds synchronises.
    """

    _what = "Statistics"

    def __init__(self, ctx, shape):
        """Empty statistics for a ModelShape on ``ctx``."""
        ctx_res = context_arg(ctx)
        raw_shape = shape_arg(shape)
        raw = ctypes.c_void_p()
        check(_api.s2ft_statistics_create(ctx_res.ptr, ctypes.byref(raw_shape), ctypes.byref(raw)))
        self._init_resource(raw.value, _api.s2ft_statistics_destroy, [ctx_res])
        self._res.attached["context"] = ctx_res

    def add_weight(self, layer, target, weight):
        """Records the base-order weight of ``target`` in ``layer`` (o/v/down/up_proj); replaces an earlier one."""
        res = self._live()
        layer = int32_arg(layer, "layer")
        target = enum_arg(target, Target, "target")
        with borrow(res.attached["context"]) as b:
            check(_api.s2ft_statistics_add_weight(res.ptr, layer, int(target), b.pointer(weight, "weight")))

    def add_activation(self, layer, target, x):
        """Accumulates the input activation x [T, in] of o_proj (Target.O) or down_proj (Target.DOWN)."""
        res = self._live()
        layer = int32_arg(layer, "layer")
        target = enum_arg(target, Target, "target")
        with borrow(res.attached["context"]) as b:
            check(_api.s2ft_statistics_add_activation(res.ptr, layer, int(target), b.pointer(x, "x")))

    def add_gradient(self, layer, target, x, dy):
        """Accumulates each unit's weight-gradient norm for one batch, from input x [T, in] and output gradient dy [T, out]."""
        res = self._live()
        layer = int32_arg(layer, "layer")
        target = enum_arg(target, Target, "target")
        with borrow(res.attached["context"]) as b:
            check(_api.s2ft_statistics_add_gradient(res.ptr, layer, int(target), b.pointer(x, "x"),
                                                    b.pointer(dy, "dy")))

    def add_principal(self, layer, target, weight, rank):
        """Records LIFT's principal-weight score of ``target`` in ``layer`` for Strategy.PRINCIPAL.

        Each unit's sum of squares of its lines in the rank-``rank`` truncated
        SVD of the base-order ``weight`` (computed in double on the host; rank
        in [1, min(rows, cols)]). Replaces an earlier principal record for the
        same (layer, target). UnsupportedError in builds without LAPACK; on
        CUDA statistics the SVD runs on the device (synchronises).
        """
        res = self._live()
        layer = int32_arg(layer, "layer")
        target = enum_arg(target, Target, "target")
        rank = int32_arg(rank, "rank")
        with borrow(res.attached["context"]) as b:
            check(_api.s2ft_statistics_add_principal(res.ptr, layer, int(target), b.pointer(weight, "weight"), rank))

    def get(self, layer, target, kind):
        """The per-unit sums of squares of one StatKind for (layer, target), as a list of floats."""
        res = self._live()
        layer = int32_arg(layer, "layer")
        target = enum_arg(target, Target, "target")
        kind = enum_arg(kind, StatKind, "kind")
        n = ctypes.c_int64()
        check(_api.s2ft_statistics_get(res.ptr, layer, int(target), int(kind), None, 0, ctypes.byref(n)))
        out = (ctypes.c_double * n.value)()
        check(_api.s2ft_statistics_get(res.ptr, layer, int(target), int(kind), out, n.value, ctypes.byref(n)))
        return list(out[: n.value])
