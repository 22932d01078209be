"""SparseDelta: a weight delta in CSR form on a context's device (s2ft_sparse_delta)."""

import ctypes

from ._convert import enum_arg, float_arg, int32_arg, int64_array, int_arg
from ._handle import Handle, live
from ._library import api as _api
from .context import borrow, context_arg
from .enums import Target
from .errors import check, invalid


class SparseDelta(Handle):
    """A delta D [rows, cols] in CSR form, for deltas that are not whole lines (unstructured sparse methods).

    Lives on its context's device and keeps the context alive. forward()
    computes y += scale * x D^T (cuSPARSE SpMM on CUDA, a loop on the CPU).
    """

    _what = "SparseDelta"

    def __init__(self, ctx, rows, cols, row_offsets, col_indices, values, *, _raw=None, _ctx_res=None):
        """A delta from host CSR arrays (copied): row_offsets (rows + 1), col_indices and f32 values (nnz each)."""
        if _raw is not None:
            self._init_resource(_raw, _api.s2ft_sparse_delta_destroy, [_ctx_res])
            return
        ctx_res = context_arg(ctx)
        rows = int_arg(rows, "rows")
        cols = int_arg(cols, "cols")
        offsets = int64_array(row_offsets, "row_offsets")
        indices = int64_array(col_indices, "col_indices")
        if hasattr(values, "tolist") and not isinstance(values, (list, tuple)):
            values = values.tolist()
        values = [float_arg(v, "values[%d]" % i) for i, v in enumerate(values)]
        if len(values) != len(indices):
            raise invalid("SparseDelta: %d values for %d column indices" % (len(values), len(indices)))
        raw_values = (ctypes.c_float * len(values))(*values)
        raw = ctypes.c_void_p()
        check(_api.s2ft_sparse_delta_create(ctx_res.ptr, rows, cols, offsets, indices, raw_values, len(values),
                                            ctypes.byref(raw)))
        self._init_resource(raw.value, _api.s2ft_sparse_delta_destroy, [ctx_res])

    @classmethod
    def from_adapter(cls, ctx, adapter, layer, target, perm=None):
        """The delta of an Adapter's (layer, target) over the full weight shape (in perm's order when given)."""
        from .adapter import Adapter
        from .selection import Selection

        ctx_res = context_arg(ctx)
        adapter_res = live(adapter, Adapter, "adapter")
        perm_res = live(perm, Selection, "perm", optional=True)
        layer = int32_arg(layer, "layer")
        target = enum_arg(target, Target, "target")
        raw = ctypes.c_void_p()
        check(_api.s2ft_sparse_delta_from_adapter(ctx_res.ptr, adapter_res.ptr, layer, int(target),
                                                  perm_res.ptr if perm_res else None, ctypes.byref(raw)))
        return cls(None, 0, 0, (), (), (), _raw=raw.value, _ctx_res=ctx_res)

    def info(self):
        """(rows, cols, nnz)."""
        res = self._live()
        rows, cols, nnz = ctypes.c_int64(), ctypes.c_int64(), ctypes.c_int64()
        check(_api.s2ft_sparse_delta_info(res.ptr, ctypes.byref(rows), ctypes.byref(cols), ctypes.byref(nnz)))
        return rows.value, cols.value, nnz.value

    @property
    def shape(self):
        """(rows, cols)."""
        return self.info()[:2]

    @property
    def nnz(self):
        """The number of stored entries."""
        return self.info()[2]

    def forward(self, ctx, x, y, scale=1.0):
        """y += scale * x D^T for x [T, cols] and y [T, rows] on the delta's context; returns y."""
        res = self._live()
        ctx_res = context_arg(ctx)
        with borrow(ctx_res) as b:
            check(_api.s2ft_sparse_delta_forward(ctx_res.ptr, res.ptr, float_arg(scale, "scale"),
                                                 b.pointer(x, "x"), b.pointer(y, "y", writable=True)))
        return y
